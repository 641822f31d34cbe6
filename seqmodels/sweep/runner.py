"""One trial as a driver process: its command line, environment, start and outcome.

    python -m <driver> --config=<config>[:<variant>] --workdir=<trial folder> \
        --config.KEY=VALUE ...        (the base overrides, then the trial's own)

is exactly what a user would type, so a trial folder can be resumed, sampled or
evaluated with the driver's own modes. The exit status says how it ended (the
drivers' contract): 0 done, EXIT_DIVERGED (3) a non-finite loss, EXIT_PREEMPTED (75)
stopped after saving a checkpoint, anything else an error whose one line the
driver wrote to stderr.
"""

from __future__ import annotations

import ctypes
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence

from seqmodels.sweep import records
from seqmodels.sweep.overrides import override_flags

# seqmodels.training.EXIT_DIVERGED / EXIT_PREEMPTED, repeated so that this module
# (used in SLURM jobs and the launcher) does not import jax.
EXIT_DIVERGED = 3
EXIT_PREEMPTED = 75

# Thread pools other than XLA's that a driver may start (numpy's BLAS, grain, TF).
_THREAD_VARS = (
    'OMP_NUM_THREADS',
    'OPENBLAS_NUM_THREADS',
    'MKL_NUM_THREADS',
    'TF_NUM_INTRAOP_THREADS',
    'TF_NUM_INTEROP_THREADS',
)

_DIVERGED = re.compile(r'non-finite loss or gradient at step (\d+)')
_ERROR_LINE = re.compile(r'^(error: |FATAL Flags parsing error: )')
_ABSL_LOG = re.compile(r'^[IWEF]\d{4} ')

_PR_SET_PDEATHSIG = 1
try:
    _prctl = ctypes.CDLL(None, use_errno=True).prctl if sys.platform == 'linux' else None
except (OSError, AttributeError):
    _prctl = None


def trial_command(
    manifest: Mapping, trial: records.Trial, python: str = sys.executable
) -> list[str]:
    config = manifest['config'] + (f':{manifest["variant"]}' if manifest.get('variant') else '')
    # A space's fixed values apply to all its trials, like base overrides.
    overrides = {
        **manifest.get('base_overrides', {}),
        **manifest.get('fixed', {}),
        **trial.overrides,
    }
    return [
        python,
        '-m',
        manifest['driver'],
        f'--config={config}',
        f'--workdir={trial.directory}',
        *override_flags(overrides),
    ]


def trial_env(
    cores: Sequence[int] | None = None,
    extra: Mapping[str, str] | None = None,
    base: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The environment of a trial: `base` (os.environ), thread pools sized to its
    `cores`, and `extra` (its devices)."""
    env = dict(os.environ if base is None else base)
    if cores:
        env.update({var: str(len(cores)) for var in _THREAD_VARS})
    env.update(extra or {})
    env['PYTHONUNBUFFERED'] = '1'  # logs reach stdout.log/stderr.log as they happen
    return env


def _child_setup(parent: int, cores: Sequence[int] | None, die_with_parent: bool):
    """Runs in the child between fork and exec."""

    def setup():
        # The launcher blocks its stop signals while it starts a trial; the trial
        # must receive them.
        signal.pthread_sigmask(signal.SIG_SETMASK, ())
        if die_with_parent and _prctl is not None:
            # SIGKILL when the launcher dies, however it dies: no orphan keeps
            # writing into a trial folder that a rerun of the sweep resumes.
            _prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL))
            if os.getppid() != parent:  # it died before prctl took effect
                os.kill(os.getpid(), signal.SIGKILL)
        if cores:
            # XLA sizes its CPU thread pools from the affinity mask, so a pinned trial
            # also starts no more compute threads than it has cores.
            os.sched_setaffinity(0, cores)

    return setup


def start(
    trial: records.Trial,
    command: Sequence[str],
    env: Mapping[str, str],
    cwd: str,
    cores: Sequence[int] | None = None,
    die_with_parent: bool = True,
) -> tuple[subprocess.Popen, int]:
    """Starts the driver in its own process group, its output appended to the trial's
    stdout.log and stderr.log. Returns the process and where this attempt's stderr
    starts."""
    os.makedirs(trial.directory, exist_ok=True)
    stderr_path = os.path.join(trial.directory, records.STDERR_FILE)
    since = os.path.getsize(stderr_path) if os.path.exists(stderr_path) else 0
    with (
        open(os.path.join(trial.directory, records.STDOUT_FILE), 'ab') as out,
        open(stderr_path, 'ab') as err,
    ):
        header = f'=== {time.strftime("%Y-%m-%d %H:%M:%S")} {" ".join(command)}\n'.encode()
        out.write(header)
        out.flush()
        process = subprocess.Popen(
            list(command),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            cwd=cwd,
            env=dict(env),
            process_group=0,
            preexec_fn=_child_setup(os.getpid(), cores, die_with_parent),
        )
    return process, since


def record_start(trial: records.Trial, pid: int, **fields) -> dict:
    status = trial.status()
    return trial.update_status(
        status=records.RUNNING,
        pid=pid,
        host=socket.gethostname(),
        attempts=status.get('attempts', 0) + 1,
        started=time.time(),
        error=None,
        **fields,
    )


def record_end(trial: records.Trial, outcome: Mapping) -> dict:
    """Records how an attempt ended; `history` keeps one entry per attempt."""
    status = trial.status()
    now = time.time()
    started = status.get('started') or now
    wall = status.get('wall_time_s', 0.0) + max(now - started, 0.0)
    history = list(status.get('history') or [])
    history.append(
        {
            'attempt': status.get('attempts', 0),
            'status': outcome['status'],
            'exit_code': outcome.get('exit_code'),
            'started': started,
            'ended': now,
            'host': status.get('host'),
        }
    )
    return trial.update_status(ended=now, wall_time_s=wall, pid=None, history=history, **outcome)


def outcome(returncode: int, stderr_path: str, since: int = 0) -> dict:
    """How an attempt ended, from its exit status and the stderr it wrote:
    {'status', 'exit_code', 'error', 'diverged_step'}."""
    text = _read_from(stderr_path, since)
    diverged = _DIVERGED.search(text)
    result = {'exit_code': returncode, 'error': None, 'diverged_step': None}
    if returncode == 0:
        result['status'] = records.DONE
    elif returncode == EXIT_DIVERGED or (diverged and returncode == 1):
        # Exit status 1 with the divergence line: a driver from before EXIT_DIVERGED.
        result['status'] = records.DIVERGED
        result['diverged_step'] = int(diverged.group(1)) if diverged else None
    elif returncode == EXIT_PREEMPTED:
        result['status'] = records.PREEMPTED
    else:
        result['status'] = records.ERROR
        result['error'] = error_line(text, returncode)
    return result


def error_line(text: str, returncode: int) -> str:
    """The one line that says what went wrong: the driver's `error: ...` line, else the
    last line of a traceback, else how the process died."""
    lines = [line.rstrip() for line in text.splitlines() if line.strip()]
    for line in reversed(lines):
        if _ERROR_LINE.match(line):
            return line[:500]
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f'signal {-returncode}'
        return f'killed by {name}'
    for line in reversed(lines):
        if not line[0].isspace() and not _ABSL_LOG.match(line):
            return f'exit status {returncode}: {line[:400]}'
    return f'exit status {returncode} (see stderr.log)'


def _read_from(path: str, offset: int) -> str:
    try:
        with open(path, 'rb') as f:
            f.seek(offset)
            return f.read().decode('utf-8', errors='replace')
    except FileNotFoundError:
        return ''

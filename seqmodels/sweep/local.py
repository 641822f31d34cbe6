"""The local executor: N trials at a time as child processes of the launcher.

Each of the N slots owns a disjoint share of the machine: its CPU cores (the
launcher's affinity mask split N ways; the child is pinned to them, and XLA sizes
its thread pools from the mask, so N trials never ask for more cores than there
are) and, with `devices_per_trial=K`, K accelerators of its own
(CUDA_VISIBLE_DEVICES on a GPU host; one chip per trial on a TPU host).

Trials die with the launcher: each runs in its own process group, which the
launcher stops on exit (SIGTERM first, so a driver saves a checkpoint after the step
in flight; SIGKILL after `stop_timeout_s`), and on Linux the kernel SIGKILLs a trial
whose launcher died without cleaning up (prctl PR_SET_PDEATHSIG), so no orphan keeps
writing into a folder that a rerun resumes.
"""

from __future__ import annotations

import atexit
import dataclasses
import glob
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Sequence

from seqmodels.sweep import records, runner
from seqmodels.sweep.declare import SweepError

_POLL_S = 0.25
_MAX_REQUEUES = 3  # a trial preempted more often than this in one launch waits for a rerun
_TPU_PORT = 8476
_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@dataclasses.dataclass
class Slot:
    index: int
    cores: list[int]
    devices: list[str]
    env: dict[str, str]


def detect_accelerators() -> tuple[str | None, list[str]]:
    """('gpu', ids) or ('tpu', chip indices) on an accelerator host, else (None, [])."""
    visible = os.environ.get('CUDA_VISIBLE_DEVICES')
    if visible:
        return 'gpu', [d for d in visible.split(',') if d.strip()]
    if shutil.which('nvidia-smi'):
        try:
            listing = subprocess.run(
                ['nvidia-smi', '-L'], capture_output=True, text=True, timeout=30
            ).stdout
        except (OSError, subprocess.SubprocessError):
            listing = ''
        gpus = [line for line in listing.splitlines() if line.startswith('GPU ')]
        if gpus:
            return 'gpu', [str(i) for i in range(len(gpus))]
    chips = sorted(glob.glob('/dev/accel*')) or sorted(
        p for p in glob.glob('/dev/vfio/*') if os.path.basename(p).isdigit()
    )
    if chips:
        return 'tpu', [str(i) for i in range(len(chips))]
    return None, []


def make_slots(
    parallel: int,
    devices_per_trial: int = 0,
    log: Callable = print,
    cores: Sequence[int] | None = None,
    accelerators: tuple[str | None, list[str]] | None = None,
) -> list[Slot]:
    """Splits the cores (and accelerators) into `parallel` disjoint slots, or fewer
    when there are not enough to go round (said in a log line)."""
    cores = sorted(os.sched_getaffinity(0) if cores is None else cores)
    if parallel < 1:
        raise SweepError(f'--parallel={parallel}: must be at least 1')
    if parallel > len(cores):
        log(
            f'--parallel={parallel} but this process may use {len(cores)} cores: running '
            f'{len(cores)} trials at a time'
        )
        parallel = len(cores)
    kind, devices = None, []
    if devices_per_trial > 0:
        kind, devices = detect_accelerators() if accelerators is None else accelerators
        if kind is None:
            raise SweepError(
                f'--devices_per_trial={devices_per_trial}: this host shows no GPU '
                '(CUDA_VISIBLE_DEVICES, nvidia-smi) and no TPU (/dev/accel*)'
            )
        if kind == 'tpu' and devices_per_trial != 1:
            raise SweepError(
                f'--devices_per_trial={devices_per_trial}: on a TPU host a trial '
                'gets one chip (1) or, with --devices_per_trial=0, all of them'
            )
        if len(devices) < devices_per_trial:
            raise SweepError(
                f'--devices_per_trial={devices_per_trial}: this host has only '
                f'{len(devices)} {kind} devices'
            )
        if parallel * devices_per_trial > len(devices):
            fits = len(devices) // devices_per_trial
            log(
                f'--parallel={parallel} x --devices_per_trial={devices_per_trial} needs more '
                f'than the {len(devices)} {kind} devices here: running {fits} at a time'
            )
            parallel = fits
    slots = []
    for i in range(parallel):
        share = cores[i * len(cores) // parallel : (i + 1) * len(cores) // parallel]
        mine = devices[i * devices_per_trial : (i + 1) * devices_per_trial]
        env = {}
        if kind == 'gpu':
            env['CUDA_VISIBLE_DEVICES'] = ','.join(mine)
        elif kind == 'tpu':
            # One chip as a host of its own (bounds 1,1,1) with its own port, so trials
            # on neighbouring chips do not join one another's slice.
            port = str(_TPU_PORT + i)
            env.update(
                TPU_VISIBLE_CHIPS=mine[0],
                TPU_PROCESS_BOUNDS='1,1,1',
                TPU_CHIPS_PER_PROCESS_BOUNDS='1,1,1',
                TPU_PROCESS_PORT=port,
                TPU_PROCESS_ADDRESSES=f'localhost:{port}',
                CLOUD_TPU_TASK_ID='0',
            )
        slots.append(Slot(i, share, mine, env))
    return slots


def data_prepared(trials: Sequence[records.Trial]) -> bool:
    """Whether some trial got past its data preparation (drivers write config.json
    after building their datasets)."""
    return any(os.path.exists(os.path.join(t.directory, 'config.json')) for t in trials)


class LocalExecutor:
    """Runs a plan's trials `parallel` at a time on this machine."""

    def __init__(
        self,
        parallel: int = 1,
        devices_per_trial: int = 0,
        log: Callable = print,
        stop_timeout_s: float = 120.0,
    ):
        self.slots = make_slots(parallel, devices_per_trial, log)
        self.parallel = len(self.slots)
        self.log = log
        self.stop_timeout_s = stop_timeout_s
        self.stopped_by: int | None = None
        self._running: dict[int, tuple[records.Trial, subprocess.Popen, int]] = {}

    def run(self, sweep, plan, monitor) -> None:
        """Runs until the plan is exhausted or the launcher gets SIGINT/SIGTERM (then
        `stopped_by` is the signal and the running trials were stopped)."""
        previous = {s: signal.signal(s, self._on_signal) for s in _STOP_SIGNALS}
        atexit.register(self._signal_all, signal.SIGKILL)
        requeues: dict[int, int] = {}
        # Two trials preparing the same dataset at once would race on its files: until
        # one trial has prepared its data, the others wait.
        gated = not data_prepared(sweep.trials)
        free = list(self.slots)
        try:
            while self.stopped_by is None:
                for slot_index, (trial, process, since) in list(self._running.items()):
                    if process.poll() is None:
                        continue
                    del self._running[slot_index]
                    free.append(self.slots[slot_index])
                    status = self._finish(trial, process, since)
                    if (
                        status['status'] == records.PREEMPTED
                        and requeues.get(trial.index, 0) < _MAX_REQUEUES
                    ):
                        requeues[trial.index] = requeues.get(trial.index, 0) + 1
                        plan.requeue(trial)
                    else:
                        plan.finished(trial, status)
                    monitor.ended(trial, status)
                if gated and data_prepared(sweep.trials):
                    gated = False
                while free and not (gated and self._running) and self.stopped_by is None:
                    trial = plan.next_trial()
                    if trial is None:
                        break
                    free.sort(key=lambda s: s.index)
                    self._start(sweep, trial, free.pop(0))
                    monitor.started(trial)
                if not self._running:
                    break
                monitor.tick()
                time.sleep(_POLL_S)
        finally:
            self._stop_all(monitor)
            atexit.unregister(self._signal_all)
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _start(self, sweep, trial: records.Trial, slot: Slot) -> None:
        command = runner.trial_command(sweep.manifest, trial)
        extra = dict(slot.env)
        if 'JAX_COMPILATION_CACHE_DIR' not in os.environ:
            # One compilation cache for the sweep's trials (on this host only: a cached
            # CPU executable assumes the CPU it was compiled on). A resumed trial, or one
            # that differs from another only in values its step takes as inputs (a
            # seed), does not compile again.
            extra['JAX_COMPILATION_CACHE_DIR'] = os.path.join(sweep.workdir, '.jax_cache')
        env = runner.trial_env(slot.cores, extra)
        # A stop signal between the start and the bookkeeping would miss this trial.
        signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
        try:
            process, since = runner.start(
                trial, command, env, sweep.manifest['cwd'], cores=slot.cores
            )
            self._running[slot.index] = (trial, process, since)
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)
        runner.record_start(
            trial, process.pid, executor='local', cores=slot.cores, devices=slot.devices
        )

    def _finish(self, trial, process, since, stopped: bool = False) -> dict:
        stderr = os.path.join(trial.directory, records.STDERR_FILE)
        result = runner.outcome(process.returncode, stderr, since)
        if stopped and result['status'] == records.ERROR:
            # Killed by the launcher's own stop: resumable from its last checkpoint.
            result.update(status=records.PREEMPTED, error=None)
        return runner.record_end(trial, result)

    def _on_signal(self, signum, frame):
        if self.stopped_by is not None:  # a second signal: stop waiting for checkpoints
            self._signal_all(signal.SIGKILL)
        self.stopped_by = signum

    def _signal_all(self, sig) -> None:
        for _, process, _ in list(self._running.values()):
            try:
                os.killpg(process.pid, sig)
            except (ProcessLookupError, PermissionError):
                pass

    def _stop_all(self, monitor) -> None:
        """SIGTERM to every running trial (a driver saves a checkpoint after the step in
        flight and exits 75), then SIGKILL to any still running after stop_timeout_s."""
        if not self._running:
            return
        self.log(
            f'stopping {len(self._running)} running trials (they save a checkpoint '
            'first; a rerun resumes them)'
        )
        self._signal_all(signal.SIGTERM)
        deadline = time.time() + self.stop_timeout_s
        while self._running and time.time() < deadline:
            time.sleep(0.1)
            self._reap_stopped(monitor)
        if self._running:
            self._signal_all(signal.SIGKILL)
            while self._running:
                time.sleep(0.05)
                self._reap_stopped(monitor)

    def _reap_stopped(self, monitor) -> None:
        for slot_index, (trial, process, since) in list(self._running.items()):
            if process.poll() is not None:
                del self._running[slot_index]
                monitor.ended(trial, self._finish(trial, process, since, stopped=True))

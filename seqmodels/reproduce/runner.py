"""Running one claim at one scale: its runs through the sweep launcher, then the
numbers, the checks, and the outcome file.

    status, outcome = run_claim(claim, 'ci', workdir, results_dir, make_executor)

Each of the claim's runs is a sweep in WORKDIR/<claim>/<scale>/<run>/, or
WORKDIR/shared/<scale>/<name>/ for a run that claims share (Run.shared), so a rerun
skips finished trials and resumes the others from their checkpoints, on the executor
given (here or SLURM); a run's evaluation mode (Run.evaluate) runs here, in this
process's machine, after its trials. The outcome is RESULTS_DIR/<claim>.<scale>.json,
written whether the claim passed, failed or could not be measured.
"""

from __future__ import annotations

import datetime
import glob
import json
import os
import platform
import shlex
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

from seqmodels.reproduce.claim import EVALUATION_FILE, SCALES, SHARED, Claim, Results, RunDir
from seqmodels.sweep import launcher, records, runner
from seqmodels.sweep.declare import SweepError

PASS, FAIL, ERROR = 'PASS', 'FAIL', 'ERROR'
VERDICTS = (PASS, FAIL, ERROR)


def project_root() -> str:
    """The folder holding configs/ and experiments/ (claims name configs from it)."""
    return os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def outcome_path(results_dir: str, claim: str, scale: str) -> str:
    return os.path.join(results_dir, f'{claim}.{scale}.json')


def machine() -> dict[str, Any]:
    """What the numbers were measured on (without starting JAX here: this process goes on
    to launch the runs, and forking a process with JAX's threads running is unsafe)."""
    import jax

    from seqmodels.sweep.local import detect_accelerators

    cpu = platform.processor() or platform.machine()
    try:
        with open('/proc/cpuinfo') as f:
            names = [line.split(':', 1)[1].strip() for line in f if line.startswith('model name')]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    kind, devices = detect_accelerators()
    return {
        'cpu': cpu,
        'cores': os.cpu_count(),
        'accelerator': f'{len(devices)} {kind.upper()}(s)' if kind else None,
        'jax': jax.__version__,
    }


def code_version(root: str) -> str | None:
    """The git commit of the code (with '+changes' when the tree differs from it)."""
    try:
        commit = subprocess.run(
            ['git', 'rev-parse', '--short', 'HEAD'], cwd=root, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ['git', 'status', '--porcelain', '--untracked-files=no'],
            cwd=root,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except OSError:
        return None
    return (commit + ('+changes' if dirty else '')) or None


def _relative(command: str, root: str) -> str:
    """A command as typed from the project root (its paths relative to it)."""
    return command.replace(root.rstrip(os.sep) + os.sep, '')


def _resolve(value: Any, folders: dict[str, str]) -> Any:
    """RunDir(name) -> the folder of that run's single trial."""
    if not isinstance(value, RunDir):
        return value
    if value.run not in folders:
        raise SweepError(f'RunDir({value.run!r}) names no earlier run of the claim')
    trials = records.load_trials(folders[value.run])
    if len(trials) != 1:
        raise SweepError(f'RunDir({value.run!r}): that run has {len(trials)} trials, not one')
    return trials[0].directory


def _sweep_folder(workdir: str, claim: Claim, run, scale: str) -> tuple[str, str]:
    """The sweep's name and folder: WORKDIR/<claim>/<scale>/<run>, or for a run that
    claims share, WORKDIR/shared/<scale>/<shared>."""
    owner, name = (SHARED, run.shared) if run.shared else (claim.name, run.name)
    return f'{owner}/{name}', os.path.join(workdir, owner, scale, name)


def _request(sweep: str, run, scale: str, folder: str, folders: dict, root: str):
    config_path, _, variant = run.config.partition(':')
    config_path = os.path.join(root, config_path)
    module = launcher.config_module(config_path)
    base_config = module.get_config(variant) if variant else module.get_config()
    overrides = {k: _resolve(v, folders) for k, v in run.scale_overrides(scale).items()}
    trials = [{k: _resolve(v, folders) for k, v in t.items()} for t in run.trials]
    return launcher.Request(
        workdir=folder,
        config_path=config_path,
        variant=variant or None,
        driver=run.driver or launcher.default_driver(config_path),
        sweep=sweep,
        base_config=base_config,
        base_overrides=overrides,
        declared=trials,
        cwd=root,
    )


def _newest_checkpoint_time(directory: str) -> float:
    paths = glob.glob(os.path.join(glob.escape(directory), 'checkpoints', '*'))
    return max((os.path.getmtime(p) for p in paths), default=0.0)


def _last_json_line(text: str) -> dict | None:
    for line in reversed(text.splitlines()):
        line = line.strip()
        if line.startswith('{'):
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                continue
    return None


def evaluate_trials(run, driver: str, folder: str, root: str, log) -> list[str]:
    """Runs the driver's evaluation mode on each finished trial of `run` that has no
    evaluation of its latest checkpoint yet; returns the errors."""
    errors = []
    for trial in records.load_trials(folder):
        if trial.status().get('status') != records.DONE:
            continue
        path = os.path.join(trial.directory, EVALUATION_FILE)
        if os.path.exists(path) and os.path.getmtime(path) >= _newest_checkpoint_time(
            trial.directory
        ):
            continue
        command = [
            sys.executable,
            '-m',
            driver,
            f'--mode={run.evaluate_mode}',
            f'--workdir={trial.directory}',
            *run.evaluate,
        ]
        log(f'evaluating {os.path.relpath(trial.directory, folder)}: {shlex.join(command[1:])}')
        started = time.time()
        done = subprocess.run(command, cwd=root, capture_output=True, text=True)
        # A mode that writes its results to files prints no JSON: its exit status counts.
        found = (_last_json_line(done.stdout) or {}) if done.returncode == 0 else None
        if found is None:
            tail = (done.stderr.strip().splitlines() or ['no output'])[-1]
            errors.append(f'evaluating {trial.name} (exit {done.returncode}): {tail}')
            continue
        found['evaluation_wall_time_s'] = time.time() - started
        found['evaluation_command'] = shlex.join(['python', *command[1:]])
        records.write_json(path, found)
    return errors


def run_claim(
    claim: Claim,
    scale: str,
    workdir: str,
    results_dir: str,
    make_executor: Callable[[str], Any],
    log: Callable[[str], None] = print,
    root: str | None = None,
) -> tuple[int, dict | None]:
    """Runs (or resumes) the claim's runs, then checks it. Returns (exit status, the
    outcome written); the status is runner.EXIT_PREEMPTED, with no outcome, when a
    run was stopped by a signal."""
    if scale not in SCALES:
        raise SweepError(f'--scale={scale}: choose one of {", ".join(SCALES)}')
    root = root or project_root()
    load_before = os.getloadavg()[0]
    folders: dict[str, str] = {}
    errors: list[str] = []
    for run in claim.runs:
        sweep, folder = _sweep_folder(workdir, claim, run, scale)
        shared = f', shared as {run.shared!r}' if run.shared else ''
        log(
            f'{claim.name} [{scale}]: run {run.name} ({run.config}, {len(run.trials)} '
            f'trials{shared})'
        )
        try:
            request = _request(sweep, run, scale, folder, folders, root)
            status = launcher.run(request, make_executor(sweep.replace('/', '-')), log=log)
        except SweepError as e:
            errors.append(f'run {run.name}: {e}')
            log(f'error: {claim.name}: run {run.name}: {e}')
            continue
        if status == runner.EXIT_PREEMPTED:
            return status, None
        folders[run.name] = folder
        if status != 0:
            errors.append(f'run {run.name}: a trial failed (see {folder}/results.md)')
        if run.evaluate is not None:
            errors += evaluate_trials(run, request.driver, folder, root, log)

    started = time.time()
    measured: dict[str, float] = {}
    checks: list[dict] = []
    try:
        measured = {k: float(v) for k, v in claim.extract(Results.read(scale, folders)).items()}
        for check in claim.checks_for(scale):
            result = check(measured)
            checks.append({'text': result.text, 'passed': result.passed})
    except Exception as e:  # an outcome that says why is worth more than a traceback
        errors.append(f'extracting the numbers: {type(e).__name__}: {e}')
        log(traceback.format_exc())
    extract_s = time.time() - started

    if errors:
        verdict = ERROR  # a run failed or a number could not be read: the checks say little
    else:
        verdict = PASS if checks and all(c['passed'] for c in checks) else FAIL
    runs = []
    for folder in folders.values():
        for t in records.load_trials(folder):
            runs.append(
                {
                    'trial': os.path.relpath(t.directory, workdir),
                    'status': t.status().get('status'),
                    'wall_time_s': t.status().get('wall_time_s') or 0.0,
                    'command': _relative(shlex.join(['python', *(t.command or [])[1:]]), root),
                }
            )
            evaluation = records.read_json(os.path.join(t.directory, EVALUATION_FILE))
            if evaluation:
                runs.append(
                    {
                        'trial': runs[-1]['trial'],
                        'status': 'evaluated',
                        'wall_time_s': evaluation.get('evaluation_wall_time_s', 0.0),
                        'command': _relative(evaluation.get('evaluation_command', ''), root),
                    }
                )
    outcome = {
        'claim': claim.name,
        'scale': scale,
        'verdict': verdict,
        'measured': measured,
        'checks': checks,
        'errors': errors,
        'command': f'python -m experiments.reproduce --claim={claim.name} --scale={scale}',
        'runs': runs,
        'wall_time_s': sum(r['wall_time_s'] for r in runs) + extract_s,
        # Wall times on a shared machine are only comparable at the same load.
        'machine': {**machine(), 'load_before': load_before, 'load_after': os.getloadavg()[0]},
        'code': code_version(root),
        'date': datetime.datetime.now(datetime.UTC).strftime('%Y-%m-%d %H:%M UTC'),
    }
    os.makedirs(results_dir, exist_ok=True)
    records.write_json(outcome_path(results_dir, claim.name, scale), outcome)
    shown = '; '.join(c['text'] for c in checks) or '; '.join(errors)
    log(f'{claim.name} [{scale}]: {verdict}: {shown}')
    return 0, outcome

"""Putting a sweep together: the declared trials, the sweep folder, an executor, the table.

    request = Request(workdir=..., config_path=..., variant=..., driver=..., sweep=...,
                      base_config=..., base_overrides=...)
    status = run(request, LocalExecutor(parallel=2))     # 0, 1 (a trial failed) or 75
    rows = report(workdir)                               # results.csv/.md and plots

`run` refuses a folder made with other settings (saying what differs), skips finished
trials, resumes the others from their checkpoints, and holds a lock on the folder so
that two launchers never run one sweep.
"""

from __future__ import annotations

import dataclasses
import fcntl
import importlib.util
import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import ml_collections

from seqmodels.sweep import records, results, runner, search
from seqmodels.sweep.declare import SweepError, describe_space, random_draws, split_space
from seqmodels.sweep.overrides import apply_overrides

DIRECTIONS = ('min', 'max')
PROGRESS_EVERY_S = 30.0


@dataclasses.dataclass
class Request:
    """What the command line asks for."""

    workdir: str
    config_path: str
    variant: str | None
    driver: str
    sweep: str
    base_config: ml_collections.ConfigDict  # get_config(variant), base overrides or not
    base_overrides: dict = dataclasses.field(default_factory=dict)
    search: str = 'grid'
    num_trials: int | None = None
    search_seed: int = 0
    objective: str = 'eval/loss'
    direction: str = 'min'
    cwd: str = dataclasses.field(default_factory=os.getcwd)
    # The declared trials (or space) themselves, for callers that hold them (a claim of
    # experiments.reproduce); None reads get_sweep(sweep) from the config module.
    declared: Any = None


@dataclasses.dataclass
class Sweep:
    workdir: str
    manifest: dict
    trials: list[records.Trial]


def default_driver(config_path: str) -> str:
    """configs/<exp>.py is trained by experiments.<exp>."""
    return 'experiments.' + os.path.splitext(os.path.basename(config_path))[0]


def config_module(config_path: str):
    """The config module at `config_path`, imported (SweepError when there is none)."""
    if not os.path.exists(config_path):
        raise SweepError(f'{config_path}: no such config file')
    spec = importlib.util.spec_from_file_location('_sweep_config', config_path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def declared_sweep(config_path: str, name: str) -> Any:
    """`get_sweep(name)` of the config module at `config_path`."""
    module = config_module(config_path)
    if not hasattr(module, 'get_sweep'):
        raise SweepError(f'{config_path} declares no sweeps: it has no get_sweep(name)')
    try:
        return module.get_sweep(name)
    except (ValueError, KeyError) as e:
        raise SweepError(f'{config_path}: get_sweep({name!r}): {e}') from None


def _resolve(base_config, overrides: Mapping[str, Any]) -> tuple[dict | None, str | None]:
    try:
        return records.plain(apply_overrides(base_config, overrides).to_dict()), None
    except SweepError as e:
        return None, str(e)


class _Builder:
    """Makes (or finds again) the folder of trial i with its overrides."""

    def __init__(self, request: Request, manifest: dict, width: int):
        self.request, self.manifest, self.width = request, manifest, width
        self.trials: list[records.Trial] = []
        self.unresolved: set[int] = set()

    def __call__(
        self,
        index: int,
        overrides: dict,
        optuna_number: int | None = None,
        existing: records.Trial | None = None,
    ) -> records.Trial:
        name = existing.name if existing else records.trial_name(index, overrides, self.width)
        directory = os.path.join(self.request.workdir, name)
        if existing is None and os.path.exists(os.path.join(directory, records.TRIAL_FILE)):
            existing = records.Trial.load(directory)
        config, error = _resolve(
            self.request.base_config,
            {**self.request.base_overrides, **self.manifest['fixed'], **overrides},
        )
        if existing is not None and existing.config is not None and config is not None:
            differences = records.dict_differences(existing.config, config)
            if differences:
                raise SweepError(
                    f'{self.request.workdir} holds trial {name} with another resolved config '
                    f'(did {self.request.config_path} change?): ' + '; '.join(differences)
                )
        trial = records.Trial(
            index, name, directory, records.plain(overrides), config, optuna_number=optuna_number
        )
        trial.command = runner.trial_command(self.manifest, trial)
        trial.save()
        if error:
            self.unresolved.add(index)
            trial.update_status(status=records.ERROR, error=error, attempts=0)
        self.trials.append(trial)
        return trial


def open_sweep(request: Request, log: Callable = print) -> tuple[Sweep, Any]:
    """The sweep folder, made or checked against the request, and the plan of trials
    still to run. Raises SweepError with what is wrong."""
    if request.direction not in DIRECTIONS:
        raise SweepError(f'--direction={request.direction}: choose min or max')
    where = f'{request.config_path}: get_sweep({request.sweep!r})'
    declared = request.declared
    if declared is None:
        declared = declared_sweep(request.config_path, request.sweep)
    planned = search.planned_trials(
        declared, request.search, request.num_trials, request.search_seed, where
    )
    keys = set(declared) if isinstance(declared, Mapping) else {k for t in planned for k in t}
    clash = sorted(keys & set(request.base_overrides))
    if clash:
        raise SweepError(
            f'--config.{clash[0]} is swept by {request.sweep!r}: a base override '
            'may not set a swept key'
        )
    manifest = {
        'format': 1,
        'config': os.path.abspath(request.config_path),
        'variant': request.variant,
        'driver': request.driver,
        'cwd': request.cwd,
        'sweep': request.sweep,
        'search': request.search,
        'num_trials': request.num_trials,
        'search_seed': request.search_seed,
        'objective': request.objective,
        'direction': request.direction,
        'base_overrides': records.plain(request.base_overrides),
        'space': describe_space(declared) if isinstance(declared, Mapping) else None,
        'fixed': records.plain(split_space(declared)[0]) if isinstance(declared, Mapping) else {},
        'trials': records.plain(planned) if planned is not None else None,
    }
    path = os.path.join(request.workdir, records.MANIFEST)
    old = records.read_json(path)
    if old is not None:
        differences = records.manifest_differences(old, manifest)
        if differences:
            raise SweepError(
                f'{request.workdir} holds a sweep made with other settings; '
                'rerun it as it was made, or use another --workdir. What differs: '
                + '; '.join(differences)
            )
    manifest['created'] = (old or {}).get('created') or time.time()
    os.makedirs(request.workdir, exist_ok=True)

    count = len(planned) if planned is not None else request.num_trials
    build = _Builder(request, manifest, width=max(3, len(str(count - 1))))
    if request.search == 'bayes':
        # Every key of the space must exist in the config before Optuna proposes values.
        _, error = _resolve(
            request.base_config, {**request.base_overrides, **random_draws(declared, 1, 0)[0]}
        )
        if error:
            raise SweepError(f'{where}: {error}')
        existing = records.load_trials(request.workdir)
        for trial in existing:
            build(trial.index, trial.overrides, trial.optuna_number, existing=trial)
        records.write_json(path, manifest)
        plan = search.OptunaPlan(
            request.workdir,
            declared,
            request.num_trials,
            request.search_seed,
            request.objective,
            request.direction,
            list(build.trials),
            build,
            log=log,
        )
    else:
        for index, overrides in enumerate(planned):
            build(index, overrides)
        records.write_json(path, manifest)
        plan = search.ListPlan(
            t
            for t in build.trials
            if t.index not in build.unresolved and t.status().get('status') not in records.FINISHED
        )
    return Sweep(request.workdir, manifest, build.trials), plan


class Monitor:
    """The launcher's terminal output: one line per trial start and end, and the
    sweep's progress line (after each end, and every PROGRESS_EVERY_S)."""

    def __init__(self, sweep: Sweep, parallel: int, log: Callable = print):
        self.sweep, self.parallel, self.log = sweep, parallel, log
        self.last = time.time()
        self.shown = None

    def rows(self):
        return [
            results.trial_row(t, self.sweep.manifest['objective'], self.sweep.manifest['direction'])
            for t in self.sweep.trials
        ]

    def progress(self, again: bool = False) -> None:
        """Logs the progress line (unless it would repeat the last one, or `again`)."""
        self.last = time.time()
        total = self.sweep.manifest.get('num_trials')
        line = (
            f'sweep {self.sweep.manifest["sweep"]}: '
            f'{results.progress_line(self.rows(), self.parallel, total)}'
        )
        if line != self.shown or again:
            self.log(line)
            self.shown = line

    def started(self, trial: records.Trial) -> None:
        attempts = trial.status().get('attempts', 0)
        self.log(f'{"resuming" if attempts > 1 else "starting"} {trial.name}')

    def ended(self, trial: records.Trial, status: Mapping) -> None:
        state = status.get('status')
        took = results.duration(status.get('wall_time_s'))
        if state == records.DONE:
            value = search.objective_value(trial.directory, self.sweep.manifest['objective'])
            shown = f'{value:.4g}' if value is not None else 'none'
            self.log(f'{trial.name}: done in {took}, {self.sweep.manifest["objective"]} = {shown}')
        elif state == records.DIVERGED:
            self.log(f'{trial.name}: diverged at step {status.get("diverged_step")}')
        elif state == records.ERROR:
            self.log(f'{trial.name}: failed: {status.get("error")}')
        else:
            self.log(f'{trial.name}: {state} (resumes from its checkpoint)')
        self.progress()

    def tick(self) -> None:
        if time.time() - self.last >= PROGRESS_EVERY_S:
            self.progress(again=True)


def _lock(workdir: str):
    os.makedirs(workdir, exist_ok=True)
    lock = open(os.path.join(workdir, '.lock'), 'a+')
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.seek(0)
        holder = lock.read().strip() or '?'
        lock.close()
        raise SweepError(
            f'another launcher (pid {holder}) is running the sweep in '
            f'{workdir}; wait for it or stop it'
        ) from None
    lock.seek(0)
    lock.truncate()
    lock.write(str(os.getpid()))
    lock.flush()
    return lock


def run(
    request: Request, executor, log: Callable = print, aggregate: Sequence[str] = ('seed',)
) -> int:
    """Runs the sweep to the end; returns the launcher's exit status: 0, 1 when a trial
    failed (each named on the log), EXIT_PREEMPTED when stopped by a signal."""
    lock = _lock(request.workdir)
    try:
        sweep, plan = open_sweep(request, log)
        monitor = Monitor(sweep, getattr(executor, 'parallel', 1), log)
        finished = sum(t.status().get('status') in records.FINISHED for t in sweep.trials)
        if finished:
            log(f'{finished} trials already finished; running the rest')
        executor.run(sweep, plan, monitor)
        sweep.trials.sort(key=lambda t: t.index)
        monitor.progress()
        rows = report(request.workdir, aggregate=aggregate, log=log)
    finally:
        lock.close()
    if executor.stopped_by is not None:
        log('stopped; rerun the same command to resume')
        return runner.EXIT_PREEMPTED
    failed = [row for row in rows if row['status'] == records.ERROR]
    if failed:
        for row in failed:
            log(f'error: trial {row["trial"]} failed: {row["error"]}')
        log(f'error: {len(failed)} of {len(rows)} trials failed (a rerun retries them)')
        return 1
    return 0


def report(
    workdir: str,
    objective: str | None = None,
    direction: str | None = None,
    aggregate: Sequence[str] = ('seed',),
    plots: bool = True,
    log: Callable | None = None,
) -> list[dict]:
    """Rebuilds results.csv, results.md and the plots from the trial folders (safe while
    the trials run); returns the sorted rows."""
    manifest = records.read_json(os.path.join(workdir, records.MANIFEST))
    if manifest is None:
        raise SweepError(f'{workdir} holds no sweep ({records.MANIFEST} is missing)')
    objective = objective or manifest['objective']
    direction = direction or manifest['direction']
    if direction not in DIRECTIONS:
        raise SweepError(f'--direction={direction}: choose min or max')
    trials = records.load_trials(workdir)
    rows = results.sort_rows(
        [results.trial_row(t, objective, direction) for t in trials], direction
    )
    written = results.write_tables(workdir, rows, manifest, objective, direction, aggregate)
    if plots and rows:
        from seqmodels.sweep import plots as plotting

        written += plotting.write_plots(workdir, trials, rows, objective)
    if log is not None:
        log(f'wrote {", ".join(os.path.relpath(p, workdir) for p in written)} in {workdir}')
    return rows

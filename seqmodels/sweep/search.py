"""Search strategies: which trial runs next.

grid     the declared list of trials (or the product of a space's lists), in order
random   `num_trials` draws from a space, reproducible from `search_seed`
bayes    Optuna's TPE through ask/tell, `num_trials` in all, with its state in a
         journal file in the sweep folder (no database server): a rerun loads it
         and continues the same study

An executor asks a plan for `next_trial()` whenever it can start one, calls
`finished(trial, status)` when one ends, and stops when `exhausted()`.
"""

from __future__ import annotations

import math
import os
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from seqmodels.sweep import records
from seqmodels.sweep.declare import (
    Choice,
    LogUniform,
    RandInt,
    SweepError,
    Uniform,
    as_distribution,
    check_trials,
    grid_of_space,
    random_draws,
    split_space,
)

SEARCHES = ('grid', 'random', 'bayes')
JOURNAL = 'optuna.journal'


def planned_trials(
    declared: Any, search: str, num_trials: int | None, seed: int, where: str
) -> list[dict] | None:
    """The trial overrides a grid or random search runs, in order; None for bayes,
    whose trials are proposed one at a time."""
    if search not in SEARCHES:
        raise SweepError(f'--search={search}: choose one of {", ".join(SEARCHES)}')
    if search == 'grid':
        if num_trials:
            raise SweepError(
                '--num_trials is for --search=random or bayes; a grid runs every trial it declares'
            )
        if isinstance(declared, Mapping):
            return grid_of_space(declared)
        return check_trials(declared, where)
    if not isinstance(declared, Mapping):
        raise SweepError(
            f'--search={search} needs {where} to return a search space (a dict '
            '{key: range or list of choices}), not a list of trials'
        )
    if not num_trials:
        raise SweepError(f'--search={search} needs --num_trials=N')
    _, searched = split_space(declared)
    return random_draws(searched, num_trials, seed) if search == 'random' else None


class ListPlan:
    """Runs `trials` in order; a preempted trial goes to the back of the queue."""

    adaptive = False  # every trial is known up front

    def __init__(self, trials: Iterable[records.Trial]):
        self.queue = deque(trials)

    def next_trial(self) -> records.Trial | None:
        return self.queue.popleft() if self.queue else None

    def finished(self, trial: records.Trial, status: Mapping) -> None:
        pass

    def requeue(self, trial: records.Trial) -> None:
        self.queue.append(trial)

    def exhausted(self) -> bool:
        return not self.queue


def objective_value(directory: str, objective: str) -> float | None:
    """The final logged value of `objective` in a trial's metrics.jsonl."""
    from seqmodels.sweep import results

    return results.final_value(results.read_metrics(directory), objective)


def _optuna_distribution(dist):
    import optuna.distributions as od

    if isinstance(dist, Choice):
        return od.CategoricalDistribution(dist.values)
    if isinstance(dist, LogUniform):
        return od.FloatDistribution(dist.low, dist.high, log=True)
    if isinstance(dist, Uniform):
        return od.FloatDistribution(dist.low, dist.high)
    if isinstance(dist, RandInt):
        return od.IntDistribution(dist.low, dist.high)
    raise SweepError(f'{dist!r} has no Optuna equivalent')


class OptunaPlan:
    """Bayesian search with Optuna's TPE sampler, through ask and tell.

    Each asked Optuna trial becomes a sweep trial folder (trial.json records its
    Optuna number), told when it ends: done with the final value of the objective,
    diverged as pruned (TPE ranks pruned trials below every completed one, which is
    what a diverged learning rate deserves). Errors are not told: a rerun retries
    them, like every errored trial, and tells the retry's result.
    """

    adaptive = True  # the next trial depends on the results so far

    def __init__(
        self,
        workdir: str,
        space: Mapping[str, Any],
        num_trials: int,
        seed: int,
        objective: str,
        direction: str,
        existing: list[records.Trial],
        make_trial: Callable[[int, dict, int], records.Trial],
        log=print,
    ):
        try:
            import optuna
            from optuna.storages import JournalStorage
            from optuna.storages.journal import JournalFileBackend
        except ImportError:
            raise SweepError('--search=bayes needs optuna: pip install -e ".[cluster]"') from None

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self._optuna = optuna
        self.objective, self.num_trials, self.log = objective, num_trials, log
        _, searched = split_space(space)
        self.distributions = {
            k: _optuna_distribution(as_distribution(v)) for k, v in searched.items()
        }
        if not self.distributions:
            raise SweepError('--search=bayes needs at least one range or list in the space')
        storage = JournalStorage(JournalFileBackend(os.path.join(workdir, JOURNAL)))
        self.study = optuna.create_study(
            storage=storage,
            study_name='sweep',
            load_if_exists=True,
            direction='minimize' if direction == 'min' else 'maximize',
            sampler=optuna.samplers.TPESampler(seed=seed),
        )
        self.make_trial = make_trial
        self.queue: deque[records.Trial] = deque()
        self.next_index = max((t.index for t in existing), default=-1) + 1

        running = self._optuna.trial.TrialState.RUNNING
        by_number = {t.optuna_number: t for t in existing}
        for frozen in self.study.get_trials(deepcopy=False):
            if frozen.state != running:
                continue
            trial = by_number.get(frozen.number)
            if trial is None:  # asked, then the launcher died before the folder was made
                trial = self._adopt(frozen.number, frozen.params)
            status = trial.status()
            if status.get('status') in records.FINISHED:
                self.finished(trial, status)  # ended, but the tell was lost
            else:
                self.queue.append(trial)

    def _adopt(self, number: int, params: Mapping[str, Any]) -> records.Trial:
        trial = self.make_trial(self.next_index, {k: params[k] for k in sorted(params)}, number)
        self.next_index += 1
        return trial

    def next_trial(self) -> records.Trial | None:
        if self.queue:
            return self.queue.popleft()
        if len(self.study.trials) >= self.num_trials:
            return None
        asked = self.study.ask(self.distributions)
        return self._adopt(asked.number, asked.params)

    def finished(self, trial: records.Trial, status: Mapping) -> None:
        state = status.get('status')
        states = self._optuna.trial.TrialState
        if state == records.DIVERGED:
            self.study.tell(trial.optuna_number, state=states.PRUNED, skip_if_finished=True)
        elif state == records.DONE:
            value = objective_value(trial.directory, self.objective)
            if value is None or not math.isfinite(value):
                self.log(
                    f'{trial.name}: no finite {self.objective} in its metrics.jsonl; '
                    'told to Optuna as failed'
                )
                self.study.tell(trial.optuna_number, state=states.FAIL, skip_if_finished=True)
            else:
                self.study.tell(trial.optuna_number, value, skip_if_finished=True)

    def requeue(self, trial: records.Trial) -> None:
        self.queue.append(trial)

    def exhausted(self) -> bool:
        return not self.queue and len(self.study.trials) >= self.num_trials

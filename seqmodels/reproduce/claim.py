"""A paper's claim as data: the runs that test it, the numbers read from them, the checks.

    Claim(
        name='nanogpt_shakespeare',
        title="nanoGPT's CPU recipe on Tiny Shakespeare",
        citation='Karpathy, nanoGPT (2023), README "quick start"',
        paper='validation loss ~1.88 after 2,000 iterations',
        runs=(Run('gpt', 'configs/char_lm.py:shakespeare_gpt', ci={'num_train_steps': 60}),),
        extract=finals(loss=('gpt', 'eval/loss')),
        checks=(Band('loss', 1.85, 1.91),),
        ci_checks=(Below('loss', 3.0),),
    )

A `Run` is one sweep of ordinary driver runs (its `trials`, each a dict of config
overrides, on top of the config's variant, the run's `overrides` and the scale's
`ci` / `full` overrides). A later run may name an earlier run's folder with
`RunDir(name)` (fine-tuning from a pre-training, say). `extract` turns the finished
runs (`Results`) into named numbers; every check compares those numbers: a band for an
absolute number, a threshold, or a direction with a stated margin.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from seqmodels.sweep import records, results

SCALES = ('ci', 'full')
EVALUATION_FILE = 'reproduce_evaluation.json'
SHARED = 'shared'  # WORKDIR/shared/<scale>/<name>: the runs that claims share


@dataclasses.dataclass(frozen=True)
class RunDir:
    """The folder of the single trial of run `run` of the same claim and scale."""

    run: str


@dataclasses.dataclass(frozen=True)
class Run:
    """A group of driver runs: one sweep over `trials` of the config `config`
    ('configs/<exp>.py[:variant]', relative to the project root)."""

    name: str
    config: str
    trials: Sequence[Mapping[str, Any]] = ({},)
    overrides: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    ci: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    full: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    driver: str | None = None  # default: experiments.<name of the config file>
    # The flags of a driver mode run on each finished trial (`evaluate_mode`, by default
    # --mode=evaluate); the last JSON object it prints is kept in the trial folder as
    # EVALUATION_FILE. None: no such step.
    evaluate: Sequence[str] | None = None
    evaluate_mode: str = 'evaluate'
    # A name for a run that several claims need: its sweep lives in
    # WORKDIR/shared/<scale>/<shared> and runs once for all of them. Every Run with
    # that name must be the same but for `name` (check_registry says which differs).
    shared: str | None = None

    def scale_overrides(self, scale: str) -> dict[str, Any]:
        return {**self.overrides, **(self.ci if scale == 'ci' else self.full)}


# --------------------------------------------------------------------------- #
# Checks. Each is a callable: measured numbers -> CheckResult.


@dataclasses.dataclass(frozen=True)
class CheckResult:
    text: str  # the expectation, with the numbers it compared
    passed: bool


def _value(measured: Mapping[str, float], name: str) -> float | None:
    value = measured.get(name)
    if value is None or not isinstance(value, (int, float)) or math.isnan(value):
        return None
    return float(value)


def _fmt(x: float) -> str:
    return f'{x:.4g}'


@dataclasses.dataclass(frozen=True)
class Band:
    """low <= measured[value] <= high: an absolute number with its tolerance."""

    value: str
    low: float
    high: float

    def __call__(self, measured) -> CheckResult:
        x = _value(measured, self.value)
        text = f'{_fmt(self.low)} <= {self.value} <= {_fmt(self.high)}'
        if x is None:
            return CheckResult(f'{text} (not measured)', False)
        return CheckResult(f'{text} (measured {_fmt(x)})', self.low <= x <= self.high)


@dataclasses.dataclass(frozen=True)
class Above:
    """measured[value] > threshold."""

    value: str
    threshold: float
    sign = '>'

    def __call__(self, measured) -> CheckResult:
        x = _value(measured, self.value)
        text = f'{self.value} {self.sign} {_fmt(self.threshold)}'
        if x is None:
            return CheckResult(f'{text} (not measured)', False)
        passed = x > self.threshold if self.sign == '>' else x < self.threshold
        return CheckResult(f'{text} (measured {_fmt(x)})', passed)


@dataclasses.dataclass(frozen=True)
class Below(Above):
    """measured[value] < threshold."""

    sign = '<'


@dataclasses.dataclass(frozen=True)
class Lower:
    """A direction with a margin: measured[lower] <= measured[higher] - margin (say, the
    better model's loss below the other's by at least `margin`). An infinite `lower`
    (a diverged run's loss) never passes, even against another infinity."""

    lower: str
    higher: str
    margin: float = 0.0

    def __call__(self, measured) -> CheckResult:
        a, b = _value(measured, self.lower), _value(measured, self.higher)
        text = f'{self.lower} <= {self.higher} - {_fmt(self.margin)}'
        if a is None or b is None:
            missing = [n for n, v in ((self.lower, a), (self.higher, b)) if v is None]
            return CheckResult(f'{text} ({", ".join(missing)} not measured)', False)
        return CheckResult(
            f'{text} (measured {_fmt(a)} vs {_fmt(b)}: difference {_fmt(b - a)})',
            math.isfinite(a) and a <= b - self.margin,
        )


@dataclasses.dataclass(frozen=True)
class Within:
    """|measured[a] - measured[b]| <= tolerance: two settings perform about the same."""

    a: str
    b: str
    tolerance: float

    def __call__(self, measured) -> CheckResult:
        x, y = _value(measured, self.a), _value(measured, self.b)
        text = f'|{self.a} - {self.b}| <= {_fmt(self.tolerance)}'
        if x is None or y is None:
            return CheckResult(f'{text} (not measured)', False)
        return CheckResult(
            f'{text} (measured {_fmt(x)} vs {_fmt(y)})', abs(x - y) <= self.tolerance
        )


# --------------------------------------------------------------------------- #
# The claim.


@dataclasses.dataclass(frozen=True)
class Claim:
    """One claim of one paper, and how it is tested at each scale."""

    name: str
    title: str
    citation: str
    paper: str  # what the paper reports, with its numbers
    runs: Sequence[Run]
    extract: Callable[[Results], dict[str, float]]
    checks: Sequence[Callable]  # at full scale
    ci_checks: Sequence[Callable] | None = None  # None: the full-scale checks
    note: str = ''  # how our setting differs from the paper's

    def checks_for(self, scale: str) -> Sequence[Callable]:
        return self.checks if scale == 'full' or self.ci_checks is None else self.ci_checks


def check_registry(claims: Sequence[Claim], where: str) -> None:
    """Raises ValueError, naming `where`, for claim names used twice and for shared runs
    declared differently by two claims (one folder cannot hold two sweeps)."""
    names = [c.name for c in claims]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise ValueError(f'{where}: claim names used twice: {", ".join(duplicated)}')
    if SHARED in names:
        raise ValueError(f'{where}: {SHARED!r} is the folder of shared runs, not a claim name')
    first: dict[str, tuple[str, Run]] = {}
    for claim in claims:
        for run in claim.runs:
            if run.shared is None:
                continue
            if run.shared not in first:
                first[run.shared] = (claim.name, run)
                continue
            other_claim, other = first[run.shared]
            differs = [
                f.name
                for f in dataclasses.fields(Run)
                if f.name != 'name' and getattr(run, f.name) != getattr(other, f.name)
            ]
            if differs:
                raise ValueError(
                    f'{where}: shared run {run.shared!r} is declared differently by claims '
                    f'{other_claim!r} and {claim.name!r} (they differ in {", ".join(differs)})'
                )


# --------------------------------------------------------------------------- #
# What the runs left behind.


@dataclasses.dataclass
class TrialResult:
    name: str
    directory: str
    overrides: dict
    status: dict
    metrics: list[dict]


class ResultError(ValueError):
    """A number a claim needs is not in its runs (which run, which trial, which metric)."""


class Results:
    """The finished runs of one claim at one scale: run name -> its trials."""

    def __init__(self, scale: str, trials: Mapping[str, Sequence[TrialResult]]):
        self.scale = scale
        self._trials = dict(trials)

    @classmethod
    def read(cls, scale: str, folders: Mapping[str, str]) -> Results:
        """Reads each run's sweep folder (run name -> folder)."""
        trials = {}
        for run, folder in folders.items():
            trials[run] = [
                TrialResult(
                    t.name, t.directory, t.overrides, t.status(), results.read_metrics(t.directory)
                )
                for t in records.load_trials(folder)
            ]
        return cls(scale, trials)

    def trials(self, run: str) -> list[TrialResult]:
        if run not in self._trials:
            raise ResultError(f'no run {run!r} (runs: {", ".join(self._trials)})')
        return list(self._trials[run])

    def trial(self, run: str, where: Mapping[str, Any] | None = None) -> TrialResult:
        """The one trial of `run` whose overrides include `where`."""
        where = dict(where or {})
        found = [
            t
            for t in self.trials(run)
            if all(k in t.overrides and t.overrides[k] == v for k, v in where.items())
        ]
        if len(found) != 1:
            raise ResultError(
                f'run {run!r}: {len(found)} trials match {where or "{}"} (expected one)'
            )
        return found[0]

    def curve(
        self, run: str, metric: str, where: Mapping[str, Any] | None = None
    ) -> tuple[list[int], list[float]]:
        """(steps, values) of every logged value of `metric`."""
        t = self.trial(run, where)
        pairs = [(r['step'], float(r[metric])) for r in t.metrics if metric in r]
        return [s for s, _ in pairs], [v for _, v in pairs]

    def final(self, run: str, metric: str, where: Mapping[str, Any] | None = None) -> float:
        """The last logged value of `metric`; NaN when the run diverged."""
        t = self.trial(run, where)
        if t.status.get('status') == records.DIVERGED:
            return math.nan
        value = results.final_value(t.metrics, metric)
        if value is None:
            raise ResultError(f'run {run!r} trial {t.name}: no {metric} in its metrics.jsonl')
        return float(value)

    def evaluation(self, run: str, where: Mapping[str, Any] | None = None) -> dict:
        """What the driver's evaluation mode printed for the trial (Run.evaluate)."""
        t = self.trial(run, where)
        found = records.read_json(os.path.join(t.directory, EVALUATION_FILE))
        if found is None:
            raise ResultError(f'run {run!r} trial {t.name} was not evaluated')
        return found

    def diverged(self, run: str, where: Mapping[str, Any] | None = None) -> bool:
        return self.trial(run, where).status.get('status') == records.DIVERGED


def finals(**named: tuple) -> Callable[[Results], dict[str, float]]:
    """An `extract` that reads final values: name=(run, metric[, where])."""

    def extract(res: Results) -> dict[str, float]:
        return {name: res.final(*spec) for name, spec in named.items()}

    return extract


def steps_to_reach(steps: Sequence[int], values: Sequence[float], target: float) -> float:
    """The first logged step whose value is at or below `target` (inf if none is)."""
    for step, value in zip(steps, values, strict=True):
        if value <= target:
            return float(step)
    return math.inf

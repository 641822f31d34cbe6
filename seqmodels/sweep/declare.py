"""Declaring a sweep in a config module: plain Python that returns dicts of overrides.

A config module declares its sweeps beside `get_config`:

    from seqmodels import sweep as sw

    def get_sweep(name):
        if name == 'cells':      # a grid: the list of trials itself
            return sw.axis('model.cell', ['rnn', 'lstm', 'lnlstm', 'gru'])
        if name == 'lr_seeds':   # every combination
            return sw.product(sw.axis('learning_rate', sw.log_grid(1e-4, 1e-2, 5)),
                              sw.axis('seed', [0, 1, 2]))
        if name == 'search':     # a space, for --search=random or --search=bayes
            return {'learning_rate': sw.loguniform(1e-4, 1e-2),
                    'model.dropout': sw.uniform(0.0, 0.5),
                    'model.cell': ['lstm', 'gru']}
        raise ValueError(f'unknown sweep {name!r}')

A grid is a list of trials, each a dict {dotted config key: value}. A space is a dict
{key: distribution, list of choices, or fixed value}; a space whose entries are all
lists (or fixed values) is also a grid, their product. `random_draws` turns a space
into a list of trials with a seed, so a config can pin a random search down itself.

Nothing here imports jax: config modules import it.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Mapping, Sequence
from typing import Any

Trial = dict[str, Any]


class SweepError(ValueError):
    """A sweep that cannot be run as declared or asked for; the message says why."""


# --------------------------------------------------------------------------- #
# Grids.


def axis(key: str, values: Sequence[Any]) -> list[Trial]:
    """One swept key: [{key: v} for v in values]."""
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        raise SweepError(f'axis({key!r}, ...): values must be a list, got {values!r}')
    return [{key: v} for v in values]


def product(*grids: Sequence[Trial]) -> list[Trial]:
    """Every combination of the trials of `grids`, the last grid varying fastest."""
    trials = []
    for combo in itertools.product(*grids):
        merged: Trial = {}
        for part in combo:
            _merge_into(merged, part, 'product')
        trials.append(merged)
    return trials


def zipped(*grids: Sequence[Trial]) -> list[Trial]:
    """Trial i merges trial i of every grid; the grids must have one length."""
    lengths = {len(g) for g in grids}
    if len(lengths) > 1:
        raise SweepError(f'zipped(...): the grids have different lengths {sorted(lengths)}')
    trials = []
    for parts in zip(*grids):
        merged: Trial = {}
        for part in parts:
            _merge_into(merged, part, 'zipped')
        trials.append(merged)
    return trials


def log_grid(low: float, high: float, num: int, digits: int = 3) -> list[float]:
    """`num` values evenly spaced in log(value) from low to high, both included,
    rounded to `digits` significant digits (1e-4, 3.16e-4, 1e-3, ... for num=5)."""
    if not (low > 0 and high > low and num >= 2):
        raise SweepError(f'log_grid({low}, {high}, {num}): need 0 < low < high and num >= 2')
    step = (math.log(high) - math.log(low)) / (num - 1)
    return [float(f'{math.exp(math.log(low) + i * step):.{digits}g}') for i in range(num)]


def _merge_into(merged: Trial, part: Mapping[str, Any], where: str) -> None:
    for key, value in part.items():
        if key in merged and merged[key] != value:
            raise SweepError(
                f'{where}(...): key {key!r} is set twice, to {merged[key]!r} and {value!r}'
            )
        merged[key] = value


# --------------------------------------------------------------------------- #
# Distributions for random and Bayesian search.


class Distribution:
    """A one-dimensional search range: draws from a uniform number u in [0, 1)."""

    def from_unit(self, u: float) -> Any:
        raise NotImplementedError

    def describe(self) -> dict:
        """JSON form, recorded in the sweep folder and compared on a rerun."""
        raise NotImplementedError

    def __eq__(self, other):
        return type(self) is type(other) and self.describe() == other.describe()

    def __repr__(self):
        ((kind, args),) = self.describe().items()
        return f'{kind}({", ".join(map(repr, args))})'


class Choice(Distribution):
    def __init__(self, values: Sequence[Any]):
        if isinstance(values, (str, bytes)) or not values:
            raise SweepError(f'choice(...) needs a non-empty list, got {values!r}')
        self.values = list(values)

    def from_unit(self, u):
        return self.values[min(int(u * len(self.values)), len(self.values) - 1)]

    def describe(self):
        return {'choice': list(self.values)}


class Uniform(Distribution):
    def __init__(self, low: float, high: float):
        if not high > low:
            raise SweepError(f'uniform({low}, {high}): need low < high')
        self.low, self.high = float(low), float(high)

    def from_unit(self, u):
        return self.low + u * (self.high - self.low)

    def describe(self):
        return {'uniform': [self.low, self.high]}


class LogUniform(Distribution):
    def __init__(self, low: float, high: float):
        if not (low > 0 and high > low):
            raise SweepError(f'loguniform({low}, {high}): need 0 < low < high')
        self.low, self.high = float(low), float(high)

    def from_unit(self, u):
        return math.exp(math.log(self.low) + u * (math.log(self.high) - math.log(self.low)))

    def describe(self):
        return {'loguniform': [self.low, self.high]}


class RandInt(Distribution):
    def __init__(self, low: int, high: int):
        if not (isinstance(low, int) and isinstance(high, int) and high >= low):
            raise SweepError(f'randint({low}, {high}): need integers low <= high')
        self.low, self.high = low, high

    def from_unit(self, u):
        return min(self.low + int(u * (self.high - self.low + 1)), self.high)

    def describe(self):
        return {'randint': [self.low, self.high]}


def choice(values: Sequence[Any]) -> Choice:
    """One of `values`, each equally likely."""
    return Choice(values)


def uniform(low: float, high: float) -> Uniform:
    """A float uniform in [low, high)."""
    return Uniform(low, high)


def loguniform(low: float, high: float) -> LogUniform:
    """A float whose log is uniform in [log low, log high): for rates and scales."""
    return LogUniform(low, high)


def randint(low: int, high: int) -> RandInt:
    """An integer uniform in [low, high], both included."""
    return RandInt(low, high)


# --------------------------------------------------------------------------- #
# Spaces.


def as_distribution(value: Any) -> Distribution | None:
    """The distribution of a space entry: lists become choices, fixed values None."""
    if isinstance(value, Distribution):
        return value
    if isinstance(value, list):
        return Choice(value)
    return None


def describe_space(space: Mapping[str, Any]) -> dict:
    """JSON form of a space: {key: {'choice': [...]} | {'uniform': [lo, hi]} | ... |
    {'fixed': value}}."""
    out = {}
    for key in sorted(space):
        dist = as_distribution(space[key])
        out[key] = dist.describe() if dist is not None else {'fixed': space[key]}
    return out


def random_draws(space: Mapping[str, Any], num_trials: int, seed: int = 0) -> list[Trial]:
    """`num_trials` trials drawn from `space`, reproducible from `seed`.

    Trial i depends only on (seed, i, space): asking for more trials later keeps the
    first ones. Draws use only `random.Random.random()`, whose sequence Python keeps
    stable across versions.
    """
    if not isinstance(num_trials, int) or num_trials < 1:
        raise SweepError(f'random search needs a number of trials >= 1, got {num_trials!r}')
    trials = []
    for index in range(num_trials):
        rng = random.Random(f'seqmodels.sweep/{seed}/{index}')
        trial = {}
        for key in sorted(space):
            dist = as_distribution(space[key])
            trial[key] = dist.from_unit(rng.random()) if dist is not None else space[key]
        trials.append(trial)
    return trials


def split_space(space: Mapping[str, Any]) -> tuple[dict, dict]:
    """(fixed values, searched ranges) of a space."""
    fixed = {k: v for k, v in space.items() if as_distribution(v) is None}
    return fixed, {k: v for k, v in space.items() if k not in fixed}


def grid_of_space(space: Mapping[str, Any]) -> list[Trial]:
    """The product of a space's lists (its fixed values are not part of the trials); a
    space with a continuous range has no grid."""
    ranges = {
        k: v for k, v in space.items() if isinstance(v, Distribution) and not isinstance(v, Choice)
    }
    if ranges:
        raise SweepError(
            f'keys {", ".join(sorted(ranges))} have continuous ranges: run this '
            'sweep with --search=random or --search=bayes and --num_trials=N'
        )
    _, searched = split_space(space)
    return product(*[axis(key, as_distribution(v).values) for key, v in searched.items()])


def check_trials(trials: Any, where: str) -> list[Trial]:
    """The declared grid as a list of dicts with string keys, or SweepError."""
    if not isinstance(trials, (list, tuple)) or not trials:
        raise SweepError(
            f'{where} must return a non-empty list of trials (dicts of config '
            f'overrides) or a search space (a dict), got {type(trials).__name__}'
        )
    for i, trial in enumerate(trials):
        if not isinstance(trial, Mapping) or not all(isinstance(k, str) for k in trial):
            raise SweepError(f'{where}: trial {i} is not a dict of dotted config keys: {trial!r}')
    return [dict(t) for t in trials]

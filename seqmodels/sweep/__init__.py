"""Hyperparameter sweeps: declared in config modules, run as ordinary driver runs.

What a config module needs (no jax, no optional packages):

    from seqmodels import sweep as sw
    sw.axis, sw.product, sw.zipped, sw.log_grid          # grids
    sw.choice, sw.uniform, sw.loguniform, sw.randint     # search ranges
    sw.random_draws                                      # a seeded random grid

The launcher (`python -m experiments.sweep`) lives in the submodules: `records`
(the sweep folder and each trial's state), `runner` (one trial as a driver
process), `local` and `slurm` (executors), `search` (grid, random, Optuna),
`results` and `plots` (the table), `launcher` (putting them together).
"""

from seqmodels.sweep.declare import (
    Distribution,
    SweepError,
    axis,
    choice,
    log_grid,
    loguniform,
    product,
    randint,
    random_draws,
    uniform,
    zipped,
)

__all__ = [
    'Distribution',
    'SweepError',
    'axis',
    'choice',
    'log_grid',
    'loguniform',
    'product',
    'randint',
    'random_draws',
    'uniform',
    'zipped',
]

r"""Hyperparameter sweeps: many ordinary driver runs, launched here or on SLURM, one table.

    # Run the sweep `cells` declared in configs/char_lm.py, two trials at a time:
    python -m experiments.sweep --config=configs/char_lm.py:lstm --sweep=cells \
        --workdir=runs/cells --parallel=2 [--config.KEY=VALUE ...]
    # Rebuild the table and plots at any time (also while the trials run):
    python -m experiments.sweep --mode=report --workdir=runs/cells

Declaring. A config module declares its sweeps beside get_config: get_sweep(name)
returns either a list of trials, each a dict of dotted config overrides, or a search
space (a dict of key -> range), built with the helpers of seqmodels.sweep: axis,
product, zipped, log_grid for grids; choice, uniform, loguniform, randint for ranges;
random_draws for a seeded random grid. --config.KEY=VALUE flags are base overrides
applied to every trial (a swept key may not be one of them).

Trials. Each trial is one driver run (`python -m experiments.<exp> --config=...
--workdir=WORKDIR/<NNN>_<key=value,...> --config.KEY=VALUE ...`, the module named
after the config file, or --driver) in its own folder, with the driver's
config.json, metrics.jsonl, checkpoints and TensorBoard events, plus trial.json (its
overrides, resolved config and command), status.json and the driver's stdout.log and
stderr.log. Any driver mode works on a trial folder; `tensorboard --logdir WORKDIR`
shows every trial side by side. WORKDIR/sweep.json records what the sweep was made
with.

Resuming. Running the same command again skips finished trials (done or diverged),
resumes the others from their latest checkpoints and retries failed ones. Killing
the launcher at any moment (even SIGKILL) loses no finished trial; its trials die
with it. A rerun into WORKDIR with other settings is refused, naming what differs.
On SIGINT/SIGTERM the launcher stops its trials (each saves a checkpoint after the
step in flight) and exits 75.

Outcomes. A trial ends done, diverged (a non-finite loss: recorded with its step; an
outcome, not an error) or failed (its one-line error is recorded; the others go
on). The launcher exits 1 at the end when a trial failed, naming each, else 0.

Searches. --search=grid runs the declared trials (or the product of a space's
lists). --search=random draws --num_trials trials from a space, reproducible from
--search_seed. --search=bayes runs Optuna's TPE sampler through ask/tell with its
state in WORKDIR/optuna.journal (no server), --num_trials in all; diverged trials
count as pruned. A rerun may raise --num_trials to extend either. The objective is
the final value of --objective (default eval/loss), --direction=min or max.

Executors. --executor=local (default) runs --parallel trials at a time as child
processes, splitting this process's CPU cores between them (each trial is pinned to
its share) and, with --devices_per_trial=K, giving each K GPUs (CUDA_VISIBLE_DEVICES)
or one TPU chip; its trials share a JAX compilation cache in WORKDIR/.jax_cache
(unless JAX_COMPILATION_CACHE_DIR is set). --executor=slurm submits the trials
through submitit as one job array (--parallel at a time) with the --slurm_*
settings; a trial preempted or at its time limit is requeued and resumes from its
checkpoints; the jobs outlive the launcher, and a rerun waits for those still
queued or running instead of submitting them again. --executor=submitit_local runs
that same SLURM code path on this machine through submitit's local executor.

Results. WORKDIR/results.csv and results.md (one row per trial: swept keys, status,
steps, wall time, final and best value of every eval metric, sorted by the
objective; with a swept `seed`, also mean ± standard deviation over seeds per
setting, and results_mean.csv), WORKDIR/plots/objective_vs_<key>.png and
plots/curves.png, written when the sweep ends and by --mode=report at any time. A
progress line (done / running / failed, ETA) prints as trials end.

Modes: --mode=train (the default) runs the sweep or resumes it; --mode=report
rebuilds the table and plots from WORKDIR alone and prints the table.
"""

from __future__ import annotations

import os
import sys

from absl import app, flags
from ml_collections import config_flags

from experiments import common
from seqmodels import training
from seqmodels.sweep import SweepError
from seqmodels.sweep import cli, launcher, records, results
from seqmodels.sweep.cli import log
from seqmodels.sweep.search import SEARCHES

_SWEEP = flags.DEFINE_string(
    'sweep', None, 'The sweep to run: get_sweep(NAME) of the config module.'
)
_SEARCH = flags.DEFINE_enum(
    'search',
    'grid',
    list(SEARCHES),
    'grid: the declared trials; '
    'random: --num_trials seeded draws from a declared space; bayes: '
    'Optuna TPE over the space, --num_trials in all.',
)
_NUM_TRIALS = flags.DEFINE_integer(
    'num_trials', None, 'random/bayes: how many trials (a rerun may raise it to extend the sweep).'
)
_SEARCH_SEED = flags.DEFINE_integer(
    'search_seed',
    0,
    'random/bayes: the seed of the draws (trial seeds are a config key: sweep `seed` for those).',
)
_OBJECTIVE = flags.DEFINE_string(
    'objective',
    None,
    'The metric trials are ranked by (its '
    'final logged value); default eval/loss, or what the sweep '
    'was made with in --mode=report.',
)
_DIRECTION = flags.DEFINE_enum(
    'direction',
    None,
    list(launcher.DIRECTIONS),
    'Whether the objective is minimised or maximised (default min).',
)
_DRIVER = flags.DEFINE_string(
    'driver',
    None,
    'The module that trains one trial (default experiments.<name of the config file>).',
)
_AGGREGATE = flags.DEFINE_list(
    'aggregate',
    ['seed'],
    'Swept keys the table also averages '
    'over (mean ± standard deviation per setting of the others).',
)
_MODES = ('train', 'report')


def _run(workdir: str) -> int:
    if common.CONFIG.value is None or not _SWEEP.value:
        raise app.UsageError(
            'running a sweep needs --config=configs/<exp>.py[:VARIANT] and --sweep=NAME'
        )
    config_arg = config_flags.get_config_filename(flags.FLAGS['config'])
    config_path, _, variant = config_arg.partition(':')
    request = launcher.Request(
        workdir=workdir,
        config_path=config_path,
        variant=variant or None,
        driver=_DRIVER.value or launcher.default_driver(config_path),
        sweep=_SWEEP.value,
        base_config=common.CONFIG.value,
        base_overrides=dict(config_flags.get_override_values(flags.FLAGS['config'])),
        search=_SEARCH.value,
        num_trials=_NUM_TRIALS.value,
        search_seed=_SEARCH_SEED.value,
        objective=_OBJECTIVE.value or 'eval/loss',
        direction=_DIRECTION.value or 'min',
    )
    executor = cli.make_executor(_SWEEP.value, log)
    return launcher.run(request, executor, log=log, aggregate=_AGGREGATE.value)


def _report(workdir: str) -> int:
    rows = launcher.report(workdir, _OBJECTIVE.value, _DIRECTION.value, _AGGREGATE.value, log=log)
    with open(os.path.join(workdir, 'results.md')) as f:
        print(f.read(), end='')
    manifest = records.read_json(os.path.join(workdir, records.MANIFEST))
    running = sum(row['status'] == records.RUNNING for row in rows)
    log(results.progress_line(rows, max(running, 1), manifest.get('num_trials')))
    return 0


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f'unexpected arguments: {argv[1:]}')
    if common.MODE.value not in _MODES:
        raise app.UsageError(
            f'--mode={common.MODE.value}: a sweep has modes train (run or '
            'resume it, the default) and report'
        )
    if not common.WORKDIR.value:
        raise app.UsageError('--workdir is required')
    workdir = os.path.abspath(os.path.expanduser(common.WORKDIR.value))
    try:
        status = (_report if common.MODE.value == 'report' else _run)(workdir)
    except SweepError as e:
        log(f'error: {e}')
        status = 1
    sys.exit(status)


if __name__ == '__main__':
    app.run(main, flags_parser=training.parse_flags)

"""What every experiment driver shares: the common flags, `run_driver`, the run config.

absl flags are process-wide, so `--config`, `--workdir` and `--mode` are defined here
once; each driver defines only its own extra flags (names unique across drivers), and
any number of drivers can be imported into one process (the tests do).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable

import ml_collections
from absl import app, flags
from ml_collections import config_flags

from seqmodels import training
from seqmodels.models import scheduled_sampling
from seqmodels.data import DataError

CONFIG = config_flags.DEFINE_config_file(
    'config', None, 'Experiment config: configs/<experiment>.py[:VARIANT] (train mode only; '
    'the other modes read WORKDIR/config.json).')
WORKDIR = flags.DEFINE_string('workdir', None, 'Run directory: checkpoints, logs, vocabulary.')
MODE = flags.DEFINE_string(
    'mode', 'train', 'train (the default; running it again resumes), or another mode of the '
    'driver: char_lm: sample, evaluate; translation: evaluate, translate; vit: evaluate, '
    'attention.')


def run_driver(modes: dict[str, Callable[[str], None]], example_config: str) -> None:
    """Parses the flags and runs `modes[--mode](workdir)`.

    Bad configs, bad data and non-finite losses are the user's to fix: they end the
    program with one line on stderr and exit status 1, not a traceback.
    """

    def main(argv):
        if len(argv) > 1:
            raise app.UsageError(f'unexpected arguments: {argv[1:]}')
        if MODE.value not in modes:
            raise app.UsageError(f'--mode={MODE.value} is not a mode of this driver; choose '
                                 f'one of {", ".join(modes)}')
        if not WORKDIR.value:
            raise app.UsageError('--workdir is required')
        if MODE.value == 'train' and CONFIG.value is None:
            raise app.UsageError(f'--config is required to train, e.g. --config={example_config}')
        workdir = os.path.abspath(os.path.expanduser(WORKDIR.value))
        try:
            modes[MODE.value](workdir)
        except (training.ConfigError, DataError, training.NonFiniteError,
                FileNotFoundError) as e:  # e.g. no checkpoint, or no --step=N one
            sys.stderr.write(f'error: {e}\n')
            sys.exit(1)

    app.run(main, flags_parser=training.parse_flags)


def load_run_config(workdir: str, experiment: str):
    """The resolved config a training run wrote to WORKDIR/config.json."""
    path = os.path.join(workdir, 'config.json')
    if not os.path.exists(path):
        raise app.UsageError(f'{path} does not exist: is {workdir} the workdir of a '
                             f'{experiment} training run?')
    with open(path) as f:
        return ml_collections.ConfigDict(json.load(f))


def epsilon_schedule(config):
    """eps(step) of scheduled sampling (Bengio et al. 2015): the probability of feeding
    the true previous token, from the config keys `scheduled_sampling` ('none',
    'linear', 'exponential', 'inverse_sigmoid'), `ss_k`, `ss_c` and `ss_min`.

    Raises ConfigError naming the key when the schedule's parameters are impossible.
    """
    kind = config.scheduled_sampling
    params = {'linear': dict(c=config.ss_c, k=config.ss_k, epsilon_min=config.ss_min),
              'exponential': dict(k=config.ss_k), 'inverse_sigmoid': dict(k=config.ss_k),
              'none': {}}.get(kind, {})
    try:
        return scheduled_sampling.make_schedule(kind, **params)
    except ValueError as e:
        raise training.ConfigError(f'config.scheduled_sampling={kind!r}: {e}') from None

"""What every experiment driver shares: the common flags, `run_driver`, the run config.

absl flags are process-wide, so `--config`, `--workdir`, `--mode`, `--step` and the
multi-process flags are defined here once; each driver defines only its own extra
flags (names unique across drivers), and any number of drivers can be imported into
one process (the tests do).

Multi-process runs: every driver joins one when it is started as one of its
processes (`training.join_cluster`): under SLURM (srun with several tasks), Open MPI
(mpirun) or on a multi-host TPU slice this is detected; elsewhere pass
`--coordinator_address=HOST:PORT --num_processes=N --process_id=I` (or the variables
JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID) to each process. A single
task (SLURM_NTASKS=1, as one array trial is) joins nothing.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

import jax
from absl import app, flags, logging
from ml_collections import config_flags

from seqmodels import decoding, models, training
from seqmodels.data import DataError

CONFIG = config_flags.DEFINE_config_file(
    'config',
    None,
    'Experiment config: configs/<experiment>.py[:VARIANT] (train mode only; '
    'the other modes read WORKDIR/config.json).',
)
WORKDIR = flags.DEFINE_string('workdir', None, 'Run directory: checkpoints, logs, vocabulary.')
MODE = flags.DEFINE_string(
    'mode',
    'train',
    'train (the default; running it again resumes), or another mode of the '
    'driver (listed in its --help).',
)
STEP = flags.DEFINE_integer(
    'step',
    None,
    'Modes that read a checkpoint: the step to use (default: the latest '
    'intact one; WORKDIR/checkpoints lists the saved steps).',
)
# Flags that several drivers' modes read, defined once (absl flags are process-wide).
INPUT = flags.DEFINE_string(
    'input',
    None,
    'Modes that read examples (translate, attention, '
    'predict): a UTF-8 file, one example a line (default stdin).',
)
OUTPUT = flags.DEFINE_string(
    'output',
    None,
    'Modes that write one line per input line (translate, predict): the file (default stdout).',
)
PROMPT = flags.DEFINE_string(
    'prompt', None, "sample: text to continue (default: the config's sample_prompt)."
)
TEMPERATURE = flags.DEFINE_float(
    'temperature',
    None,
    "sample: softmax temperature; 0 is greedy (default: the config's sample_temperature).",
)
TOP_K = flags.DEFINE_integer('top_k', None, 'sample: keep the k most likely tokens.')
TOP_P = flags.DEFINE_float(
    'top_p',
    None,
    'sample: nucleus sampling, keep the smallest set of tokens with probability >= p.',
)
SEED = flags.DEFINE_integer('seed', 0, 'sample: random seed.')
COORDINATOR_ADDRESS = flags.DEFINE_string(
    'coordinator_address',
    None,
    'Multi-process runs: HOST:PORT of process 0, the same on '
    'every process (default: $JAX_COORDINATOR_ADDRESS, or found by SLURM/Open MPI/TPU).',
)
NUM_PROCESSES = flags.DEFINE_integer(
    'num_processes',
    None,
    'Multi-process runs: how many processes take part (default: '
    '$JAX_NUM_PROCESSES, or the SLURM/Open MPI task count; 1 = a single process).',
)
PROCESS_ID = flags.DEFINE_integer(
    'process_id',
    None,
    "Multi-process runs: this process's index in [0, num_processes) "
    '(default: $JAX_PROCESS_ID, or the SLURM/Open MPI rank).',
)
DISTRIBUTED = flags.DEFINE_enum(
    'distributed',
    'auto',
    ['auto', 'on', 'off'],
    'auto: join a multi-process run when the '
    'flags, variables or scheduler describe one; on: always call jax.distributed.initialize '
    '(e.g. a TPU pod slice on GCE, found through its metadata server); off: never.',
)

# What ends a run with one `error:` line instead of a traceback: the user's to fix.
# Each carries its exit status (`exit_code`, default 1): 3 for a diverged run, 75 for
# a preempted one that a rerun resumes.
USER_ERRORS = (
    training.ConfigError,
    DataError,
    training.NonFiniteError,
    training.Preempted,
    training.CheckpointError,
    FileNotFoundError,
)


class UsageError(Exception):
    """A bad flag of a mode (a value out of range, a missing required flag)."""


def run_driver(
    train: Callable, modes: dict[str, Callable[[str], None]], example_config: str
) -> None:
    """Parses the flags and runs `train(config, workdir)` or `modes[--mode](workdir)`.

    Bad flags, bad configs, bad data, damaged checkpoints and non-finite losses end
    the program with one line on stderr (`error: ...`) and a non-zero exit status,
    not a traceback.
    """
    modes = {'train': lambda workdir: train(CONFIG.value, workdir), **modes}

    def main(argv):
        try:
            join_cluster()  # before anything touches JAX devices
            if len(argv) > 1:
                raise UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
            if MODE.value not in modes:
                raise UsageError(
                    f'--mode={MODE.value} is not a mode of this driver; choose '
                    f'one of {", ".join(modes)}'
                )
            if not WORKDIR.value:
                raise UsageError('--workdir is required')
            workdir = os.path.abspath(os.path.expanduser(WORKDIR.value))
            if os.path.exists(workdir) and not os.path.isdir(workdir):
                raise UsageError(
                    f'--workdir={WORKDIR.value} is an existing file, not a '
                    'directory; choose another path'
                )
            if MODE.value == 'train' and CONFIG.value is None:
                raise UsageError(f'--config is required to train, e.g. --config={example_config}')
            if STEP.value is not None and STEP.value < 0:
                raise UsageError(f'--step must be >= 0, got {STEP.value}')
            modes[MODE.value](workdir)
        except UsageError as e:
            _exit(e, 2)
        except USER_ERRORS as e:
            _exit(e, getattr(e, 'exit_code', 1))

    app.run(main, flags_parser=training.parse_flags)


def join_cluster() -> training.Cluster | None:
    """Joins the multi-process run the flags, variables or scheduler describe (if any).

    Raises UsageError for an incomplete description (a count without an index, ...).
    """
    try:
        cluster = training.join_cluster(
            COORDINATOR_ADDRESS.value, NUM_PROCESSES.value, PROCESS_ID.value, DISTRIBUTED.value
        )
    except ValueError as e:
        raise UsageError(str(e)) from None
    if cluster is not None:
        logging.info(
            'joined a multi-process run as %s: %d devices, %d of them local',
            cluster.describe(),
            jax.device_count(),
            jax.local_device_count(),
        )
    return cluster


def _exit(error: Exception, status: int) -> None:
    sys.stderr.write(f'error: {error}\n')
    sys.exit(status)


def validate(config, model_names) -> None:
    """The checks every experiment makes first: the engine's keys, that the model is a
    family this experiment trains, the model's keys. Raises ConfigError naming the key."""
    training.validate_config(config, num_devices=jax.device_count())
    training.require(
        config.model.name in model_names,
        'model.name',
        f'must be one of {", ".join(model_names)}',
        config.model.name,
    )
    models.check_config(config.model)


def sampling_options(config, count: int, count_flag: str):
    """(temperature, top_k, top_p) from the sampling flags, the temperature defaulting to
    the run's; a value out of range is a UsageError naming the flag and its range."""
    temperature, top_k, top_p = TEMPERATURE.value, TOP_K.value, TOP_P.value
    try:
        decoding.check_sampling_options(temperature, top_k, top_p)
    except ValueError as e:
        raise UsageError(f'--{e}') from None
    if count < 0:
        raise UsageError(f'--{count_flag} must be >= 0, got {count}')
    return (config.sample_temperature if temperature is None else temperature), top_k, top_p


def load_run_config(workdir: str, experiment: str):
    """The resolved config a training run wrote to WORKDIR/config.json; a workdir without
    one is a usage error (exit 2), not a missing checkpoint."""
    try:
        return training.read_run_config(workdir, f'a {experiment} training run')
    except FileNotFoundError as e:
        raise UsageError(str(e)) from None


def read_lines(path: str | None) -> list[str]:
    """The lines of a UTF-8 file, or of stdin when `path` is None, without line ends
    (a final newline adds no empty line; a byte-order mark is dropped)."""
    if path is None:
        text = sys.stdin.buffer.read().decode('utf-8', errors='replace')
    else:
        try:
            with open(path, 'rb') as f:
                text = f.read().decode('utf-8')
        except OSError as e:
            raise UsageError(f'cannot read {path}: {e.strerror}') from None
        except UnicodeDecodeError as e:
            raise DataError(f'{path} is not UTF-8 text (byte offset {e.start})') from None
    lines = text.removeprefix('\ufeff').split('\n')
    if lines and lines[-1] == '':
        lines.pop()
    return [line.removesuffix('\r') for line in lines]


def write_lines(lines, path: str | None) -> None:
    """One line each, to a file or (when `path` is None) to stdout."""
    text = ''.join(line + '\n' for line in lines)
    if path is None:
        sys.stdout.write(text)
        sys.stdout.flush()
    else:
        with open(path, 'w', encoding='utf-8') as f:
            f.write(text)


def print_run_summary(workdir: str, experiment: str, next_mode: str) -> None:
    """The lines a finished training run ends with: where things are, what to run next."""
    print(f'checkpoints: {os.path.join(workdir, "checkpoints")}')
    print(
        f'metrics:     {os.path.join(workdir, "metrics.jsonl")} (TensorBoard: '
        f'tensorboard --logdir {workdir})'
    )
    print(
        f'{next_mode + ":":<12} python -m experiments.{experiment} --mode={next_mode} '
        f'--workdir={workdir}'
    )

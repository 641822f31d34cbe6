"""The executor flags shared by the commands that launch many runs (experiments.sweep
and experiments.reproduce): where the runs go (here, SLURM, or SLURM's code path
through submitit's local executor) and how many at a time.

Importing this module defines the flags; only launchers import it.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from absl import flags

PARALLEL = flags.DEFINE_integer(
    'parallel',
    1,
    'Runs at a time: local, each gets its share of the cores; slurm, the job array parallelism.',
)
EXECUTOR = flags.DEFINE_enum(
    'executor',
    'local',
    ['local', 'slurm', 'submitit_local'],
    'local: child processes here; slurm: a submitit job array; '
    "submitit_local: the slurm code path through submitit's local "
    'executor.',
)
DEVICES_PER_TRIAL = flags.DEFINE_integer(
    'devices_per_trial',
    0,
    'local: accelerators per '
    'run (GPUs, or 1 TPU chip); 0 leaves devices as '
    'they are (CPU, or one run with every device).',
)
SLURM_PARTITION = flags.DEFINE_string('slurm_partition', None, 'slurm: the partition.')
SLURM_TIME_MIN = flags.DEFINE_integer(
    'slurm_time_min',
    240,
    'slurm: the time limit of a job, in minutes (a run past it is requeued and resumes).',
)
SLURM_NODES = flags.DEFINE_integer(
    'slurm_nodes_per_trial',
    1,
    'slurm: nodes per run. A run of several tasks (nodes x --slurm_tasks_per_node) is '
    'one job whose tasks each start the driver, which join one multi-process run.',
)
SLURM_TASKS_PER_NODE = flags.DEFINE_integer(
    'slurm_tasks_per_node',
    1,
    'slurm: tasks (driver processes) per node of a run; with GPUs, one per GPU.',
)
SLURM_GPUS = flags.DEFINE_integer(
    'slurm_gpus_per_trial',
    0,
    'slurm: GPUs per node of a run (all of a one-node run). With several tasks each '
    'task uses one, so this must equal --slurm_tasks_per_node.',
)
SLURM_CPUS = flags.DEFINE_integer(
    'slurm_cpus_per_trial',
    0,
    'slurm: CPUs per task of a run (all of a one-task run; 0: the cluster default).',
)
SLURM_SIGNAL_DELAY_S = flags.DEFINE_integer(
    'slurm_signal_delay_s',
    120,
    'slurm: how long before the time limit a run is told to save and requeue.',
)
SLURM_ARGS = flags.DEFINE_list(
    'slurm_args',
    [],
    'slurm: more sbatch options as key=value, e.g. account=abc,qos=high,constraint=a100.',
)


def log(line: str) -> None:
    """A launcher's terminal line: errors to stderr, the rest to stdout, unbuffered."""
    stream = sys.stderr if line.startswith('error:') else sys.stdout
    print(line, file=stream, flush=True)


def make_executor(job_name: str, log: Callable[[str], None]):
    """The executor the flags ask for; `job_name` names the SLURM jobs."""
    if EXECUTOR.value == 'local':
        from seqmodels.sweep.local import LocalExecutor

        return LocalExecutor(PARALLEL.value, DEVICES_PER_TRIAL.value, log=log)
    from seqmodels.sweep.slurm import SubmititExecutor, job_parameters

    parameters = job_parameters(
        job_name,
        time_min=SLURM_TIME_MIN.value,
        parallel=PARALLEL.value,
        signal_delay_s=SLURM_SIGNAL_DELAY_S.value,
        partition=SLURM_PARTITION.value,
        nodes=SLURM_NODES.value,
        tasks_per_node=SLURM_TASKS_PER_NODE.value,
        gpus_per_node=SLURM_GPUS.value,
        cpus_per_task=SLURM_CPUS.value,
        extra_args=SLURM_ARGS.value,
    )
    cluster = 'slurm' if EXECUTOR.value == 'slurm' else 'local'
    return SubmititExecutor(cluster, PARALLEL.value, parameters, log=log)

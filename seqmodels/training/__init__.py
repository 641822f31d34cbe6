"""The training engine shared by every experiment.

    from seqmodels import training

    config = training.default_config()       # engine keys with defaults
    config.batch_size, config.num_train_steps = 32, 1000
    state = training.train_and_evaluate(config, workdir, task)  # resumes if possible
    params = training.restore_params(workdir)                   # for sampling / eval

`task` implements `training.Task` (see loop.py for the contract). In WORKDIR the
engine writes config.json, metrics.jsonl, TensorBoard events, samples.txt and
checkpoints/. Multi-process runs call `training.join_cluster(...)` (or
`initialize_distributed`) before anything else touches JAX devices.
"""

from seqmodels.training.checkpoints import CheckpointError, Checkpointer, restore_params
from seqmodels.training.config import (
    OPTIMIZERS,
    SCHEDULES,
    ConfigError,
    apply_overrides,
    default_config,
    parse_flags,
    require,
    resolve_config,
    select_variant,
    validate_config,
)
from seqmodels.training.loop import (
    EXIT_DIVERGED,
    EXIT_PREEMPTED,
    NonFiniteError,
    Preempted,
    Task,
    evaluate,
    make_eval_step,
    make_train_step,
    train_and_evaluate,
)
from seqmodels.training.metrics import read_run_config
from seqmodels.training.optimizers import make_optimizer, make_schedule
from seqmodels.training.sharding import (
    Cluster,
    detect_cluster,
    global_batch,
    initialize_distributed,
    join_cluster,
    make_mesh,
    process_rows,
)
from seqmodels.training.state import TrainState, init_train_state
from seqmodels.training.warm_start import check_compatible, load_pretrained, restore_pretrained

__all__ = [
    'EXIT_DIVERGED',
    'EXIT_PREEMPTED',
    'OPTIMIZERS',
    'SCHEDULES',
    'CheckpointError',
    'Checkpointer',
    'Cluster',
    'ConfigError',
    'apply_overrides',
    'NonFiniteError',
    'Preempted',
    'Task',
    'TrainState',
    'default_config',
    'detect_cluster',
    'evaluate',
    'global_batch',
    'init_train_state',
    'initialize_distributed',
    'join_cluster',
    'make_eval_step',
    'make_mesh',
    'make_optimizer',
    'make_schedule',
    'make_train_step',
    'parse_flags',
    'process_rows',
    'read_run_config',
    'require',
    'resolve_config',
    'select_variant',
    'restore_params',
    'train_and_evaluate',
    'validate_config',
    'check_compatible',
    'load_pretrained',
    'restore_pretrained',
]

"""A char-LM config small enough that a sweep trial takes seconds, for the sweep tests.

Its driver is experiments.char_lm: pass --driver=experiments.char_lm.
"""

from configs import char_lm
from seqmodels import sweep as sw

# Long enough (a few seconds) to be caught between two of its checkpoints.
_LONG = {
    'num_train_steps': 800,
    'checkpoint_every_steps': 50,
    'log_every_steps': 50,
    'eval_every_steps': 400,
}


def get_config(variant='lstm'):
    config = char_lm.get_config(variant or 'lstm')
    config.max_chars = 20000
    config.seq_len = 16
    config.batch_size = 4
    config.num_train_steps = 6
    config.schedule = 'constant'
    config.warmup_steps = 0
    config.log_every_steps = 2
    config.eval_every_steps = 2
    config.checkpoint_every_steps = 2
    config.num_eval_batches = 1
    config.sample_chars = 0
    config.model.hidden_size = 16
    config.model.embed_dim = 8
    config.model.num_layers = 1
    return config


def get_sweep(name):
    if name == 'four':
        return [
            {'model.cell': 'lstm', 'learning_rate': 0.003},
            {'model.cell': 'gru', 'learning_rate': 0.003, **_LONG},
            {'model.cell': 'bogus', 'learning_rate': 0.003},  # the driver refuses it
            {'model.cell': 'lstm', 'learning_rate': 1e38},  # overflows at once
        ]
    if name == 'space':
        return {'learning_rate': sw.loguniform(1e-3, 1e-2), 'model.cell': ['lstm', 'gru']}
    if name == 'long_space':
        return {'learning_rate': sw.loguniform(1e-3, 1e-2), 'model.cell': ['lstm', 'gru'], **_LONG}
    raise ValueError(f'unknown sweep {name!r}; choose four, space or long_space')

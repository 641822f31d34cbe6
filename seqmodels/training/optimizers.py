"""Learning-rate schedules and optimizers, built from the common config keys.

Schedules map the update count (0 for the first update) to a learning rate:

* ``constant``: `learning_rate`, after an optional linear warmup.
* ``warmup_cosine``: linear warmup over `warmup_steps` to `learning_rate`, then a
  half cosine down to `min_lr_ratio * learning_rate` at `num_train_steps`
  (Loshchilov & Hutter 2017, without restarts).
* ``warmup_linear``: the same warmup, then a straight line down to
  `min_lr_ratio * learning_rate` at `num_train_steps` (BERT, Devlin et al. 2019,
  Appendix A.2).
* ``rsqrt``: the Transformer schedule (Vaswani et al. 2017, eq. 3),
  d_model^-0.5 * min(s^-0.5, s * warmup_steps^-1.5) with s = count + 1;
  `learning_rate` multiplies it (1.0 = the paper's).

Linear warmup reaches the peak on the `warmup_steps`-th update, so no update is
wasted at a learning rate of zero.

Optimizers: ``sgd`` (`momentum`, `nesterov`), ``rmsprop`` (`rmsprop_decay`,
`rmsprop_eps`; g / sqrt(E[g^2] + eps) as in Hinton's lecture 6e), ``adam`` and
``adamw`` (`adam_b1`, `adam_b2`, `adam_eps`; `weight_decay` for adamw, applied as
lr * weight_decay * param and only to matrices and embeddings: parameters with
ndim >= 2, not biases or norm scales). Gradients are clipped by their global
norm first when `grad_clip_norm` > 0 (Pascanu et al. 2013).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax


def _linear_warmup(count, warmup_steps: int):
    if warmup_steps <= 0:
        return 1.0
    return jnp.minimum(1.0, (count + 1) / warmup_steps)


# The fraction of the way from the floor to the peak, as the decay progresses 0 -> 1.
_DECAYS = {
    'warmup_cosine': lambda progress: 0.5 * (1.0 + jnp.cos(jnp.pi * progress)),
    'warmup_linear': lambda progress: 1.0 - progress,
}


def make_schedule(config) -> optax.Schedule:
    """The learning-rate schedule named by `config.schedule` (resolved config)."""
    lr = float(config.learning_rate)
    warmup = int(config.warmup_steps)
    if config.schedule == 'constant':
        return lambda count: lr * _linear_warmup(count, warmup)
    if config.schedule in _DECAYS:
        total = int(config.num_train_steps)
        floor = float(config.min_lr_ratio)
        decay = _DECAYS[config.schedule]

        def warmup_then_decay(count):
            # progress runs from 0 at the peak (update `warmup`) to 1 at num_train_steps.
            progress = jnp.clip((count - warmup) / max(total - warmup, 1), 0.0, 1.0)
            decayed = floor + (1.0 - floor) * decay(progress)
            return lr * jnp.where(count < warmup, _linear_warmup(count, warmup), decayed)

        return warmup_then_decay
    if config.schedule == 'rsqrt':
        scale = lr * float(config.model.d_model) ** -0.5

        def rsqrt(count):
            s = jnp.asarray(count, jnp.float32) + 1.0
            return scale * jnp.minimum(s**-0.5, s * warmup**-1.5)

        return rsqrt
    raise ValueError(f'unknown schedule {config.schedule!r}')


def decay_mask(params):
    """True for the weight matrices and embeddings, which weight decay applies to.

    Chosen by name (flax's `kernel`, `input_kernel`, `embedding`, ...), not by rank:
    with layers scanned (stacked on a leading axis) biases and LayerNorm scales are
    2-D too, and must still not be decayed.
    """

    def is_weight(path, _):
        name = str(getattr(path[-1], 'key', path[-1]))
        return name.endswith('kernel') or name.endswith('embedding')

    return jax.tree_util.tree_map_with_path(is_weight, params)


def make_optimizer(config) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """(optax transformation, its schedule) for a resolved, validated config."""
    schedule = make_schedule(config)
    name = config.optimizer
    if name == 'sgd':
        optimizer = optax.sgd(
            schedule, momentum=config.momentum or None, nesterov=bool(config.nesterov)
        )
    elif name == 'rmsprop':
        optimizer = optax.rmsprop(schedule, decay=config.rmsprop_decay, eps=config.rmsprop_eps)
    elif name == 'adam':
        optimizer = optax.adam(schedule, b1=config.adam_b1, b2=config.adam_b2, eps=config.adam_eps)
    elif name == 'adamw':
        optimizer = optax.adamw(
            schedule,
            b1=config.adam_b1,
            b2=config.adam_b2,
            eps=config.adam_eps,
            weight_decay=config.weight_decay,
            mask=decay_mask,
        )
    else:
        raise ValueError(f'unknown optimizer {name!r}')
    if config.grad_clip_norm:
        optimizer = optax.chain(optax.clip_by_global_norm(config.grad_clip_norm), optimizer)
    return optimizer, schedule

"""Scheduled sampling (Bengio, Vinyals, Jaitly & Shazeer 2015).

During training the decoder's input at step t is the ground-truth token with
probability eps_i, else a token sampled from the model's own prediction at step
t - 1; eps_i decays with the training step i from 1 (teacher forcing) towards 0.

Schedules are pure functions of the step (jnp, so they also work inside jit):
  linear:           eps_i = max(epsilon_min, k - c * i)
  exponential:      eps_i = k ** i                  (0 < k < 1)
  inverse_sigmoid:  eps_i = k / (k + exp(i / k))    (k >= 1)
  none:             eps_i = 1 (teacher forcing; the default)

`unroll` runs a model's one-step function over a target sequence with this mixing,
as a scan over steps; the RNN LM and the RNN seq2seq share it.
"""

import functools
import math
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import flax.linen as nn

from seqmodels.errors import ConfigError


def linear(step, *, c: float, k: float = 1.0, epsilon_min: float = 0.0) -> jax.Array:
    step = jnp.asarray(step, jnp.float32)
    return jnp.maximum(jnp.float32(epsilon_min), k - c * step)


def exponential(step, *, k: float) -> jax.Array:
    # exp(i log k) with log k in float64: float32(k) ** i would compound k's rounding
    # error i times (6e-5 relative at k = 0.999, i = 5000).
    return jnp.exp(jnp.asarray(step, jnp.float32) * math.log(k))


def inverse_sigmoid(step, *, k: float) -> jax.Array:
    step = jnp.asarray(step, jnp.float32)
    return k / (k + jnp.exp(step / k))


def none(step) -> jax.Array:
    return jnp.ones_like(jnp.asarray(step, jnp.float32))


SCHEDULES = {
    'none': none,
    'linear': linear,
    'exponential': exponential,
    'inverse_sigmoid': inverse_sigmoid,
}


def make_schedule(kind: str = 'none', **params) -> Callable[[Any], jax.Array]:
    """Returns eps(step) for a schedule kind and its parameters, validated now."""
    if kind not in SCHEDULES:
        raise ValueError(
            f'Unknown scheduled-sampling schedule {kind!r}; known: {sorted(SCHEDULES)}'
        )
    if kind == 'linear':
        if params.get('c', None) is None or params['c'] < 0:
            raise ValueError(f'linear schedule needs a slope c >= 0, got {params.get("c")}')
        if not 0.0 <= params.get('epsilon_min', 0.0) <= 1.0:
            raise ValueError(f'linear schedule needs 0 <= epsilon_min <= 1, got {params}')
    elif kind == 'exponential':
        if not 0.0 < params.get('k', -1.0) < 1.0:
            raise ValueError(f'exponential schedule needs 0 < k < 1, got {params.get("k")}')
    elif kind == 'inverse_sigmoid':
        if params.get('k', 0.0) < 1.0:
            raise ValueError(f'inverse_sigmoid schedule needs k >= 1, got {params.get("k")}')
    fn = SCHEDULES[kind]
    try:
        fn(0, **params)
    except TypeError as e:
        raise ValueError(f'Bad parameters for schedule {kind!r}: {params} ({e})') from None
    return functools.partial(fn, **params)


def from_config(config) -> Callable[[Any], jax.Array]:
    """eps(step) from an experiment config's keys `scheduled_sampling` (a SCHEDULES
    name), `ss_k`, `ss_c` and `ss_min`; raises ConfigError naming the key."""
    kind = config.scheduled_sampling
    params = {
        'linear': dict(c=config.ss_c, k=config.ss_k, epsilon_min=config.ss_min),
        'exponential': dict(k=config.ss_k),
        'inverse_sigmoid': dict(k=config.ss_k),
    }.get(kind, {})
    try:
        return make_schedule(kind, **params)
    except ValueError as e:
        raise ConfigError(f'config.scheduled_sampling={kind!r}: {e}') from None


def _unroll_body(module, carry, xs, broadcast_args, *, step_fn):
    model_carry, previous_sample = carry
    token, use_truth, sample_key = xs
    if use_truth is not None:
        token = jnp.where(use_truth, token, previous_sample)
    logits, model_carry = step_fn(module, model_carry, token, *broadcast_args)
    if sample_key is not None:
        previous_sample = jax.random.categorical(sample_key, logits).astype(previous_sample.dtype)
    return (model_carry, previous_sample), logits


def unroll(
    module: nn.Module,
    step_fn: Callable,
    carry: Any,
    tokens: jax.Array,
    *,
    sampling_prob: Any | None = None,
    rng: jax.Array | None = None,
    fixed_dropout_masks: bool = False,
    broadcast_args: Sequence[Any] = (),
):
    """Feeds tokens [B, T] one step at a time: step_fn(module, carry, token [B], *broadcast_args)
    -> (logits [B, V], carry). Returns (logits [B, T, V], final carry).

    sampling_prob=None is teacher forcing. Otherwise (scheduled sampling) the input at
    step t > 0 is tokens[:, t] with probability `sampling_prob` (per token), else a
    token drawn from softmax(logits at t - 1); step 0 always reads the ground truth.
    The coins and samples come from `rng`. With sampling_prob = 1 every coin picks the
    ground truth, so the result equals the teacher-forced unroll.

    fixed_dropout_masks=True reuses the 'dropout' rng at every step, so modules that
    draw their masks inside the step draw the same mask each step (variational
    dropout); False gives fresh masks per step (standard dropout).
    """
    batch_size, length = tokens.shape
    time_major = tokens.T
    if sampling_prob is None:
        xs = (time_major, None, None)
    else:
        if rng is None:
            raise ValueError('scheduled sampling needs an rng for its coins and samples')
        coin_key, sample_key = jax.random.split(rng)
        use_truth = jax.random.uniform(coin_key, (length, batch_size)) < sampling_prob
        use_truth = use_truth.at[0].set(True)
        xs = (time_major, use_truth, jax.random.split(sample_key, length))
    scan = nn.scan(
        functools.partial(_unroll_body, step_fn=step_fn),
        variable_broadcast='params',
        split_rngs={'params': False, 'dropout': not fixed_dropout_masks},
        in_axes=(0, nn.broadcast),
        out_axes=0,
    )
    (carry, _), logits = scan(module, (carry, tokens[:, 0]), xs, tuple(broadcast_args))
    return jnp.swapaxes(logits, 0, 1), carry

"""The train state: everything a run needs to continue bitwise where it stopped."""

from __future__ import annotations

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax


@flax.struct.dataclass
class TrainState:
    """step: updates applied so far; rng: raw uint32 key data of the run's key.

    The key is kept as raw data so that checkpoints hold plain arrays. The key of
    update `step` is fold_in(rng, step): it depends on nothing but the seed and
    the step, so a resumed run draws the same dropout masks.
    """

    step: jax.Array
    params: Any
    opt_state: Any
    rng: jax.Array

    def step_key(self) -> jax.Array:
        return jax.random.fold_in(jax.random.wrap_key_data(self.rng), self.step)


def init_train_state(init_params, tx: optax.GradientTransformation, seed: int) -> TrainState:
    """Traceable: params from init_params(params_key); the rest derived from seed."""
    params_key, train_key = jax.random.split(jax.random.key(seed))
    params = init_params(params_key)
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        opt_state=tx.init(params),
        rng=jax.random.key_data(train_key),
    )

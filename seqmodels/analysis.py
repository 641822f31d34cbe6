"""Looking inside trained models: attention maps and attention rollout.

Functions of a model and its parameters that return arrays; `seqmodels.plots` draws
them. No flags, no workdir: drivers and notebooks call the same code.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from seqmodels import models


def attention_weights(model: models.ViT, params, images) -> jax.Array:
    """[num_layers, B, heads, T, T]: every layer's softmax attention (sown by the
    attention module into 'intermediates'), in layer order."""
    _, state = model.apply({'params': params}, images, deterministic=True,
                           mutable=['intermediates'])
    encoder = state['intermediates']['encoder']
    if 'layers' in encoder:  # scan_layers: already stacked on a leading layer axis
        return encoder['layers']['self_attention']['attention_weights'][0]
    return jnp.stack([encoder[f'layers_{i}']['self_attention']['attention_weights'][0]
                      for i in range(model.num_layers)])


def attention_rollout(weights) -> jax.Array:
    """Abnar & Zuidema 2020: [L, B, heads, T, T] -> [B, T, T].

    Each layer's attention is averaged over heads; the residual connection is accounted
    for by adding the identity and renormalising the rows; the layers are then composed,
    last layer leftmost: R = Â_L ··· Â_1. Row q of R says how much of token q's final
    state is mixed from each input token.
    """
    a = jnp.asarray(weights, jnp.float32).mean(axis=2)
    a = a + jnp.eye(a.shape[-1], dtype=a.dtype)
    a = a / a.sum(axis=-1, keepdims=True)
    rollout = a[0]
    for layer in a[1:]:
        rollout = jnp.einsum('bij,bjk->bik', layer, rollout)
    return rollout


@functools.partial(jax.jit, static_argnums=(0, 3))
def _patch_scores(model: models.ViT, params, images, rollout: bool):
    weights = attention_weights(model, params, images)
    if model.pool == 'cls' and not rollout:
        return weights[-1].mean(axis=1)[:, 0, 1:]
    r = attention_rollout(weights)
    return r[:, 0, 1:] if model.pool == 'cls' else r.mean(axis=1)


def patch_attention(model: models.ViT, params, images, rollout: bool = False) -> np.ndarray:
    """[B, grid, grid]: how much the representation the head reads attends to each patch.

    [class] models: the [class] token's row (of the last layer, or of the rollout).
    GAP models read the mean of all tokens, so their map is the mean row of the rollout.
    """
    g = model.grid_size
    return np.asarray(_patch_scores(model, params, images, bool(rollout))).reshape(-1, g, g)

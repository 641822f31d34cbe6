"""Boolean attention masks.

Convention for every mask in this package: True means "this query may attend to this
key". Masks have rank 4 and broadcast against attention logits of shape
[batch, heads, q_length, kv_length]; a dimension of size 1 broadcasts.
"""

from __future__ import annotations

import jax.numpy as jnp


def causal_mask(length: int) -> jnp.ndarray:
    """[1, 1, length, length]: query t sees keys 0..t (Vaswani et al. 2017, §3.2.3)."""
    return jnp.tril(jnp.ones((length, length), dtype=jnp.bool_))[None, None]


def key_padding_mask(k_valid: jnp.ndarray) -> jnp.ndarray:
    """[B, 1, 1, Tk] from k_valid [B, Tk] (True = a real token, not padding)."""
    return k_valid.astype(jnp.bool_)[:, None, None, :]


def padding_mask(q_valid: jnp.ndarray, k_valid: jnp.ndarray) -> jnp.ndarray:
    """[B, 1, Tq, Tk]: a real query attends only to real keys.

    Padding queries get a fully masked row; attention returns zeros there (no NaN).
    """
    q_valid = q_valid.astype(jnp.bool_)
    k_valid = k_valid.astype(jnp.bool_)
    return q_valid[:, None, :, None] & k_valid[:, None, None, :]


def combine_masks(*masks: jnp.ndarray | None) -> jnp.ndarray | None:
    """Logical and of the given masks, skipping None; None when all are None."""
    masks = [m for m in masks if m is not None]
    if not masks:
        return None
    for m in masks:
        if m.ndim != 4:
            raise ValueError(f'attention masks must have rank 4, got shape {m.shape}')
    out = masks[0].astype(jnp.bool_)
    for m in masks[1:]:
        out = jnp.logical_and(out, m)
    return out


def cached_causal_mask(cache_index, q_length: int, kv_length: int) -> jnp.ndarray:
    """[1, 1, q_length, kv_length] for decoding with a key/value cache.

    The queries are the positions cache_index .. cache_index + q_length - 1 of the
    sequence; key j is visible to query i when j <= cache_index + i, so cache slots not
    yet written are never attended to.
    """
    query_pos = cache_index + jnp.arange(q_length)[:, None]
    key_pos = jnp.arange(kv_length)[None, :]
    return (key_pos <= query_pos)[None, None]

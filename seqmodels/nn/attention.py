"""Scaled dot-product and multi-head attention (Vaswani et al. 2017, §3.2).

Layout: queries, keys and values are [batch, length, heads, d_k]; attention weights
are [batch, heads, q_length, kv_length]; masks follow `seqmodels.nn.masks` (True =
may attend).

Decoding cache. Autoregressive decoding keeps the keys and values of past positions
in an explicit pytree, not in a flax collection, so that decoders can re-index it
(beam search) with a plain `jax.tree.map` over the batch axis:

    cache = {'k': [batch, max_len, heads, d_k], 'v': [batch, max_len, heads, d_k]}

A stack of layers holds one such cache per layer on axis 1 ([batch, layers, ...]);
each layer reads and writes its own slice of the stacked arrays (`layer=`), so that a
decoding step updates one position in place instead of slicing the stack apart and
re-stacking it (a copy of the whole cache per token, which made the cost of a step
grow with the cache's allocated length). The position being written is passed next to
the cache as `cache_index` (an int scalar shared by the whole batch); it is not stored
in the cache because a scalar has no batch axis.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from seqmodels.nn.masks import cached_causal_mask, combine_masks

Initializer = Callable[..., Any]


def dot_product_attention_weights(q, k, mask=None):
    """softmax(Q Kᵀ / √d_k) as [B, heads, Tq, Tk], computed in float32.

    Masked keys get exactly zero weight, and a row whose keys are all masked gets all
    zeros (not NaN): the softmax runs on finite logits and the mask is applied again
    to its output.
    """
    d_k = q.shape[-1]
    q = q.astype(jnp.float32) / math.sqrt(d_k)
    logits = jnp.einsum('bqhd,bkhd->bhqk', q, k.astype(jnp.float32))
    if mask is None:
        return jax.nn.softmax(logits, axis=-1)
    # The smallest finite float, not -inf: a fully masked row then softmaxes to a
    # uniform row instead of 0/0, and is zeroed by the second where.
    logits = jnp.where(mask, logits, jnp.finfo(logits.dtype).min)
    weights = jax.nn.softmax(logits, axis=-1)
    return jnp.where(mask, weights, 0.0)


def dot_product_attention(q, k, v, mask=None):
    """softmax(Q Kᵀ / √d_k) V over [B, T, heads, d_k] inputs; returns [B, Tq, heads, d_k]."""
    weights = dot_product_attention_weights(q, k, mask)
    return jnp.einsum('bhqk,bkhd->bqhd', weights, v.astype(weights.dtype)).astype(v.dtype)


def init_kv_cache(batch_size: int, max_len: int, num_heads: int, d_k: int,
                  num_layers: int | None = None, dtype=jnp.float32) -> dict:
    """Zero key/value cache; with num_layers, one per layer on axis 1."""
    layers = () if num_layers is None else (num_layers,)
    shape = (batch_size, *layers, max_len, num_heads, d_k)
    return {'k': jnp.zeros(shape, dtype), 'v': jnp.zeros(shape, dtype)}


class MultiHeadAttention(nn.Module):
    """MultiHead(Q, K, V) = Concat(head_1, ..., head_h) W^O with
    head_i = Attention(Q W_i^Q, K W_i^K, V W_i^V).

    Self-attention when `kv` is None, cross-attention (queries from x, keys and values
    from kv) otherwise. The attention weights are also sown into the 'intermediates'
    collection (apply with mutable=['intermediates'] to plot them).
    """

    num_heads: int
    d_model: int
    dropout: float = 0.0  # on the attention weights
    use_bias: bool = True
    kernel_init: Initializer = nn.initializers.xavier_uniform()
    # W^O separately: GPT-2 scales the init of projections that write to the residual.
    out_kernel_init: Initializer | None = None

    def setup(self):
        if self.d_model % self.num_heads:
            raise ValueError(
                f'd_model={self.d_model} is not divisible by num_heads={self.num_heads}')
        d_k = self.d_model // self.num_heads

        def projection():
            return nn.DenseGeneral((self.num_heads, d_k), use_bias=self.use_bias,
                                   kernel_init=self.kernel_init)

        self.query, self.key, self.value = projection(), projection(), projection()
        self.out = nn.DenseGeneral(self.d_model, axis=(-2, -1), use_bias=self.use_bias,
                                   kernel_init=self.out_kernel_init or self.kernel_init)
        self.weight_dropout = nn.Dropout(self.dropout)

    @property
    def d_k(self) -> int:
        return self.d_model // self.num_heads

    def __call__(self, x, kv=None, mask=None, *, deterministic: bool = True,
                 return_weights: bool = False):
        """x: [B, Tq, d_model]; kv: [B, Tk, d_model] or None; mask: broadcastable to
        [B, heads, Tq, Tk]. Returns [B, Tq, d_model] (and the weights if asked)."""
        kv = x if kv is None else kv
        q, k, v = self.query(x), self.key(kv), self.value(kv)
        weights = dot_product_attention_weights(q, k, mask)
        self.sow('intermediates', 'attention_weights', weights)
        dropped = self.weight_dropout(weights, deterministic=deterministic)
        heads = jnp.einsum('bhqk,bkhd->bqhd', dropped, v.astype(dropped.dtype))
        out = self.out(heads.astype(x.dtype))
        return (out, weights) if return_weights else out

    def decode(self, x, cache: dict, cache_index, mask=None, layer=None):
        """Causal self-attention for positions cache_index .. cache_index + S - 1.

        x: [B, S, d_model] (S = 1 for one step, or a whole prompt); cache from
        `init_kv_cache(B, max_len, num_heads, d_k)`, or with `layer` (an int or an int
        scalar array) a stack's cache from `init_kv_cache(..., num_layers)` of which
        only that layer is read and written. Writes this chunk's keys and values at
        cache_index and attends to every cached position up to each query's own.
        Returns (output [B, S, d_model], updated cache). Decoding is inference: no
        dropout.
        """
        q, k, v = self.query(x), self.key(x), self.value(x)
        cache = write_kv_cache(cache, k, v, cache_index, layer)
        keys, values = read_kv_cache(cache, layer)
        causal = cached_causal_mask(cache_index, x.shape[1], keys.shape[1])
        weights = dot_product_attention_weights(q, keys, combine_masks(causal, mask))
        heads = jnp.einsum('bhqk,bkhd->bqhd', weights, values.astype(weights.dtype))
        return self.out(heads.astype(x.dtype)), cache


def write_kv_cache(cache: dict, k, v, cache_index, layer=None) -> dict:
    """Writes k, v [B, S, heads, d_k] at positions cache_index.. of the cache (of
    `layer` in a stacked cache) with one dynamic_update_slice per array, which XLA
    performs in place when the cache is donated or carried through a loop."""
    if layer is None:
        start = (0, cache_index, 0, 0)
    else:
        start = (0, layer, cache_index, 0, 0)
        k, v = k[:, None], v[:, None]

    def write(buffer, new):
        return jax.lax.dynamic_update_slice(buffer, new.astype(buffer.dtype), start)

    return {'k': write(cache['k'], k), 'v': write(cache['v'], v)}


def read_kv_cache(cache: dict, layer=None) -> tuple:
    """(keys, values), each [B, max_len, heads, d_k], of one layer."""
    if layer is None:
        return cache['k'], cache['v']
    return tuple(jax.lax.dynamic_index_in_dim(cache[name], layer, axis=1, keepdims=False)
                 for name in ('k', 'v'))

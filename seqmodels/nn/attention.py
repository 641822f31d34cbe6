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

Two implementations of the same function. `dot_product_attention` (and the
`_weights` it is built on) is the reference: it materialises the weights, which
attention dropout and the analyses need. `fused_dot_product_attention` goes
through `jax.nn.dot_product_attention`: cuDNN's fused (flash) kernel on a GPU for
bfloat16/float16 inputs it supports, XLA's fusion elsewhere. `MultiHeadAttention`
takes the fused one whenever nothing needs the weights: no attention dropout in
this call, `return_weights` off, the 'intermediates' collection not being
collected. Both give fully masked query rows an all-zero output.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from seqmodels.nn.masks import cached_causal_mask, causal_mask, combine_masks

Initializer = Callable[..., Any]

# 'auto': the fused path where it applies (cuDNN where it can, else XLA); 'xla' and
# 'cudnn' force jax.nn.dot_product_attention's backend; 'reference': never fused.
IMPLEMENTATIONS = ('auto', 'xla', 'cudnn', 'reference')


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


def _fused_backend(implementation: str, q, k, mask) -> str:
    """Which jax.nn.dot_product_attention backend 'auto' means for these inputs."""
    if implementation != 'auto':
        return implementation
    half = q.dtype in (jnp.bfloat16, jnp.float16)
    d_k = q.shape[-1]
    # cuDNN's flash kernel: 16-bit inputs, head size a multiple of 8 up to 128, and
    # even lengths when a mask (turned into a bias) is trained through.
    even = mask is None or (q.shape[1] % 2 == 0 and k.shape[1] % 2 == 0)
    if jax.default_backend() == 'gpu' and half and d_k % 8 == 0 and d_k <= 128 and even:
        return 'cudnn'
    return 'xla'


def fused_dot_product_attention(
    q, k, v, mask=None, *, is_causal: bool = False, implementation: str = 'auto'
):
    """softmax(Q Kᵀ / √d_k) V through `jax.nn.dot_product_attention`.

    q: [B, Tq, heads, d_k], k and v: [B, Tk, heads, d_k], mask broadcastable to
    [B, heads, Tq, Tk] (True = may attend); is_causal adds the causal mask (Tq == Tk).
    Returns [B, Tq, heads, d_k] in v's dtype, zeros for a query with no key to
    attend to, like `dot_product_attention`. If cuDNN turns the inputs down, XLA's
    implementation runs instead.
    """
    dtype = q.dtype
    k, v = k.astype(dtype), v.astype(dtype)
    mask = None if mask is None else jnp.asarray(mask).astype(jnp.bool_)
    backend = _fused_backend(implementation, q, k, mask)
    try:
        out = jax.nn.dot_product_attention(
            q, k, v, mask=mask, is_causal=is_causal, implementation=backend
        )
    except (NotImplementedError, RuntimeError, ValueError):
        if backend != 'cudnn' or implementation == 'cudnn':
            raise
        out = jax.nn.dot_product_attention(
            q, k, v, mask=mask, is_causal=is_causal, implementation='xla'
        )
    if mask is not None:
        # The kernels spread a fully masked row evenly over its keys; the reference
        # gives it zeros, and so must this.
        allowed = combine_masks(mask, causal_mask(q.shape[1])) if is_causal else mask
        has_key = jnp.any(allowed, axis=-1).transpose(0, 2, 1)[..., None]  # [B, Tq, h, 1]
        out = jnp.where(has_key, out, jnp.zeros((), out.dtype))
    return out


def head_size(d_model: int, num_heads: int, key_size: int = 0) -> int:
    """d_k = d_v, the width of one head: key_size, or d_model / num_heads when it is 0."""
    if key_size < 0:
        raise ValueError(f'key_size must be >= 0 (0: d_model // num_heads), got {key_size}')
    if key_size:
        return key_size
    if d_model % num_heads:
        raise ValueError(
            f'd_model={d_model} is not divisible by num_heads={num_heads} '
            '(key_size=0 makes each head d_model / num_heads wide)'
        )
    return d_model // num_heads


def init_kv_cache(
    batch_size: int,
    max_len: int,
    num_heads: int,
    d_k: int,
    num_layers: int | None = None,
    dtype=jnp.float32,
) -> dict:
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

    Each head is key_size wide (d_k = d_v): W_i^Q, W_i^K, W_i^V are d_model x d_k and
    W^O is (num_heads · d_k) x d_model. key_size=0 means d_k = d_model / num_heads,
    which keeps the cost of multi-head attention that of one full-width head (§3.2.2).
    """

    num_heads: int
    d_model: int
    dropout: float = 0.0  # on the attention weights
    use_bias: bool = True
    kernel_init: Initializer = nn.initializers.xavier_uniform()
    # W^O separately: GPT-2 scales the init of projections that write to the residual.
    out_kernel_init: Initializer | None = None
    implementation: str = 'auto'  # one of IMPLEMENTATIONS
    # Of the projections (parameters stay float32); the softmax runs in float32.
    dtype: Any = jnp.float32
    key_size: int = 0  # d_k = d_v; 0: d_model // num_heads

    def setup(self):
        if self.implementation not in IMPLEMENTATIONS:
            raise ValueError(
                f'implementation must be one of {IMPLEMENTATIONS}, got {self.implementation!r}'
            )
        d_k = self.d_k

        def projection():
            return nn.DenseGeneral(
                (self.num_heads, d_k),
                use_bias=self.use_bias,
                kernel_init=self.kernel_init,
                dtype=self.dtype,
            )

        self.query, self.key, self.value = projection(), projection(), projection()
        self.out = nn.DenseGeneral(
            self.d_model,
            axis=(-2, -1),
            use_bias=self.use_bias,
            kernel_init=self.out_kernel_init or self.kernel_init,
            dtype=self.dtype,
        )
        self.weight_dropout = nn.Dropout(self.dropout)

    @property
    def d_k(self) -> int:
        return head_size(self.d_model, self.num_heads, self.key_size)

    def _fused(self, deterministic: bool, return_weights: bool) -> bool:
        """Whether this call can skip the weights: nothing drops, returns or sows them."""
        return (
            self.implementation != 'reference'
            and not return_weights
            and (deterministic or self.dropout == 0.0)
            and not self.is_mutable_collection('intermediates')
        )

    def __call__(
        self,
        x,
        kv=None,
        mask=None,
        *,
        deterministic: bool = True,
        return_weights: bool = False,
        causal: bool = False,
    ):
        """x: [B, Tq, d_model]; kv: [B, Tk, d_model] or None; mask: broadcastable to
        [B, heads, Tq, Tk]; causal adds the causal mask (self-attention only). Returns
        [B, Tq, d_model] (and the weights if asked)."""
        if causal and kv is not None:
            raise ValueError('causal=True is for self-attention (kv=None)')
        kv = x if kv is None else kv
        q, k, v = self.query(x), self.key(kv), self.value(kv)
        if self._fused(deterministic, return_weights):
            heads = fused_dot_product_attention(
                q, k, v, mask, is_causal=causal, implementation=self.implementation
            )
            return self.out(heads.astype(x.dtype))
        if causal:
            mask = combine_masks(causal_mask(x.shape[1]), mask)
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
        mask = combine_masks(causal, mask)
        if self.implementation != 'reference':
            heads = fused_dot_product_attention(
                q, keys, values, mask, implementation=self.implementation
            )
            return self.out(heads.astype(x.dtype)), cache
        weights = dot_product_attention_weights(q, keys, mask)
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
    return tuple(
        jax.lax.dynamic_index_in_dim(cache[name], layer, axis=1, keepdims=False)
        for name in ('k', 'v')
    )

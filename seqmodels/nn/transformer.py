"""Transformer blocks and layer stacks shared by the Transformer, GPT, BERT and ViT.

Residual arrangement (`norm`):
  'post'  x = LayerNorm(x + Dropout(Sublayer(x)))   Vaswani et al. 2017, BERT, GPT-1
  'pre'   x = x + Dropout(Sublayer(LayerNorm(x)))   GPT-2, ViT; the stack then ends
                                                     with a final LayerNorm

Stacks (`Encoder`, `Decoder`) run their layers either unrolled (params `layers_0`,
`layers_1`, ...) or, with `scan_layers=True`, through `nn.scan` (params `layers`,
stacked on a leading layer axis) so that compile time does not grow with depth.
`stack_layer_params` / `unstack_layer_params` convert between the two layouts.

Rematerialisation (`remat`, Chen et al. 2016): 'none' keeps every activation of the
forward pass for the backward pass; 'block' keeps only each block's input and
recomputes the block during the backward pass (memory per layer: one [B, T, d_model]
array instead of every intermediate, for about one more forward pass of compute);
'dots' also keeps the outputs of the weight matmuls and recomputes the rest
(attention scores, activations, norms). Parameters and results are the same.

`Decoder` is always causal and has a key/value cache for decoding one position at a
time (see `seqmodels.nn.attention` for the cache layout); `cross_attention=False` makes
it the decoder-only stack of GPT.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from seqmodels.nn.attention import MultiHeadAttention, head_size, init_kv_cache

Initializer = Callable[..., Any]

NORMS = ('post', 'pre')

ACTIVATIONS = {
    'relu': nn.relu,
    # The tanh approximation, as in the BERT and GPT-2 releases.
    'gelu': lambda x: nn.gelu(x, approximate=True),
}


class FeedForward(nn.Module):
    """FFN(x) = act(x W1 + b1) W2 + b2, applied at each position (§3.3)."""

    d_ff: int
    activation: str = 'relu'
    kernel_init: Initializer = nn.initializers.xavier_uniform()
    out_kernel_init: Initializer | None = None
    dtype: Any = jnp.float32  # of the computation; parameters stay float32

    @nn.compact
    def __call__(self, x):
        if self.activation not in ACTIVATIONS:
            raise ValueError(
                f'activation must be one of {sorted(ACTIVATIONS)}, got {self.activation!r}'
            )
        h = nn.Dense(self.d_ff, kernel_init=self.kernel_init, dtype=self.dtype, name='wi')(x)
        h = ACTIVATIONS[self.activation](h)
        return nn.Dense(
            x.shape[-1],
            kernel_init=self.out_kernel_init or self.kernel_init,
            dtype=self.dtype,
            name='wo',
        )(h)


class LayerHyperparams(nn.Module):
    """Fields shared by the blocks and the stacks (a stack passes them to each block)."""

    num_heads: int
    d_model: int
    d_ff: int
    dropout: float = 0.0  # on each sublayer's output, before the residual add
    attention_dropout: float = 0.0  # on the attention weights
    key_size: int = 0  # d_k = d_v of each head; 0: d_model // num_heads
    activation: str = 'relu'
    norm: str = 'post'  # 'post' | 'pre'
    layer_norm_epsilon: float = 1e-6
    kernel_init: Initializer = nn.initializers.xavier_uniform()
    # Projections that write into the residual stream (W^O, W2); GPT-2 shrinks them.
    out_kernel_init: Initializer | None = None
    # seqmodels.nn.attention.IMPLEMENTATIONS: 'auto' fuses wherever no weights are needed.
    attention_implementation: str = 'auto'
    # Of the matmuls and activations (seqmodels.precision); parameters stay float32 and
    # LayerNorm computes its statistics in float32 whatever this is.
    dtype: Any = jnp.float32

    def block_kwargs(self) -> dict:
        return {
            f: getattr(self, f)
            for f in LayerHyperparams.__dataclass_fields__
            if f not in ('parent', 'name')
        }

    def make_attention(self) -> MultiHeadAttention:
        return MultiHeadAttention(
            self.num_heads,
            self.d_model,
            self.attention_dropout,
            kernel_init=self.kernel_init,
            out_kernel_init=self.out_kernel_init,
            implementation=self.attention_implementation,
            dtype=self.dtype,
            key_size=self.key_size,
        )

    def make_feed_forward(self) -> FeedForward:
        return FeedForward(
            self.d_ff, self.activation, self.kernel_init, self.out_kernel_init, self.dtype
        )

    def make_layer_norm(self) -> nn.LayerNorm:
        return nn.LayerNorm(epsilon=self.layer_norm_epsilon, dtype=self.dtype)


class _ResidualBlock(LayerHyperparams):
    def setup(self):
        if self.norm not in NORMS:
            raise ValueError(f'norm must be one of {NORMS}, got {self.norm!r}')
        self.residual_dropout = nn.Dropout(self.dropout)

    def sublayer_input(self, x, norm):
        return norm(x) if self.norm == 'pre' else x

    def residual(self, x, y, norm, deterministic):
        x = x + self.residual_dropout(y, deterministic=deterministic)
        return x if self.norm == 'pre' else norm(x)


class EncoderBlock(_ResidualBlock):
    """Self-attention then FFN, each wrapped in residual + LayerNorm."""

    def setup(self):
        super().setup()
        self.self_attention = self.make_attention()
        self.self_attention_norm = self.make_layer_norm()
        self.ffn = self.make_feed_forward()
        self.ffn_norm = self.make_layer_norm()

    def __call__(self, x, mask=None, *, deterministic: bool = True):
        h = self.sublayer_input(x, self.self_attention_norm)
        y = self.self_attention(h, mask=mask, deterministic=deterministic)
        x = self.residual(x, y, self.self_attention_norm, deterministic)
        y = self.ffn(self.sublayer_input(x, self.ffn_norm))
        return self.residual(x, y, self.ffn_norm, deterministic)


class DecoderBlock(_ResidualBlock):
    """Masked self-attention, cross-attention over the encoder output, FFN (Figure 1).

    With cross_attention=False there is no middle sublayer (GPT).
    """

    cross_attention: bool = True

    def setup(self):
        super().setup()
        self.self_attention = self.make_attention()
        self.self_attention_norm = self.make_layer_norm()
        if self.cross_attention:
            self.memory_attention = self.make_attention()
            self.memory_attention_norm = self.make_layer_norm()
        self.ffn = self.make_feed_forward()
        self.ffn_norm = self.make_layer_norm()

    def __call__(
        self,
        x,
        memory=None,
        self_mask=None,
        memory_mask=None,
        *,
        deterministic: bool = True,
        causal: bool = False,
    ):
        """causal=True adds the causal mask to self_mask (the `Decoder` stack passes it,
        which lets a fused kernel skip the masked half); otherwise self_mask must
        already be causal."""

        def attend(h):
            return self.self_attention(
                h, mask=self_mask, deterministic=deterministic, causal=causal
            ), None

        return self._layer(x, attend, memory, memory_mask, deterministic)[0]

    def decode(self, x, cache, cache_index, memory=None, memory_mask=None, layer=None):
        """Positions cache_index.. of x [B, S, d_model]; returns (x, updated cache).
        With `layer`, cache is a whole stack's and only that layer's slice is used."""

        def attend(h):
            return self.self_attention.decode(h, cache, cache_index, layer=layer)

        return self._layer(x, attend, memory, memory_mask, deterministic=True)

    def _layer(self, x, attend, memory, memory_mask, deterministic):
        y, cache = attend(self.sublayer_input(x, self.self_attention_norm))
        x = self.residual(x, y, self.self_attention_norm, deterministic)
        if self.cross_attention:
            if memory is None:
                raise ValueError('this decoder has cross-attention: pass the encoder memory')
            h = self.sublayer_input(x, self.memory_attention_norm)
            y = self.memory_attention(h, memory, mask=memory_mask, deterministic=deterministic)
            x = self.residual(x, y, self.memory_attention_norm, deterministic)
        y = self.ffn(self.sublayer_input(x, self.ffn_norm))
        return self.residual(x, y, self.ffn_norm, deterministic), cache


# nn.scan needs a body of the form (carry, *xs) -> (carry, ys): these adapters give the
# blocks that signature without changing their parameters.


class _ScannedEncoderBlock(EncoderBlock):
    def __call__(self, x, mask, deterministic):
        return EncoderBlock.__call__(self, x, mask, deterministic=deterministic), None


class _ScannedDecoderBlock(DecoderBlock):
    # The whole stack's cache travels in the carry and each layer updates its own slice
    # (`layer` is scanned over 0..L-1): in a loop carry the update happens in place,
    # whereas a cache scanned as xs/ys would be copied whole into a new ys every step.

    def __call__(self, carry, memory, self_mask, memory_mask, layer, cache_index, deterministic):
        x, cache = carry
        if cache is None:
            y = DecoderBlock.__call__(
                self, x, memory, self_mask, memory_mask, deterministic=deterministic, causal=True
            )
            return (y, None), None
        return self.decode(x, cache, cache_index, memory, memory_mask, layer), None


# remat -> the jax.checkpoint policy of what a block keeps for the backward pass.
REMAT_POLICIES = {
    'none': None,
    'block': jax.checkpoint_policies.nothing_saveable,
    'dots': jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
}


def _remat(block_cls, remat: str, deterministic_argnum: int, prevent_cse: bool):
    """block_cls, or block_cls recomputed in the backward pass under `remat`'s policy;
    `deterministic_argnum` (self = 0) is static: it decides whether dropout runs."""
    if remat == 'none':
        return block_cls
    return nn.remat(
        block_cls,
        policy=REMAT_POLICIES[remat],
        prevent_cse=prevent_cse,
        static_argnums=(deterministic_argnum,),
    )


def _scan(block_cls, num_layers, in_axes):
    return nn.scan(
        block_cls,
        variable_axes={'params': 0, 'intermediates': 0},
        split_rngs={'params': True, 'dropout': True},
        in_axes=in_axes,
        length=num_layers,
    )


class _Stack(LayerHyperparams):
    num_layers: int = 1
    scan_layers: bool = False
    remat: str = 'none'  # one of REMAT_POLICIES

    def make_layers(self, scanned_cls, in_axes, deterministic_argnum, **extra):
        """The layers, each with the (carry, *xs) -> (carry, None) signature of
        `scanned_cls` (whose parameters are its block's), scanned or unrolled."""
        if self.remat not in REMAT_POLICIES:
            raise ValueError(f'remat must be one of {tuple(REMAT_POLICIES)}, got {self.remat!r}')
        kwargs = {**self.block_kwargs(), **extra}
        # Inside a scan the loop already keeps XLA from merging the recomputation
        # into the forward pass, so the extra barrier is only needed unrolled.
        block_cls = _remat(
            scanned_cls, self.remat, deterministic_argnum, prevent_cse=not self.scan_layers
        )
        if self.scan_layers:
            self.layers = _scan(block_cls, self.num_layers, in_axes)(**kwargs)
        else:
            self.layers = [block_cls(**kwargs) for _ in range(self.num_layers)]
        if self.norm == 'pre':
            # Pre-norm leaves the residual stream unnormalised: normalise it once at the end.
            self.final_norm = self.make_layer_norm()

    def finish(self, x):
        return self.final_norm(x) if self.norm == 'pre' else x


class Encoder(_Stack):
    """num_layers encoder blocks (Figure 1, left)."""

    def setup(self):
        # (x, mask, deterministic): deterministic is argument 3 counting self.
        self.make_layers(_ScannedEncoderBlock, (nn.broadcast, nn.broadcast), 3)

    def __call__(self, x, mask=None, *, deterministic: bool = True):
        """x: [B, T, d_model]; mask: e.g. `key_padding_mask(tokens != pad)`."""
        if self.scan_layers:
            x, _ = self.layers(x, mask, deterministic)
        else:
            for layer in self.layers:
                x, _ = layer(x, mask, deterministic)
        return self.finish(x)


class Decoder(_Stack):
    """num_layers decoder blocks (Figure 1, right), causal, with a decoding cache."""

    cross_attention: bool = True

    def setup(self):
        # memory, self_mask, memory_mask, layer index, cache_index, deterministic
        # (argument 7 counting self and the carry)
        in_axes = (nn.broadcast, nn.broadcast, nn.broadcast, 0, nn.broadcast, nn.broadcast)
        self.make_layers(_ScannedDecoderBlock, in_axes, 7, cross_attention=self.cross_attention)

    def __call__(
        self, x, memory=None, self_mask=None, memory_mask=None, *, deterministic: bool = True
    ):
        """x: [B, T, d_model]. self_mask (e.g. target padding) is combined with the
        causal mask; memory_mask covers memory keys (e.g. source padding)."""
        if self.scan_layers:
            (x, _), _ = self.layers(
                (x, None),
                memory,
                self_mask,
                memory_mask,
                jnp.arange(self.num_layers),
                None,
                deterministic,
            )
        else:
            for layer in self.layers:
                (x, _), _ = layer(
                    (x, None), memory, self_mask, memory_mask, None, None, deterministic
                )
        return self.finish(x)

    def decode(self, x, cache, cache_index, memory=None, memory_mask=None):
        """Runs positions cache_index .. cache_index + S - 1 (x: [B, S, d_model]) against
        the cache from `init_cache`; returns (x, updated cache)."""
        if self.scan_layers:
            (x, cache), _ = self.layers(
                (x, cache),
                memory,
                None,
                memory_mask,
                jnp.arange(self.num_layers),
                cache_index,
                True,
            )
        else:
            for i, layer in enumerate(self.layers):
                x, cache = layer.decode(x, cache, cache_index, memory, memory_mask, layer=i)
        return self.finish(x), cache

    def init_cache(self, batch_size: int, max_len: int, dtype=jnp.float32) -> dict:
        """Zero cache {'k', 'v'}: [batch_size, num_layers, max_len, num_heads, d_k]."""
        return init_kv_cache(
            batch_size,
            max_len,
            self.num_heads,
            head_size(self.d_model, self.num_heads, self.key_size),
            self.num_layers,
            dtype,
        )


_LAYER_KEY = re.compile(r'^layers_(\d+)$')


def stack_layer_params(tree):
    """Unrolled layout -> scanned layout: every dict holding layers_0..layers_{L-1}
    gets one 'layers' entry instead, each leaf stacked on a new leading axis."""
    if not isinstance(tree, dict) and not hasattr(tree, 'items'):
        return tree
    out, layers = {}, {}
    for key, value in tree.items():
        match = _LAYER_KEY.match(key)
        if match:
            layers[int(match.group(1))] = value
        else:
            out[key] = stack_layer_params(value)
    if layers:
        if sorted(layers) != list(range(len(layers))):
            raise ValueError(f'layer indices are not 0..L-1: {sorted(layers)}')
        ordered = [layers[i] for i in range(len(layers))]
        out['layers'] = jax.tree.map(lambda *xs: jnp.stack(xs), *ordered)
    return out


def unstack_layer_params(tree):
    """Scanned layout -> unrolled layout (inverse of `stack_layer_params`)."""
    if not isinstance(tree, dict) and not hasattr(tree, 'items'):
        return tree
    out = {}
    for key, value in tree.items():
        if key == 'layers':
            num_layers = jax.tree.leaves(value)[0].shape[0]
            for i in range(num_layers):
                out[f'layers_{i}'] = jax.tree.map(lambda x, i=i: x[i], value)
        else:
            out[key] = unstack_layer_params(value)
    return out

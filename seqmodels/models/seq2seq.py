"""RNN encoder-decoder with additive attention (Bahdanau, Cho & Bengio 2015).

  encoder:   h_j = [->h_j ; <-h_j]                 bidirectional DeepRNN over the source
  init:      s_0 = tanh(W_s <-h_1)                 one projection per carry leaf (c and h)
  attention: c_i = sum_j alpha_ij h_j,  alpha_i = softmax_j(v^T tanh(W s_{i-1} + U h_j))
  decoder:   s_i = cell(s_{i-1}, [E y_{i-1} ; c_i])
  output:    p(y_i | ...) = softmax(W_o maxout(V [s_i ; c_i ; E y_{i-1}]))

Padding id is 0. The teacher-forced pass and step-by-step decoding run the same
`decode_step`, so decoding reproduces training exactly. Scheduled sampling
(Bengio et al. 2015) is `__call__(..., sampling_prob=eps)`, drawing its coins and
samples from the 'dropout' rng stream.
"""

from typing import Any, Dict, Tuple

import jax
import jax.numpy as jnp
import flax.linen as nn

from seqmodels.nn.additive_attention import AdditiveAttention
from seqmodels.nn.recurrent import DeepRNN, SequenceDropout, cell_accepts
from seqmodels.models import scheduled_sampling

PAD_ID = 0
Memory = Dict[str, Any]


class CarryBridge(nn.Module):
    """Maps the encoder summary to every leaf of the decoder's initial carry: tanh(W x)."""

    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, summary: jax.Array, template: Any) -> Any:
        leaves, treedef = jax.tree_util.tree_flatten(template)
        return treedef.unflatten(
            [jnp.tanh(nn.Dense(leaf.shape[-1], dtype=self.dtype)(summary)) for leaf in leaves]
        )


class Maxout(nn.Module):
    """Maxout over pairs of units (Goodfellow et al. 2013), as in Bahdanau's deep output."""

    features: int
    pool_size: int = 2
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        t = nn.Dense(self.features * self.pool_size, dtype=self.dtype)(x)
        return t.reshape(t.shape[:-1] + (self.features, self.pool_size)).max(axis=-1)


class RNNSeq2Seq(nn.Module):
    src_vocab_size: int
    tgt_vocab_size: int
    embed_dim: int
    hidden_size: int
    encoder_layers: int = 1
    decoder_layers: int = 1
    cell: str = 'lstm'
    dropout: float = 0.0
    forget_bias: float = 1.0
    attention_dim: int | None = None  # n' of the alignment MLP; hidden_size if None
    # Of the computation (seqmodels.precision; set from config.precision, not a model
    # key); parameters stay float32 and the logits are returned in float32.
    dtype: Any = jnp.float32

    def setup(self):
        cell_kwargs = (
            {'forget_bias': self.forget_bias} if cell_accepts(self.cell, 'forget_bias') else {}
        )
        self.src_embed = nn.Embed(self.src_vocab_size, self.embed_dim, dtype=self.dtype)
        self.tgt_embed = nn.Embed(self.tgt_vocab_size, self.embed_dim, dtype=self.dtype)
        self.encoder = DeepRNN(
            self.hidden_size,
            self.encoder_layers,
            self.cell,
            bidirectional=True,
            dropout=self.dropout,
            cell_kwargs=cell_kwargs,
            dtype=self.dtype,
        )
        self.decoder = DeepRNN(
            self.hidden_size,
            self.decoder_layers,
            self.cell,
            dropout=self.dropout,
            cell_kwargs=cell_kwargs,
            dtype=self.dtype,
        )
        self.attention = AdditiveAttention(self.attention_dim or self.hidden_size, self.dtype)
        self.bridge = CarryBridge(self.dtype)
        self.readout = Maxout(self.hidden_size, dtype=self.dtype)
        self.output = nn.Dense(self.tgt_vocab_size, dtype=self.dtype)
        self.drop = SequenceDropout(self.dropout)

    def encode(
        self, src: jax.Array, src_lengths: jax.Array | None = None, deterministic: bool = True
    ) -> Memory:
        """src [B, S] -> memory: encoder states, their attention keys U h_j, the source
        mask and the initial decoder carry. src_lengths defaults to the count of non-pad
        tokens (padding at the end)."""
        if src_lengths is None:
            src_lengths = jnp.sum(src != PAD_ID, axis=1)
        src_lengths = jnp.asarray(src_lengths, jnp.int32)
        mask = jnp.arange(src.shape[1])[None, :] < src_lengths[:, None]
        values, _ = self.encoder(
            self.drop(self.src_embed(src), deterministic), src_lengths, deterministic=deterministic
        )
        # <-h_1: the backward half at the first position has read the whole valid source.
        summary = values[:, 0, self.hidden_size :]
        carry = self.bridge(summary, self.decoder.initial_carry(src.shape[0]))
        return {
            'values': values,
            'keys': self.attention.precompute_keys(values),
            'mask': mask,
            'decoder_carry': carry,
        }

    def initial_decoder_carry(self, memory: Memory) -> Any:
        return memory['decoder_carry']

    def decode_step(
        self, memory: Memory, carry: Any, token: jax.Array, deterministic: bool = True
    ) -> Tuple[jax.Array, Any]:
        """token y_{i-1} [B] -> (logits for y_i [B, V], carry)."""
        context, _ = self.attention(
            self.decoder.hidden(carry), memory['values'], memory['mask'], keys=memory['keys']
        )
        e = self.drop(self.tgt_embed(token), deterministic)
        carry, s = self.decoder.step(carry, jnp.concatenate([e, context], axis=-1), deterministic)
        t = self.readout(jnp.concatenate([s, context, e], axis=-1))
        return self.output(self.drop(t, deterministic)).astype(jnp.float32), carry

    def __call__(
        self,
        src: jax.Array,
        src_lengths: jax.Array | None,
        tgt_in: jax.Array,
        deterministic: bool = True,
        sampling_prob: Any | None = None,
    ) -> jax.Array:
        """Teacher forcing (or scheduled sampling with sampling_prob=eps): logits [B, T, V],
        where logits[:, i] predicts the token after tgt_in[:, i]."""
        memory = self.encode(src, src_lengths, deterministic)
        logits, _ = scheduled_sampling.unroll(
            self,
            lambda model, carry, token, mem: model.decode_step(mem, carry, token, deterministic),
            self.initial_decoder_carry(memory),
            tgt_in,
            sampling_prob=sampling_prob,
            rng=None if sampling_prob is None else self.make_rng('dropout'),
            broadcast_args=(memory,),
        )
        return logits


def example_inputs(model: RNNSeq2Seq, batch_size: int = 1):
    """Arguments for `model.init(rngs, *example_inputs(model))`: (src, src_lengths, tgt_in)."""
    del model
    tokens = jnp.ones((batch_size, 2), jnp.int32)
    return tokens, jnp.full((batch_size,), 2, jnp.int32), tokens

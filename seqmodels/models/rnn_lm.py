"""Recurrent language model: embedding -> DeepRNN -> logits over the vocabulary.

Dropout follows one of two recipes, picked by `dropout_kind`:
  'standard'    (Zaremba, Sutskever & Vinyals 2014): fresh masks at every step on
                the non-recurrent connections (embedding, between layers, before the
                softmax); the recurrent state is never dropped.
  'variational' (Gal & Ghahramani 2016): one mask per sequence on the same
                connections and also on h_{t-1} where it enters each layer's
                recurrence, all at rate `dropout`.

Scheduled sampling (Bengio et al. 2015) is `__call__(..., sampling_prob=eps)`; its
coins and samples come from the 'dropout' rng stream, which training already
provides, so pass rngs={'dropout': key} whenever sampling_prob is set.
"""

from typing import Any, Tuple

import jax
import jax.numpy as jnp
import flax.linen as nn

from seqmodels.nn.recurrent import SequenceDropout, deep_rnn_of
from seqmodels.models import scheduled_sampling


class RNNLM(nn.Module):
    vocab_size: int
    embed_dim: int
    hidden_size: int
    num_layers: int = 1
    cell: str = 'lstm'
    dropout: float = 0.0
    dropout_kind: str = 'standard'
    forget_bias: float = 1.0
    tie_embeddings: bool = False
    # Of the computation (seqmodels.precision; set from config.precision, not a model
    # key); parameters stay float32 and the logits are returned in float32.
    dtype: Any = jnp.float32

    def setup(self):
        if self.tie_embeddings and self.hidden_size != self.embed_dim:
            raise ValueError(
                'tie_embeddings needs hidden_size == embed_dim, got '
                f'{self.hidden_size} and {self.embed_dim}'
            )
        self.embed = nn.Embed(self.vocab_size, self.embed_dim, dtype=self.dtype)
        self.rnn = deep_rnn_of(self)
        self.drop = SequenceDropout(self.dropout, self.dropout_kind)
        if self.tie_embeddings:
            # Tied output layer (Press & Wolf 2017; Inan et al. 2017): logits = E h + b.
            self.output_bias = self.param('output_bias', nn.initializers.zeros, (self.vocab_size,))
        else:
            self.output = nn.Dense(self.vocab_size, dtype=self.dtype)

    def _logits(self, h: jax.Array) -> jax.Array:
        """In float32, for the loss and for sampling."""
        if self.tie_embeddings:
            return self.embed.attend(h).astype(jnp.float32) + self.output_bias
        return self.output(h).astype(jnp.float32)

    def __call__(
        self, tokens: jax.Array, deterministic: bool = True, sampling_prob: Any | None = None
    ) -> jax.Array:
        """tokens [B, T] int -> logits [B, T, V]; logits[:, t] predicts tokens[:, t + 1].

        sampling_prob=None: teacher forcing, the whole sequence in one RNN scan.
        sampling_prob=eps: scheduled sampling, a step-by-step unroll in which each
        input after the first is the true token with probability eps, else a sample
        from the previous step's softmax; eps = 1 gives the teacher-forced logits.
        """
        if sampling_prob is not None:
            logits, _ = scheduled_sampling.unroll(
                self,
                lambda lm, carry, token: lm._step(carry, token, deterministic),
                self.rnn.initial_carry(tokens.shape[0]),
                tokens,
                sampling_prob=sampling_prob,
                rng=self.make_rng('dropout'),
                fixed_dropout_masks=self.dropout_kind == 'variational',
            )
            return logits
        x = self.drop(self.embed(tokens), deterministic)
        h, _ = self.rnn(x, deterministic=deterministic)
        return self._logits(self.drop(h, deterministic))

    def _step(self, carry, token: jax.Array, deterministic: bool):
        x = self.drop(self.embed(token), deterministic)
        carry, h = self.rnn.step(carry, x, deterministic)
        return self._logits(self.drop(h, deterministic)), carry

    def step(self, carry, token: jax.Array) -> Tuple[jax.Array, Any]:
        """Generation: token [B] -> (logits [B, V] for the next token, carry)."""
        return self._step(carry, token, deterministic=True)

    def initial_carry(self, batch_size: int):
        return self.rnn.initial_carry(batch_size)


def example_inputs(model: RNNLM, batch_size: int = 1) -> Tuple[jax.Array]:
    """Arguments for `model.init(rngs, *example_inputs(model))`."""
    del model
    return (jnp.zeros((batch_size, 2), jnp.int32),)

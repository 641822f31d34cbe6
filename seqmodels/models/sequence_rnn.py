"""Read a sequence of feature vectors with an RNN, predict from its state: the model of
the long-time-lag tasks of Hochreiter & Schmidhuber (1997) (adding, temporal order) and
of the copy-memory task.

inputs [B, T, F] -> Dense(embed_dim) -> DeepRNN (any cell of CELLS) -> Dense(num_outputs),
the head reading the last layer's h_T (readout='last': outputs [B, num_outputs]) or
every h_t (readout='every_step': outputs [B, T, num_outputs], for tasks that answer at
several steps). Dropout is RNNLM's: `dropout_kind` on the projected inputs, between
layers and before the head, never on the recurrent state unless variational.
"""

from typing import Any, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from seqmodels.nn.recurrent import SequenceDropout, deep_rnn_of

READOUTS = ('last', 'every_step')


class SequenceRNN(nn.Module):
    num_outputs: int
    input_features: int = 1  # the shape of `example_inputs`; flax infers it when applied
    embed_dim: int = 32
    hidden_size: int = 128
    num_layers: int = 1
    cell: str = 'lstm'
    dropout: float = 0.0
    dropout_kind: str = 'standard'
    forget_bias: float = 1.0
    readout: str = 'last'
    # Of the computation (seqmodels.precision; set from config.precision, not a model
    # key); parameters stay float32 and the outputs are returned in float32.
    dtype: Any = jnp.float32

    def setup(self):
        if self.readout not in READOUTS:
            raise ValueError(f'readout must be one of {READOUTS}, got {self.readout!r}')
        self.project = nn.Dense(self.embed_dim, dtype=self.dtype)
        self.rnn = deep_rnn_of(self)
        self.drop = SequenceDropout(self.dropout, self.dropout_kind)
        self.head = nn.Dense(self.num_outputs, dtype=self.dtype)

    def __call__(self, inputs: jax.Array, deterministic: bool = True) -> jax.Array:
        """inputs [B, T, F] -> outputs [B, num_outputs] ('last') or [B, T, num_outputs]."""
        h, _ = self.rnn(self.embed(inputs, deterministic), deterministic=deterministic)
        if self.readout == 'last':
            h = h[:, -1]
        return self.output(self.drop(h, deterministic))

    def embed(self, inputs: jax.Array, deterministic: bool = True) -> jax.Array:
        """The first layer's input sequence [B, T, embed_dim]."""
        return self.drop(self.project(inputs), deterministic)

    def top_layer_inputs(self, inputs: jax.Array) -> jax.Array:
        """What the last RNN layer reads [B, T, F] (no dropout): the projected inputs,
        through the layers below it (`seqmodels.gradient_flow` unrolls the last one)."""
        xs = self.embed(inputs)
        for layer in self.rnn.layers[:-1]:
            xs, _ = layer(xs)
        return xs

    def output(self, h: jax.Array) -> jax.Array:
        """The head on last-layer states h [..., hidden_size] (no dropout), in float32
        for the losses."""
        return self.head(h).astype(jnp.float32)


def example_inputs(model: SequenceRNN, batch_size: int = 1) -> Tuple[jax.Array]:
    """(inputs,) of two steps of the model's features for `model.init(rngs, *inputs)`."""
    return (jnp.zeros((batch_size, 2, model.input_features), jnp.float32),)

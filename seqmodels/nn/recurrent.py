"""Recurrent cells, the `RNN` scan over time, bidirectional and stacked RNNs.

Every cell follows one protocol, batch-major:

  project_inputs(xs) -> xp        position-wise; works on [B, T, F] or [B, F]
  step(carry, xp_t, recurrent_mask=None) -> (new_carry, h_t)
  initial_carry(batch_size) -> carry   (zeros)
  hidden(carry) -> h                   the part of the carry that is the output

The paper form W [h_{t-1}; x_t] + b is split into an input kernel (applied to all
time steps at once, outside the scan, as one large matmul) and a recurrent kernel
(the only matmul left inside the scan). The two forms are algebraically identical.

`recurrent_mask` is the variational-dropout mask of Gal & Ghahramani (2016): it
multiplies h_{t-1} where it enters the recurrent kernel, never the carried state.

Every cell takes a compute `dtype` (`seqmodels.precision`): its matmuls, gates and
carry are in that dtype, its parameters float32.
"""

from typing import Any, Mapping, Sequence, Tuple

import dataclasses
import functools

import jax
import jax.numpy as jnp
import flax.linen as nn

Array = jax.Array
Carry = Any

DROPOUT_KINDS = ('standard', 'variational')


def _mask_hidden(h: Array, recurrent_mask: Array | None) -> Array:
    return h if recurrent_mask is None else h * recurrent_mask


def _gate_bias_init(num_gates: int, gate_values: Mapping[int, float]):
    """Bias initialiser for a fused [num_gates * H] bias with per-gate constants."""

    def init(key, shape, dtype=jnp.float32):
        del key
        hidden = shape[-1] // num_gates
        bias = jnp.zeros((num_gates, hidden), dtype)
        for gate, value in gate_values.items():
            bias = bias.at[gate].set(value)
        return bias.reshape(shape)

    return init


class ElmanCell(nn.Module):
    """Elman (1990) simple recurrent cell: h_t = tanh(W h_{t-1} + U x_t + b)."""

    features: int
    dtype: Any = jnp.float32

    def setup(self):
        self.input = nn.Dense(self.features, use_bias=True, dtype=self.dtype)  # U, b
        self.recurrent = nn.Dense(
            self.features,
            use_bias=False,
            kernel_init=nn.initializers.orthogonal(),
            dtype=self.dtype,
        )  # W

    def project_inputs(self, xs: Array) -> Array:
        return self.input(xs)

    def step(self, carry, xp_t, recurrent_mask=None):
        h = jnp.tanh(xp_t + self.recurrent(_mask_hidden(carry, recurrent_mask)))
        return h, h

    def initial_carry(self, batch_size: int) -> Carry:
        return jnp.zeros((batch_size, self.features), self.dtype)

    def hidden(self, carry: Carry) -> Array:
        return carry

    def __call__(self, carry, x_t):
        return self.step(carry, self.project_inputs(x_t))


# Gate order of the fused LSTM pre-activation, shared by both LSTM cells and tests.
LSTM_GATES = ('i', 'f', 'o', 'g')


def _lstm_update(gates: Array, c: Array):
    """c_t = f * c_{t-1} + i * g from the fused (i, f, o, g) pre-activations."""
    i, f, o, g = jnp.split(gates, 4, axis=-1)
    new_c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
    return new_c, jax.nn.sigmoid(o)


# A whole LSTM sequence with a hand-written backward pass. Autodiff of a scan whose
# body closes over the recurrent kernel W adds h_{t-1}^T dgates_t into dW inside the
# backward loop: T small-K matmuls, each reading and writing all of dW. Here the
# backward scan only carries (dh, dc) and emits dgates_t; dW is then one large matmul
# over all steps, as cuDNN and oneDNN do it. Same equations as `_lstm_update`.


def _lstm_forward(kernel, xp, c, h, unroll):
    """xp [T, B, 4H] time-major -> (hs [T, B, H], (c_T, h_T), residuals)."""

    def step(carry, xp_t):
        c, h = carry
        i, f, o, g = jnp.split(xp_t + h @ kernel, 4, axis=-1)
        i, f, o, g = jax.nn.sigmoid(i), jax.nn.sigmoid(f), jax.nn.sigmoid(o), jnp.tanh(g)
        new_c = f * c + i * g
        new_h = o * jnp.tanh(new_c)
        return (new_c, new_h), (new_h, (i, f, o, g, c, new_c, h))

    (c, h), (hs, residuals) = jax.lax.scan(step, (c, h), xp, unroll=unroll)
    return hs, (c, h), residuals


@functools.partial(jax.custom_vjp, nondiff_argnums=(4,))
def lstm_sequence(kernel, xp, c, h, unroll=1):
    """Runs the LSTM recurrence over time-major projected inputs xp [T, B, 4H]
    (gate order `LSTM_GATES`) from carry (c, h); returns (hs [T, B, H], (c_T, h_T)).
    `unroll` time steps run per loop iteration, forward and backward."""
    hs, carry, _ = _lstm_forward(kernel, xp, c, h, unroll)
    return hs, carry


def _lstm_sequence_fwd(kernel, xp, c, h, unroll):
    hs, carry, residuals = _lstm_forward(kernel, xp, c, h, unroll)
    return (hs, carry), (kernel, residuals)


def _lstm_sequence_bwd(unroll, saved, cotangents):
    kernel, residuals = saved
    d_hs, (d_c_last, d_h_last) = cotangents

    def step(carry, inputs):
        d_c, d_h = carry
        d_h_t, (i, f, o, g, c_prev, c, _) = inputs
        d_h = d_h + d_h_t
        tanh_c = jnp.tanh(c)
        d_c = d_c + d_h * o * (1.0 - tanh_c**2)
        d_gates = jnp.concatenate(
            [
                d_c * g * i * (1.0 - i),  # i
                d_c * c_prev * f * (1.0 - f),  # f
                d_h * tanh_c * o * (1.0 - o),  # o
                d_c * i * (1.0 - g**2),  # g
            ],
            axis=-1,
        )
        return (d_c * f, d_gates @ kernel.T), d_gates

    (d_c0, d_h0), d_gates = jax.lax.scan(
        step, (d_c_last, d_h_last), (d_hs, residuals), reverse=True, unroll=unroll
    )
    h_prev = residuals[-1]
    d_kernel = jnp.einsum('tbh,tbg->hg', h_prev, d_gates)
    return d_kernel, d_gates, d_c0, d_h0


lstm_sequence.defvjp(_lstm_sequence_fwd, _lstm_sequence_bwd)


class LSTMCell(nn.Module):
    """LSTM (Hochreiter & Schmidhuber 1997, with the forget gate of Gers et al. 2000).

    (i, f, o, g) = (sigmoid, sigmoid, sigmoid, tanh)(W [h_{t-1}; x_t] + b)
    c_t = f * c_{t-1} + i * g;   h_t = o * tanh(c_t).

    The four gates share one 4H-wide kernel. The forget-gate bias starts at
    `forget_bias` (Gers et al. 2000; Jozefowicz et al. 2015) so that early in training
    the cell remembers by default; the other biases start at zero. Carry: (c, h).
    """

    features: int
    forget_bias: float = 1.0
    dtype: Any = jnp.float32

    def setup(self):
        self.input = nn.Dense(
            4 * self.features,
            use_bias=True,
            bias_init=_gate_bias_init(4, {LSTM_GATES.index('f'): self.forget_bias}),
            dtype=self.dtype,
        )
        self.recurrent = nn.Dense(
            4 * self.features,
            use_bias=False,
            kernel_init=nn.initializers.orthogonal(),
            dtype=self.dtype,
        )

    def project_inputs(self, xs: Array) -> Array:
        return self.input(xs)

    def step(self, carry, xp_t, recurrent_mask=None):
        c, h = carry
        gates = xp_t + self.recurrent(_mask_hidden(h, recurrent_mask))
        new_c, o = _lstm_update(gates, c)
        new_h = o * jnp.tanh(new_c)
        return (new_c, new_h), new_h

    def initial_carry(self, batch_size: int) -> Carry:
        zeros = jnp.zeros((batch_size, self.features), self.dtype)
        return (zeros, zeros)

    def hidden(self, carry: Carry) -> Array:
        return carry[1]

    def sequence(self, carry, xp, unroll: int = 1):
        """All steps at once, xp [B, T, 4H] -> (carry, hs [B, T, H]), via the fused
        `lstm_sequence` (the same values as scanning `step`, a faster backward)."""
        if self.is_initializing():
            self.recurrent(carry[1])  # creates the kernel
        # In the compute dtype, as the Dense of `step` would cast it (the gradient
        # flows back through the cast to the float32 parameter).
        kernel = self.recurrent.variables['params']['kernel'].astype(self.dtype)
        xp = xp.astype(self.dtype)
        c, h = (x.astype(self.dtype) for x in carry)  # scan needs the step's dtype
        hs, carry = lstm_sequence(kernel, xp.swapaxes(0, 1), c, h, unroll)
        return carry, hs.swapaxes(0, 1)

    def __call__(self, carry, x_t):
        return self.step(carry, self.project_inputs(x_t))


class LayerNormLSTMCell(nn.Module):
    """Layer-normalised LSTM (Ba, Kiros & Hinton 2016, "Layer Normalization", sec. 6).

    (i, f, o, g) = LN(W_h h_{t-1}) + LN(W_x x_t) + b
    c_t = f * c_{t-1} + i * g;   h_t = o * tanh(LN(c_t)).

    Each LN normalises the whole 4H-wide pre-activation vector, as in the paper's
    equations, with gains shared over time. The paper's two gate-LN biases beta_1,
    beta_2 and b are redundant additive terms, so only b is kept (its forget slice
    starts at `forget_bias`); LN(c_t) has its own gain and bias. LN of the input part
    happens in `project_inputs`, so it too runs outside the scan. Carry: (c, h).
    """

    features: int
    forget_bias: float = 1.0
    epsilon: float = 1e-5
    dtype: Any = jnp.float32

    def setup(self):
        self.input = nn.Dense(4 * self.features, use_bias=False, dtype=self.dtype)  # W_x
        self.recurrent = nn.Dense(
            4 * self.features,
            use_bias=False,
            kernel_init=nn.initializers.orthogonal(),
            dtype=self.dtype,
        )  # W_h
        self.bias = self.param(
            'bias',
            _gate_bias_init(4, {LSTM_GATES.index('f'): self.forget_bias}),
            (4 * self.features,),
        )
        self.ln_input = nn.LayerNorm(epsilon=self.epsilon, use_bias=False, dtype=self.dtype)
        self.ln_recurrent = nn.LayerNorm(epsilon=self.epsilon, use_bias=False, dtype=self.dtype)
        self.ln_cell = nn.LayerNorm(epsilon=self.epsilon, dtype=self.dtype)

    def project_inputs(self, xs: Array) -> Array:
        return self.ln_input(self.input(xs)) + self.bias.astype(self.dtype)

    def step(self, carry, xp_t, recurrent_mask=None):
        c, h = carry
        gates = xp_t + self.ln_recurrent(self.recurrent(_mask_hidden(h, recurrent_mask)))
        new_c, o = _lstm_update(gates, c)
        new_h = o * jnp.tanh(self.ln_cell(new_c))
        return (new_c, new_h), new_h

    def initial_carry(self, batch_size: int) -> Carry:
        zeros = jnp.zeros((batch_size, self.features), self.dtype)
        return (zeros, zeros)

    def hidden(self, carry: Carry) -> Array:
        return carry[1]

    def __call__(self, carry, x_t):
        return self.step(carry, self.project_inputs(x_t))


class GRUCell(nn.Module):
    """Gated recurrent unit (Cho et al. 2014). Gate order (r, z, n).

    r = sigmoid(W_r [h; x] + b_r),  z = sigmoid(W_z [h; x] + b_z)
    reset_after=False (default, the equations of Cho et al. 2014):
        n = tanh(W_n [r * h; x] + b_n)
    reset_after=True (the cuDNN variant, one fused recurrent matmul per step):
        n = tanh(W_xn x + b_n + r * (W_hn h + b_hn))
    h_t = z * h_{t-1} + (1 - z) * n.

    With reset_after=False the reset gate must be known before the candidate's
    recurrent matmul, so each step runs two dependent recurrent matmuls (2H then H
    wide); reset_after=True runs one 3H-wide matmul and carries an extra recurrent
    bias, as cuDNN does.
    """

    features: int
    reset_after: bool = False
    dtype: Any = jnp.float32

    def setup(self):
        dense = functools.partial(
            nn.Dense, kernel_init=nn.initializers.orthogonal(), dtype=self.dtype
        )
        self.input = nn.Dense(3 * self.features, use_bias=True, dtype=self.dtype)
        if self.reset_after:
            self.recurrent = dense(3 * self.features, use_bias=True)
        else:
            self.recurrent_gates = dense(2 * self.features, use_bias=False)
            self.recurrent_candidate = dense(self.features, use_bias=False)

    def project_inputs(self, xs: Array) -> Array:
        return self.input(xs)

    def step(self, carry, xp_t, recurrent_mask=None):
        h = carry
        h_in = _mask_hidden(h, recurrent_mask)
        x_r, x_z, x_n = jnp.split(xp_t, 3, axis=-1)
        if self.reset_after:
            h_r, h_z, h_n = jnp.split(self.recurrent(h_in), 3, axis=-1)
            r = jax.nn.sigmoid(x_r + h_r)
            z = jax.nn.sigmoid(x_z + h_z)
            n = jnp.tanh(x_n + r * h_n)
        else:
            h_r, h_z = jnp.split(self.recurrent_gates(h_in), 2, axis=-1)
            r = jax.nn.sigmoid(x_r + h_r)
            z = jax.nn.sigmoid(x_z + h_z)
            n = jnp.tanh(x_n + self.recurrent_candidate(r * h_in))
        new_h = z * h + (1.0 - z) * n
        return new_h, new_h

    def initial_carry(self, batch_size: int) -> Carry:
        return jnp.zeros((batch_size, self.features), self.dtype)

    def hidden(self, carry: Carry) -> Array:
        return carry

    def __call__(self, carry, x_t):
        return self.step(carry, self.project_inputs(x_t))


CELLS = {
    'rnn': ElmanCell,
    'elman': ElmanCell,
    'lstm': LSTMCell,
    'lnlstm': LayerNormLSTMCell,
    'gru': GRUCell,
}


def cell_class(name: str):
    if name not in CELLS:
        raise ValueError(f'Unknown cell {name!r}; known cells: {sorted(CELLS)}')
    return CELLS[name]


def cell_accepts(name: str, option: str) -> bool:
    """Whether cell `name` has the option, e.g. 'forget_bias' (only the LSTMs do)."""
    return option in {f.name for f in dataclasses.fields(cell_class(name))}


def make_cell(name: str, features: int, **kwargs) -> nn.Module:
    """Builds a cell by registry name ('rnn'|'elman'|'lstm'|'lnlstm'|'gru')."""
    cls = cell_class(name)
    unknown = [k for k in kwargs if not cell_accepts(name, k)]
    if unknown:
        raise ValueError(f'Cell {name!r} has no option(s) {unknown}')
    # parent=None: the cell is adopted by the RNN it is handed to, so its parameters
    # live under that RNN whichever module built it.
    return cls(features=features, parent=None, **kwargs)


# ---------------------------------------------------------------------------------
# Dropout


def _check_rate(rate: float, name: str):
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f'{name} must be in [0, 1], got {rate}')


def _keep_mask(rng: Array, rate: float, shape, dtype=jnp.float32) -> Array:
    """Inverted-dropout multiplier: 0 with probability `rate`, else 1 / (1 - rate)."""
    if rate >= 1.0:
        return jnp.zeros(shape, dtype)
    keep = jax.random.bernoulli(rng, 1.0 - rate, shape)
    return keep.astype(dtype) / (1.0 - rate)


class SequenceDropout(nn.Module):
    """Dropout on [B, T, F] activations (or one step [B, F]).

    kind='standard': an independent mask for every element, hence a fresh mask at
    every time step. kind='variational' (Gal & Ghahramani 2016): one mask per
    sequence (per batch row), shared by all time steps of a [B, T, F] input. On a
    single step [B, F] both kinds draw a [B, F] mask; a step-by-step unroll keeps a
    variational mask fixed by not splitting the 'dropout' stream over steps.
    """

    rate: float
    kind: str = 'standard'

    @nn.compact
    def __call__(self, x: Array, deterministic: bool = True) -> Array:
        if self.kind not in DROPOUT_KINDS:
            raise ValueError(f'dropout kind must be one of {DROPOUT_KINDS}, got {self.kind!r}')
        _check_rate(self.rate, 'dropout rate')
        if deterministic or self.rate == 0.0:
            return x
        shape = list(x.shape)
        if self.kind == 'variational' and x.ndim >= 3:
            shape[-2] = 1
        return x * _keep_mask(self.make_rng('dropout'), self.rate, shape, x.dtype)


# ---------------------------------------------------------------------------------
# Running a cell over a sequence


def reverse_within_lengths(xs: Array, lengths: Array) -> Array:
    """Reverses each row's first lengths[b] steps of [B, T, ...]; padding stays put.

    An involution, so the same call maps reversed outputs back to the original order.
    """
    steps = jnp.arange(xs.shape[1])[None, :]
    lengths = lengths[:, None]
    index = jnp.where(steps < lengths, lengths - 1 - steps, steps)
    index = index.reshape(index.shape + (1,) * (xs.ndim - 2))
    return jnp.take_along_axis(xs, index, axis=1)


def _scan_body(cell, carry, inputs, recurrent_mask):
    xp_t, valid_t = inputs
    new_carry, h = cell.step(carry, xp_t, recurrent_mask)

    # Past a sequence's end the state is frozen and the output is exactly zero.
    def keep(new, old):
        return jnp.where(valid_t.reshape((-1,) + (1,) * (new.ndim - 1)), new, old)

    carry = jax.tree_util.tree_map(keep, new_carry, carry)
    return carry, jnp.where(valid_t[:, None], h, jnp.zeros_like(h))


class RNN(nn.Module):
    """Runs a cell over a batch-major sequence [B, T, F] with `nn.scan`.

    The input projection runs once for all steps outside the scan; inside it only
    the cell's recurrent part runs. With `lengths`, a sequence's state stops
    changing after its last valid step (so `final_carry` is the carry there) and
    its outputs past the end are exactly zero. `reverse=True` reads each sequence's
    valid part backwards and returns outputs in the original time order.

    input_dropout, recurrent_dropout and output_dropout are variational (Gal &
    Ghahramani 2016): one mask per sequence, reused at every step, on x_t, on h_{t-1}
    where it enters the recurrence, and on h_t.
    """

    cell: nn.Module
    reverse: bool = False
    input_dropout: float = 0.0
    recurrent_dropout: float = 0.0
    output_dropout: float = 0.0
    unroll: int = 1

    def _masks(self, batch_size: int, input_features: int, deterministic: bool, dtype):
        """Masks in the inputs' dtype, so that dropout does not promote bfloat16."""

        def mask(rate, name, features):
            _check_rate(rate, name)
            if deterministic or rate == 0.0:
                return None
            return _keep_mask(self.make_rng('dropout'), rate, (batch_size, features), dtype)

        hidden = self.cell.features
        return (
            mask(self.input_dropout, 'input_dropout', input_features),
            mask(self.recurrent_dropout, 'recurrent_dropout', hidden),
            mask(self.output_dropout, 'output_dropout', hidden),
        )

    def __call__(
        self,
        xs: Array,
        lengths: Array | None = None,
        initial_carry: Carry | None = None,
        deterministic: bool = True,
    ) -> Tuple[Array, Carry]:
        if xs.ndim != 3:
            raise ValueError(f'RNN expects batch-major inputs [B, T, F], got shape {xs.shape}')
        batch_size, length, features = xs.shape
        full_length = lengths is None
        if lengths is None:
            lengths = jnp.full((batch_size,), length, jnp.int32)
        lengths = jnp.asarray(lengths, jnp.int32)
        valid = jnp.arange(length)[None, :] < lengths[:, None]

        in_mask, rec_mask, out_mask = self._masks(batch_size, features, deterministic, xs.dtype)
        if self.reverse:
            xs = reverse_within_lengths(xs, lengths)
        if in_mask is not None:
            xs = xs * in_mask[:, None, :]
        xp = self.cell.project_inputs(xs)

        carry = self.cell.initial_carry(batch_size) if initial_carry is None else initial_carry
        if type(self.cell) is LSTMCell and full_length and rec_mask is None:
            # Nothing to mask per step: the fused LSTM with its hand-written backward.
            carry, hs = self.cell.sequence(carry, xp, self.unroll)
            return self._finish(hs, carry, out_mask, lengths)
        scan = nn.scan(
            _scan_body,
            variable_broadcast='params',
            split_rngs={'params': False},
            in_axes=(1, nn.broadcast),
            out_axes=1,
            unroll=self.unroll,
        )
        carry, hs = scan(self.cell, carry, (xp, valid), rec_mask)
        return self._finish(hs, carry, out_mask, lengths)

    def _finish(self, hs, carry, out_mask, lengths):
        if out_mask is not None:
            hs = hs * out_mask[:, None, :]
        if self.reverse:
            hs = reverse_within_lengths(hs, lengths)
        return hs, carry

    def step(self, carry: Carry, x_t: Array, deterministic: bool = True) -> Tuple[Carry, Array]:
        """One time step [B, F] -> (carry, h_t [B, H]), for step-by-step decoding.

        Dropout masks are drawn per call; see `SequenceDropout` on keeping them fixed.
        """
        if self.reverse:
            raise ValueError('A reverse RNN needs the whole sequence; it cannot be stepped.')
        in_mask, rec_mask, out_mask = self._masks(
            x_t.shape[0], x_t.shape[-1], deterministic, x_t.dtype
        )
        if in_mask is not None:
            x_t = x_t * in_mask
        carry, h = self.cell.step(carry, self.cell.project_inputs(x_t), rec_mask)
        if out_mask is not None:
            h = h * out_mask
        return carry, h

    def initial_carry(self, batch_size: int) -> Carry:
        return self.cell.initial_carry(batch_size)

    def hidden(self, carry: Carry) -> Array:
        return self.cell.hidden(carry)


class Bidirectional(nn.Module):
    """Bidirectional RNN (Schuster & Paliwal 1997; Graves & Schmidhuber 2005).

    Output at t is [forward h_t ; backward h_t] on the feature axis; `backward_rnn`
    must have reverse=True. Returns (outputs [B, T, H_f + H_b], (forward_carry,
    backward_carry)); the backward carry is the state after reading position 0.
    """

    forward_rnn: RNN
    backward_rnn: RNN

    def __call__(
        self,
        xs: Array,
        lengths: Array | None = None,
        initial_carry: Tuple[Carry, Carry] | None = None,
        deterministic: bool = True,
    ):
        if self.forward_rnn.reverse or not self.backward_rnn.reverse:
            raise ValueError(
                'Bidirectional needs forward_rnn.reverse=False and backward_rnn.reverse=True'
            )
        forward_init, backward_init = (None, None) if initial_carry is None else initial_carry
        forward, forward_carry = self.forward_rnn(xs, lengths, forward_init, deterministic)
        backward, backward_carry = self.backward_rnn(xs, lengths, backward_init, deterministic)
        return jnp.concatenate([forward, backward], axis=-1), (forward_carry, backward_carry)


class DeepRNN(nn.Module):
    """A stack of RNN layers: layer l reads h^{l-1}_t and its own h^l_{t-1}.

    `dropout` acts between layers, of kind `dropout_kind` ('standard': fresh mask per
    step, as in Zaremba et al. 2014; 'variational': one mask per sequence, as in Gal &
    Ghahramani 2016). `recurrent_dropout` is the variational mask on each layer's
    h_{t-1}. Inputs and final outputs are not dropped here; models do that with
    `SequenceDropout`. `cell_kwargs` go to every cell (e.g. forget_bias).
    """

    features: int
    num_layers: int = 1
    cell: str = 'lstm'
    bidirectional: bool = False
    dropout: float = 0.0
    dropout_kind: str = 'standard'
    recurrent_dropout: float = 0.0
    cell_kwargs: Mapping[str, Any] | None = None
    unroll: int = 1
    dtype: Any = jnp.float32  # every cell's compute dtype

    def setup(self):
        if self.num_layers < 1:
            raise ValueError(f'num_layers must be >= 1, got {self.num_layers}')
        cell_kwargs = dict(self.cell_kwargs or {})

        def rnn(reverse):
            return RNN(
                make_cell(self.cell, self.features, dtype=self.dtype, **cell_kwargs),
                reverse=reverse,
                recurrent_dropout=self.recurrent_dropout,
                unroll=self.unroll,
                parent=None,
            )

        self.layers = [
            Bidirectional(rnn(False), rnn(True)) if self.bidirectional else rnn(False)
            for _ in range(self.num_layers)
        ]
        self.between = SequenceDropout(self.dropout, self.dropout_kind)

    def __call__(
        self,
        xs: Array,
        lengths: Array | None = None,
        initial_carry: Sequence[Carry] | None = None,
        deterministic: bool = True,
    ) -> Tuple[Array, Tuple[Carry, ...]]:
        carries = []
        for layer_index, layer in enumerate(self.layers):
            if layer_index > 0:
                xs = self.between(xs, deterministic)
            xs, carry = layer(
                xs,
                lengths,
                None if initial_carry is None else initial_carry[layer_index],
                deterministic,
            )
            carries.append(carry)
        return xs, tuple(carries)

    def _check_steppable(self):
        if self.bidirectional:
            raise ValueError(
                'A bidirectional DeepRNN needs the whole sequence; it cannot be stepped.'
            )

    def step(
        self, carries: Sequence[Carry], x_t: Array, deterministic: bool = True
    ) -> Tuple[Tuple[Carry, ...], Array]:
        """One step [B, F] through all layers -> (carries, top h_t [B, H])."""
        self._check_steppable()
        new_carries = []
        for layer_index, layer in enumerate(self.layers):
            if layer_index > 0:
                x_t = self.between(x_t, deterministic)
            carry, x_t = layer.step(carries[layer_index], x_t, deterministic)
            new_carries.append(carry)
        return tuple(new_carries), x_t

    def initial_carry(self, batch_size: int) -> Tuple[Carry, ...]:
        self._check_steppable()
        return tuple(layer.initial_carry(batch_size) for layer in self.layers)

    def hidden(self, carries: Sequence[Carry]) -> Array:
        """The top layer's h from a step carry (the decoder state s of Bahdanau et al.)."""
        self._check_steppable()
        return self.layers[-1].hidden(carries[-1])


def deep_rnn_of(model) -> DeepRNN:
    """The DeepRNN of a model with the RNN LM's fields (cell, hidden_size, num_layers,
    dropout, dropout_kind, forget_bias, dtype): RNNLM and SequenceRNN read a sequence
    the same way. Variational dropout also drops each layer's h_{t-1} with the same
    rate (Gal & Ghahramani 2016); forget_bias reaches the cells that have one."""
    return DeepRNN(
        features=model.hidden_size,
        num_layers=model.num_layers,
        cell=model.cell,
        dropout=model.dropout,
        dropout_kind=model.dropout_kind,
        recurrent_dropout=model.dropout if model.dropout_kind == 'variational' else 0.0,
        cell_kwargs=(
            {'forget_bias': model.forget_bias} if cell_accepts(model.cell, 'forget_bias') else {}
        ),
        dtype=model.dtype,
    )

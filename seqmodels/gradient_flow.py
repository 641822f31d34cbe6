"""How the gradient of a loss at the last step reaches earlier hidden states: the
vanishing-gradient measurement of Bengio, Simard & Frasconi (1994) and Pascanu, Mikolov
& Bengio (2013).

For a SequenceRNN, `hidden_gradient_norms` returns ||dL/dh_t|| for t = 1..T, L the loss
of the output at the last step and h_t the last layer's hidden state after step t (for
the LSTMs h_t = o_t * tanh(c_t), not the cell state c_t), averaged over the examples of
a batch. dL/dh_t is the total derivative: through every later step and the head.

It is computed in one backward pass: the last layer is unrolled step by step from the
cell's own `step`, a perturbation e_t (zero) is added to h_t in the carry, and
dL/de_t = dL/dh_t. `fit_decay_rate` fits log ||dL/dh_t|| = a + b (T - t) by least
squares and returns b: exp(b) is the factor the norm changes by per step back in time.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from seqmodels.models.sequence_rnn import SequenceRNN
from seqmodels.nn.recurrent import cell_accepts, make_cell


def _with_hidden(carry, h):
    """The carry with its hidden state replaced: carries are h (Elman, GRU) or (c, h)
    (the LSTMs, whose `hidden` is carry[1])."""
    return (carry[0], h) if isinstance(carry, tuple) else h


def hidden_gradient_norms(
    model: SequenceRNN,
    params,
    inputs,
    targets,
    final_step_loss: Callable[[jax.Array, jax.Array], jax.Array],
) -> np.ndarray:
    """||dL_b/dh_t^b|| averaged over the batch rows b, for t = 1..T: an array [T].

    `final_step_loss(outputs, targets)` maps the head's output at the last step [B,
    num_outputs] to the loss of each row [B] (e.g. SyntheticTask.final_step_loss).
    Rows do not interact, so the gradient of the summed loss holds each row's own.
    Computed in float32 whatever the model's precision.
    """
    model = model.clone(dtype=jnp.float32)
    return np.asarray(_norms(model, final_step_loss, params, inputs, targets))


@functools.partial(jax.jit, static_argnums=(0, 1))
def _norms(model, final_step_loss, params, inputs, targets):
    kwargs = {'forget_bias': model.forget_bias} if cell_accepts(model.cell, 'forget_bias') else {}
    cell = make_cell(model.cell, model.hidden_size, **kwargs)
    cell_params = {'params': params['rnn'][f'layers_{model.num_layers - 1}']['cell']}

    def loss(perturbations):
        xs = model.apply({'params': params}, inputs, method=SequenceRNN.top_layer_inputs)
        xp = cell.apply(cell_params, xs, method='project_inputs')
        carry = cell.apply(cell_params, xs.shape[0], method='initial_carry')

        def step(carry, inputs_t):
            xp_t, e_t = inputs_t
            carry, _ = cell.apply(cell_params, carry, xp_t, method='step')
            h = cell.apply(cell_params, carry, method='hidden') + e_t
            return _with_hidden(carry, h), None

        carry, _ = jax.lax.scan(step, carry, (xp.swapaxes(0, 1), perturbations))
        h_last = cell.apply(cell_params, carry, method='hidden')
        output = model.apply({'params': params}, h_last, method=SequenceRNN.output)
        return final_step_loss(output, targets).sum()

    batch, length = inputs.shape[:2]
    grads = jax.grad(loss)(jnp.zeros((length, batch, model.hidden_size), jnp.float32))
    return jnp.linalg.norm(grads, axis=-1).mean(axis=1)  # grads [T, B, H]


def fit_decay_rate(norms) -> float:
    """The least-squares slope b of log norms[t] against the distance T - t from the
    last step (norms[-1] at distance 0): negative when the gradient shrinks going back
    in time, exp(b) the factor per step. Norms that underflowed to 0 (float32 ends near
    1e-38) are left out of the fit; nan when fewer than two are left."""
    norms = np.asarray(norms, np.float64)
    distance = np.arange(len(norms))[::-1]
    kept = np.isfinite(norms) & (norms > 0)
    if kept.sum() < 2:
        return float('nan')
    slope, _ = np.polyfit(distance[kept], np.log(norms[kept]), 1)
    return float(slope)


def summary(norms) -> dict[str, float]:
    """The fitted rate, its per-step factor, ||dL/dh_1|| / ||dL/dh_T|| and how many
    steps' norms underflowed to 0."""
    norms = np.asarray(norms)
    rate = fit_decay_rate(norms)
    return {
        'decay_rate': rate,
        'factor_per_step': float(np.exp(rate)),
        'first_to_last_ratio': float(norms[0] / norms[-1]),
        'underflowed_steps': int((norms == 0).sum()),
    }

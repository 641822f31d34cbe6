"""Recurrent cells, RNN / Bidirectional / DeepRNN, dropout, Highway and additive attention
against float64 NumPy implementations of the papers' equations."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from seqmodels.nn.additive_attention import AdditiveAttention
from seqmodels.nn.highway import Highway
from seqmodels.nn.recurrent import (
    CELLS,
    Bidirectional,
    DeepRNN,
    ElmanCell,
    GRUCell,
    LayerNormLSTMCell,
    LSTMCell,
    RNN,
    SequenceDropout,
    make_cell,
)

B, T, F, H = 3, 5, 4, 6


def rng(seed):
    # The 'rbg' PRNG compiles to one XLA RngBitGenerator op; the default threefry
    # inlines a large hash per random draw, which makes each dropout test compile
    # several times slower on CPU. Only these test keys use it.
    return jax.random.key(seed, impl='rbg')


def normal(shape, seed):
    return jnp.asarray(np.random.default_rng(seed).normal(size=shape), jnp.float32)


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def layer_norm(x, scale, bias, eps):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * scale + bias


def random_params(module, *args, seed=1):
    """Random values for every parameter, so that zero-initialised biases and unit LN
    gains cannot hide a term that the module forgets. Only the shapes come from
    `init` (traced, never compiled: compiling initialisers such as the orthogonal one
    costs seconds)."""
    shapes = jax.eval_shape(module.init, jax.random.key(0), *args)['params']
    generator = np.random.default_rng(seed)
    return jax.tree_util.tree_map(
        lambda p: jnp.asarray(generator.normal(scale=0.5, size=p.shape), jnp.float32), shapes
    )


def apply_fn(module, **kwargs):
    """A jitted `module.apply(variables, *args, **kwargs)` with static kwargs."""
    return jax.jit(lambda params, *args: module.apply({'params': params}, *args, **kwargs))


def f64(tree):
    return jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), tree)


# ----- NumPy references: one step of each cell, in the paper's concatenated form -----


def elman_ref(p, h, x):
    W = np.concatenate([p['recurrent']['kernel'], p['input']['kernel']])  # W [h; x]
    h = np.tanh(np.concatenate([h, x], -1) @ W + p['input']['bias'])
    return h, h


def lstm_ref(p, carry, x):
    c, h = carry
    W = np.concatenate([p['recurrent']['kernel'], p['input']['kernel']])
    i, f, o, g = np.split(np.concatenate([h, x], -1) @ W + p['input']['bias'], 4, -1)
    c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
    h = sigmoid(o) * np.tanh(c)
    return (c, h), h


def lnlstm_ref(p, carry, x, eps=1e-5):
    # Ba et al. 2016, eq. (20)-(22): LN on W_h h and on W_x x separately, and on c_t.
    c, h = carry
    zeros = np.zeros(4 * H)
    gates = (
        layer_norm(h @ p['recurrent']['kernel'], p['ln_recurrent']['scale'], zeros, eps)
        + layer_norm(x @ p['input']['kernel'], p['ln_input']['scale'], zeros, eps)
        + p['bias']
    )
    i, f, o, g = np.split(gates, 4, -1)
    c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
    h = sigmoid(o) * np.tanh(layer_norm(c, p['ln_cell']['scale'], p['ln_cell']['bias'], eps))
    return (c, h), h


def gru_ref(p, h, x):
    # Cho et al. 2014, eq. (5)-(8): the reset gate scales h before the candidate's matmul.
    Wx, bx = p['input']['kernel'], p['input']['bias']
    W_rz = np.concatenate([p['recurrent_gates']['kernel'], Wx[:, : 2 * H]])
    W_n = np.concatenate([p['recurrent_candidate']['kernel'], Wx[:, 2 * H :]])
    r, z = np.split(sigmoid(np.concatenate([h, x], -1) @ W_rz + bx[: 2 * H]), 2, -1)
    n = np.tanh(np.concatenate([r * h, x], -1) @ W_n + bx[2 * H :])
    h = z * h + (1 - z) * n
    return h, h


def gru_reset_after_ref(p, h, x):
    xr, xz, xn = np.split(x @ p['input']['kernel'] + p['input']['bias'], 3, -1)
    hr, hz, hn = np.split(h @ p['recurrent']['kernel'] + p['recurrent']['bias'], 3, -1)
    r, z = sigmoid(xr + hr), sigmoid(xz + hz)
    n = np.tanh(xn + r * hn)
    h = z * h + (1 - z) * n
    return h, h


CASES = {
    'elman': (lambda: ElmanCell(H), elman_ref),
    'lstm': (lambda: LSTMCell(H), lstm_ref),
    'lnlstm': (lambda: LayerNormLSTMCell(H), lnlstm_ref),
    'gru': (lambda: GRUCell(H), gru_ref),
    'gru_reset_after': (lambda: GRUCell(H, reset_after=True), gru_reset_after_ref),
}


def run_ref(step_ref, params, carry, xs):
    outputs = []
    for t in range(xs.shape[1]):
        carry, h = step_ref(params, carry, xs[:, t])
        outputs.append(h)
    return np.stack(outputs, 1), carry


@pytest.mark.parametrize('name', sorted(CASES))
def test_cell_in_rnn_matches_numpy_equations(name):
    make, step_ref = CASES[name]
    rnn = RNN(make())
    xs = normal((B, T, F), seed=0)
    params = random_params(rnn, xs, seed=2)
    zero = rnn.apply({'params': params}, B, method=RNN.initial_carry)
    # A random initial state exercises the recurrent terms from the first step on.
    carry0 = jax.tree_util.tree_map(
        lambda z: jnp.asarray(np.random.default_rng(3).normal(size=z.shape), jnp.float32), zero
    )
    outputs, carry = apply_fn(rnn)(params, xs, None, carry0)
    ref_outputs, ref_carry = run_ref(step_ref, f64(params['cell']), f64(carry0), f64(xs))
    np.testing.assert_allclose(outputs, ref_outputs, atol=2e-5, rtol=0)
    for leaf, ref_leaf in zip(
        jax.tree_util.tree_leaves(carry), jax.tree_util.tree_leaves(ref_carry)
    ):
        np.testing.assert_allclose(leaf, ref_leaf, atol=2e-5, rtol=0)


@pytest.mark.parametrize('cls', [LSTMCell, LayerNormLSTMCell])
def test_lstm_forget_gate_bias_init(cls):
    cell = cls(H, forget_bias=1.5)
    # Initialising through project_inputs creates the input side only (where the bias
    # lives) and skips compiling the recurrent kernel's orthogonal initialiser.
    params = jax.jit(lambda k, x: cell.init(k, x, method=cls.project_inputs))(
        jax.random.key(0), jnp.ones((1, F))
    )['params']
    bias = params['input']['bias'] if cls is LSTMCell else params['bias']
    i, f, o, g = np.split(np.asarray(bias), 4)  # fused gate order (i, f, o, g)
    np.testing.assert_array_equal(f, np.full(H, 1.5))
    for other in (i, o, g):
        np.testing.assert_array_equal(other, np.zeros(H))


def test_make_cell_registry():
    assert isinstance(make_cell('lstm', H, forget_bias=0.0), LSTMCell)
    assert isinstance(make_cell('lnlstm', H), LayerNormLSTMCell)
    assert isinstance(make_cell('gru', H), GRUCell)
    assert isinstance(make_cell('rnn', H), ElmanCell)
    assert set(CELLS) >= {'rnn', 'lstm', 'lnlstm', 'gru'}
    with pytest.raises(ValueError, match='Unknown cell'):
        make_cell('transformer', H)
    with pytest.raises(ValueError, match='forget_bias'):
        make_cell('gru', H, forget_bias=1.0)


# ----- sequences with per-sequence lengths -----

LENGTHS = np.array([5, 3, 1])


def _padded_noise(xs, seed):
    """xs with every position past LENGTHS replaced by fresh noise."""
    noise = np.random.default_rng(seed).normal(size=xs.shape).astype(np.float32)
    valid = (np.arange(T)[None, :] < LENGTHS[:, None])[..., None]
    return jnp.asarray(np.where(valid, xs, noise))


@pytest.mark.parametrize('reverse', [False, True])
def test_rnn_lengths_padding_is_invisible(reverse):
    rnn = RNN(LSTMCell(H), reverse=reverse)
    xs = normal((B, T, F), seed=0)
    params = random_params(rnn, xs, seed=4)
    apply = apply_fn(rnn)
    outputs, carry = apply(params, xs, LENGTHS)
    outputs2, carry2 = apply(params, _padded_noise(xs, seed=5), LENGTHS)
    np.testing.assert_array_equal(outputs, outputs2)
    jax.tree_util.tree_map(np.testing.assert_array_equal, carry, carry2)
    for b, length in enumerate(LENGTHS):
        assert np.all(np.asarray(outputs[b, length:]) == 0.0)
    # Independent check of each sequence: NumPy over its valid part only (reversed if so).
    p = f64(params['cell'])
    for b, length in enumerate(LENGTHS):
        x = f64(xs[b : b + 1, :length])
        zero = np.zeros((1, H))
        ref_out, (ref_c, ref_h) = run_ref(lstm_ref, p, (zero, zero), x[:, ::-1] if reverse else x)
        ref_out = ref_out[:, ::-1] if reverse else ref_out
        np.testing.assert_allclose(outputs[b : b + 1, :length], ref_out, atol=2e-5)
        np.testing.assert_allclose(carry[0][b : b + 1], ref_c, atol=2e-5)
        np.testing.assert_allclose(carry[1][b : b + 1], ref_h, atol=2e-5)


@pytest.mark.parametrize('reverse,unroll', [(False, 1), (True, 1), (False, 3)])
def test_fused_lstm_matches_the_scanned_cell(reverse, unroll):
    # RNN takes the fused `lstm_sequence` (hand-written backward) when it has nothing
    # to mask; passing full lengths forces the generic scan of LSTMCell.step, autodiffed
    # by JAX. Values, and gradients for params, inputs and initial carry, must agree;
    # also when 3 steps run per loop iteration (T = 5 leaves a remainder).
    rnn = RNN(LSTMCell(H), reverse=reverse, unroll=unroll)
    xs = normal((B, T, F), seed=0)
    carry = (normal((B, H), seed=1), normal((B, H), seed=2))
    params = random_params(rnn, xs, seed=3)
    full = jnp.full((B,), T)

    def loss(params, xs, carry, lengths):
        hs, (c, h) = rnn.apply({'params': params}, xs, lengths, carry)
        return jnp.sum(jnp.sin(hs)) + jnp.sum(c * c) + jnp.sum(jnp.cos(h))

    # The two calls take the two paths (else this test would compare a path to itself).
    assert 'custom_vjp' in str(jax.make_jaxpr(loss)(params, xs, carry, None))
    assert 'custom_vjp' not in str(jax.make_jaxpr(loss)(params, xs, carry, full))
    grad = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2)))
    fused, scanned = grad(params, xs, carry, None), grad(params, xs, carry, full)
    for a, b in zip(jax.tree.leaves(fused), jax.tree.leaves(scanned)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert float(jnp.abs(fused[1][0]['cell']['recurrent']['kernel']).max()) > 0


def test_bidirectional_is_forward_concat_reversed_backward():
    bi = Bidirectional(RNN(GRUCell(H)), RNN(GRUCell(H), reverse=True))
    xs = normal((B, T, F), seed=0)
    params = random_params(bi, xs, seed=6)
    outputs, (fwd_carry, bwd_carry) = apply_fn(bi)(params, xs, LENGTHS)
    assert outputs.shape == (B, T, 2 * H)

    # Reverse each sequence's valid part by hand, run a plain forward RNN with the
    # backward parameters, and put its outputs back in the original order.
    x_np = np.asarray(xs)
    x_rev = x_np.copy()
    for b, length in enumerate(LENGTHS):
        x_rev[b, :length] = x_np[b, :length][::-1]
    forward_apply = apply_fn(RNN(GRUCell(H)))
    fwd, fwd_c = forward_apply(params['forward_rnn'], xs, LENGTHS)
    bwd_rev, bwd_c = forward_apply(params['backward_rnn'], jnp.asarray(x_rev), LENGTHS)
    bwd = np.zeros_like(np.asarray(bwd_rev))
    for b, length in enumerate(LENGTHS):
        bwd[b, :length] = np.asarray(bwd_rev)[b, :length][::-1]
    np.testing.assert_allclose(outputs, np.concatenate([fwd, bwd], -1), atol=1e-6)
    np.testing.assert_allclose(fwd_carry, fwd_c, atol=1e-6)
    np.testing.assert_allclose(bwd_carry, bwd_c, atol=1e-6)


def test_bidirectional_rejects_wrong_directions():
    bi = Bidirectional(RNN(GRUCell(H)), RNN(GRUCell(H)))
    with pytest.raises(ValueError, match='reverse=True'):
        bi.init(jax.random.key(0), jnp.ones((1, 2, F)))


def test_deep_rnn_stacks_layers_and_steps_like_the_scan():
    deep = DeepRNN(H, num_layers=2, cell='lstm')
    xs = normal((B, T, F), seed=0)
    params = random_params(deep, xs, seed=7)
    outputs, carries = apply_fn(deep)(params, xs)
    # Layer 2 reads layer 1's outputs (h_t^l from h_{t-1}^l and h_t^{l-1}).
    layer = apply_fn(RNN(LSTMCell(H)))
    h1, c1 = layer(params['layers_0'], xs)
    h2, c2 = layer(params['layers_1'], h1)
    np.testing.assert_allclose(outputs, h2, atol=1e-6)
    jax.tree_util.tree_map(
        lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6), carries, (c1, c2)
    )
    step = apply_fn(deep, method=DeepRNN.step)
    carry = deep.apply({'params': params}, B, method=DeepRNN.initial_carry)
    stepped = []
    for t in range(T):
        carry, h = step(params, carry, xs[:, t])
        stepped.append(h)
    np.testing.assert_allclose(np.stack(stepped, 1), outputs, atol=1e-6)


# ----- dropout -----


class MaskEcho(ElmanCell):
    """Outputs the recurrent mask the RNN hands to the cell at each step."""

    def step(self, carry, xp_t, recurrent_mask=None):
        new_carry, _ = super().step(carry, xp_t, recurrent_mask)
        return new_carry, jnp.ones_like(carry) if recurrent_mask is None else recurrent_mask


def _is_per_sequence_mask(m, rate):
    """m [B, T, D]: constant over t, values in {0, 1/(1-rate)}, some zeros and some kept."""
    m = np.asarray(m)
    np.testing.assert_array_equal(m, np.broadcast_to(m[:, :1], m.shape))
    np.testing.assert_allclose(np.unique(m), [0.0, 1.0 / (1.0 - rate)], rtol=1e-6)
    rows = {tuple(row) for row in (m[:, 0] == 0)}
    assert len(rows) == m.shape[0], 'different sequences should get different masks'


def test_variational_recurrent_dropout_one_mask_per_sequence():
    rate = 0.5
    xs = normal((8, T, F), seed=0)
    echo = RNN(MaskEcho(16), recurrent_dropout=rate)
    params = random_params(echo, xs, seed=10)
    rngs = {'dropout': rng(2)}
    masks, _ = apply_fn(echo, deterministic=False, rngs=rngs)(params, xs)
    _is_per_sequence_mask(masks, rate)

    # The same mask (same rng, same module path) multiplies h_{t-1} in the Elman step.
    rnn = RNN(ElmanCell(16), recurrent_dropout=rate)
    outputs, _ = apply_fn(rnn, deterministic=False, rngs=rngs)(params, xs)
    p, m = f64(params['cell']), np.asarray(masks[:, 0], np.float64)
    ref = run_ref(lambda p, h, x: elman_ref(p, h * m, x), p, np.zeros((8, 16)), f64(xs))[0]
    np.testing.assert_allclose(outputs, ref, atol=2e-5)


def test_variational_input_and_output_dropout_one_mask_per_sequence():
    rate = 0.5
    xs = jnp.ones((8, T, 16))
    rnn = RNN(ElmanCell(16), input_dropout=rate, output_dropout=rate)
    params = random_params(rnn, xs, seed=11)
    outputs, _ = apply_fn(rnn, deterministic=False, rngs={'dropout': rng(3)})(params, xs)
    dropped = np.asarray(outputs) == 0.0  # tanh outputs are never exactly zero otherwise
    np.testing.assert_array_equal(dropped, np.broadcast_to(dropped[:, :1], dropped.shape))
    assert 0 < dropped.mean() < 1
    assert len({tuple(row) for row in dropped[:, 0]}) == 8
    plain = apply_fn(RNN(ElmanCell(16)))(params, xs)[0]
    np.testing.assert_array_equal(apply_fn(rnn)(params, xs)[0], plain)


@pytest.mark.parametrize('kind', ['standard', 'variational'])
def test_sequence_dropout_kinds(kind):
    rate = 0.5
    x = jnp.ones((8, 6, 16))
    drop = SequenceDropout(rate, kind)
    m = np.asarray(
        jax.jit(lambda x: drop.apply({}, x, deterministic=False, rngs={'dropout': rng(0)}))(x)
    )
    if kind == 'variational':
        _is_per_sequence_mask(m, rate)
    else:
        np.testing.assert_allclose(np.unique(m), [0.0, 2.0])
        assert np.any(m[:, 1:] != m[:, :1]), 'standard dropout draws a fresh mask per step'
        assert abs((m == 0).mean() - rate) < 0.1
    np.testing.assert_array_equal(drop.apply({}, x, deterministic=True), x)
    with pytest.raises(ValueError, match='dropout kind'):
        SequenceDropout(rate, 'spatial').apply({}, x, deterministic=False, rngs={'dropout': rng(0)})


def test_deep_rnn_variational_dropout_between_layers_is_per_sequence():
    rate = 0.5
    deep = DeepRNN(16, num_layers=2, cell='rnn', dropout=rate, dropout_kind='variational')
    xs = normal((8, T, F), seed=0)
    params = random_params(deep, xs, seed=12)
    # Make layer 2 see-through: h2_t = tanh(I (m * h1_t)), so its output shows the mask m.
    params['layers_1'] = {
        'cell': {
            'input': {'kernel': jnp.eye(16), 'bias': jnp.zeros(16)},
            'recurrent': {'kernel': jnp.zeros((16, 16))},
        }
    }
    outputs, _ = apply_fn(deep, deterministic=False, rngs={'dropout': rng(2)})(params, xs)
    h1, _ = apply_fn(RNN(ElmanCell(16)))(params['layers_0'], xs)
    kept = np.asarray(outputs) != 0.0
    m = kept / (1.0 - rate)
    _is_per_sequence_mask(m, rate)
    np.testing.assert_allclose(outputs, np.tanh(m * np.asarray(h1, np.float64)), atol=1e-6)


# ----- Highway and additive attention -----


def test_highway_matches_numpy():
    hw = Highway(transform_gate_bias=-3.0)
    x = normal((B, F), seed=0)
    init = jax.jit(hw.init)(jax.random.key(1), x)['params']
    np.testing.assert_array_equal(init['T']['bias'], np.full(F, -3.0))
    params = random_params(hw, x, seed=8)
    p, xn = f64(params), f64(x)
    t = sigmoid(xn @ p['T']['kernel'] + p['T']['bias'])
    h = np.maximum(xn @ p['H']['kernel'] + p['H']['bias'], 0.0)
    np.testing.assert_allclose(apply_fn(hw)(params, x), t * h + (1 - t) * xn, atol=1e-6)
    with pytest.raises(ValueError, match='width'):
        Highway(features=F + 1).init(jax.random.key(1), x)


def test_additive_attention_matches_numpy_and_masks_exactly():
    S, D, Dq, A = 7, 5, 4, 6
    attention = AdditiveAttention(A)
    memory = normal((B, S, D), seed=0)
    query = normal((B, Dq), seed=1)
    mask = jnp.arange(S)[None, :] < jnp.array([7, 4, 1])[:, None]
    params = random_params(attention, query, memory, mask, seed=9)
    context, weights = apply_fn(attention)(params, query, memory, mask)

    p, h, s, m = f64(params), f64(memory), f64(query), np.asarray(mask)
    e = np.tanh((s @ p['W']['kernel'])[:, None, :] + h @ p['U']['kernel']) @ p['v']['kernel']
    e = np.where(m, e[..., 0], -np.inf)
    alpha = np.exp(e - e.max(-1, keepdims=True))
    alpha /= alpha.sum(-1, keepdims=True)
    np.testing.assert_allclose(weights, alpha, atol=1e-6)
    np.testing.assert_allclose(context, np.einsum('bs,bsd->bd', alpha, h), atol=1e-6)
    assert np.all(np.asarray(weights)[~m] == 0.0)

    keys = apply_fn(attention, method=AdditiveAttention.precompute_keys)(params, memory)
    context2, weights2 = apply_fn(attention)(params, query, memory, mask, keys)
    np.testing.assert_allclose(context2, context, atol=1e-7)
    np.testing.assert_allclose(weights2, weights, atol=1e-7)

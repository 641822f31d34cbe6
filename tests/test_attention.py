"""Attention, masks and position encodings against plain NumPy float64 references."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from seqmodels.nn.attention import (
    MultiHeadAttention,
    dot_product_attention,
    dot_product_attention_weights,
    init_kv_cache,
)
from seqmodels.nn.masks import (
    cached_causal_mask,
    causal_mask,
    combine_masks,
    key_padding_mask,
    padding_mask,
)
from seqmodels.nn.position import (
    LearnedPositionEmbedding,
    SinusoidalPositionEncoding,
    sincos_2d_position_encoding,
    sinusoidal_position_encoding,
)


def np_attention(q, k, v, mask):
    """Per batch and head: softmax over the allowed keys of q·k/√d_k, then the weighted
    sum of values; a row with no allowed key is all zeros."""
    q, k, v = (np.asarray(a, np.float64) for a in (q, k, v))
    b, tq, h, d = q.shape
    tk = k.shape[1]
    mask = np.broadcast_to(np.asarray(mask), (b, h, tq, tk))
    weights = np.zeros((b, h, tq, tk))
    for bi in range(b):
        for hi in range(h):
            for i in range(tq):
                allowed = mask[bi, hi, i]
                if not allowed.any():
                    continue
                scores = q[bi, i, hi] @ k[bi, :, hi].T / math.sqrt(d)
                e = np.exp(scores[allowed] - scores[allowed].max())
                weights[bi, hi, i, allowed] = e / e.sum()
    out = np.einsum('bhqk,bkhd->bqhd', weights, v)
    return weights, out


def test_dot_product_attention_matches_numpy_and_masks_exactly():
    rng = np.random.default_rng(0)
    b, tq, tk, h, d = 2, 5, 6, 3, 4
    q, k, v = (rng.normal(size=(b, t, h, d)).astype(np.float32) for t in (tq, tk, tk))
    mask = rng.random((b, h, tq, tk)) < 0.6
    mask[0, 1, 2] = False  # one fully masked row
    mask[1, 0, 0] = True  # one row that sees everything

    weights = np.asarray(dot_product_attention_weights(q, k, mask))
    out = np.asarray(dot_product_attention(q, k, v, mask))
    ref_w, ref_out = np_attention(q, k, v, mask)

    np.testing.assert_allclose(weights, ref_w, atol=1e-6)
    np.testing.assert_allclose(out, ref_out, atol=1e-5)
    assert np.all(weights[~mask] == 0.0)  # exactly zero, not merely small
    assert np.all(np.isfinite(out)) and np.all(out[0, 2, 1] == 0.0)
    # Unmasked attention: plain softmax.
    np.testing.assert_allclose(
        np.asarray(dot_product_attention(q, k, v)),
        np_attention(q, k, v, np.ones((1, 1, 1, 1), bool))[1],
        atol=1e-5,
    )


def test_masked_keys_cannot_influence_the_output():
    rng = np.random.default_rng(1)
    q, k, v = (rng.normal(size=(1, 4, 2, 8)).astype(np.float32) for _ in range(3))
    mask = key_padding_mask(jnp.array([[True, True, False, False]]))
    out = dot_product_attention(q, k, v, mask)
    k2, v2 = k.copy(), v.copy()
    k2[:, 2:], v2[:, 2:] = 1e4, -1e4
    np.testing.assert_array_equal(out, dot_product_attention(q, k2, v2, mask))


def test_masks():
    np.testing.assert_array_equal(causal_mask(4)[0, 0], np.tril(np.ones((4, 4), bool)))
    assert causal_mask(4).shape == (1, 1, 4, 4)
    q_valid = jnp.array([[1, 1, 0]])
    k_valid = jnp.array([[1, 0, 1, 1]])
    pm = np.asarray(padding_mask(q_valid, k_valid))
    assert pm.shape == (1, 1, 3, 4)
    np.testing.assert_array_equal(pm[0, 0], np.outer([1, 1, 0], [1, 0, 1, 1]).astype(bool))
    assert key_padding_mask(k_valid).shape == (1, 1, 1, 4)
    assert combine_masks(None, None) is None
    both = combine_masks(None, causal_mask(4), key_padding_mask(k_valid))
    np.testing.assert_array_equal(both[0, 0], np.tril(np.ones((4, 4), bool)) & [1, 0, 1, 1])
    # Decoding chunk at positions 2, 3 of a cache of 5: query i sees keys <= 2 + i.
    np.testing.assert_array_equal(
        cached_causal_mask(2, 2, 5)[0, 0], [[1, 1, 1, 0, 0], [1, 1, 1, 1, 0]]
    )


def np_multi_head(params, x, kv, mask):
    """Concat(head_1..head_h) W^O with head_i = Attention(x W_i^Q, kv W_i^K, kv W_i^V)."""
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), params)

    def proj(inp, name):
        return np.einsum('btd,dhk->bthk', inp, p[name]['kernel']) + p[name]['bias']

    _, heads = np_attention(proj(x, 'query'), proj(kv, 'key'), proj(kv, 'value'), mask)
    return np.einsum('bthk,hkd->btd', heads, p['out']['kernel']) + p['out']['bias']


def test_multi_head_attention_matches_numpy_self_and_cross():
    rng = np.random.default_rng(2)
    mha = MultiHeadAttention(num_heads=2, d_model=8)
    x = rng.normal(size=(2, 5, 8)).astype(np.float32)
    memory = rng.normal(size=(2, 3, 8)).astype(np.float32)
    params = mha.init(jax.random.key(0), x, memory)['params']
    # Biases are zero at init: make them matter.
    params = jax.tree.map(lambda a: a + 0.1 * rng.normal(size=a.shape).astype(np.float32), params)

    self_mask = np.asarray(causal_mask(5))
    out, weights = mha.apply({'params': params}, x, mask=self_mask, return_weights=True)
    np.testing.assert_allclose(out, np_multi_head(params, x, x, self_mask), atol=1e-5)
    assert weights.shape == (2, 2, 5, 5) and np.all(np.asarray(weights)[..., ~self_mask[0, 0]] == 0)

    cross_mask = np.asarray(key_padding_mask(jnp.array([[1, 1, 0], [1, 1, 1]])))
    out = mha.apply({'params': params}, x, memory, cross_mask)
    np.testing.assert_allclose(out, np_multi_head(params, x, memory, cross_mask), atol=1e-5)


def test_multi_head_attention_decode_equals_causal_forward():
    rng = np.random.default_rng(3)
    mha = MultiHeadAttention(num_heads=2, d_model=8)
    x = rng.normal(size=(2, 6, 8)).astype(np.float32)
    variables = mha.init(jax.random.key(0), x)
    full = mha.apply(variables, x, mask=causal_mask(6))

    step = jax.jit(functools.partial(mha.apply, variables, method=mha.decode))
    cache = init_kv_cache(2, 8, num_heads=2, d_k=4)
    assert cache['k'].shape == (2, 8, 2, 4)
    # A prompt of 3 positions in one call, then one position at a time.
    prefix, cache = mha.apply(variables, x[:, :3], cache, 0, method=mha.decode)
    outs = [prefix]
    for t in range(3, 6):
        out, cache = step(x[:, t : t + 1], cache, jnp.int32(t))
        outs.append(out)
    np.testing.assert_allclose(np.concatenate(outs, axis=1), full, atol=1e-5)


def test_attention_dropout_is_only_active_when_not_deterministic():
    mha = MultiHeadAttention(num_heads=2, d_model=8, dropout=0.5)
    x = jax.random.normal(jax.random.key(0), (1, 4, 8))
    variables = mha.init(jax.random.key(1), x)
    eval_out = mha.apply(variables, x)  # no dropout rng needed
    _, w = mha.apply(variables, x, return_weights=True)
    train_a = mha.apply(variables, x, deterministic=False, rngs={'dropout': jax.random.key(2)})
    train_b = mha.apply(variables, x, deterministic=False, rngs={'dropout': jax.random.key(3)})
    assert not np.allclose(train_a, eval_out) and not np.allclose(train_a, train_b)
    np.testing.assert_allclose(w.sum(-1), 1.0, atol=1e-6)


def test_sinusoidal_position_encoding_is_the_papers_formula():
    length, d_model = 50, 16
    table = sinusoidal_position_encoding(length, d_model)
    ref = np.zeros((length, d_model))
    for pos in range(length):
        for i in range(d_model // 2):
            ref[pos, 2 * i] = math.sin(pos / 10000 ** (2 * i / d_model))
            ref[pos, 2 * i + 1] = math.cos(pos / 10000 ** (2 * i / d_model))
    np.testing.assert_allclose(table, ref, atol=1e-6)

    module = SinusoidalPositionEncoding(max_len=length, d_model=d_model)
    np.testing.assert_allclose(module.apply({}, jnp.array([7, 3])), ref[[7, 3]], atol=1e-6)
    with pytest.raises(ValueError):
        sinusoidal_position_encoding(4, 7)


def test_sincos_2d_and_learned_position_embeddings():
    h, w, d = 3, 4, 8
    table = sincos_2d_position_encoding(h, w, d)
    assert table.shape == (h * w, d)
    quarter = d // 4
    for y in range(h):
        for x in range(w):
            row = table[y * w + x]
            for k in range(quarter):
                omega = 1.0 / 10000 ** (k / quarter)
                np.testing.assert_allclose(
                    row[[k, quarter + k, 2 * quarter + k, 3 * quarter + k]],
                    [
                        math.sin(y * omega),
                        math.cos(y * omega),
                        math.sin(x * omega),
                        math.cos(x * omega),
                    ],
                    atol=1e-6,
                )
    assert len({tuple(r) for r in np.round(table, 5)}) == h * w  # positions distinguishable

    learned = LearnedPositionEmbedding(max_len=10, d_model=4)
    variables = learned.init(jax.random.key(0), jnp.arange(3))
    table = variables['params']['embedding']
    assert table.shape == (10, 4)
    np.testing.assert_array_equal(
        learned.apply(variables, jnp.array([[9, 0]])), table[jnp.array([[9, 0]])]
    )

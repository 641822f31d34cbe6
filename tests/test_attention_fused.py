"""The fused attention path (XLA's on this CPU) against the reference: values and gradients."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from seqmodels.nn import attention
from seqmodels.nn.attention import (
    MultiHeadAttention,
    dot_product_attention,
    fused_dot_product_attention,
    init_kv_cache,
)
from seqmodels.nn.masks import causal_mask, combine_masks, key_padding_mask, padding_mask
from seqmodels.nn.transformer import Decoder

B, T, H, D = 2, 6, 2, 4


def _qkv(seed, tq=T, tk=T):
    rng = np.random.default_rng(seed)
    return tuple(jnp.asarray(rng.normal(size=(B, t, H, D)), jnp.float32) for t in (tq, tk, tk))


def _close(a, b, atol=1e-5):
    jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, atol=atol, rtol=1e-5), a, b)


def _grads(fn, *args):
    """(output, gradients of a weighted sum of it, so that every element matters), jitted."""
    out_shape = jax.eval_shape(fn, *args).shape
    w = jnp.asarray(np.random.default_rng(9).normal(size=out_shape), jnp.float32)
    grad = jax.grad(lambda *a: jnp.sum(fn(*a) * w), argnums=tuple(range(len(args))))
    return jax.jit(lambda *a: (fn(*a), grad(*a)))(*args)


# A query row with no key to attend to (a padding query, or a key set that is all
# padding) is in every masked case: both paths must give it zeros.
VALID = jnp.array([[True] * 4 + [False] * 2, [True] * T])
CASES = {
    'causal': (dict(is_causal=True), None, lambda: causal_mask(T)),
    'padding': (dict(), lambda: padding_mask(VALID, VALID), None),
    'causal_and_padding': (
        dict(is_causal=True),
        lambda: key_padding_mask(VALID),
        lambda: causal_mask(T),
    ),
    'random_with_empty_row': (
        dict(),
        lambda: (
            jnp.asarray(np.random.default_rng(4).random((B, H, T, T)) < 0.5).at[0, 1, 2].set(False)
        ),
        None,
    ),
}


@pytest.mark.parametrize('case', CASES)
def test_fused_equals_reference_values_and_gradients(case):
    kwargs, mask_fn, causal_fn = CASES[case]
    mask = mask_fn() if mask_fn else None
    reference_mask = combine_masks(causal_fn() if causal_fn else None, mask)
    q, k, v = _qkv(0)
    fused = functools.partial(fused_dot_product_attention, mask=mask, **kwargs)
    reference = functools.partial(dot_product_attention, mask=reference_mask)
    out, grads = _grads(fused, q, k, v)
    _close((out, grads), _grads(reference, q, k, v))
    if mask is not None and case != 'causal_and_padding':
        empty = ~np.asarray(jnp.broadcast_to(reference_mask, (B, H, T, T))).any(-1)
        assert empty.any()
        assert np.all(np.asarray(out).transpose(0, 2, 1, 3)[empty] == 0.0)


def test_cross_attention_with_key_padding():
    q, k, v = _qkv(1, tq=3, tk=5)
    mask = key_padding_mask(jnp.array([[1, 1, 1, 0, 0], [0, 0, 0, 0, 0]]))  # row 2: no key
    fused = functools.partial(fused_dot_product_attention, mask=mask)
    reference = functools.partial(dot_product_attention, mask=mask)
    out, grads = _grads(fused, q, k, v)
    _close((out, grads), _grads(reference, q, k, v))
    assert np.all(np.asarray(out)[1] == 0.0)


def _mha_pair(**kwargs):
    fused = MultiHeadAttention(num_heads=H, d_model=H * D, **kwargs)
    return fused, fused.clone(implementation='reference')


def test_multi_head_attention_fused_equals_reference():
    fused, reference = _mha_pair()
    rng = np.random.default_rng(2)
    x = jnp.asarray(rng.normal(size=(B, T, H * D)), jnp.float32)
    memory = jnp.asarray(rng.normal(size=(B, 4, H * D)), jnp.float32)
    params = jax.jit(fused.init)(jax.random.key(0), x, memory)['params']
    cases = [
        dict(causal=True),
        dict(mask=padding_mask(VALID, VALID)),
        dict(kv=memory, mask=key_padding_mask(jnp.array([[1, 1, 0, 0], [1, 1, 1, 1]]))),
    ]
    for kwargs in cases:

        def run(module, params, x, kwargs=kwargs):
            return module.apply({'params': params}, x, **kwargs)

        _close(
            _grads(functools.partial(run, fused), params, x),
            _grads(functools.partial(run, reference), params, x),
        )


def test_decoding_with_the_cache_equals_the_reference_and_the_forward():
    fused, reference = _mha_pair()
    x = jnp.asarray(np.random.default_rng(3).normal(size=(B, T, H * D)), jnp.float32)
    variables = jax.jit(fused.init)(jax.random.key(0), x)
    full = jax.jit(functools.partial(reference.apply, causal=True))(variables, x)
    for module in (fused, reference):
        step = jax.jit(functools.partial(module.apply, variables, method=module.decode))
        cache = init_kv_cache(B, 8, num_heads=H, d_k=D)
        prefix, cache = step(x[:, :3], cache, jnp.int32(0))
        outs = [prefix]
        for t in range(3, T):
            out, cache = step(x[:, t : t + 1], cache, jnp.int32(t))
            outs.append(out)
        _close(jnp.concatenate(outs, axis=1), full)


def test_a_causal_decoder_stack_is_unchanged_by_the_fused_path():
    stack = Decoder(
        num_heads=H, d_model=H * D, d_ff=16, num_layers=1, cross_attention=False, norm='pre'
    )
    x = jnp.asarray(np.random.default_rng(5).normal(size=(B, T, H * D)), jnp.float32)
    params = jax.jit(stack.init)(jax.random.key(0), x)['params']
    reference = stack.clone(attention_implementation='reference')
    run = lambda module, p, x: module.apply({'params': p}, x, key_padding_mask(VALID))
    _close(
        _grads(functools.partial(run, stack), params, x),
        _grads(functools.partial(run, reference), params, x),
    )


@pytest.fixture
def calls(monkeypatch):
    """Counts the calls that take the fused path."""
    seen = []
    original = attention.fused_dot_product_attention

    def counting(*args, **kwargs):
        seen.append(kwargs.get('implementation'))
        return original(*args, **kwargs)

    monkeypatch.setattr(attention, 'fused_dot_product_attention', counting)
    return seen


def test_the_reference_path_serves_what_needs_the_weights(calls):
    x = jnp.ones((1, 4, H * D))
    fused, _ = _mha_pair(dropout=0.5)
    variables = fused.init(jax.random.key(0), x)
    calls.clear()
    fused.apply(variables, x)  # evaluation: dropout is off, so fused
    assert len(calls) == 1
    fused.apply(variables, x, deterministic=False, rngs={'dropout': jax.random.key(1)})
    fused.apply(variables, x, return_weights=True)
    _, state = fused.apply(variables, x, mutable=['intermediates'])  # analyses get weights
    assert state['intermediates']['attention_weights'][0].shape == (1, H, 4, 4)
    assert len(calls) == 1
    no_dropout, _ = _mha_pair()
    no_dropout.apply(variables, x, deterministic=False)  # training without attention dropout
    assert len(calls) == 2


def test_auto_picks_cudnn_only_where_it_applies_and_falls_back(monkeypatch):
    pick = attention._fused_backend
    half = jnp.ones((B, T, H, 8), jnp.bfloat16)
    assert pick('auto', half, half, None) == 'xla'  # this CPU
    monkeypatch.setattr(jax, 'default_backend', lambda: 'gpu')
    assert pick('auto', half, half, None) == 'cudnn'
    assert pick('auto', half.astype(jnp.float32), half, None) == 'xla'  # float32
    assert pick('auto', jnp.ones((B, T, H, 12), jnp.bfloat16), half, None) == 'xla'  # d_k
    odd = jnp.ones((B, 5, H, 8), jnp.bfloat16)
    assert pick('auto', odd, odd, causal_mask(5)) == 'xla'
    assert pick('xla', half, half, None) == 'xla'
    # 'auto' chose cuDNN, which this CPU lacks: XLA's result instead of an error.
    q, k, v = (x.astype(jnp.bfloat16) for x in _qkv(6, tk=T))
    q, k, v = (jnp.concatenate([x, x], -1) for x in (q, k, v))  # d_k = 8
    out = fused_dot_product_attention(q, k, v, is_causal=True)
    np.testing.assert_array_equal(
        out, fused_dot_product_attention(q, k, v, is_causal=True, implementation='xla')
    )
    with pytest.raises(RuntimeError):
        fused_dot_product_attention(q, k, v, implementation='cudnn')


def test_an_unknown_implementation_is_rejected():
    with pytest.raises(ValueError, match='implementation must be one of'):
        MultiHeadAttention(num_heads=2, d_model=8, implementation='flash').init(
            jax.random.key(0), jnp.ones((1, 2, 8))
        )

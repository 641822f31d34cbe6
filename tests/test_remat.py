"""Rematerialised layer stacks: the same parameters, outputs and gradients, fewer residuals."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax._src import ad_checkpoint

from seqmodels.nn.masks import key_padding_mask
from seqmodels.nn.transformer import Decoder, Encoder

B, T, D = 2, 5, 8
HYPER = dict(num_heads=2, d_model=D, d_ff=16, num_layers=2, dropout=0.2, attention_dropout=0.1)


def _inputs():
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(B, T, D)), jnp.float32)
    memory = jnp.asarray(rng.normal(size=(B, 3, D)), jnp.float32)
    mask = key_padding_mask(jnp.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]))
    return x, memory, mask


def _loss(stack, params, x, memory, mask):
    """A training-mode forward (dropout on, a fixed key) reduced to a scalar."""
    rngs = {'dropout': jax.random.key(7)}
    if isinstance(stack, Decoder):
        y = stack.apply({'params': params}, x, memory, mask, deterministic=False, rngs=rngs)
    else:
        y = stack.apply({'params': params}, x, mask, deterministic=False, rngs=rngs)
    return jnp.sum(y * jnp.cos(y))


# XLA's CPU backend at its lowest optimisation level compiles these gradients about
# three times faster; both sides of each comparison are compiled the same way.
FAST_COMPILE = {'xla_backend_optimization_level': 0, 'xla_llvm_disable_expensive_passes': True}


def _run_compiled(fn, *args):
    return jax.jit(fn).lower(*args).compile(compiler_options=FAST_COMPILE)(*args)


def _num_residuals(fn, *args):
    return len(ad_checkpoint.saved_residuals(fn, *args))


# The unrolled encoder and the scanned decoder (with cross-attention and its cache
# path) cover both ways of building a stack.
@pytest.mark.parametrize('cls, scan_layers', [(Encoder, False), (Decoder, True)])
def test_remat_gives_the_gradients_of_no_remat(cls, scan_layers):
    x, memory, mask = _inputs()
    plain = cls(**HYPER, scan_layers=scan_layers)
    init_args = (x, memory, mask) if cls is Decoder else (x, mask)
    params = jax.jit(plain.init)(jax.random.key(0), *init_args)['params']
    results, residuals = {}, {}
    for remat in ('none', 'block', 'dots'):
        stack = plain.clone(remat=remat)
        # The same parameter tree: a checkpoint trained one way restores the other.
        shapes = jax.eval_shape(stack.init, jax.random.key(0), *init_args)['params']
        assert jax.tree.structure(shapes) == jax.tree.structure(params)
        loss = functools.partial(_loss, stack)
        if remat != 'dots':  # compiled twice, not three times: 'dots' is the same mechanism
            results[remat] = _run_compiled(
                jax.value_and_grad(loss, argnums=(0, 1)), params, x, memory, mask
            )
        residuals[remat] = _num_residuals(
            functools.partial(loss, memory=memory, mask=mask), params, x
        )
    # Equal up to float32 rounding (XLA fuses the recomputation differently).
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5),
        results['block'],
        results['none'],
    )
    # Recomputing the blocks is what keeps fewer activations for the backward pass.
    assert residuals['block'] < residuals['dots'] < residuals['none']


def test_an_unknown_remat_is_rejected():
    x, _, mask = _inputs()
    with pytest.raises(ValueError, match='remat must be one of'):
        Encoder(**HYPER, remat='all').init(jax.random.key(0), x, mask)

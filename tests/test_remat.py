"""Rematerialised layer stacks: the same parameters, outputs and gradients, fewer residuals."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax._src import ad_checkpoint

from seqmodels.models import BERT, GPT, Transformer, ViT
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


# The families' `remat` field, passed to their stacks (both of the Transformer's):
# (class, fields, blocks in all stacks).
FAMILY_REMAT = {
    'gpt': (GPT, dict(vocab_size=11, max_len=T, num_layers=2), 2),
    'bert': (BERT, dict(vocab_size=11, max_len=T, num_layers=2), 2),
    'vit': (ViT, dict(image_size=8, num_channels=1, patch_size=4, num_classes=3, num_layers=2), 2),
    'transformer': (
        Transformer,
        dict(
            src_vocab_size=11,
            tgt_vocab_size=11,
            max_len=T,
            num_encoder_layers=1,
            num_decoder_layers=2,
        ),
        3,
    ),
}


def _family(name, remat='none'):
    cls, fields, _ = FAMILY_REMAT[name]
    sizes = dict(d_model=D, num_heads=2, d_ff=16, dropout=0.2, attention_dropout=0.1)
    return cls(**sizes, **fields, remat=remat)


def _remat_calls(jaxpr) -> int:
    """How many jax.checkpoint calls a jaxpr makes, nested ones included."""
    count = 0
    for eqn in jaxpr.eqns:
        count += eqn.primitive is ad_checkpoint.remat_p
        for value in eqn.params.values():
            for sub in value if isinstance(value, (tuple, list)) else (value,):
                inner = getattr(sub, 'jaxpr', sub)
                if hasattr(inner, 'eqns'):
                    count += _remat_calls(inner)
    return count


@pytest.mark.parametrize('name', sorted(FAMILY_REMAT))
def test_each_family_rematerialises_every_block(name):
    model = _family(name)
    inputs = {
        'vit': (jnp.zeros((B, 8, 8, 1)),),
        'transformer': (jnp.ones((B, T), jnp.int32),) * 2,
    }.get(name, (jnp.ones((B, T), jnp.int32),))
    params = jax.eval_shape(model.init, jax.random.key(0), *inputs)['params']
    for remat, calls in (('none', 0), ('block', FAMILY_REMAT[name][2])):
        jaxpr = jax.make_jaxpr(model.clone(remat=remat).apply)({'params': params}, *inputs)
        assert _remat_calls(jaxpr.jaxpr) == calls, remat


def test_gpt_remat_gives_the_gradients_of_no_remat():
    tokens = jnp.asarray(np.random.default_rng(0).integers(0, 11, (B, T)), jnp.int32)
    params = jax.jit(_family('gpt').init)(jax.random.key(0), tokens)['params']

    def loss(model, params):
        logits = model.apply(
            {'params': params}, tokens, deterministic=False, rngs={'dropout': jax.random.key(7)}
        )
        return optax.softmax_cross_entropy_with_integer_labels(logits, tokens).mean()

    grads, residuals = {}, {}
    for remat in ('none', 'block'):
        model_loss = functools.partial(loss, _family('gpt', remat))
        grads[remat] = _run_compiled(jax.value_and_grad(model_loss), params)
        residuals[remat] = _num_residuals(model_loss, params)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
        grads['block'],
        grads['none'],
    )
    assert residuals['block'] < residuals['none']

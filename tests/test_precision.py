"""Mixed precision (config.precision): bfloat16 compute, float32 parameters and state."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from seqmodels import models, training
from seqmodels.errors import ConfigError
from seqmodels.tasks.language_model import LanguageModelTask
from seqmodels.training import loop

V, B, T = 13, 2, 8

TINY = {
    'gpt': dict(
        name='gpt', vocab_size=V, max_len=T, d_model=16, num_heads=2, d_ff=32, num_layers=2
    ),
    'rnn_lm': dict(name='rnn_lm', vocab_size=V, embed_dim=8, hidden_size=16, num_layers=2),
    'sequence_rnn': dict(name='sequence_rnn', num_outputs=V, input_features=3, hidden_size=16),
    'seq2seq': dict(
        name='seq2seq', src_vocab_size=V, tgt_vocab_size=V, embed_dim=8, hidden_size=16
    ),
    'transformer': dict(
        name='transformer',
        src_vocab_size=V,
        tgt_vocab_size=V,
        d_model=16,
        num_heads=2,
        d_ff=32,
        num_encoder_layers=1,
        num_decoder_layers=1,
        max_len=T,
    ),
    'bert': dict(name='bert', vocab_size=V, max_len=T, d_model=16, num_heads=2, d_ff=32),
    'vit': dict(
        name='vit',
        image_size=8,
        num_channels=1,
        patch_size=4,
        num_classes=V,
        d_model=16,
        num_layers=1,
        num_heads=2,
        d_ff=32,
        head_zero_init=False,  # a zero head would make both precisions' logits exactly 0
    ),
}
for tiny in TINY.values():
    if 'num_layers' in models.FAMILIES[tiny['name']][0].__dataclass_fields__:
        tiny.setdefault('num_layers', 1)


# XLA's CPU backend at its lowest optimisation level compiles these programs several times
# faster; the values are the same computation's.
FAST_COMPILE = {'xla_backend_optimization_level': 0, 'xla_llvm_disable_expensive_passes': True}


def _compiled(fn, *args):
    return jax.jit(fn).lower(*args).compile(compiler_options=FAST_COMPILE)


def _inputs(name: str, rng: np.random.Generator) -> tuple:
    tokens = jnp.asarray(rng.integers(1, V, (B, T)), jnp.int32)
    if name in ('gpt', 'rnn_lm'):
        return (tokens,)
    if name == 'bert':
        return tokens, jnp.zeros_like(tokens)
    if name == 'transformer':
        return tokens, tokens[:, ::-1]
    if name == 'seq2seq':
        return tokens, jnp.full((B,), T, jnp.int32), tokens[:, ::-1]
    if name == 'sequence_rnn':
        return (jnp.asarray(rng.normal(size=(B, T, 3)), jnp.float32),)
    return (jnp.asarray(rng.normal(size=(B, 8, 8, 1)), jnp.float32),)  # vit


# bfloat16 keeps 8 significant bits (relative rounding 2^-9 ≈ 0.2%) in every matmul and
# activation. Measured on this CPU over these families and three seeds: the first-step
# loss differs by at most 0.14% (ViT, the largest logits), each logit by at most 1.2%
# of the largest one. The tolerances leave 7x and 4x of room; a module that computed
# something else in bfloat16 than in float32 would move the logits by far more.
LOSS_RTOL = 1e-2
LOGITS_TOLERANCE = 0.05  # of the largest |logit|


def test_every_family_takes_the_compute_dtype():
    for name, (cls, _) in models.FAMILIES.items():
        assert 'dtype' in cls.__dataclass_fields__, name


@pytest.mark.parametrize('name', sorted(TINY))
def test_bf16_first_step_loss_agrees_with_f32(name):
    assert set(TINY) == set(models.FAMILIES)  # a new family gets a row here
    config = TINY[name]
    inputs = _inputs(name, np.random.default_rng(0))
    f32, bf16 = models.build_model(config, 'f32'), models.build_model(config, 'bf16')

    def logits_and_losses(key):
        params = models.init_params(config, bf16, key)
        assert {leaf.dtype for leaf in jax.tree.leaves(params)} == {jnp.dtype('float32')}
        out = []
        for model in (f32, bf16):
            logits = jax.tree.leaves(model.apply({'params': params}, *inputs))[0]
            # Logits, and so the loss, come back float32 whatever the compute dtype.
            assert logits.dtype == jnp.float32
            labels = jnp.arange(np.prod(logits.shape[:-1])).reshape(logits.shape[:-1]) % V
            loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
            out.append((logits, loss))
        return out

    key = jax.random.key(0)
    (logits32, loss32), (logits16, loss16) = _compiled(logits_and_losses, key)(key)
    assert float(loss16) == pytest.approx(float(loss32), rel=LOSS_RTOL)
    scale = float(jnp.max(jnp.abs(logits32)))
    np.testing.assert_allclose(logits16, logits32, rtol=0, atol=LOGITS_TOLERANCE * scale)
    assert not np.array_equal(logits16, logits32)  # the bfloat16 model did round


class _Cycle:
    """Batches of the cycle 1, 2, ..., V-1, 1, ...: the next token is a function of the
    current one, which a few steps of any of these models start to learn."""

    def _batch(self, step, rows):
        start = (np.arange(rows)[:, None] + step + np.arange(T + 1)[None]) % (V - 1) + 1
        return {'inputs': start[:, :-1].astype(np.int32), 'targets': start[:, 1:].astype(np.int32)}

    def train_batch(self, step, process_index, process_count):
        return self._batch(step, 4 // process_count)

    def eval_batches(self, process_index, process_count, num_batches):
        batch = self._batch(0, 4 // process_count)
        yield dict(batch, weights=np.ones(batch['targets'].shape, np.float32))


def _lm_config(model_config, precision='bf16'):
    config = training.default_config()
    config.update(
        batch_size=4,
        num_train_steps=6,
        learning_rate=1e-2,
        log_every_steps=1,
        eval_every_steps=0,
        checkpoint_every_steps=0,
        async_checkpoints=False,
        precision=precision,
    )
    config.num_eval_batches = 1
    config.model = ml_collections.ConfigDict(model_config)
    return config


@pytest.mark.parametrize('name', ['gpt', 'rnn_lm'])
def test_bf16_training_lowers_the_loss_and_keeps_float32_state(name):
    config = _lm_config(TINY[name])
    model = models.from_config(config)
    assert model.dtype == jnp.bfloat16
    task = LanguageModelTask(config, model, _Cycle(), vocab=None)
    # The engine's own update (loss -> grads -> clip -> Adam), without its
    # checkpoints and evaluation, which precision does not touch.
    tx, schedule = training.make_optimizer(config)
    state = jax.jit(lambda: training.init_train_state(task.init_params, tx, config.seed))()
    train_step = loop.make_train_step(task, tx, schedule, training.make_mesh())
    train_step = train_step.lower(state, task.train_batch(0, 0, 1))
    train_step = train_step.compile(compiler_options=FAST_COMPILE)
    losses = []
    for step in range(config.num_train_steps):
        state, metrics = train_step(state, task.train_batch(step, 0, 1))
        losses.append(float(metrics['loss']))
    assert losses[-1] < losses[0] - 0.1, losses
    # The master weights and Adam's moments stay float32 (the gradients of bfloat16
    # compute arrive through casts of float32 parameters).
    for tree in (state.params, state.opt_state):
        floats = [x for x in jax.tree.leaves(tree) if jnp.issubdtype(x.dtype, jnp.floating)]
        assert floats and {x.dtype for x in floats} == {jnp.dtype('float32')}
    # MFU divides by the bfloat16 peak.
    assert loop._compute_dtype(config) == 'bfloat16'


def test_a_model_built_without_the_precision_is_refused(tmp_path):
    config = _lm_config(TINY['gpt'])
    task = LanguageModelTask(config, models.build_model(config.model), _Cycle(), vocab=None)
    with pytest.raises(ConfigError, match=r"config\.precision='bf16'.*float32.*from_config"):
        training.train_and_evaluate(config, str(tmp_path), task)


def test_a_bad_precision_is_a_config_error():
    choices = r"must be one of 'f32', 'bf16'"
    with pytest.raises(ConfigError, match=r"config\.precision='fp16': " + choices):
        training.validate_config(_lm_config(TINY['gpt'], precision='fp16'))
    with pytest.raises(ConfigError, match=r"config\.precision='float32': " + choices):
        models.build_model(TINY['gpt'], 'float32')

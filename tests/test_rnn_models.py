"""RNN LM, RNN seq2seq with attention, and scheduled sampling (Bengio et al. 2015)."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from seqmodels.models import rnn_lm, scheduled_sampling, seq2seq
from seqmodels.models.rnn_lm import RNNLM
from seqmodels.models.seq2seq import RNNSeq2Seq
from seqmodels.nn.recurrent import SequenceDropout

V = 11


def rng(seed):
    # The 'rbg' PRNG compiles to one XLA RngBitGenerator op; the default threefry
    # inlines a large hash per random draw, which makes each dropout test compile
    # several times slower on CPU. Only these test keys use it.
    return jax.random.key(seed, impl='rbg')


def random_params(module, *args, seed=1):
    """Random parameters with `init`'s shapes; init is traced, never compiled."""
    shapes = jax.eval_shape(module.init, jax.random.key(0), *args)['params']
    generator = np.random.default_rng(seed)
    return jax.tree_util.tree_map(
        lambda p: jnp.asarray(generator.normal(scale=0.5, size=p.shape), jnp.float32), shapes
    )


def tokens(shape, seed):
    return jnp.asarray(np.random.default_rng(seed).integers(1, V, size=shape), jnp.int32)


# ----- schedules -----


def test_schedules_match_bengio_formulas():
    i = np.array([0, 1, 10, 250, 1000, 5000], np.float64)
    linear = scheduled_sampling.make_schedule('linear', k=1.0, c=1e-3, epsilon_min=0.1)
    np.testing.assert_allclose(linear(i), np.maximum(0.1, 1.0 - 1e-3 * i), rtol=1e-6)
    exponential = scheduled_sampling.make_schedule('exponential', k=0.999)
    np.testing.assert_allclose(exponential(i), 0.999**i, rtol=1e-5)
    inverse_sigmoid = scheduled_sampling.make_schedule('inverse_sigmoid', k=500.0)
    np.testing.assert_allclose(inverse_sigmoid(i), 500.0 / (500.0 + np.exp(i / 500.0)), rtol=1e-6)
    np.testing.assert_array_equal(scheduled_sampling.make_schedule()(i), np.ones_like(i))
    np.testing.assert_array_equal(scheduled_sampling.make_schedule('none')(7), 1.0)
    # Pure functions of the step: the same inside jit, where the step is traced.
    np.testing.assert_allclose(jax.jit(inverse_sigmoid)(250), inverse_sigmoid(250), rtol=1e-6)


@pytest.mark.parametrize(
    'kind, params',
    [
        ('exponential', {'k': 1.5}),
        ('inverse_sigmoid', {'k': 0.5}),
        ('linear', {}),
        ('linear', {'c': 1e-3, 'epsilon_min': 2.0}),
        ('cosine', {}),
        ('exponential', {'k': 0.9, 'c': 1}),
    ],
)
def test_make_schedule_rejects_bad_parameters(kind, params):
    with pytest.raises(ValueError):
        scheduled_sampling.make_schedule(kind, **params)


# ----- the scheduled-sampling unroll on a transparent toy model -----


class Successor(nn.Module):
    """A 'model' that predicts (input + 1) mod n almost surely, so its logits reveal
    which token it was fed; its dropout mask is returned too."""

    n: int = 16
    fixed_masks: bool = False

    def setup(self):
        self.drop = SequenceDropout(0.5, 'standard')

    def step(self, carry, token):
        logits = 100.0 * jax.nn.one_hot((token + 1) % self.n, self.n)
        mask = self.drop(jnp.ones((token.shape[0], 8)), deterministic=False)
        return jnp.concatenate([logits, mask], -1), carry

    def __call__(self, tokens, sampling_prob):
        out, _ = scheduled_sampling.unroll(
            self,
            lambda m, c, tok: m.step(c, tok),
            jnp.zeros(()),
            tokens,
            sampling_prob=sampling_prob,
            rng=self.make_rng('dropout'),
            fixed_dropout_masks=self.fixed_masks,
        )
        return out


@pytest.mark.parametrize('fixed_masks', [False, True])
def test_unroll_mixes_truth_and_own_samples(fixed_masks):
    n, batch, length = 16, 64, 8
    model = Successor(n, fixed_masks)
    truth = jnp.asarray(np.random.default_rng(0).integers(0, n, (batch, length)), jnp.int32)
    run = jax.jit(lambda eps, key: model.apply({}, truth, eps, rngs={'dropout': key}))

    def fed(out):  # the token the model was fed, read off its logits
        return (np.asarray(out[..., :n]).argmax(-1) - 1) % n

    np.testing.assert_array_equal(fed(run(1.0, rng(1))), truth)
    own = fed(run(0.0, rng(1)))
    np.testing.assert_array_equal(own[:, 0], truth[:, 0])  # step 0 always reads the truth
    np.testing.assert_array_equal(own[:, 1:], (own[:, :-1] + 1) % n)

    out = run(0.25, rng(2))
    mixed = fed(out)
    picked_truth = mixed[:, 1:] == np.asarray(truth)[:, 1:]
    picked_own = mixed[:, 1:] == (mixed[:, :-1] + 1) % n
    assert np.all(picked_truth | picked_own)
    distinguishable = picked_truth != picked_own
    assert 0.15 < picked_truth[distinguishable].mean() < 0.35

    masks = np.asarray(out[..., n:])
    same_every_step = np.all(masks == masks[:, :1])
    assert same_every_step == fixed_masks


# ----- RNN language model -----

LM = RNNLM(vocab_size=V, embed_dim=8, hidden_size=8, num_layers=2, cell='lstm', tie_embeddings=True)


@functools.cache
def lm_setup():
    params = random_params(LM, *rnn_lm.example_inputs(LM, 2))
    forward = jax.jit(lambda p, tok: LM.apply({'params': p}, tok))
    scheduled = jax.jit(
        lambda p, tok, eps, key: LM.apply(
            {'params': p}, tok, sampling_prob=eps, rngs={'dropout': key}
        )
    )
    return params, forward, scheduled


def test_lm_params_and_tied_output():
    params, _, _ = lm_setup()
    assert 'output' not in params and params['output_bias'].shape == (V,)
    assert params['embed']['embedding'].shape == (V, 8)
    with pytest.raises(ValueError, match='tie_embeddings'):
        RNNLM(V, 8, 6, 1, tie_embeddings=True).init(jax.random.key(0), jnp.ones((1, 2), jnp.int32))


def test_lm_is_causal():
    params, forward, _ = lm_setup()
    x = tokens((2, 7), seed=0)
    logits = forward(params, x)
    assert logits.shape == (2, 7, V)
    for t in (0, 3, 5):
        changed = x.at[:, t + 1 :].set((x[:, t + 1 :] % (V - 1)) + 1)
        np.testing.assert_array_equal(forward(params, changed)[:, : t + 1], logits[:, : t + 1])
        assert not np.allclose(forward(params, changed)[:, t + 1 :], logits[:, t + 1 :])


def test_lm_step_by_step_equals_full_forward():
    params, forward, _ = lm_setup()
    x = tokens((2, 7), seed=1)
    step = jax.jit(lambda p, c, tok: LM.apply({'params': p}, c, tok, method=RNNLM.step))
    carry = LM.apply({'params': params}, 2, method=RNNLM.initial_carry)
    logits = []
    for t in range(x.shape[1]):
        out, carry = step(params, carry, x[:, t])
        logits.append(out)
    np.testing.assert_allclose(np.stack(logits, 1), forward(params, x), atol=1e-6, rtol=0)


def test_lm_scheduled_sampling_eps_one_is_teacher_forcing():
    params, forward, scheduled = lm_setup()
    x = tokens((2, 7), seed=2)
    # Not bitwise: the teacher-forced pass projects all steps in one [B*T, F] matmul,
    # the unroll one [B, F] matmul per step, and XLA may sum these in another order.
    np.testing.assert_allclose(
        scheduled(params, x, 1.0, rng(0)), forward(params, x), atol=1e-6, rtol=0
    )
    # eps = 0 feeds back the model's own samples: only the first true token matters.
    own = scheduled(params, x, 0.0, rng(0))
    other_truth = x.at[:, 1:].set(tokens((2, 6), seed=3))
    np.testing.assert_array_equal(scheduled(params, other_truth, 0.0, rng(0)), own)
    assert not np.allclose(own[:, 1:], forward(params, x)[:, 1:])


@pytest.mark.parametrize('kind', ['standard', 'variational'])
def test_lm_dropout_train_and_eval(kind):
    params, forward, _ = lm_setup()
    model = LM.clone(dropout=0.3, dropout_kind=kind)
    x = tokens((2, 6), seed=4)
    # Training with scheduled sampling exercises every dropout site of the step path.
    run = jax.jit(
        lambda p, key: (
            model.apply({'params': p}, x, deterministic=False, rngs={'dropout': key}),
            model.apply(
                {'params': p}, x, deterministic=False, sampling_prob=0.5, rngs={'dropout': key}
            ),
            model.apply({'params': p}, x),
        )
    )
    train, train_scheduled, evaluation = run(params, rng(0))
    np.testing.assert_array_equal(evaluation, forward(params, x))
    assert np.all(np.isfinite(train)) and np.all(np.isfinite(train_scheduled))
    assert not np.allclose(train, evaluation)


# ----- RNN encoder-decoder with additive attention -----

S2S = RNNSeq2Seq(
    src_vocab_size=13,
    tgt_vocab_size=V,
    embed_dim=8,
    hidden_size=8,
    encoder_layers=1,
    decoder_layers=2,
    cell='lstm',
)
SRC = jnp.array([[3, 4, 5, 6, 7], [8, 9, 2, 0, 0], [5, 0, 0, 0, 0]], jnp.int32)
SRC_LENGTHS = jnp.array([5, 3, 1], jnp.int32)


@functools.cache
def s2s_setup():
    params = random_params(S2S, *seq2seq.example_inputs(S2S, 2))
    forward = jax.jit(lambda p, src, lengths, tgt: S2S.apply({'params': p}, src, lengths, tgt))
    return params, forward


def test_seq2seq_decode_step_equals_teacher_forcing():
    params, forward = s2s_setup()
    tgt = tokens((3, 4), seed=5)
    logits = forward(params, SRC, SRC_LENGTHS, tgt)
    assert logits.shape == (3, 4, V)
    memory = jax.jit(
        lambda p: S2S.apply({'params': p}, SRC, SRC_LENGTHS, method=RNNSeq2Seq.encode)
    )(params)
    assert memory['keys'].shape[:2] == memory['values'].shape[:2] == SRC.shape
    step = jax.jit(
        lambda p, m, c, tok: S2S.apply({'params': p}, m, c, tok, method=RNNSeq2Seq.decode_step)
    )
    carry = S2S.apply({'params': params}, memory, method=RNNSeq2Seq.initial_decoder_carry)
    stepped = []
    for t in range(tgt.shape[1]):
        out, carry = step(params, memory, carry, tgt[:, t])
        stepped.append(out)
    np.testing.assert_allclose(np.stack(stepped, 1), logits, atol=1e-6, rtol=0)


def test_seq2seq_encoder_ignores_padding():
    params, forward = s2s_setup()
    tgt = tokens((3, 4), seed=6)
    logits = forward(params, SRC, SRC_LENGTHS, tgt)
    valid = np.arange(SRC.shape[1])[None, :] < np.asarray(SRC_LENGTHS)[:, None]
    noisy = jnp.where(valid, SRC, tokens(SRC.shape, seed=7))
    np.testing.assert_array_equal(forward(params, noisy, SRC_LENGTHS, tgt), logits)
    # ... while a change inside the valid part does reach the output.
    changed = SRC.at[1, 2].set(11)
    assert not np.allclose(forward(params, changed, SRC_LENGTHS, tgt)[1], logits[1])


def test_seq2seq_scheduled_sampling_eps_one_is_teacher_forcing():
    params, forward = s2s_setup()
    tgt = tokens((3, 4), seed=8)
    scheduled = jax.jit(
        lambda p, eps: S2S.apply(
            {'params': p}, SRC, SRC_LENGTHS, tgt, sampling_prob=eps, rngs={'dropout': rng(0)}
        )
    )
    # The teacher-forced pass is the same per-step unroll, so this one is bitwise.
    np.testing.assert_array_equal(scheduled(params, 1.0), forward(params, SRC, SRC_LENGTHS, tgt))
    assert not np.allclose(scheduled(params, 0.0), forward(params, SRC, SRC_LENGTHS, tgt))


def test_seq2seq_with_dropout_and_gru_runs():
    model = RNNSeq2Seq(13, V, 8, 8, cell='gru', dropout=0.2)
    params = random_params(model, *seq2seq.example_inputs(model, 3))
    tgt = tokens((3, 4), seed=9)
    train = jax.jit(
        lambda key: model.apply(
            {'params': params}, SRC, None, tgt, deterministic=False, rngs={'dropout': key}
        )
    )
    out = train(rng(0))
    assert out.shape == (3, 4, V) and np.all(np.isfinite(out))
    np.testing.assert_array_equal(train(rng(0)), out)
    assert not np.allclose(train(rng(1)), out)

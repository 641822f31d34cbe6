"""BERT's pre-training loss (masked LM over the masked slots + next-sentence prediction)
against NumPy, and the fine-tuning heads: the [CLS] classifier and the multiple-choice
scorer."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from seqmodels.models.bert import BERT, pretraining_loss, pretraining_sums

TINY = dict(
    vocab_size=40,
    max_len=16,
    d_model=16,
    num_heads=2,
    d_ff=32,
    num_layers=1,
    dropout=0.0,
    attention_dropout=0.0,
)


def np_log_softmax(z):
    z = np.asarray(z, np.float64)
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def test_pretraining_loss_is_mlm_mean_over_masked_slots_plus_nsp_mean():
    rng = np.random.default_rng(0)
    mlm = rng.normal(size=(3, 4, 7)).astype(np.float32)
    nsp = rng.normal(size=(3, 2)).astype(np.float32)
    ids = rng.integers(0, 7, size=(3, 4)).astype(np.int32)
    weights = np.array([[1, 1, 0, 0], [1, 0, 0, 0], [1, 1, 1, 0]], np.float32)
    labels = np.array([0, 1, 1], np.int32)
    ids[0, 0] = mlm[0, 0].argmax()  # at least one right and one wrong prediction
    ids[0, 1] = (mlm[0, 1].argmax() + 1) % 7
    batch = {'masked_ids': ids, 'masked_weights': weights, 'next_sentence_label': labels}
    loss_fn = jax.jit(pretraining_loss)
    loss, metrics = loss_fn(mlm, nsp, batch)

    nll = -np.take_along_axis(np_log_softmax(mlm), ids[..., None], -1)[..., 0]
    mlm_loss = (nll * weights).sum() / weights.sum()  # 6 slots, the padded ones ignored
    nsp_loss = -np.mean(np_log_softmax(nsp)[np.arange(3), labels])
    np.testing.assert_allclose(metrics['mlm_loss'], mlm_loss, rtol=1e-5)
    np.testing.assert_allclose(metrics['nsp_loss'], nsp_loss, rtol=1e-5)
    np.testing.assert_allclose(loss, mlm_loss + nsp_loss, rtol=1e-5)
    mlm_right = (mlm.argmax(-1) == ids)[weights > 0].mean()
    np.testing.assert_allclose(metrics['mlm_accuracy'], mlm_right, rtol=1e-6)
    np.testing.assert_allclose(metrics['nsp_accuracy'], np.mean(nsp.argmax(-1) == labels))
    # The eval form sums over slots and rows with their weights.
    sums = jax.jit(pretraining_sums)(mlm, nsp, batch)
    np.testing.assert_allclose(sums['mlm_loss'][0], (nll * weights).sum(), rtol=1e-5)
    assert float(sums['mlm_loss'][1]) == 6 and float(sums['nsp_loss'][1]) == 3
    # A padded slot's logits do not matter.
    changed = mlm.copy()
    changed[1, 3] += 100.0
    assert float(loss_fn(changed, nsp, batch)[0]) == pytest.approx(float(loss), rel=1e-6)


@pytest.fixture(scope='module')
def tokens_and_segments():
    rng = np.random.default_rng(1)
    tokens = rng.integers(7, 40, size=(2, 3, 8)).astype(np.int32)
    tokens[..., 0] = 4
    tokens[1, :, 6:] = 0  # padding
    segments = np.zeros_like(tokens)
    segments[..., 4:] = 1
    return jnp.asarray(tokens), jnp.asarray(segments)


def random_params(model, method, *args):
    """Parameters of the shapes `method` creates, drawn in NumPy (no compiled init)."""
    rng = np.random.default_rng(0)
    shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), *args, method=method)['params'])
    return jax.tree.map(lambda s: jnp.asarray(rng.normal(size=s.shape) * 0.3, s.dtype), shapes)


def test_classifier_is_a_linear_layer_on_the_pooled_cls_state(tokens_and_segments):
    tokens, segments = (x[:, 0] for x in tokens_and_segments)
    model = BERT(**TINY, num_classes=3)
    params = random_params(model, BERT.classify, tokens, segments)
    # Only what classification uses: no masked-LM or next-sentence head.
    assert set(params) == {
        'token_embed',
        'segment_embed',
        'position_embed',
        'embed_norm',
        'encoder',
        'pooler',
        'classifier',
    }
    assert params['classifier']['kernel'].shape == (16, 3)
    logits, (_, pooled) = jax.jit(
        lambda p: model.apply(
            {'params': p}, tokens, segments, method=lambda m, *a: (m.classify(*a), m.encode(*a))
        )
    )(params)
    expected = np.asarray(pooled) @ params['classifier']['kernel'] + params['classifier']['bias']
    np.testing.assert_allclose(logits, expected, atol=1e-5)
    with pytest.raises(ValueError, match='num_classes'):
        random_params(BERT(**TINY), BERT.classify, tokens, segments)


def test_option_scores_are_each_options_pooled_state_times_one_vector(tokens_and_segments):
    tokens, segments = tokens_and_segments  # [B=2, K=3, T=8]
    model = BERT(**TINY, num_classes=3)
    params = random_params(model, BERT.score_options, tokens, segments)
    assert params['option_scorer'] == {'kernel': params['option_scorer']['kernel']}
    order = jnp.array([2, 0, 1])

    def outputs(m, tokens, segments):
        pooled = [m.encode(tokens[:, k], segments[:, k])[1] for k in range(3)]
        return (
            m.score_options(tokens, segments),
            jnp.stack(pooled, 1),
            m.score_options(tokens[:, order], segments[:, order]),
        )

    scores, pooled, permuted = jax.jit(
        lambda p: model.apply({'params': p}, tokens, segments, method=outputs)
    )(params)
    assert scores.shape == (2, 3)
    vector = np.asarray(params['option_scorer']['kernel'])[:, 0]
    np.testing.assert_allclose(scores, np.asarray(pooled) @ vector, atol=1e-4)
    # Reordering the options reorders the scores: nothing ties a score to a slot.
    np.testing.assert_allclose(permuted, scores[:, order], atol=1e-5)

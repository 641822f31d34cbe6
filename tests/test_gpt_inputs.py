"""GPT-1's task input transformations (Figure 1), its task heads and the L3 objective,
checked against hand-built layouts and NumPy formulas."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from seqmodels.data import gpt_inputs, labeled, tokenizers
from seqmodels.data.gpt_inputs import SpecialIds, fit_pair, transform
from seqmodels.data.labeled import Example
from seqmodels.data.tokenizers import PAD_ID
from seqmodels.models.gpt import GPT, fine_tuning_loss

S, D, E = 4, 5, 6  # <start>, <delim>, <extract> as a GPT tokenizer reserves them
IDS = SpecialIds(S, D, E)


def test_the_four_layouts_of_figure_1():
    a, b, c = [10, 11], [20, 21, 22], [30]
    assert transform([a], 'classification', IDS, 16) == [[S, 10, 11, E]]
    assert transform([a, b], 'entailment', IDS, 16) == [[S, 10, 11, D, 20, 21, 22, E]]
    assert transform([a, b], 'similarity', IDS, 16) == [
        [S, 10, 11, D, 20, 21, 22, E],
        [S, 20, 21, 22, D, 10, 11, E],
    ]
    assert transform([a, b, c], 'multiple_choice', IDS, 16) == [
        [S, 10, 11, D, 20, 21, 22, E],
        [S, 10, 11, D, 30, E],
    ]


def test_too_long_sequences_lose_tokens_where_it_hurts_least():
    long, short = list(range(10, 20)), [50, 51]
    assert transform([long], 'classification', IDS, 6) == [[S, 10, 11, 12, 13, E]]
    # Pairs: the longer text loses its end, one token at a time.
    assert fit_pair(long, short, 6) == ([10, 11, 12, 13], [50, 51])
    assert fit_pair([1, 2, 3], [4, 5, 6], 4) == ([1, 2], [4, 5])  # b first on a tie
    assert transform([long, short], 'entailment', IDS, 9) == [[S, 10, 11, 12, 13, D, 50, 51, E]]
    # A multiple-choice context keeps the words next to the option.
    assert transform([long, short], 'multiple_choice', IDS, 9) == [
        [S, 16, 17, 18, 19, D, 50, 51, E]
    ]


@pytest.fixture(scope='module')
def tokenizer():
    words = 'return the value of a new list x y text number one two three'.split()
    sentences = [
        ' '.join(words[(i * 7 + j) % len(words)] for j in range(i % 9 + 3)).capitalize()
        for i in range(200)
    ]
    return tokenizers.train_sentencepiece(
        sentences, vocab_size=120, model_type='bpe', special_tokens=gpt_inputs.SPECIAL_TOKENS
    )


def test_encoded_examples_mark_the_extract_token_and_the_text_targets(tokenizer):
    ids = SpecialIds.of(tokenizer)
    assert (ids.start, ids.delim, ids.extract) == (4, 5, 6)
    examples = [Example('1', ('Return the value.', 'A new list.')), Example('0', ('x', 'y'))]
    split = gpt_inputs.encode(examples, 'similarity', tokenizer, 64, np.array([1, 0]))
    a, b = tokenizer.encode('Return the value.'), tokenizer.encode('A new list.')
    first = [4, *a, 5, *b, 6]
    assert split.tokens.shape == (2, 2, len(first))
    assert split.tokens[0, 0].tolist() == first
    assert split.tokens[0, 1].tolist() == [4, *b, 5, *a, 6]
    assert split.last[0].tolist() == [len(first) - 1] * 2
    short = [4, *tokenizer.encode('x'), 5, *tokenizer.encode('y'), 6]
    assert split.tokens[1, 0].tolist() == short + [PAD_ID] * (len(first) - len(short))
    # L1's weights: position t counts when token t + 1 is text.
    expected = [1.0] * len(a) + [0, 1] + [1.0] * (len(b) - 1) + [0, 0]
    assert split.lm_weights[0, 0].tolist() == expected
    with pytest.raises(Exception, match='reserves no <start>, <delim>, <extract>'):
        plain = tokenizers.train_sentencepiece(['some text here'] * 5, vocab_size=30)
        gpt_inputs.encode(examples, 'similarity', plain, 64)


def test_task_batches_visit_every_example_once_per_epoch(tokenizer, tmp_path):
    words = 'return the value of a new list x y text'.split()
    (tmp_path / 'train').write_text(''.join(f'{i % 2} {w} value\n' for i, w in enumerate(words)))
    (tmp_path / 'dev').write_text('0 one\n1 two\n0 three\n')
    data = labeled.load_labeled_data(
        f'labeled:{tmp_path}', 'classification', validation_split='dev'
    )
    batches = gpt_inputs.make_task_batches(data, tokenizer, max_len=32, batch_size=4, seed=1)
    seen = np.concatenate([batches.train_batch(s)['tokens'][:, 0] for s in range(5)])
    rows = {tuple(r) for r in batches.splits['train'].tokens[:, 0].tolist()}
    epochs = [{tuple(r) for r in seen[:10].tolist()}, {tuple(r) for r in seen[10:].tolist()}]
    assert epochs[0] == epochs[1] == rows
    assert not np.array_equal(seen[:10], seen[10:])  # each epoch its own order
    # Two processes load the two halves of the same global batch.
    halves = [batches.train_batch(3, p, 2)['tokens'] for p in (0, 1)]
    np.testing.assert_array_equal(np.concatenate(halves), batches.train_batch(3)['tokens'])
    dev = list(batches.eval_batches('validation'))
    assert [b['weights'].tolist() for b in dev] == [[1, 1, 1, 0]]
    assert dev[0]['tokens'].shape[-1] == batches.splits['train'].seq_len  # one shape everywhere


# -- the task heads and the objective ---------------------------------------------------


def tiny_gpt(num_classes):
    return GPT(
        vocab_size=40,
        max_len=16,
        d_model=16,
        num_heads=2,
        d_ff=32,
        num_layers=2,
        dropout=0.0,
        attention_dropout=0.0,
        num_classes=num_classes,
    )


@functools.partial(jax.jit, static_argnums=(0, 4))
def task_logits(model, params, tokens, last, combine='sum'):
    return model.apply({'params': params}, tokens, last, combine, method=GPT.task_logits)


@pytest.fixture(scope='module')
def similarity_model():
    model = tiny_gpt(3)
    params = jax.jit(model.init)(jax.random.key(0), jnp.ones((1, 8), jnp.int32))['params']
    return model, params


def test_similarity_adds_the_final_states_of_both_orders(similarity_model):
    model, params = similarity_model
    a, b = [10, 11, 12], [20, 21]
    ab, ba = transform([a, b], 'similarity', IDS, 16), transform([b, a], 'similarity', IDS, 16)
    tokens = jnp.array([ab, ba])  # [2 examples, 2 orders, 8]
    last = jnp.full((2, 2), 7)
    _, logits = task_logits(model, params, tokens, last)
    np.testing.assert_allclose(logits[0], logits[1], rtol=1e-5, atol=1e-6)
    # The sum of the two final states goes through the one linear head.
    states = jax.jit(lambda p, x: model.apply({'params': p}, x, True, method=GPT.hidden_states))(
        params, tokens[0]
    )
    head = params['classifier']
    expected = (states[0, 7] + states[1, 7]) @ head['kernel'] + head['bias']
    np.testing.assert_allclose(logits[0], expected, rtol=1e-5, atol=1e-5)


def test_multiple_choice_scores_each_option_and_normalises_over_them():
    model = tiny_gpt(1)
    params = jax.jit(model.init)(jax.random.key(1), jnp.ones((1, 8), jnp.int32))['params']
    context, options = [10, 11, 12], [[20, 21], [22], [23, 24, 25]]
    sequences = transform([context, *options], 'multiple_choice', IDS, 16)
    width = max(map(len, sequences))
    tokens = jnp.array([[s + [PAD_ID] * (width - len(s)) for s in sequences]])
    last = jnp.array([[len(s) - 1 for s in sequences]])
    _, scores = task_logits(model, params, tokens, last, 'choices')
    assert scores.shape == (1, 3)
    # Each option's score depends on its own sequence only; the order of the options
    # permutes the scores; the softmax runs over the options.
    others = tokens.at[0, 0, 4].set(30).at[0, 2, 5].set(31)
    changed = task_logits(model, params, others, last, 'choices')[1]
    np.testing.assert_allclose(changed[0, 1], scores[0, 1], rtol=1e-5)
    assert abs(changed[0, 0] - scores[0, 0]) > 1e-6 and abs(changed[0, 2] - scores[0, 2]) > 1e-6
    flipped = task_logits(model, params, tokens[:, ::-1], last[:, ::-1], 'choices')[1]
    np.testing.assert_allclose(flipped[0, ::-1], scores[0], rtol=1e-5)
    probs = jax.nn.softmax(scores, axis=-1)
    np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-6)
    loss = jax.jit(lambda s: fine_tuning_loss(s, jnp.array([2]), None, tokens, None, 0.5)[0])(
        scores
    )
    assert float(loss) == pytest.approx(-np.log(float(probs[0, 2])), rel=1e-5)
    with pytest.raises(ValueError, match='num_classes must be 1'):
        task_logits(tiny_gpt(3), params, tokens, last, 'choices')


def test_l3_is_l2_plus_lambda_times_l1():
    rng = np.random.default_rng(0)
    logits, labels = rng.normal(size=(3, 2)), np.array([1, 0, 1])
    tokens = rng.integers(7, 40, size=(3, 2, 5))
    lm_logits = rng.normal(size=(3, 2, 5, 40))
    lm_weights = (rng.random((3, 2, 5)) < 0.7).astype(np.float32)
    lm_weights[..., -1] = 0
    weights = np.array([1.0, 1.0, 0.0])  # a padding row counts for nothing

    def log_softmax(x):
        x = x - x.max(-1, keepdims=True)
        return x - np.log(np.exp(x).sum(-1, keepdims=True))

    l2 = -log_softmax(logits)[np.arange(3), labels][:2].mean()
    nll = -np.take_along_axis(log_softmax(lm_logits[..., :-1, :]), tokens[..., 1:, None], -1)[
        ..., 0
    ]
    w = lm_weights[..., :-1] * weights[:, None, None]
    l1 = (nll * w).sum() / w.sum()
    loss = jax.jit(fine_tuning_loss)
    for lm_coef in (0.0, 0.5, 2.0):
        l3, task, lm = loss(logits, labels, lm_logits, tokens, lm_weights, lm_coef, weights)
        assert (float(task), float(lm)) == pytest.approx((l2, l1), rel=1e-5)
        assert float(l3) == pytest.approx(l2 + lm_coef * l1, rel=1e-5)

"""BERT pre-training examples: the [CLS] A [SEP] B [SEP] layout and segment ids, truncation,
next-sentence pairs (half true continuations, negatives from another document), masked-LM
statistics (80/10/10 of 15%, special tokens never masked), rows as a function of
(seed, step) split across processes."""

import numpy as np
import pytest

from seqmodels.data.bert_pretraining import (
    NEXT,
    RANDOM_NEXT,
    BertPretrainingData,
    EncodedDocuments,
    PretrainingExamples,
    pack_pair,
    row_rng,
    truncate_pair,
)
from seqmodels.data.errors import DataError

PAD, UNK, BOS, EOS, CLS, SEP, MASK = range(7)
SPECIALS = (PAD, UNK, BOS, EOS, CLS, SEP, MASK)
FIRST_ORDINARY = 7


def corpus(num_docs=40, seed=0):
    """Documents of sentences whose token ids are unique across the corpus, so any run of
    tokens tells which document and which position it came from."""
    rng = np.random.default_rng(seed)
    next_id, documents = FIRST_ORDINARY, []
    for _ in range(num_docs):
        document = []
        for _ in range(rng.integers(1, 12)):
            n = int(rng.integers(1, 10))
            document.append(list(range(next_id, next_id + n)))
            next_id += n
        documents.append(document)
    return documents, next_id


DOCUMENTS, VOCAB = corpus()
DOCS = EncodedDocuments.from_token_lists(DOCUMENTS)
DOC_OF_TOKEN = {t: d for d, doc in enumerate(DOCUMENTS) for s in doc for t in s}
SENTENCE_FIRSTS = {s[0] for doc in DOCUMENTS for s in doc}
SENTENCE_LASTS = {s[-1] for doc in DOCUMENTS for s in doc}


def examples(seq_len=24, max_predictions=24, seed=0, **kwargs):
    return PretrainingExamples(
        DOCS,
        seq_len=seq_len,
        vocab_size=VOCAB,
        cls_id=CLS,
        sep_id=SEP,
        mask_id=MASK,
        special_ids=SPECIALS,
        max_predictions=max_predictions,
        seed=seed,
        **kwargs,
    )


def is_contiguous(span):
    span = np.asarray(span)
    return len(span) > 0 and np.array_equal(span, np.arange(span[0], span[0] + len(span)))


def unmasked(example):
    tokens = example['tokens'].copy()
    kept = example['masked_weights'] > 0
    tokens[example['masked_positions'][kept]] = example['masked_ids'][kept]
    return tokens


def test_pack_pair_layout_and_segment_ids():
    tokens, segments = pack_pair([11, 12, 13], [21, 22], 10, CLS, SEP)
    np.testing.assert_array_equal(tokens, [CLS, 11, 12, 13, SEP, 21, 22, SEP, PAD, PAD])
    np.testing.assert_array_equal(segments, [0, 0, 0, 0, 0, 1, 1, 1, 0, 0])
    tokens, segments = pack_pair([11, 12], None, 5, CLS, SEP)
    np.testing.assert_array_equal(tokens, [CLS, 11, 12, SEP, PAD])
    np.testing.assert_array_equal(segments, [0, 0, 0, 0, 0])
    assert tokens.dtype == segments.dtype == np.int32
    with pytest.raises(ValueError, match='do not fit'):
        pack_pair([11, 12, 13], [21], 6, CLS, SEP)


def test_truncate_pair_trims_the_longer_segment_at_either_end():
    rng = np.random.default_rng(0)
    a, b = np.arange(100, 110), np.arange(200, 203)
    ta, tb = truncate_pair(a, b, 8, rng)
    # a (10) loses 5: it stays a contiguous run of a; b (3) is never longer, so it is kept.
    assert len(ta) == 5 and np.array_equal(tb, b) and is_contiguous(ta)
    # A tie takes from b: 4 + 4 -> 4 + 3.
    ta, tb = truncate_pair(np.arange(4), np.arange(10, 14), 7, rng)
    assert len(ta) == 4 and len(tb) == 3
    # Both ends get trimmed over many draws (a coin flip per token).
    firsts = {int(truncate_pair(a, b[:1], 6, np.random.default_rng(i))[0][0]) for i in range(50)}
    assert min(firsts) == 100 and max(firsts) == 105
    ta, tb = truncate_pair(a, b, 20, rng)  # already fits
    assert np.array_equal(ta, a) and np.array_equal(tb, b)


def test_next_sentence_pairs_half_true_negatives_from_another_document():
    source = examples(seq_len=24)
    labels = []
    for row in range(4000):
        a, b, label = source.pair(row_rng(0, 0, row))
        labels.append(label)
        doc_a = {DOC_OF_TOKEN[t] for t in a}
        assert len(doc_a) == 1 and is_contiguous(a)
        assert a[0] in SENTENCE_FIRSTS and a[-1] in SENTENCE_LASTS  # whole sentences
        assert b[0] in SENTENCE_FIRSTS and b[-1] in SENTENCE_LASTS and is_contiguous(b)
        (doc_b,) = {DOC_OF_TOKEN[t] for t in b}
        if label == NEXT:
            assert b[0] == a[-1] + 1  # the true next segment
        else:
            assert label == RANDOM_NEXT and doc_b != doc_a.pop()
    assert abs(np.mean(np.array(labels) == NEXT) - 0.5) < 0.025


def test_example_layout_is_cls_a_sep_b_sep_with_exact_segment_ids():
    source = examples(seq_len=16, max_predictions=16)
    lengths = []
    for row in range(300):
        example = source[row]
        tokens, segments = unmasked(example), example['segment_ids']
        assert tokens.shape == segments.shape == (16,)
        length = int((tokens != PAD).sum())
        assert np.all(tokens[length:] == PAD) and np.all(segments[length:] == 0)
        seps = np.flatnonzero(tokens == SEP)
        assert tokens[0] == CLS and len(seps) == 2 and seps[1] == length - 1
        a, b = tokens[1 : seps[0]], tokens[seps[0] + 1 : seps[1]]
        assert len(a) and len(b) and is_contiguous(a) and is_contiguous(b)
        expected = np.zeros(16, np.int32)
        expected[seps[0] + 1 : length] = 1
        np.testing.assert_array_equal(segments, expected)
        assert len({DOC_OF_TOKEN[t] for t in a}) == 1 and len({DOC_OF_TOKEN[t] for t in b}) == 1
        if example['next_sentence_label'] == NEXT:
            assert DOC_OF_TOKEN[a[0]] == DOC_OF_TOKEN[b[0]] and b[0] > a[-1]
        else:
            assert DOC_OF_TOKEN[a[0]] != DOC_OF_TOKEN[b[0]]
        lengths.append(length)
    # Packed to the configured length, except the short-sequence draws (10%) and
    # documents that end before it fills.
    assert np.mean(np.array(lengths) == 16) > 0.6


def test_masked_lm_statistics_and_special_tokens_never_masked():
    source = examples(seq_len=32, max_predictions=32, short_seq_prob=0.0)
    rows = [source[row] for row in range(3000)]
    tokens = np.stack([unmasked(r) for r in rows])
    inputs = np.stack([r['tokens'] for r in rows])
    chosen = np.zeros(tokens.shape, bool)
    for i, r in enumerate(rows):
        kept = r['masked_weights'] > 0
        positions = r['masked_positions'][kept]
        assert np.all(np.diff(positions) > 0)
        assert np.all(r['masked_positions'][~kept] == 0) and np.all(r['masked_ids'][~kept] == 0)
        chosen[i, positions] = True
    special = np.isin(tokens, SPECIALS)
    assert not chosen[special].any()
    np.testing.assert_array_equal(inputs[~chosen], tokens[~chosen])
    assert abs(chosen.sum() / (~special).sum() - 0.15) < 0.006
    replaced = inputs[chosen]
    to_mask = replaced == MASK
    unchanged = replaced == tokens[chosen]
    random = ~to_mask & ~unchanged
    n = chosen.sum()
    assert abs(to_mask.sum() / n - 0.8) < 0.015
    assert abs(random.sum() / n - 0.1) < 0.012
    assert abs(unchanged.sum() / n - 0.1) < 0.012
    assert np.all(replaced[random] >= FIRST_ORDINARY) and np.all(replaced[random] < VOCAB)


def test_more_chosen_positions_than_max_predictions_are_restored_not_left_corrupted():
    source = examples(seq_len=32, max_predictions=2, short_seq_prob=0.0, mask_prob=0.5)
    counts = []
    for row in range(50):
        example = source[row]
        kept = example['masked_weights'] > 0
        counts.append(kept.sum())
        tokens = unmasked(example)
        outside = np.ones(32, bool)
        outside[example['masked_positions'][kept]] = False
        np.testing.assert_array_equal(example['tokens'][outside], tokens[outside])
    assert max(counts) == 2 and min(counts) >= 1


def test_rows_are_a_function_of_seed_and_step_and_split_across_processes():
    train, validation = examples(seed=3), examples(seed=3, stream=1)
    data = BertPretrainingData(train, validation, batch_size=4, num_eval_batches=2)
    batch = data.train_batch(5)
    assert batch['tokens'].shape == (4, 24) and batch['next_sentence_label'].shape == (4,)
    again = BertPretrainingData(examples(seed=3), validation, 4, 2).train_batch(5)
    halves = [data.train_batch(5, p, 2) for p in range(2)]
    for key, value in batch.items():
        np.testing.assert_array_equal(value, again[key])
        np.testing.assert_array_equal(value, np.concatenate([h[key] for h in halves]))
        np.testing.assert_array_equal(value, np.stack([train[20 + r][key] for r in range(4)]))
    assert not np.array_equal(batch['tokens'], data.train_batch(6)['tokens'])
    assert not np.array_equal(
        batch['tokens'],
        BertPretrainingData(examples(seed=4), validation, 4, 2).train_batch(5)['tokens'],
    )
    evals = list(data.eval_batches())
    assert len(evals) == 2 and len(list(data.eval_batches(num_batches=1))) == 1
    np.testing.assert_array_equal(evals[1]['tokens'][0], validation[4]['tokens'])
    assert not np.array_equal(evals[0]['tokens'], data.train_batch(0)['tokens'])


def test_encode_drops_empty_sentences_and_documents():
    vocab = {'a': 7, 'b': 8, 'c': 9}
    encode_batch = lambda texts: [[vocab[w] for w in text.split()] for text in texts]
    docs = EncodedDocuments.encode([['a b', '', 'c'], [''], [], ['b']], encode_batch)
    assert (docs.num_docs, docs.num_sentences, docs.num_tokens) == (2, 3, 4)
    np.testing.assert_array_equal(docs.sentence(1), [9])
    np.testing.assert_array_equal(docs.span(0, 2), [7, 8, 9])
    assert docs.document_of(2) == 1 and docs.document_of(1) == 0


def test_corpora_that_cannot_give_pairs_are_errors():
    one = EncodedDocuments.from_token_lists([[[7, 8], [9]]])
    with pytest.raises(DataError, match='at least 2'):
        PretrainingExamples(one, 16, 20, CLS, SEP, MASK, SPECIALS, 4, 0, name='tiny.txt')
    singles = EncodedDocuments.from_token_lists([[[7, 8]], [[9]]])
    with pytest.raises(DataError, match='two or more sentences'):
        PretrainingExamples(singles, 16, 20, CLS, SEP, MASK, SPECIALS, 4, 0)

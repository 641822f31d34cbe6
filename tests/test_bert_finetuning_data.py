"""BERT fine-tuning inputs: the exact token layouts of single sentences, pairs and
multiple-choice options, truncation, and batches (every example once per epoch, split
across processes, padded evaluation batches)."""

import numpy as np
import pytest

from seqmodels.data.bert_finetuning import EncodedSplit, encode_example, fit_pair
from seqmodels.data.split_batches import SplitBatches

PAD, CLS, SEP = 0, 4, 5


def test_single_sentence_is_cls_text_sep_all_segment_a():
    tokens, segments = encode_example([[11, 12, 13]], 'classification', 8, CLS, SEP)
    np.testing.assert_array_equal(tokens, [CLS, 11, 12, 13, SEP, PAD, PAD, PAD])
    np.testing.assert_array_equal(segments, np.zeros(8))
    tokens, _ = encode_example([list(range(10, 20))], 'classification', 6, CLS, SEP)
    np.testing.assert_array_equal(tokens, [CLS, 10, 11, 12, 13, SEP])  # the end goes


@pytest.mark.parametrize('task_type', ['entailment', 'similarity'])
def test_pair_is_cls_a_sep_b_sep_with_segment_b(task_type):
    tokens, segments = encode_example([[11, 12], [21, 22, 23]], task_type, 9, CLS, SEP)
    np.testing.assert_array_equal(tokens, [CLS, 11, 12, SEP, 21, 22, 23, SEP, PAD])
    np.testing.assert_array_equal(segments, [0, 0, 0, 0, 1, 1, 1, 1, 0])
    # Too long: the longer segment loses its last tokens first, b on a tie.
    tokens, segments = encode_example([[11, 12, 13, 14, 15], [21, 22]], task_type, 8, CLS, SEP)
    np.testing.assert_array_equal(tokens, [CLS, 11, 12, 13, SEP, 21, 22, SEP])
    np.testing.assert_array_equal(segments, [0, 0, 0, 0, 0, 1, 1, 1])


def test_multiple_choice_is_one_row_per_option_keeping_the_end_of_the_context():
    context, options = [11, 12, 13, 14], [[21], [31, 32]]
    tokens, segments = encode_example([context, *options], 'multiple_choice', 8, CLS, SEP)
    assert tokens.shape == segments.shape == (2, 8)
    np.testing.assert_array_equal(tokens[0], [CLS, 11, 12, 13, 14, SEP, 21, SEP])
    np.testing.assert_array_equal(tokens[1], [CLS, 12, 13, 14, SEP, 31, 32, SEP])
    np.testing.assert_array_equal(segments[1], [0, 0, 0, 0, 0, 1, 1, 1])


def test_fit_pair():
    assert fit_pair([1, 2, 3], [4, 5, 6], 4) == ([1, 2], [4, 5])
    assert fit_pair([1, 2, 3], [4], 3, a_from_front=True) == ([2, 3], [4])
    assert fit_pair([1], [4, 5, 6, 7], 3) == ([1], [4, 5])
    assert fit_pair([1, 2], [3], 5) == ([1, 2], [3])


def data(n=10, batch_size=4):
    encode_batch = lambda texts: [[int(w) for w in t.split()] for t in texts]
    texts = [(f'{10 + i} {10 + i}',) for i in range(n)]
    split = EncodedSplit.encode(
        texts, np.arange(n) % 3, 'classification', 6, encode_batch, CLS, SEP
    )
    return SplitBatches({'train': split, 'validation': split}, batch_size, seed=1)


def test_every_example_once_per_epoch_in_a_new_order_and_rows_split_by_process():
    d = data()
    seen = np.concatenate([d.train_batch(step)['tokens'][:, 1] - 10 for step in range(10)])
    epochs = seen.reshape(4, 10)  # 10 steps x 4 rows = 4 epochs of 10 examples
    for epoch in epochs:
        assert sorted(epoch) == list(range(10))
    assert len({tuple(e) for e in epochs}) == 4
    batch = d.train_batch(7)
    np.testing.assert_array_equal(batch['labels'], (batch['tokens'][:, 1] - 10) % 3)
    halves = [d.train_batch(7, p, 2) for p in range(2)]
    for key in batch:
        np.testing.assert_array_equal(batch[key], np.concatenate([h[key] for h in halves]))
    np.testing.assert_array_equal(data().train_batch(7)['tokens'], batch['tokens'])


def test_eval_batches_cover_the_split_once_padded_with_weight_zero():
    batches = list(data().eval_batches('validation'))
    assert len(batches) == 3
    weights = np.concatenate([b['weights'] for b in batches])
    np.testing.assert_array_equal(weights, [1] * 10 + [0] * 2)
    ids = np.concatenate([b['tokens'][:, 1] for b in batches])[:10] - 10
    np.testing.assert_array_equal(ids, np.arange(10))
    assert len(list(data().eval_batches('validation', num_batches=1))) == 1

"""Host-side metrics against counts and formulas written out by hand."""

import math

import numpy as np
import pytest

from seqmodels import evaluation


def test_confusion_matrix_counts_pairs():
    labels = [0, 0, 1, 2, 2, 2]
    predictions = [0, 1, 1, 2, 0, 2]
    expected = np.array([[1, 1, 0], [0, 1, 0], [1, 0, 2]])
    confusion = evaluation.confusion_matrix(labels, predictions, 3)
    np.testing.assert_array_equal(confusion, expected)
    np.testing.assert_allclose(evaluation.per_class_accuracy(confusion), [1 / 2, 1, 2 / 3])
    assert evaluation.accuracy(labels, predictions) == pytest.approx(4 / 6)


def test_per_class_accuracy_of_an_absent_class_is_nan():
    confusion = evaluation.confusion_matrix([0, 0, 1], [0, 1, 0], 3)
    got = evaluation.per_class_accuracy(confusion)
    assert got[0] == 0.5 and got[1] == 0.0 and math.isnan(got[2])


def test_mean_log_loss_is_the_softmax_nll():
    logits = np.array([[2.0, 0.0, -1.0], [1000.0, 0.0, 0.0]])  # the second would overflow exp
    labels = np.array([0, 1])
    first = -(2.0 - math.log(math.exp(2.0) + 1 + math.exp(-1.0)))
    second = 1000.0  # log-sum-exp is 1000 to double precision; the label's logit is 0
    assert evaluation.mean_log_loss(logits, labels) == pytest.approx((first + second) / 2)


def test_corpus_bleu_rejects_misaligned_lists():
    with pytest.raises(ValueError, match='2 hypotheses for 1 references'):
        evaluation.corpus_bleu(['a', 'b'], ['a'])


def test_classification_report_writes_what_it_returns(tmp_path):
    logits = np.array([[2.0, 0.0], [0.0, 1.0], [3.0, 0.0], [0.0, 2.0]])
    labels = np.array([0, 1, 1, 1])
    report = evaluation.classification_report(logits, labels, ['neg', 'pos'], str(tmp_path), 't')
    np.testing.assert_array_equal(report['confusion'], [[1, 0], [1, 2]])
    assert report['accuracy'] == 0.75 and report['per_class_accuracy'] == {'neg': 1.0, 'pos': 2 / 3}
    assert (tmp_path / 'confusion_matrix.csv').read_text().splitlines() == [
        'true\\predicted,neg,pos',
        'neg,1,0',
        'pos,1,2',
    ]
    assert (tmp_path / 'confusion_matrix.png').stat().st_size > 0

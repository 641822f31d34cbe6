"""Metrics computed on the host from a model's outputs: BLEU, accuracy, confusion.

Plain NumPy and sacreBLEU, no flags or workdirs, so that drivers, sweeps, the
reproduction claims and notebooks score outputs the same way.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np
import sacrebleu


def corpus_bleu(hypotheses: Sequence[str], references: Sequence[str]) -> tuple[float, str]:
    """sacreBLEU corpus BLEU (one reference per line, detokenised text) and its signature.

    The default 13a tokenisation and mixed case, so scores compare across papers that
    print the same signature.
    """
    if len(hypotheses) != len(references):
        raise ValueError(f'{len(hypotheses)} hypotheses for {len(references)} references')
    metric = sacrebleu.metrics.BLEU()
    if not hypotheses:  # sacreBLEU needs a score before it can sign it
        metric.corpus_score([''], [['']])
        return 0.0, str(metric.get_signature())
    score = metric.corpus_score(list(hypotheses), [list(references)])
    return float(score.score), str(metric.get_signature())


def confusion_matrix(labels, predictions, num_classes: int) -> np.ndarray:
    """[true class, predicted class] counts."""
    labels, predictions = np.asarray(labels), np.asarray(predictions)
    return np.bincount(
        labels * num_classes + predictions, minlength=num_classes * num_classes
    ).reshape(num_classes, num_classes)


def accuracy(labels, predictions) -> float:
    return float(np.mean(np.asarray(labels) == np.asarray(predictions)))


def per_class_accuracy(confusion: np.ndarray) -> np.ndarray:
    """Recall of each true class (the diagonal over the row sums; nan for an absent class)."""
    totals = confusion.sum(axis=1)
    with np.errstate(invalid='ignore', divide='ignore'):
        return np.where(totals > 0, np.diag(confusion) / totals, np.nan)


def mean_log_loss(logits, labels) -> float:
    """Mean negative log-likelihood of `labels` under softmax(`logits`), in float64."""
    z = np.asarray(logits, np.float64)
    z = z - z.max(-1, keepdims=True)
    log_probs = z - np.log(np.exp(z).sum(-1, keepdims=True))
    return float(-np.mean(np.take_along_axis(log_probs, np.asarray(labels)[:, None], 1)))


def classification_report(logits, labels, class_names, directory: str, title: str) -> dict:
    """Accuracy, per-class accuracy, mean log loss and the confusion matrix of a
    classifier's logits, the matrix also written to DIRECTORY/confusion_matrix.png (with
    `title`) and .csv (counts, true classes as rows)."""
    import csv
    import os

    from seqmodels import plots

    predictions = np.asarray(logits).argmax(-1)
    confusion = confusion_matrix(labels, predictions, len(class_names))
    correct = accuracy(labels, predictions)
    png, csv_path = (os.path.join(directory, f'confusion_matrix.{e}') for e in ('png', 'csv'))
    plots.plot_confusion_matrix(
        confusion, class_names, png, f'{title}\naccuracy {correct:.2%} on {len(labels)} examples'
    )
    with open(csv_path, 'w', newline='') as f:
        writer = csv.writer(f)
        writer.writerow(['true\\predicted', *class_names])
        writer.writerows([name, *row.tolist()] for name, row in zip(class_names, confusion))
    per_class = per_class_accuracy(confusion)
    return {
        'count': len(labels),
        'accuracy': correct,
        'loss': mean_log_loss(logits, labels),
        'per_class_accuracy': dict(zip(class_names, per_class.tolist())),
        'confusion': confusion,
        'predictions': predictions,
        'labels': np.asarray(labels),
        'class_names': list(class_names),
        'png': png,
        'csv': csv_path,
    }


def print_evaluation(result: dict, split: str | None = None) -> None:
    """Prints a driver's --mode=evaluate result as one JSON line (experiments.reproduce
    reads the last such line). For classification_report's result: `split`,
    `examples`, `accuracy`, `loss`, `per_class_accuracy`, then where the confusion
    matrix went; any other metrics as eval/<name>."""
    if 'per_class_accuracy' not in result:
        print(json.dumps({f'eval/{k}': float(v) for k, v in result.items()}, sort_keys=True))
        return
    shown = {
        'split': split or result.get('split'),
        'examples': result['count'],
        'accuracy': result['accuracy'],
        'loss': result['loss'],
        'per_class_accuracy': result['per_class_accuracy'],
    }
    print(json.dumps(shown, sort_keys=True))
    print(f'confusion matrix: {result["png"]} (counts: {result["csv"]})')

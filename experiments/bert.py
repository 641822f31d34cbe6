r"""BERT (Devlin et al. 2019): pre-training, fine-tuning, evaluation and prediction.

    # Pre-train (dataset: python_docs, text:PATH or tfds:NAME), or fine-tune (dataset:
    # python_docs_cloze or labeled:DIR) from a pre-trained run (--config.init_from=DIR;
    # '' = random init). Running the same command again resumes from WORKDIR/checkpoints.
    python -m experiments.bert --config=configs/bert.py[:VARIANT] --workdir=DIR \
        [--config.KEY=VALUE ...]
    # Fine-tuned runs: accuracy, per-class accuracy and the confusion matrix on the test
    # split (the validation split when there is none): WORKDIR/confusion_matrix.{png,csv}.
    # Pre-trained runs: masked-LM and next-sentence loss and accuracy on validation.
    python -m experiments.bert --mode=evaluate --workdir=DIR [--step=N]
    # Fine-tuned runs: one predicted label a line for lines in the training format
    # without the label (stdin and stdout when the flags are left out).
    python -m experiments.bert --mode=predict --workdir=DIR [--input=FILE] [--output=FILE]

The modes read the run's own WORKDIR/config.json, tokenizer.model and class_names.json.
"""

from __future__ import annotations

import json
import os

import jax
import numpy as np
from absl import logging

from experiments import common
from seqmodels import evaluation, models, training
from seqmodels.tasks import bert as bert_tasks
from seqmodels.tasks import transfer
from seqmodels.data import bert_finetuning, bert_pretraining, labeled, text_corpus, tokenizers
from seqmodels.data.split_batches import SplitBatches
from seqmodels.inference import predict_logits
from seqmodels.tasks.bert import FinetuningTask, PretrainingTask
from seqmodels.tasks.transfer import TOKENIZER, is_finetuning

CLASS_NAMES = 'class_names.json'


def validate(config) -> None:
    """Every key of a BERT config, checked before anything is read or compiled."""
    common.validate(config, ('bert',))
    transfer.check_config(config, 'bert')
    if is_finetuning(config):
        return
    require = training.require
    require(
        config.num_eval_batches >= 1,
        'num_eval_batches',
        'must be >= 1 for pre-training (its validation batches are drawn, not enumerated)',
        config.num_eval_batches,
    )
    require(0 < config.mask_prob < 1, 'mask_prob', 'must lie in (0, 1)', config.mask_prob)
    require(
        isinstance(config.max_predictions_per_seq, int)
        and 1 <= config.max_predictions_per_seq <= config.seq_len,
        'max_predictions_per_seq',
        f'must be an integer in [1, seq_len={config.seq_len}]',
        config.max_predictions_per_seq,
    )
    for key in ('next_sentence_prob', 'short_seq_prob'):
        require(0 <= config[key] <= 1, key, 'must lie in [0, 1]', config[key])


# --------------------------------------------------------------------------- #
# Building a run.


def build(config, workdir: str, train: bool = True):
    """(data, model, task) for a validated config; fills model.vocab_size and
    model.num_classes, and (train) restores the pre-trained parameters."""
    if is_finetuning(config):
        data = labeled.load_labeled_data(
            config.dataset,
            config.task_type,
            train_split=config.train_split,
            validation_split=config.validation_split,
            test_split=config.test_split,
            normalize=config.normalize,
            seed=config.seed,
        )
        texts = lambda: [t for e in data.examples('train') for t in e.texts]
        num_classes = data.num_options or data.num_classes
    else:
        data = text_corpus.load_text_corpus(
            config.dataset,
            normalize=config.normalize,
            val_fraction=config.val_fraction,
            data_dir=os.path.expanduser(config.data_dir),
        )
        texts = lambda: [s for d in data.train for s in d.sentences]
        num_classes = 0
    tokenizer = bert_tasks.tokenizer_for(config, workdir, texts)
    m = config.model
    training.require(
        m.vocab_size in (0, tokenizer.vocab_size) or m.vocab_size > tokenizer.vocab_size,
        'model.vocab_size',
        f"must be 0 or at least the tokenizer's {tokenizer.vocab_size}",
        m.vocab_size,
    )
    training.require(
        m.num_classes in (0, num_classes),
        'model.num_classes',
        f'does not match the data ({num_classes}); set it to 0',
        m.num_classes,
    )
    with config.unlocked():
        m.vocab_size = m.vocab_size or tokenizer.vocab_size
        m.num_classes = num_classes
    model = models.from_config(config)
    if not is_finetuning(config):
        batches = bert_pretraining.make_pretraining_data(
            data.train,
            data.validation,
            tokenizer,
            seq_len=config.seq_len,
            batch_size=config.batch_size,
            seed=config.seed,
            num_eval_batches=config.num_eval_batches,
            max_predictions=config.max_predictions_per_seq,
            mask_prob=config.mask_prob,
            next_sentence_prob=config.next_sentence_prob,
            short_seq_prob=config.short_seq_prob,
            name=data.name,
        )
        logging.info('data: %s', data.describe())
        return batches, model, PretrainingTask(config, model, batches)
    batches = bert_finetuning.make_finetuning_data(
        data, tokenizer, seq_len=config.seq_len, batch_size=config.batch_size, seed=config.seed
    )
    pretrained = transfer.pretrained_params(config, 'bert') if train and config.init_from else None
    logging.info('data: %s', data.describe())
    if train and jax.process_index() == 0:
        os.makedirs(workdir, exist_ok=True)
        with open(os.path.join(workdir, CLASS_NAMES), 'w') as f:
            json.dump(list(data.class_names), f)
    return batches, model, FinetuningTask(config, model, batches, pretrained)


# --------------------------------------------------------------------------- #
# Modes.


def train(config, workdir):
    validate(config)
    _, _, task = build(config, workdir)
    training.train_and_evaluate(config, workdir, task)
    if jax.process_index() == 0:
        common.print_run_summary(workdir, 'bert', 'evaluate')


def _inputs(batches):
    for b in batches:
        yield {
            'inputs': {'tokens': b['tokens'], 'segment_ids': b['segment_ids']},
            'labels': b.get('labels', np.zeros(len(b['tokens']), np.int32)),
            'weights': b['weights'],
        }


def evaluate(workdir: str, step: int | None = None) -> dict:
    """Fine-tuned runs: accuracy, per-class accuracy and the confusion matrix of the test
    split (else validation), written to WORKDIR/confusion_matrix.{png,csv}. Pre-trained
    runs: the validation metrics."""
    config = common.load_run_config(workdir, 'bert')
    data, model, task = build(config, workdir, train=False)
    params = training.restore_params(workdir, step)
    if not is_finetuning(config):
        mesh = training.make_mesh()
        return training.evaluate(task, training.make_eval_step(task, mesh), params, mesh)
    role = 'test' if 'test' in data.splits else 'validation'
    logits, labels = predict_logits(task.logits, params, _inputs(data.eval_batches(role)), 'inputs')
    with open(os.path.join(workdir, CLASS_NAMES)) as f:
        names = json.load(f)
    title = f'{config.dataset} ({role})'
    return dict(evaluation.classification_report(logits, labels, names, workdir, title), split=role)


def predict(workdir: str, lines, step: int | None = None, source: str = '<stdin>') -> list[str]:
    """The predicted label of each line (the training format without the label)."""
    config = common.load_run_config(workdir, 'bert')
    if not is_finetuning(config):
        raise common.UsageError(f'{workdir} is a pre-training run; predict needs a fine-tuned one')
    with open(os.path.join(workdir, CLASS_NAMES)) as f:
        names = json.load(f)
    tokenizer = tokenizers.SentencePieceTokenizer.load(os.path.join(workdir, TOKENIZER))
    if not lines:
        return []
    examples = labeled.parse_lines(
        lines, config.task_type, with_labels=False, source=source, normalize=config.normalize
    )
    split = bert_finetuning.encode_texts(
        [e.texts for e in examples], None, config.task_type, tokenizer, config.seq_len
    )
    data = SplitBatches({'predict': split}, config.batch_size, config.seed)
    task = FinetuningTask(config, models.from_config(config), data)
    params = training.restore_params(workdir, step)
    logits, _ = predict_logits(task.logits, params, _inputs(data.eval_batches('predict')), 'inputs')
    return [names[i] for i in logits.argmax(-1)]


def evaluate_mode(workdir):
    evaluation.print_evaluation(evaluate(workdir, common.STEP.value))


def predict_mode(workdir):
    lines = common.read_lines(common.INPUT.value)
    common.write_lines(
        predict(workdir, lines, common.STEP.value, common.INPUT.value or '<stdin>'),
        common.OUTPUT.value,
    )


if __name__ == '__main__':
    common.run_driver(
        train, {'evaluate': evaluate_mode, 'predict': predict_mode}, 'configs/bert.py:mini'
    )

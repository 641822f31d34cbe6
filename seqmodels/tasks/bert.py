"""The BERT tasks the training engine runs (`seqmodels.training.Task`): pre-training
(masked LM + next-sentence prediction, Devlin et al. 2019 §3.1) and fine-tuning (a
softmax over classes or options from the pooled [CLS] state, §4); the tokenizer and the
pre-trained parameters a run starts from."""

from __future__ import annotations


import numpy as np
import optax

from seqmodels import models, training
from seqmodels.data import bert_pretraining
from seqmodels.data.split_batches import SplitBatches
from seqmodels.data.bert_pretraining import BertPretrainingData
from seqmodels.tasks import transfer
from seqmodels.models.bert import BERT, pretraining_loss, pretraining_sums

PRETRAINING_HEADS = ('mlm_head', 'nsp_head')  # not used, so not loaded, by fine-tuning


class PretrainingTask:
    """Masked LM over the masked slots plus next-sentence prediction (§3.1)."""

    def __init__(self, config, model: BERT, data: BertPretrainingData):
        self.config, self.model, self.data = config, model, data

    def init_params(self, rng):
        return models.init_params(self.config.model, self.model, rng)

    def _logits(self, params, batch, rng=None, deterministic=True):
        return self.model.apply(
            {'params': params},
            batch['tokens'],
            batch['segment_ids'],
            batch['masked_positions'],
            deterministic=deterministic,
            rngs={} if rng is None else {'dropout': rng},
        )

    def loss_fn(self, params, batch, rng, deterministic, step):
        del step
        loss, metrics = pretraining_loss(*self._logits(params, batch, rng, deterministic), batch)
        return loss, {**metrics, 'num_tokens': (batch['tokens'] != 0).sum()}

    def train_batch(self, step, process_index, process_count):
        return self.data.train_batch(step, process_index, process_count)

    def eval_metrics(self, params, batch):
        return pretraining_sums(*self._logits(params, batch), batch)

    def eval_batches(self, process_index, process_count):
        return self.data.eval_batches(process_index, process_count)


class FinetuningTask:
    """Softmax cross-entropy over the classes (or the options) from the [CLS] state; the
    encoder starts from the pre-trained run's parameters when there is one."""

    def __init__(self, config, model: BERT, data: SplitBatches, pretrained=None):
        self.config, self.model, self.data, self.pretrained = config, model, data, pretrained
        multiple_choice = config.task_type == 'multiple_choice'
        self.method = BERT.score_options if multiple_choice else BERT.classify
        self.head = 'option_scorer' if multiple_choice else 'classifier'

    def init_params(self, rng):
        first = self.data.splits['train'].rows(np.arange(1))
        fresh = self.model.init(
            {'params': rng, 'dropout': rng},
            first['tokens'],
            first['segment_ids'],
            method=self.method,
        )['params']
        if self.pretrained is None:
            return fresh
        return training.load_pretrained(
            fresh, self.pretrained, new=(self.head,), unused=PRETRAINING_HEADS
        )

    def logits(self, params, inputs, rng=None, deterministic=True):
        return self.model.apply(
            {'params': params},
            inputs['tokens'],
            inputs['segment_ids'],
            deterministic=deterministic,
            method=self.method,
            rngs={} if rng is None else {'dropout': rng},
        )

    def loss_fn(self, params, batch, rng, deterministic, step):
        del step
        logits = self.logits(params, batch, rng, deterministic)
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch['labels']).mean()
        accuracy = (logits.argmax(-1) == batch['labels']).mean()
        return loss, {'accuracy': accuracy, 'num_examples': batch['labels'].shape[0]}

    def train_batch(self, step, process_index, process_count):
        return self.data.train_batch(step, process_index, process_count)

    def eval_metrics(self, params, batch):
        logits = self.logits(params, batch)
        nll = optax.softmax_cross_entropy_with_integer_labels(logits, batch['labels'])
        w = batch['weights']
        correct = logits.argmax(-1) == batch['labels']
        return {'loss': ((nll * w).sum(), w.sum()), 'accuracy': ((correct * w).sum(), w.sum())}

    def eval_batches(self, process_index, process_count):
        if 'validation' not in self.data.splits:
            return iter(())
        return self.data.eval_batches(
            'validation', process_index, process_count, self.config.num_eval_batches or None
        )


def tokenizer_for(config, workdir: str, sentences):
    """The run's tokenizer (`transfer.tokenizer_for`) with BERT's special tokens."""
    return transfer.tokenizer_for(
        config, workdir, sentences, bert_pretraining.SPECIAL_TOKENS, 'bert'
    )

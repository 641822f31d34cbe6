"""The GPT tasks the training engine runs (`seqmodels.training.Task`), and what a run
is built from: its tokenizer, its data, the pre-trained parameters it starts from.

Pre-training (`language_model.LanguageModelTask`): next-token cross-entropy on windows
of the subword stream (Radford et al. 2018 §3.1, L1). Fine-tuning (`FinetuningTask`):
L3 = L2 + λ·L1 (§3.2, λ = config.lm_coef) on the task's input transformations (§3.3,
`data.gpt_inputs`), with the head on the extract token's final state.

A fine-tuning run starts from a pre-trained one as `tasks.transfer` says.
"""

from __future__ import annotations

import math
import os

import optax

from seqmodels import models, training
from seqmodels.data import gpt_inputs, labeled, text_corpus, tokenizers
from seqmodels.data.split_batches import SplitBatches
from seqmodels.models.gpt import GPT, fine_tuning_loss
from seqmodels.tasks import transfer
from seqmodels.tasks.language_model import LanguageModelTask

HEAD = ('classifier',)  # the parameters a fine-tuned GPT has that a pre-trained one lacks


def combine(task_type: str) -> str:
    """How GPT.task_logits turns the sequences of an example into logits."""
    return 'choices' if task_type == 'multiple_choice' else 'sum'


class FinetuningTask:
    """L3 = L2 + lm_coef * L1 on the task's sequences; eval: task loss and accuracy."""

    def __init__(self, config, model: GPT, batches: SplitBatches, pretrained=None):
        self.config, self.model, self.batches = config, model, batches
        self.pretrained = pretrained
        self.combine = combine(config.task_type)

    def init_params(self, rng):
        params = models.init_params(self.config.model, self.model, rng)
        if self.pretrained is None:
            return params
        return training.load_pretrained(params, self.pretrained, new=HEAD)

    def logits(self, params, inputs, with_lm=False, rng=None, deterministic=True):
        """(lm_logits or None, task logits) of inputs {'tokens', 'last'}."""
        return self.model.apply(
            {'params': params},
            inputs['tokens'],
            inputs['last'],
            self.combine,
            with_lm,
            deterministic,
            method=GPT.task_logits,
            rngs=None if rng is None else {'dropout': rng},
        )

    def loss_fn(self, params, batch, rng, deterministic, step):
        del step
        lm_coef = self.config.lm_coef
        lm_logits, logits = self.logits(params, batch, lm_coef > 0, rng, deterministic)
        loss, task_loss, lm_loss = fine_tuning_loss(
            logits, batch['labels'], lm_logits, batch['tokens'], batch['lm_weights'], lm_coef
        )
        accuracy = (logits.argmax(-1) == batch['labels']).mean()
        aux = {
            'task_loss': task_loss,
            'accuracy': accuracy,
            'num_examples': batch['labels'].shape[0],
        }
        if lm_coef > 0:
            aux['lm_loss'] = lm_loss
        return loss, aux

    def train_batch(self, step, process_index, process_count):
        return self.batches.train_batch(step, process_index, process_count)

    def eval_metrics(self, params, batch):
        _, logits = self.logits(params, batch)
        nll = optax.softmax_cross_entropy_with_integer_labels(logits, batch['labels'])
        correct = logits.argmax(-1) == batch['labels']
        w = batch['weights']
        return {'loss': ((nll * w).sum(), w.sum()), 'accuracy': ((correct * w).sum(), w.sum())}

    def eval_batches(self, process_index, process_count):
        if 'validation' not in self.batches.splits:
            return iter(())
        return self.batches.eval_batches(
            'validation', process_index, process_count, self.config.num_eval_batches or None
        )


# --------------------------------------------------------------------------- #
# What a run is built from.


def tokenizer_for(config, workdir: str, sentences) -> tokenizers.SentencePieceTokenizer:
    """The run's tokenizer (`transfer.tokenizer_for`) with GPT's special tokens."""
    tokenizer = transfer.tokenizer_for(config, workdir, sentences, gpt_inputs.SPECIAL_TOKENS, 'gpt')
    gpt_inputs.SpecialIds.of(tokenizer)  # a tokenizer from elsewhere must reserve them
    return tokenizer


def fill_vocab_size(config, tokenizer) -> None:
    """model.vocab_size: 0 means the tokenizer's; a larger value leaves rows unused."""
    given = config.model.vocab_size
    training.require(
        given == 0 or given >= tokenizer.vocab_size,
        'model.vocab_size',
        f'is smaller than the tokenizer ({tokenizer.vocab_size} pieces); set it '
        "to 0 (= the tokenizer's size) or larger",
        given,
    )
    with config.unlocked():
        config.model.vocab_size = given or tokenizer.vocab_size


def build_pretraining(config, workdir: str):
    """(model, task) of a pre-training config; trains or reloads the tokenizer."""
    corpus = text_corpus.load_text_corpus(
        config.dataset,
        normalize=config.normalize,
        val_fraction=config.val_fraction,
        data_dir=os.path.expanduser(config.data_dir),
    )
    tokenizer = tokenizer_for(
        config, workdir, lambda: [s for d in corpus.train for s in d.sentences]
    )
    data = gpt_inputs.make_lm_data(
        corpus, tokenizer, seq_len=config.seq_len, batch_size=config.batch_size, seed=config.seed
    )
    fill_vocab_size(config, tokenizer)
    model = models.from_config(config)
    return model, LanguageModelTask(
        config, model, data, data.vocab, sample_length=config.sample_tokens
    )


def build_finetuning(config, workdir: str, restore: bool = True):
    """(model, task, labelled data, tokenizer) of a fine-tuning config. Fills
    model.num_classes (1 for multiple choice: one score per option), vocab_size, and
    num_train_steps when `num_epochs` > 0 (epochs of the training split);
    `restore=False` skips reading the pre-trained parameters (for the modes that read
    this run's own checkpoint)."""
    data = labeled.load_labeled_data(
        config.dataset,
        config.task_type,
        train_split=config.train_split,
        validation_split=config.validation_split,
        test_split=config.test_split,
        normalize=config.normalize,
        seed=config.seed,
    )
    tokenizer = tokenizer_for(
        config, workdir, lambda: [t for e in data.examples('train') for t in e.texts]
    )
    num_classes = 1 if config.task_type == 'multiple_choice' else data.num_classes
    given = config.model.num_classes
    what = 'score per option' if num_classes == 1 else 'classes'
    training.require(
        given in (0, num_classes),
        'model.num_classes',
        f'does not match {data.name} ({num_classes} {what}); set it to '
        f'{num_classes} or 0 (= from the data)',
        given,
    )
    with config.unlocked():
        config.model.num_classes = num_classes
    pretrained = None
    if config.init_from and restore:
        pretrained = transfer.pretrained_params(config, 'gpt')
    fill_vocab_size(config, tokenizer)
    batches = gpt_inputs.make_task_batches(
        data, tokenizer, max_len=config.seq_len, batch_size=config.batch_size, seed=config.seed
    )
    if config.num_epochs:
        with config.unlocked():
            config.num_train_steps = math.ceil(
                config.num_epochs * len(batches.splits['train']) / config.batch_size
            )
    model = models.from_config(config)
    return model, FinetuningTask(config, model, batches, pretrained), data, tokenizer

"""The translation Task the engine runs: teacher-forced, label-smoothed cross-entropy of
the Transformer or the RNN encoder-decoder, validation loss and sacreBLEU of decoded
validation lines (`experiments/translation.py` builds it; tests and notebooks may too)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from seqmodels import evaluation, models
from seqmodels.data import translation as translation_data
from seqmodels.inference import Translator
from seqmodels.losses import label_smoothed_cross_entropy
from seqmodels.models import scheduled_sampling
from absl import logging


class TranslationTask:
    """Teacher forcing: label-smoothed cross-entropy over the real target tokens.

    The loss of a batch is the mean over its non-pad target tokens (weights from the
    batch). With grad_accum_steps > 1 the engine averages the micro-batches' means,
    which weighs a token of a short micro-batch a little more than one of a long one.
    """

    def __init__(self, config, model, data):
        self.config, self.model, self.data = config, model, data
        self.is_transformer = isinstance(model, models.Transformer)
        self.epsilon = (
            scheduled_sampling.from_config(config) if config.scheduled_sampling != 'none' else None
        )
        self._translator = None

    def init_params(self, rng):
        return models.init_params(self.config.model, self.model, rng)

    def logits(self, params, batch, rng, deterministic, step=None):
        src, tgt_in = batch['src'], batch['tgt_in']
        rngs = {} if rng is None else {'dropout': rng}
        if self.is_transformer:
            return self.model.apply(
                {'params': params}, src, tgt_in, deterministic=deterministic, rngs=rngs
            )
        # eps(step) of scheduled sampling, while training only.
        kwargs = (
            {} if self.epsilon is None or step is None else {'sampling_prob': self.epsilon(step)}
        )
        return self.model.apply(
            {'params': params},
            src,
            batch['src_lengths'],
            tgt_in,
            deterministic=deterministic,
            rngs=rngs,
            **kwargs,
        )

    def loss_fn(self, params, batch, rng, deterministic, step):
        logits = self.logits(params, batch, rng, deterministic, step)
        w = batch['weights']
        num_tokens = jnp.maximum(w.sum(), 1.0)
        smoothed = label_smoothed_cross_entropy(
            logits, batch['tgt_out'], self.config.label_smoothing
        )
        aux = {
            'nll' if k == 'loss' else k: total / num_tokens
            for k, (total, _) in self.scores(logits, batch).items()
        }
        return (smoothed * w).sum() / num_tokens, dict(aux, num_tokens=w.sum())

    @staticmethod
    def scores(logits, batch):
        """Summed negative log-likelihood and correct tokens, with their weight."""
        nll = label_smoothed_cross_entropy(logits, batch['tgt_out'], 0.0)
        correct = logits.argmax(-1) == batch['tgt_out']
        w = batch['weights']
        return {'loss': ((nll * w).sum(), w.sum()), 'accuracy': ((correct * w).sum(), w.sum())}

    def train_batch(self, step, process_index, process_count):
        return self.data.train_batch(step, process_index, process_count)

    def eval_metrics(self, params, batch):
        batch = translation_data.fit_to_length(batch, getattr(self.model, 'max_len', None))
        return self.scores(self.logits(params, batch, None, deterministic=True), batch)

    def eval_batches(self, process_index, process_count):
        if not self.data.split_stems['validation']:
            return iter(())
        batches = self.data.eval_iterator('validation', process_index, process_count)
        return ({k: v for k, v in b.items() if k != 'example_ids'} for b in batches)

    def finalize_eval(self, metrics):
        if 'loss' in metrics:
            metrics = dict(metrics, perplexity=math.exp(min(metrics['loss'], 100.0)))
        return metrics

    def on_eval(self, params, step):
        n = self.config.num_eval_examples
        if not n or not self.data.split_stems['validation']:
            return {}
        sources = self.data.sources('validation')[:n]
        references = self.data.references('validation')[:n]
        if self._translator is None:
            self._translator = Translator.from_config(
                self.config, self.model, self.data.source_tokenizer, self.data.target_tokenizer
            )
            logging.info(
                'eval/bleu: sacreBLEU on the first %d validation lines, %s decoding; signature %s',
                len(sources),
                self.config.eval_decoding,
                evaluation.corpus_bleu([], [])[1],
            )
        beams = 1 if self.config.eval_decoding == 'greedy' else self.config.beam_size
        bleu, _, hypotheses, _ = self._translator.score(
            jax.device_get(params), sources, references, beams
        )
        shown = [
            f'src: {s}\nref: {r}\nhyp: {h}' for s, r, h in zip(sources, references, hypotheses)
        ][: self.config.num_shown_translations]
        return {'bleu': bleu, **({'translations': '\n\n'.join(shown)} if shown else {})}

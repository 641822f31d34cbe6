"""Next-token prediction, the Task of every language model here: the character-level
RNNs and GPTs of the char-LM experiment and GPT's subword pre-training."""

from __future__ import annotations

import math

import jax
import optax

from seqmodels import models
from seqmodels.inference import Sampler
from seqmodels.models import scheduled_sampling


class LanguageModelTask:
    """Cross-entropy of the next token in nats; eval adds accuracy, perplexity and bits
    per token (`bits_per_<unit>`), and a sample of `sample_length` tokens from `vocab`.

    `data` gives train_batch(step, p, P) and eval_batches(p, P, n) of {'inputs',
    'targets'} (and eval 'weights'). With config.scheduled_sampling other than 'none'
    (the RNN LM), the probability of feeding the true previous token is eps(step),
    computed inside the jitted step from the step the engine hands in.
    """

    def __init__(self, config, model, data, vocab, *, unit: str = 'token', sample_length: int = 0):
        self.config, self.model, self.data, self.vocab = config, model, data, vocab
        self.unit, self.sample_length = unit, sample_length
        kind = config.get('scheduled_sampling', 'none')
        self.epsilon = None if kind == 'none' else scheduled_sampling.from_config(config)

    def init_params(self, rng):
        return models.init_params(self.config.model, self.model, rng)

    def loss_fn(self, params, batch, rng, deterministic, step):
        kwargs = {} if self.epsilon is None else {'sampling_prob': self.epsilon(step)}
        logits = self.model.apply(
            {'params': params},
            batch['inputs'],
            deterministic=deterministic,
            rngs={'dropout': rng},
            **kwargs,
        )
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch['targets']).mean()
        return loss, {'num_tokens': batch['targets'].size}

    def train_batch(self, step, process_index, process_count):
        return self.data.train_batch(step, process_index, process_count)

    def eval_metrics(self, params, batch):
        logits = self.model.apply({'params': params}, batch['inputs'], deterministic=True)
        nll = optax.softmax_cross_entropy_with_integer_labels(logits, batch['targets'])
        correct = logits.argmax(-1) == batch['targets']
        w = batch['weights']
        return {'loss': ((nll * w).sum(), w.sum()), 'accuracy': ((correct * w).sum(), w.sum())}

    def eval_batches(self, process_index, process_count):
        return self.data.eval_batches(
            process_index, process_count, self.config.num_eval_batches or None
        )

    def finalize_eval(self, metrics):
        return dict(
            metrics,
            perplexity=math.exp(min(metrics['loss'], 700.0)),
            **{f'bits_per_{self.unit}': metrics['loss'] / math.log(2)},
        )

    def on_eval(self, params, step):
        if not self.sample_length:
            return {}
        prompt = self.config.sample_prompt
        text = Sampler(self.model, params, self.vocab).generate(
            prompt, self.sample_length, jax.random.key(step), self.config.sample_temperature
        )
        return {'sample': text if self.unit == 'char' else prompt + text}

"""The image-classification Task the engine runs (ViT): softmax cross-entropy with label
smoothing in training, loss and top-1 accuracy in evaluation."""

from __future__ import annotations

import jax
import optax

from seqmodels import models
from seqmodels.data.images import ImageData


class ViTTask:
    """Softmax classification; the training loss uses label smoothing, eval does not."""

    def __init__(self, config, model: models.ViT, data: ImageData):
        self.config, self.model, self.data = config, model, data

    def init_params(self, rng):
        return models.init_params(self.config.model, self.model, rng)

    def loss_fn(self, params, batch, rng, deterministic, step):
        del step  # no step-dependent term
        logits = self.model.apply(
            {'params': params}, batch['images'], deterministic=deterministic, rngs={'dropout': rng}
        )
        targets = optax.smooth_labels(
            jax.nn.one_hot(batch['labels'], logits.shape[-1]), self.config.label_smoothing
        )
        loss = optax.softmax_cross_entropy(logits, targets).mean()
        accuracy = (logits.argmax(-1) == batch['labels']).mean()
        return loss, {'accuracy': accuracy, 'num_examples': batch['labels'].shape[0]}

    def train_batch(self, step, process_index, process_count):
        return self.data.train_batch(step, process_index, process_count)

    def eval_metrics(self, params, batch):
        logits = self.model.apply({'params': params}, batch['images'], deterministic=True)
        nll = optax.softmax_cross_entropy_with_integer_labels(logits, batch['labels'])
        correct = logits.argmax(-1) == batch['labels']
        w = batch['weights']
        return {'loss': ((nll * w).sum(), w.sum()), 'accuracy': ((correct * w).sum(), w.sum())}

    def eval_batches(self, process_index, process_count):
        return self.data.eval_batches(
            process_index, process_count, self.config.num_eval_batches or None
        )

"""Training losses shared by the experiments (jnp, traced inside the train step)."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def label_smoothed_cross_entropy(logits, targets, smoothing: float):
    """Per-token cross-entropy against (1 - smoothing) on the target and smoothing
    spread evenly over the other V - 1 tokens (Szegedy et al. 2016; Vaswani et al.
    2017 §5.4). smoothing=0 is the plain negative log-likelihood."""
    vocab = logits.shape[-1]
    log_p = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    nll = -jnp.take_along_axis(log_p, targets[..., None], axis=-1)[..., 0]
    if not smoothing:
        return nll
    others = -jnp.sum(log_p, axis=-1) - nll  # -sum of log p over the non-targets
    return (1.0 - smoothing) * nll + smoothing / (vocab - 1) * others

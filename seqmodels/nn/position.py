"""Position encodings: the fixed sinusoids of Vaswani et al. (2017, §3.5), learned
position embeddings (BERT, GPT, ViT) and fixed 2-D sin-cos encodings for image patches.

Modules take integer positions [..., T] and return [..., T, d_model], so a decoder
that runs one step at a time asks for position cache_index rather than 0.
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp
import numpy as np


def sinusoidal_position_encoding(
    length: int, d_model: int, max_timescale: float = 10000.0
) -> np.ndarray:
    """[length, d_model] float32 table.

    PE(pos, 2i) = sin(pos / 10000^(2i / d_model))
    PE(pos, 2i + 1) = cos(pos / 10000^(2i / d_model))
    """
    if d_model % 2:
        raise ValueError(f'sinusoidal encoding needs an even d_model, got {d_model}')
    pos = np.arange(length, dtype=np.float64)[:, None]
    two_i = np.arange(0, d_model, 2, dtype=np.float64)[None, :]
    angle = pos / np.power(max_timescale, two_i / d_model)
    table = np.empty((length, d_model), dtype=np.float64)
    table[:, 0::2] = np.sin(angle)
    table[:, 1::2] = np.cos(angle)
    return table.astype(np.float32)


def sincos_2d_position_encoding(
    height: int, width: int, d_model: int, max_timescale: float = 10000.0
) -> np.ndarray:
    """[height * width, d_model] float32, row-major over the patch grid.

    A quarter of the channels each for sin(y ω), cos(y ω), sin(x ω), cos(x ω) with
    ω_k = 1 / max_timescale^(k / (d_model/4)) (the fixed ViT variant of Chen et al.
    2021, "An Empirical Study of Training Self-Supervised Vision Transformers").
    """
    if d_model % 4:
        raise ValueError(f'2-D sin-cos encoding needs d_model divisible by 4, got {d_model}')
    quarter = d_model // 4
    omega = 1.0 / np.power(max_timescale, np.arange(quarter, dtype=np.float64) / quarter)
    y, x = np.meshgrid(
        np.arange(height, dtype=np.float64), np.arange(width, dtype=np.float64), indexing='ij'
    )
    y_angle = y.reshape(-1, 1) * omega[None]
    x_angle = x.reshape(-1, 1) * omega[None]
    table = np.concatenate(
        [np.sin(y_angle), np.cos(y_angle), np.sin(x_angle), np.cos(x_angle)], axis=1
    )
    return table.astype(np.float32)


class SinusoidalPositionEncoding(nn.Module):
    """Fixed encodings looked up by position; no parameters."""

    max_len: int
    d_model: int

    def __call__(self, positions):
        table = jnp.asarray(sinusoidal_position_encoding(self.max_len, self.d_model))
        return jnp.take(table, positions, axis=0)


class LearnedPositionEmbedding(nn.Module):
    """A trained vector per position, max_len positions."""

    max_len: int
    d_model: int
    embedding_init: nn.initializers.Initializer = nn.initializers.normal(stddev=0.02)

    @nn.compact
    def __call__(self, positions):
        table = self.param('embedding', self.embedding_init, (self.max_len, self.d_model))
        return jnp.take(table, positions, axis=0)

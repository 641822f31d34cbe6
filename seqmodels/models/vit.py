"""Vision Transformer: Dosovitskiy et al. 2021, "An Image is Worth 16x16 Words:
Transformers for Image Recognition at Scale".

Eq. 1-4: the image is cut into P×P patches, each linearly projected to d_model (a
convolution with kernel = stride = P); a learned [class] token is prepended and
position embeddings are added; a pre-norm Transformer encoder with GELU MLPs and a
final LayerNorm follows; the head reads the [class] state (pool='cls') or the mean of
the patch states (pool='gap', the paper's Appendix D.3 alternative). Images are NHWC
floats.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from seqmodels.nn.position import LearnedPositionEmbedding, sincos_2d_position_encoding
from seqmodels.nn.transformer import Encoder

POOLS = ('cls', 'gap')
POSITION_EMBEDDINGS = ('learned', 'sincos2d')  # sincos2d is fixed


def extract_patches(images, patch_size: int):
    """[B, H, W, C] -> [B, (H/P)·(W/P), P·P·C], patches in row-major grid order, each
    flattened row-major over (row, column, channel)."""
    b, h, w, c = images.shape
    p = patch_size
    if h % p or w % p:
        raise ValueError(f'image size {h}x{w} is not divisible by patch size {p}')
    x = images.reshape(b, h // p, p, w // p, p, c)
    x = x.transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(b, (h // p) * (w // p), p * p * c)


def assemble_patches(patches, image_shape):
    """Inverse of `extract_patches`: [B, N, P·P·C] -> [B, H, W, C] for image_shape
    (H, W, C) (a leading batch entry is ignored)."""
    h, w, c = image_shape[-3:]
    b, n, d = patches.shape
    p = round((d // c) ** 0.5)
    if p * p * c != d or n != (h // p) * (w // p):
        raise ValueError(f'patches {patches.shape} do not tile an image of shape {(h, w, c)}')
    x = patches.reshape(b, h // p, w // p, p, p, c)
    x = x.transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(b, h, w, c)


class ViT(nn.Module):
    image_size: int = 224
    num_channels: int = 3  # the shape of `example_inputs`; flax infers it when applied
    patch_size: int = 16
    num_classes: int = 1000
    d_model: int = 768  # "hidden size D"
    num_layers: int = 12
    num_heads: int = 12
    d_ff: int = 3072  # "MLP size"
    dropout: float = 0.0
    attention_dropout: float = 0.0
    pool: str = 'cls'  # 'cls' | 'gap'
    use_position_embeddings: bool = True
    position_embedding: str = 'learned'  # 'learned' | 'sincos2d' (fixed)
    representation_size: int | None = None  # pre-logits dense + tanh (pre-training head)
    head_zero_init: bool = True  # the fine-tuning head starts at zero (§3.2)
    layer_norm_epsilon: float = 1e-6
    scan_layers: bool = False
    remat: str = 'none'  # 'none' | 'block' | 'dots' (seqmodels.nn.transformer)
    # Of the computation (seqmodels.precision; set from config.precision, not a model
    # key); parameters stay float32 and the logits are returned in float32.
    dtype: Any = jnp.float32

    def setup(self):
        if self.pool not in POOLS:
            raise ValueError(f'pool must be one of {POOLS}, got {self.pool!r}')
        if self.position_embedding not in POSITION_EMBEDDINGS:
            raise ValueError(
                f'position_embedding must be one of {POSITION_EMBEDDINGS}, '
                f'got {self.position_embedding!r}'
            )
        if self.image_size % self.patch_size:
            raise ValueError(
                f'image_size={self.image_size} is not divisible by patch_size={self.patch_size}'
            )
        p = self.patch_size
        self.patch_embed = nn.Conv(
            self.d_model, (p, p), strides=(p, p), padding='VALID', dtype=self.dtype
        )
        if self.pool == 'cls':
            self.cls_token = self.param('cls_token', nn.initializers.zeros, (1, 1, self.d_model))
        if self.use_position_embeddings and self.position_embedding == 'learned':
            self.position_embed = LearnedPositionEmbedding(self.num_tokens, self.d_model)
        self.embed_dropout = nn.Dropout(self.dropout)
        self.encoder = Encoder(
            num_heads=self.num_heads,
            d_model=self.d_model,
            d_ff=self.d_ff,
            num_layers=self.num_layers,
            dropout=self.dropout,
            attention_dropout=self.attention_dropout,
            activation='gelu',
            norm='pre',
            layer_norm_epsilon=self.layer_norm_epsilon,
            scan_layers=self.scan_layers,
            remat=self.remat,
            dtype=self.dtype,
        )
        if self.representation_size:
            self.pre_logits = nn.Dense(self.representation_size, dtype=self.dtype)
        head_init = nn.initializers.zeros if self.head_zero_init else nn.initializers.lecun_normal()
        self.head = nn.Dense(self.num_classes, kernel_init=head_init, dtype=self.dtype)

    @property
    def grid_size(self) -> int:
        return self.image_size // self.patch_size

    @property
    def num_tokens(self) -> int:
        return self.grid_size**2 + (1 if self.pool == 'cls' else 0)

    def __call__(self, images, deterministic: bool = True):
        """images [B, image_size, image_size, C] -> logits [B, num_classes] (float32)."""
        return self.head(self.features(images, deterministic)).astype(jnp.float32)

    def features(self, images, deterministic: bool = True):
        """The representation the head reads: [B, d_model] (or representation_size)."""
        if images.shape[1:3] != (self.image_size, self.image_size):
            raise ValueError(
                f'expected {self.image_size}x{self.image_size} images, got shape {images.shape}'
            )
        x = self.patch_embed(images)
        x = x.reshape(x.shape[0], -1, self.d_model)
        if self.pool == 'cls':
            cls = jnp.broadcast_to(self.cls_token, (x.shape[0], 1, self.d_model))
            x = jnp.concatenate([cls.astype(x.dtype), x], axis=1)
        x = (x + self.position_encoding()).astype(self.dtype)
        x = self.embed_dropout(x, deterministic=deterministic)
        x = self.encoder(x, deterministic=deterministic)
        x = x[:, 0] if self.pool == 'cls' else x.mean(axis=1)
        if self.representation_size:
            x = jnp.tanh(self.pre_logits(x))
        return x

    def position_encoding(self):
        if not self.use_position_embeddings:
            return jnp.zeros((1, self.num_tokens, self.d_model))
        if self.position_embedding == 'learned':
            return self.position_embed(jnp.arange(self.num_tokens))[None]
        table = sincos_2d_position_encoding(self.grid_size, self.grid_size, self.d_model)
        if self.pool == 'cls':
            table = jnp.concatenate([jnp.zeros((1, self.d_model)), table], axis=0)
        return jnp.asarray(table)[None]


def example_inputs(model: ViT, batch_size: int = 1) -> tuple:
    """(images,) of the model's size and channels for `model.init(rngs, *inputs)`."""
    shape = (batch_size, model.image_size, model.image_size, model.num_channels)
    return (jnp.zeros(shape, jnp.float32),)

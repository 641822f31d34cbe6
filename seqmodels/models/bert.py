"""BERT: Devlin et al. 2019, "BERT: Pre-training of Deep Bidirectional Transformers for
Language Understanding".

Input representation (§3, Figure 2): token + segment + position embeddings, summed,
then LayerNorm and dropout. A post-norm Transformer encoder with GELU. Heads: the
pooler (dense + tanh on the final state of [CLS]), the masked-LM head (dense + GELU +
LayerNorm, then the transposed token embedding plus an output bias) and the
next-sentence head (2-way linear on the pooled output). `mask_tokens` builds the
masked-LM inputs of §3.1 (Task #1); `pretraining_loss` is the sum of the two
pre-training losses.

Fine-tuning (§4): `classify` puts the pooled [CLS] state, after dropout, through a
linear layer of `num_classes` outputs (single sentences and sentence pairs alike);
`score_options` gives each option of a multiple-choice example (§4.4, SWAG) the dot
product of its pooled state with one learned vector, to be softmaxed over the options.
Parameters exist only for the heads a model is initialised with: `model.init` through
`__call__` creates the pre-training heads, through `classify` the classifier.

Token id 0 is padding ([PAD] in the released vocabularies): padded keys are masked.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from seqmodels.nn.masks import key_padding_mask
from seqmodels.nn.position import LearnedPositionEmbedding
from seqmodels.nn.transformer import ACTIVATIONS, Encoder

PAD_ID = 0
INIT_STD = 0.02


class MLMHead(nn.Module):
    """Transform each final state, then score it against the (tied) token embeddings."""

    vocab_size: int
    layer_norm_epsilon: float = 1e-12
    dtype: Any = jnp.float32  # of the computation; the logits are float32

    @nn.compact
    def __call__(self, h, embedding: nn.Embed):
        init = nn.initializers.truncated_normal(INIT_STD)
        h = nn.Dense(h.shape[-1], kernel_init=init, dtype=self.dtype, name='transform')(h)
        h = nn.LayerNorm(epsilon=self.layer_norm_epsilon, dtype=self.dtype, name='transform_norm')(
            ACTIVATIONS['gelu'](h)
        )
        bias = self.param('output_bias', nn.initializers.zeros, (self.vocab_size,))
        return embedding.attend(h).astype(jnp.float32) + bias


class BERT(nn.Module):
    vocab_size: int = 30522
    max_len: int = 512  # position embeddings
    type_vocab_size: int = 2  # segments A and B
    d_model: int = 768
    num_heads: int = 12
    d_ff: int = 3072
    num_layers: int = 12
    dropout: float = 0.1
    attention_dropout: float = 0.1
    layer_norm_epsilon: float = 1e-12
    scan_layers: bool = False
    remat: str = 'none'  # 'none' | 'block' | 'dots' (seqmodels.nn.transformer)
    num_classes: int = 0  # outputs of the fine-tuning classifier (0: pre-training only)
    # Of the computation (seqmodels.precision; set from config.precision, not a model
    # key); parameters stay float32 and every head's logits are returned in float32.
    dtype: Any = jnp.float32

    def setup(self):
        init = nn.initializers.truncated_normal(INIT_STD)
        dense = lambda features, **kw: nn.Dense(features, kernel_init=init, dtype=self.dtype, **kw)
        self.token_embed = nn.Embed(
            self.vocab_size, self.d_model, embedding_init=init, dtype=self.dtype
        )
        self.segment_embed = nn.Embed(
            self.type_vocab_size, self.d_model, embedding_init=init, dtype=self.dtype
        )
        self.position_embed = LearnedPositionEmbedding(
            self.max_len, self.d_model, embedding_init=init
        )
        self.embed_norm = nn.LayerNorm(epsilon=self.layer_norm_epsilon, dtype=self.dtype)
        self.embed_dropout = nn.Dropout(self.dropout)
        self.encoder = Encoder(
            num_heads=self.num_heads,
            d_model=self.d_model,
            d_ff=self.d_ff,
            num_layers=self.num_layers,
            dropout=self.dropout,
            attention_dropout=self.attention_dropout,
            activation='gelu',
            norm='post',
            layer_norm_epsilon=self.layer_norm_epsilon,
            kernel_init=init,
            scan_layers=self.scan_layers,
            remat=self.remat,
            dtype=self.dtype,
        )
        self.pooler = dense(self.d_model)
        self.mlm_head = MLMHead(self.vocab_size, self.layer_norm_epsilon, self.dtype)
        self.nsp_head = dense(2)
        self.head_dropout = nn.Dropout(self.dropout)
        self.classifier = dense(max(self.num_classes, 1))
        # §4.4: "a vector whose dot product with the [CLS] token representation C
        # denotes a score for each choice"; a bias would cancel in the softmax.
        self.option_scorer = dense(1, use_bias=False)

    def __call__(self, tokens, segment_ids=None, masked_positions=None, deterministic: bool = True):
        """tokens [B, T] -> (mlm_logits, nsp_logits [B, 2]).

        segment_ids [B, T] in [0, type_vocab_size) (zeros when None). mlm_logits are
        [B, T, vocab_size], or [B, P, vocab_size] for masked_positions [B, P] (scoring
        only the masked positions saves the vocabulary projection elsewhere).
        """
        h, pooled = self.encode(tokens, segment_ids, deterministic)
        if masked_positions is not None:
            h = jnp.take_along_axis(h, masked_positions[..., None], axis=1)
        return self.mlm_head(h, self.token_embed), self.nsp_head(pooled).astype(jnp.float32)

    def encode(self, tokens, segment_ids=None, deterministic: bool = True):
        """-> (final states [B, T, d_model], pooled [CLS] state [B, d_model])."""
        if tokens.shape[1] > self.max_len:
            raise ValueError(f'sequence length {tokens.shape[1]} > max_len={self.max_len}')
        if segment_ids is None:
            segment_ids = jnp.zeros_like(tokens)
        x = (
            self.token_embed(tokens)
            + self.segment_embed(segment_ids)
            + self.position_embed(jnp.arange(tokens.shape[1]))[None]
        )
        x = self.embed_dropout(self.embed_norm(x), deterministic=deterministic)
        h = self.encoder(x, key_padding_mask(tokens != PAD_ID), deterministic=deterministic)
        pooled = jnp.tanh(self.pooler(h[:, 0]))
        return h, pooled

    def classify(self, tokens, segment_ids=None, deterministic: bool = True):
        """tokens [B, T] -> class logits [B, num_classes] from the pooled [CLS] state."""
        if self.num_classes < 1:
            raise ValueError('classify needs num_classes >= 1')
        _, pooled = self.encode(tokens, segment_ids, deterministic)
        logits = self.classifier(self.head_dropout(pooled, deterministic=deterministic))
        return logits.astype(jnp.float32)

    def score_options(self, tokens, segment_ids=None, deterministic: bool = True):
        """tokens [B, K, T] (K options, each `[CLS] context [SEP] option [SEP]`) ->
        scores [B, K], logits of a softmax over the options."""
        batch, options, length = tokens.shape
        flat = lambda x: None if x is None else x.reshape(batch * options, length)
        _, pooled = self.encode(flat(tokens), flat(segment_ids), deterministic)
        pooled = self.head_dropout(pooled, deterministic=deterministic)
        return self.option_scorer(pooled).reshape(batch, options).astype(jnp.float32)


def pretraining_loss(mlm_logits, nsp_logits, batch) -> tuple[jax.Array, dict]:
    """Masked-LM plus next-sentence loss (§3.1; the released code adds the two).

    mlm_logits [B, P, V] are the scores at `batch['masked_positions']`; the masked-LM
    loss is the mean negative log-likelihood of `batch['masked_ids']` over the slots of
    `batch['masked_weights']` 1. The next-sentence loss is the mean over rows of the
    2-way cross-entropy against `batch['next_sentence_label']` (0 IsNext, 1 NotNext).
    Returns (loss, {mlm_loss, mlm_accuracy, nsp_loss, nsp_accuracy}).
    """
    sums = pretraining_sums(mlm_logits, nsp_logits, batch)
    metrics = {name: total / jnp.maximum(weight, 1e-9) for name, (total, weight) in sums.items()}
    return metrics['mlm_loss'] + metrics['nsp_loss'], metrics


def pretraining_sums(mlm_logits, nsp_logits, batch) -> dict:
    """{name: (sum, weight)} of the pre-training metrics over a batch (the engine's
    `eval_metrics` form); the mean of each is sum / weight."""
    w = batch['masked_weights'].astype(jnp.float32)
    mlm_logits = mlm_logits.astype(jnp.float32)
    nll = optax.softmax_cross_entropy_with_integer_labels(mlm_logits, batch['masked_ids'])
    mlm_correct = mlm_logits.argmax(-1) == batch['masked_ids']
    labels = batch['next_sentence_label']
    nsp_logits = nsp_logits.astype(jnp.float32)
    nsp_nll = optax.softmax_cross_entropy_with_integer_labels(nsp_logits, labels)
    rows = jnp.float32(labels.shape[0])
    return {
        'mlm_loss': ((nll * w).sum(), w.sum()),
        'mlm_accuracy': ((mlm_correct * w).sum(), w.sum()),
        'nsp_loss': (nsp_nll.sum(), rows),
        'nsp_accuracy': ((nsp_logits.argmax(-1) == labels).sum(), rows),
    }


def mask_tokens(
    rng: np.random.Generator,
    tokens,
    vocab_size: int,
    mask_id: int,
    special_ids,
    mask_prob: float = 0.15,
):
    """Masked-LM corruption (BERT §3.1, Task #1 and Appendix A.1), in NumPy.

    Each non-special position is chosen with probability mask_prob; a chosen position
    becomes mask_id with probability 0.8, a random non-special token with 0.1, and is
    left unchanged with 0.1. Returns (masked_tokens, targets, weights): targets are
    the original tokens, weights are 1.0 at chosen positions and 0.0 elsewhere (the
    loss is taken only where weights are 1).
    """
    tokens = np.asarray(tokens)
    special_ids = np.asarray(list(special_ids), dtype=tokens.dtype)
    candidates = ~np.isin(tokens, special_ids)
    chosen = candidates & (rng.random(tokens.shape) < mask_prob)
    action = rng.random(tokens.shape)
    to_mask = chosen & (action < 0.8)
    to_random = chosen & (action >= 0.8) & (action < 0.9)
    # Random replacements avoid special tokens: a stray [CLS] or [SEP] would change
    # the structure of the input, not just one word of it.
    ordinary = np.setdiff1d(np.arange(vocab_size, dtype=tokens.dtype), special_ids)
    random_tokens = ordinary[rng.integers(0, len(ordinary), size=tokens.shape)]
    masked = np.where(to_mask, np.asarray(mask_id, tokens.dtype), tokens)
    masked = np.where(to_random, random_tokens, masked)
    return masked, tokens.copy(), chosen.astype(np.float32)


def example_inputs(model: BERT, batch_size: int = 1) -> tuple:
    """(tokens, segment_ids) of length 8 for `model.init(rngs, *inputs)`."""
    length = min(8, model.max_len)
    tokens = jnp.ones((batch_size, length), jnp.int32)
    segments = jnp.zeros((batch_size, length), jnp.int32).at[:, length // 2 :].set(1)
    return tokens, segments

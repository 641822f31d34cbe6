"""Decoder-only Transformer language models.

norm='post': GPT-1, Radford et al. 2018, "Improving Language Understanding by
  Generative Pre-Training": post-norm blocks, no final LayerNorm.
norm='pre':  GPT-2, Radford et al. 2019, "Language Models are Unsupervised Multitask
  Learners" §2.3: LayerNorm at the input of each sublayer, a final LayerNorm, and the
  projections that write into the residual stream initialised with std
  0.02/√(2·num_layers), one factor per residual add.

Both: token + learned position embeddings, GELU FFN, LM head tied to the token
embedding. With num_classes > 0, a linear head on the final state of the last token
serves fine-tuning (GPT-1 §3.2 trains it together with an auxiliary LM loss):
`model.apply(v, tokens, method=GPT.classify)` returns (lm_logits, class_logits).
`GPT.task_logits` takes the several sequences per example of GPT-1's Figure 1
(`seqmodels.data.gpt_inputs`): similarity adds the final states of both orders before
the head, multiple choice scores each option (num_classes=1) for a softmax over
options; `fine_tuning_loss` is L3 = L2 + λ·L1 (GPT-1 eq. 5).

Decoding (see `seqmodels.nn.attention` for the cache layout)::

    cache = model.init_cache(batch_size, max_len)
    logits, cache = model.apply(v, tokens[:, t:t+1], cache, t, method=GPT.decode_step)
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax.numpy as jnp
import optax

from seqmodels.nn.attention import init_kv_cache
from seqmodels.nn.position import LearnedPositionEmbedding
from seqmodels.nn.transformer import Decoder

INIT_STD = 0.02


class GPT(nn.Module):
    vocab_size: int
    max_len: int = 1024  # context size n_ctx
    d_model: int = 768
    num_heads: int = 12
    d_ff: int = 3072
    num_layers: int = 12
    dropout: float = 0.1  # embeddings, sublayer outputs and the classifier input
    attention_dropout: float = 0.1
    norm: str = 'pre'  # 'post' (GPT-1) | 'pre' (GPT-2)
    layer_norm_epsilon: float = 1e-5
    scan_layers: bool = False
    remat: str = 'none'  # 'none' | 'block' | 'dots' (seqmodels.nn.transformer)
    num_classes: int = 0  # > 0 adds the fine-tuning classification head
    # Of the computation (seqmodels.precision; set from config.precision, not a model
    # key); parameters stay float32 and the logits are returned in float32.
    dtype: Any = jnp.float32

    def setup(self):
        init = nn.initializers.normal(stddev=INIT_STD)
        residual_init = init
        if self.norm == 'pre':
            residual_init = nn.initializers.normal(stddev=INIT_STD / math.sqrt(2 * self.num_layers))
        self.token_embed = nn.Embed(
            self.vocab_size, self.d_model, embedding_init=init, dtype=self.dtype
        )
        self.position_embed = LearnedPositionEmbedding(self.max_len, self.d_model)
        self.embed_dropout = nn.Dropout(self.dropout)
        self.decoder = Decoder(
            num_heads=self.num_heads,
            d_model=self.d_model,
            d_ff=self.d_ff,
            num_layers=self.num_layers,
            dropout=self.dropout,
            attention_dropout=self.attention_dropout,
            activation='gelu',
            norm=self.norm,
            layer_norm_epsilon=self.layer_norm_epsilon,
            kernel_init=init,
            out_kernel_init=residual_init,
            scan_layers=self.scan_layers,
            remat=self.remat,
            cross_attention=False,
            dtype=self.dtype,
        )
        if self.num_classes:
            self.classifier_dropout = nn.Dropout(self.dropout)
            self.classifier = nn.Dense(self.num_classes, kernel_init=init, dtype=self.dtype)

    def __call__(self, tokens, deterministic: bool = True):
        """tokens [B, T] -> next-token logits [B, T, vocab_size]."""
        h = self.hidden_states(tokens, deterministic)
        if self.num_classes and self.is_initializing():
            self.class_logits(h, None, deterministic)  # so that init creates the head
        return self.lm_logits(h)

    def classify(self, tokens, last_positions=None, deterministic: bool = True):
        """-> (lm_logits [B, T, vocab_size], class_logits [B, num_classes]).

        last_positions [B]: index of each sequence's last token (GPT-1's extract
        token); the last column when None.
        """
        if not self.num_classes:
            raise ValueError('classify needs num_classes > 0')
        h = self.hidden_states(tokens, deterministic)
        return self.lm_logits(h), self.class_logits(h, last_positions, deterministic)

    def task_logits(
        self,
        tokens,
        last_positions,
        combine: str = 'sum',
        with_lm: bool = True,
        deterministic: bool = True,
    ):
        """tokens [B, S, T]: S sequences per example -> (lm_logits [B, S, T, vocab_size]
        or None without `with_lm`, logits).

        last_positions [B, S]: where each sequence's extract token is. combine='sum'
        adds the S final states and applies the head: logits [B, num_classes]
        (classification and entailment S=1, similarity S=2). combine='choices' applies
        the head (num_classes=1) to each final state: logits [B, S], one score per
        option of a multiple choice.
        """
        if not self.num_classes:
            raise ValueError('task_logits needs num_classes > 0')
        if combine not in ('sum', 'choices'):
            raise ValueError(f"combine must be 'sum' or 'choices', got {combine!r}")
        if combine == 'choices' and self.num_classes != 1:
            raise ValueError(
                f'combine=choices scores each option: num_classes must be 1, got {self.num_classes}'
            )
        batch, num_sequences, length = tokens.shape
        h = self.hidden_states(tokens.reshape(batch * num_sequences, length), deterministic)
        last = jnp.take_along_axis(h, last_positions.reshape(-1)[:, None, None], axis=1)
        last = last.reshape(batch, num_sequences, -1)
        lm_logits = None
        if with_lm:
            lm_logits = self.lm_logits(h).reshape(batch, num_sequences, length, -1)
        if combine == 'sum':
            last = self.classifier_dropout(last.sum(axis=1), deterministic=deterministic)
            return lm_logits, self.classifier(last).astype(jnp.float32)
        scores = self.classifier(self.classifier_dropout(last, deterministic=deterministic))
        return lm_logits, scores[..., 0].astype(jnp.float32)

    def decode_step(self, tokens, cache, cache_index):
        """Positions cache_index .. cache_index + S - 1 (tokens [B, S]) ->
        (logits [B, S, vocab_size], updated cache)."""
        x = self.embed(tokens, cache_index, deterministic=True)
        h, cache = self.decoder.decode(x, cache, cache_index)
        return self.lm_logits(h), cache

    def init_cache(self, batch_size: int, max_len: int | None = None, dtype=jnp.float32):
        """Zero cache for up to max_len positions (default the context size)."""
        max_len = self.max_len if max_len is None else max_len
        return init_kv_cache(
            batch_size,
            max_len,
            self.num_heads,
            self.d_model // self.num_heads,
            self.num_layers,
            dtype,
        )

    def lm_logits(self, h):
        """Next-token logits from final states: the tied head, in float32 for the loss."""
        return self.token_embed.attend(h).astype(jnp.float32)

    def hidden_states(self, tokens, deterministic: bool):
        x = self.embed(tokens, 0, deterministic)
        return self.decoder(x, deterministic=deterministic)

    def embed(self, tokens, first_position, deterministic: bool):
        if tokens.shape[1] > self.max_len:
            raise ValueError(f'sequence length {tokens.shape[1]} > max_len={self.max_len}')
        positions = first_position + jnp.arange(tokens.shape[1])
        x = self.token_embed(tokens) + self.position_embed(positions)[None]
        return self.embed_dropout(x.astype(self.dtype), deterministic=deterministic)

    def class_logits(self, h, last_positions, deterministic: bool):
        if last_positions is None:
            last = h[:, -1]
        else:
            last = jnp.take_along_axis(h, last_positions[:, None, None], axis=1)[:, 0]
        last = self.classifier_dropout(last, deterministic=deterministic)
        return self.classifier(last).astype(jnp.float32)


def fine_tuning_loss(logits, labels, lm_logits, tokens, lm_weights, lm_coef: float, weights=None):
    """GPT-1 eq. 5: (L3, L2, L1) with L3 = L2 + lm_coef * L1.

    L2: mean cross-entropy of the task logits [B, C] against labels [B] (rows weighted
    by `weights` [B] when given). L1: language-modelling cross-entropy on the same
    inputs, position t of tokens [..., T] predicting token t + 1, averaged with
    lm_weights [..., T] (1 where the next token is text) times the row weights; 0 when
    lm_logits is None.
    """
    rows = jnp.ones(labels.shape, jnp.float32) if weights is None else weights
    task = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    task_loss = (task * rows).sum() / jnp.maximum(rows.sum(), 1e-9)
    if lm_logits is None:
        return task_loss, task_loss, jnp.zeros((), task_loss.dtype)
    nll = optax.softmax_cross_entropy_with_integer_labels(lm_logits[..., :-1, :], tokens[..., 1:])
    w = lm_weights[..., :-1] * rows.reshape(rows.shape + (1,) * (nll.ndim - 1))
    lm_loss = (nll * w).sum() / jnp.maximum(w.sum(), 1e-9)
    return task_loss + lm_coef * lm_loss, task_loss, lm_loss


def example_inputs(model: GPT, batch_size: int = 1) -> tuple:
    """(tokens,) of length 8 for `model.init(rngs, *inputs)`."""
    return (jnp.ones((batch_size, min(8, model.max_len)), jnp.int32),)

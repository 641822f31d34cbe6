"""The encoder-decoder Transformer of Vaswani et al. 2017, "Attention Is All You Need".

Token embeddings are multiplied by √d_model and added to sinusoidal position
encodings (§3.4, §3.5); sublayers are post-norm; with `share_embeddings` one matrix
serves as source embedding, target embedding and pre-softmax projection (§3.4), which
needs a vocabulary shared by both languages.

Two keys vary the model as Table 3 does: `key_size` is d_k = d_v, the width of each
attention head (row B; 0 means d_model / num_heads), and `position_embedding='learned'`
replaces the sinusoids with a trained table of max_len positions for the source and
another for the target (row E).

Token id 0 is padding (PAD_ID): padded source keys are masked in the encoder and in
cross-attention, padded target keys in the decoder's self-attention.

Decoding one position at a time (greedy, sampling, beam search)::

    memory = model.apply(v, src, method=Transformer.encode)
    src_mask = src != PAD_ID
    cache = model.init_cache(batch_size, max_decode_len)
    logits, cache = model.apply(v, memory, src_mask, tokens[:, t:t+1], cache, t,
                                method=Transformer.decode_step)

Every array involved (memory, src_mask, cache leaves) has the batch on axis 0, so a
beam search can expand or re-index all of them with one `jax.tree.map`.
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from seqmodels.nn.attention import head_size, init_kv_cache
from seqmodels.nn.masks import key_padding_mask
from seqmodels.nn.position import LearnedPositionEmbedding, SinusoidalPositionEncoding
from seqmodels.nn.transformer import Decoder, Encoder

PAD_ID = 0
POSITION_EMBEDDINGS = ('sinusoidal', 'learned')


class Transformer(nn.Module):
    src_vocab_size: int
    tgt_vocab_size: int
    d_model: int = 512
    num_heads: int = 8
    key_size: int = 0  # d_k = d_v per head; 0: d_model // num_heads (Table 3, row B)
    d_ff: int = 2048
    num_encoder_layers: int = 6
    num_decoder_layers: int = 6
    dropout: float = 0.1  # P_drop: sublayer outputs and embedding + PE sums
    attention_dropout: float = 0.0
    max_len: int = 256  # longest source or target sequence (size of the PE table)
    position_embedding: str = 'sinusoidal'  # 'sinusoidal' | 'learned' (Table 3, row E)
    scan_layers: bool = False
    remat: str = 'none'  # 'none' | 'block' | 'dots', both stacks (seqmodels.nn.transformer)
    share_embeddings: bool = True
    # Of the computation (seqmodels.precision; set from config.precision, not a model
    # key); parameters stay float32 and the logits are returned in float32.
    dtype: Any = jnp.float32

    def setup(self):
        if self.share_embeddings and self.src_vocab_size != self.tgt_vocab_size:
            raise ValueError(
                'share_embeddings needs one vocabulary: src_vocab_size='
                f'{self.src_vocab_size} != tgt_vocab_size={self.tgt_vocab_size}'
            )
        if self.position_embedding not in POSITION_EMBEDDINGS:
            raise ValueError(
                f'position_embedding must be one of {POSITION_EMBEDDINGS}, '
                f'got {self.position_embedding!r}'
            )
        # σ = d_model^-0.5, so that the embeddings scaled by √d_model have unit variance.
        embed_init = nn.initializers.normal(stddev=self.d_model**-0.5)

        def embed(vocab_size):
            return nn.Embed(vocab_size, self.d_model, embedding_init=embed_init, dtype=self.dtype)

        if self.share_embeddings:
            self.shared_embed = embed(self.tgt_vocab_size)
        else:
            self.src_embed = embed(self.src_vocab_size)
            self.tgt_embed = embed(self.tgt_vocab_size)
            self.output_projection = nn.Dense(self.tgt_vocab_size, use_bias=False, dtype=self.dtype)
        if self.position_embedding == 'learned':
            # Separate source and target tables (max_len x d_model each): the encoder
            # reads source positions all at once and the decoder target positions
            # causally, and one table would have to serve both roles; sharing the token
            # table is a different matter (the same pieces in both languages).
            # Initialised and scaled like the token embeddings (N(0, 1/d_model), times
            # √d_model), so positions enter at unit scale as the sinusoids do.
            def positions():
                return LearnedPositionEmbedding(self.max_len, self.d_model, embed_init)

            self.src_position_embed, self.tgt_position_embed = positions(), positions()
        else:
            self.position_encoding = SinusoidalPositionEncoding(self.max_len, self.d_model)
        self.embed_dropout = nn.Dropout(self.dropout)
        stack = {
            'num_heads': self.num_heads,
            'key_size': self.key_size,
            'd_model': self.d_model,
            'd_ff': self.d_ff,
            'dropout': self.dropout,
            'attention_dropout': self.attention_dropout,
            'activation': 'relu',
            'norm': 'post',
            'scan_layers': self.scan_layers,
            'remat': self.remat,
            'dtype': self.dtype,
        }
        self.encoder = Encoder(num_layers=self.num_encoder_layers, **stack)
        self.decoder = Decoder(num_layers=self.num_decoder_layers, **stack)

    def __call__(self, src, tgt_in, deterministic: bool = True):
        """src [B, S], tgt_in [B, T] int tokens (tgt_in is the shifted target) ->
        logits [B, T, tgt_vocab_size]."""
        memory = self.encode(src, deterministic=deterministic)
        return self.decode(memory, src != PAD_ID, tgt_in, deterministic=deterministic)

    def encode(self, src, deterministic: bool = True):
        """src [B, S] -> memory [B, S, d_model]."""
        x = self.embed('source', src, 0, deterministic)
        return self.encoder(x, key_padding_mask(src != PAD_ID), deterministic=deterministic)

    def decode(self, memory, src_mask, tgt_in, deterministic: bool = True):
        """memory [B, S, d_model], src_mask [B, S] bool (True = real source token),
        tgt_in [B, T] -> logits [B, T, tgt_vocab_size]."""
        y = self.embed('target', tgt_in, 0, deterministic)
        y = self.decoder(
            y,
            memory,
            self_mask=key_padding_mask(tgt_in != PAD_ID),
            memory_mask=key_padding_mask(src_mask),
            deterministic=deterministic,
        )
        return self.logits(y)

    def decode_step(self, memory, src_mask, tgt_tokens, cache, cache_index):
        """Target positions cache_index .. cache_index + S - 1 (tgt_tokens [B, S],
        usually S = 1) -> (logits [B, S, tgt_vocab_size], updated cache)."""
        y = self.embed('target', tgt_tokens, cache_index, deterministic=True)
        y, cache = self.decoder.decode(y, cache, cache_index, memory, key_padding_mask(src_mask))
        return self.logits(y), cache

    def init_cache(self, batch_size: int, max_len: int | None = None, dtype=jnp.float32):
        """Zero decoder cache for target sequences of up to max_len (default self.max_len)."""
        max_len = self.max_len if max_len is None else max_len
        return init_kv_cache(
            batch_size,
            max_len,
            self.num_heads,
            head_size(self.d_model, self.num_heads, self.key_size),
            self.num_decoder_layers,
            dtype,
        )

    def source_table(self) -> nn.Embed:
        return self.shared_embed if self.share_embeddings else self.src_embed

    def target_table(self) -> nn.Embed:
        return self.shared_embed if self.share_embeddings else self.tgt_embed

    def embed(self, side: str, tokens, first_position, deterministic):
        """Tokens [B, T] of `side` ('source' or 'target') at positions first_position..
        -> [B, T, d_model]: E[token]·√d_model + PE(position), or with learned positions
        (E[token] + P[position])·√d_model."""
        if tokens.shape[1] > self.max_len:
            raise ValueError(f'sequence length {tokens.shape[1]} > max_len={self.max_len}')
        table = self.source_table() if side == 'source' else self.target_table()
        positions = first_position + jnp.arange(tokens.shape[1])
        scale = math.sqrt(self.d_model)
        if self.position_embedding == 'learned':
            learned = self.src_position_embed if side == 'source' else self.tgt_position_embed
            x = (table(tokens) + learned(positions)[None]) * scale
        else:
            x = table(tokens) * scale + self.position_encoding(positions)[None]
        return self.embed_dropout(x.astype(self.dtype), deterministic=deterministic)

    def logits(self, y):
        """Output logits from decoder states, in float32 for the loss."""
        if self.share_embeddings:
            return self.shared_embed.attend(y).astype(jnp.float32)
        return self.output_projection(y).astype(jnp.float32)


def example_inputs(model: Transformer, batch_size: int = 1) -> tuple:
    """(src, tgt_in) of length 8 for `model.init(rngs, *inputs)`."""
    length = min(8, model.max_len)
    src = jnp.ones((batch_size, length), jnp.int32)
    return src, src

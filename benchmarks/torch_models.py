"""PyTorch baselines with the shapes of the benchmark's Flax models.

Written to do the same arithmetic as `seqmodels.models.RNNLM` (cell='lstm') and
`seqmodels.models.GPT` (norm='pre'), so that tokens/s compare like with like:

  LSTMLM  embedding -> torch.nn.LSTM (batch_first, cuDNN-style fused gates) -> linear.
          torch.nn.LSTM carries two bias vectors per layer (b_ih and b_hh) where the
          Flax cell has one, so it has num_layers * 4 * hidden_size more parameters
          and the same FLOPs.
  GPT     GPT-2 (Radford et al. 2019): token + learned position embeddings, pre-norm
          blocks, causal `F.scaled_dot_product_attention`, tanh-GELU FFN, a final
          LayerNorm and the LM head tied to the token embedding; the same parameter
          count as the Flax GPT.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class LSTMLM(nn.Module):
    def __init__(self, vocab_size: int, embed_dim: int, hidden_size: int, num_layers: int):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, embed_dim)
        self.rnn = nn.LSTM(embed_dim, hidden_size, num_layers=num_layers, batch_first=True)
        self.output = nn.Linear(hidden_size, vocab_size)

    def forward(self, tokens):
        h, _ = self.rnn(self.embed(tokens))
        return self.output(h)


class CausalSelfAttention(nn.Module):
    def __init__(self, d_model: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(d_model, 3 * d_model)  # W^Q, W^K, W^V in one matmul
        self.out = nn.Linear(d_model, d_model)

    def forward(self, x):
        batch, length, d_model = x.shape
        # [B, T, 3, heads, d_k] -> three [B, heads, T, d_k], the layout SDPA wants.
        q, k, v = (
            self.qkv(x).view(batch, length, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4).unbind(0)
        )
        heads = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.out(heads.transpose(1, 2).reshape(batch, length, d_model))


class Block(nn.Module):
    def __init__(self, d_model: int, num_heads: int, d_ff: int, eps: float):
        super().__init__()
        self.attention_norm = nn.LayerNorm(d_model, eps=eps)
        self.attention = CausalSelfAttention(d_model, num_heads)
        self.ffn_norm = nn.LayerNorm(d_model, eps=eps)
        self.wi = nn.Linear(d_model, d_ff)
        self.wo = nn.Linear(d_ff, d_model)

    def forward(self, x):
        x = x + self.attention(self.attention_norm(x))
        return x + self.wo(F.gelu(self.wi(self.ffn_norm(x)), approximate='tanh'))


class GPT(nn.Module):
    def __init__(
        self,
        vocab_size: int,
        max_len: int,
        d_model: int,
        num_heads: int,
        d_ff: int,
        num_layers: int,
        eps: float = 1e-5,
    ):
        super().__init__()
        self.token_embed = nn.Embedding(vocab_size, d_model)
        self.position_embed = nn.Embedding(max_len, d_model)
        self.blocks = nn.ModuleList(Block(d_model, num_heads, d_ff, eps) for _ in range(num_layers))
        self.final_norm = nn.LayerNorm(d_model, eps=eps)
        # GPT-2 initialisation, as in the Flax model: N(0, 0.02), residual
        # projections N(0, 0.02 / sqrt(2 L)).
        for name, p in self.named_parameters():
            if name.endswith('bias'):
                nn.init.zeros_(p)
            elif p.dim() >= 2:
                std = (
                    0.02 / math.sqrt(2 * num_layers)
                    if name.endswith(('out.weight', 'wo.weight'))
                    else 0.02
                )
                nn.init.normal_(p, std=std)

    def forward(self, tokens):
        positions = torch.arange(tokens.shape[1], device=tokens.device)
        x = self.token_embed(tokens) + self.position_embed(positions)
        for block in self.blocks:
            x = block(x)
        return self.final_norm(x) @ self.token_embed.weight.T  # tied LM head


def adamw_param_groups(model: nn.Module, weight_decay: float):
    """Decay matrices only, as the Flax engine's adamw mask does (not biases, norms)."""
    decay = [p for p in model.parameters() if p.dim() >= 2]
    rest = [p for p in model.parameters() if p.dim() < 2]
    return [{'params': decay, 'weight_decay': weight_decay}, {'params': rest, 'weight_decay': 0.0}]


def num_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())

"""Additive attention (Bahdanau, Cho & Bengio 2015, appendix A.1.2)."""

from typing import Any, Tuple

import jax
import jax.numpy as jnp
import flax.linen as nn


class AdditiveAttention(nn.Module):
    """e_ij = v^T tanh(W s_{i-1} + U h_j);  alpha_i = softmax_j(e_i);  c_i = sum_j alpha_ij h_j.

    `features` is the width of the alignment MLP (n' in the paper). U h_j does not
    depend on the decoder step i, so `precompute_keys(memory)` computes it once per
    source sentence and each decoder step passes it back as `keys`.
    """

    features: int
    dtype: Any = jnp.float32  # of the MLP (parameters float32); the softmax is float32

    def setup(self):
        self.W = nn.Dense(self.features, use_bias=False, dtype=self.dtype)
        self.U = nn.Dense(self.features, use_bias=False, dtype=self.dtype)
        self.v = nn.Dense(1, use_bias=False, dtype=self.dtype)

    def precompute_keys(self, memory: jax.Array) -> jax.Array:
        """U h_j for memory [B, S, D] -> [B, S, features]."""
        return self.U(memory)

    def __call__(
        self,
        query: jax.Array,
        memory: jax.Array,
        mask: jax.Array | None = None,
        keys: jax.Array | None = None,
    ) -> Tuple[jax.Array, jax.Array]:
        """query s_{i-1} [B, Dq], memory h [B, S, D], mask [B, S] (True = attend).

        Returns (context [B, D] in memory's dtype, weights [B, S] in float32); masked
        positions get exactly zero weight, and a row with no valid position gets a zero
        context.
        """
        if keys is None:
            keys = self.precompute_keys(memory)
        energies = self.v(jnp.tanh(self.W(query)[:, None, :] + keys))[..., 0]
        energies = energies.astype(jnp.float32)
        if mask is not None:
            energies = jnp.where(mask, energies, jnp.finfo(energies.dtype).min)
        weights = jax.nn.softmax(energies, axis=-1)
        if mask is not None:
            weights = jnp.where(mask, weights, 0.0)
        context = jnp.einsum('bs,bsd->bd', weights.astype(memory.dtype), memory)
        return context, weights

"""Batches of a fine-tuning run's encoded splits, by step (GPT's and BERT's alike).

Training: global row i = step * batch_size + r is example perm_e[i mod N] of epoch
e = i div N, perm_e a permutation drawn from (seed, e), so every epoch sees each example
once, in its own order, and any step's batch follows from (seed, step): a resumed run
sees the data it would have seen. Evaluation batches walk a split in order, the last
one padded with rows that repeat example 0 with weight 0.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from seqmodels.data.rows import process_rows

_MASK64 = (1 << 64) - 1


@dataclasses.dataclass(eq=False)
class SplitBatches:
    """`splits` maps a role ('train', 'validation', ...) to an encoded split: anything
    with a length and `rows(indices, weights=None) -> dict of arrays`."""

    splits: Mapping[str, Any]
    batch_size: int
    seed: int

    def train_batch(
        self, step: int, process_index: int = 0, process_count: int = 1
    ) -> dict[str, np.ndarray]:
        """This process's rows of global batch `step`."""
        if step < 0:
            raise ValueError(f'step must be >= 0, got {step}')
        rows = process_rows(self.batch_size, process_index, process_count)
        n = len(self.splits['train'])
        index = np.arange(step * self.batch_size + rows.start, step * self.batch_size + rows.stop)
        order = np.empty(len(index), np.int64)
        for epoch in np.unique(index // n):
            here = index // n == epoch
            order[here] = epoch_permutation(self.seed, int(epoch), n)[index[here] % n]
        return self.splits['train'].rows(order)

    def num_batches(self, role: str) -> int:
        return -(-len(self.splits[role]) // self.batch_size)

    def eval_batches(
        self,
        role: str,
        process_index: int = 0,
        process_count: int = 1,
        num_batches: int | None = None,
    ) -> Iterator[dict[str, np.ndarray]]:
        """This process's rows of each batch of split `role`, in order."""
        split = self.splits[role]
        rows = process_rows(self.batch_size, process_index, process_count)
        total = self.num_batches(role)
        total = total if num_batches is None else min(total, num_batches)

        def batch(k):
            index = np.arange(k * self.batch_size + rows.start, k * self.batch_size + rows.stop)
            real = index < len(split)
            return split.rows(np.where(real, index, 0), real.astype(np.float32))

        return (batch(k) for k in range(total))


@functools.lru_cache(maxsize=8)
def epoch_permutation(seed: int, epoch: int, n: int) -> np.ndarray:
    """The order of the n training examples in `epoch`, drawn from (seed, epoch)."""
    return np.random.default_rng([seed & _MASK64, epoch]).permutation(n)

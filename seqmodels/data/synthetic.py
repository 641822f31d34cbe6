"""Synthetic long-time-lag tasks, generated from (seed, step): no files, no download.

  adding          Hochreiter & Schmidhuber (1997), Experiment 4, in the form of Le, Jaitly
                  & Hinton (2015) and Arjovsky, Shah & Bengio (2016). Each step
                  has two inputs: a value uniform in [0, 1] and a marker. Exactly two
                  markers are 1, following Arjovsky et al.: the first at a position
                  uniform in the first half [0, T//2), the second uniform in the second
                  half [T//2, T). Target: the sum of the two marked values (mean 1,
                  variance 1/6, so predicting 1.0 has an MSE of 1/6). H&S drew values
                  in [-1, 1], put the first marker among the first ten steps and scaled
                  the target to 0.5 + (X1 + X2) / 4.
  copy            The copying memory problem as Arjovsky et al. (2016) set it up after
                  H&S (1997): K = copy_length symbols of an 8-symbol alphabet, blanks,
                  a delimiter, then K more blanks during which the model reproduces
                  the K symbols (outputs elsewhere are not scored here). The T of
                  Arjovsky et al. (the delay) is seq_len - 2K. Input alphabet: 0 blank,
                  1..8 the symbols, 9 the delimiter; targets are the symbols minus 1.
  temporal_order  H&S 1997, Experiment 6a: a sequence E, distractors from {a, b, c, d},
                  B, with X or Y at two positions t1 and t2; the class is the order
                  XX, XY, YX, YY (0..3). H&S draw t1 in [10, 20] and t2 in [50, 60] of a
                  sequence of 100-110 steps; here the length is fixed at seq_len (dense
                  batches) and t1 is uniform in [T//10, T//5], t2 in [T//2, 3T//5],
                  H&S's ranges at T = 100.

Every task gives float32 inputs [B, T, F] (the markers, or one-hot symbols) and targets:
float [B] (adding), int [B, K] (copy) or int [B] (temporal_order).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterator

import numpy as np

from seqmodels.data.rows import process_rows
from seqmodels.errors import require

TASKS = ('adding', 'copy', 'temporal_order')

# Per task: input features per step, model outputs, and the readout they need.
NUM_FEATURES = {'adding': 2, 'copy': 10, 'temporal_order': 8}
NUM_OUTPUTS = {'adding': 1, 'copy': 8, 'temporal_order': 4}
READOUT = {'adding': 'last', 'copy': 'every_step', 'temporal_order': 'last'}

COPY_SYMBOLS, COPY_BLANK, COPY_DELIMITER = 8, 0, 9
# Temporal order: the alphabet of H&S Experiment 6a, one-hot in this order.
ORDER_ALPHABET = ('a', 'b', 'c', 'd', 'B', 'E', 'X', 'Y')

# Streams of the seed sequence: training batches and the held-out evaluation set never
# share one, whatever the step.
_TRAIN_STREAM, _EVAL_STREAM = 0, 1
_MASK64 = (1 << 64) - 1


def min_seq_len(task: str, copy_length: int = 10) -> int:
    """The shortest sequence the task is defined for."""
    return {
        'adding': 2,  # one marker per half
        'copy': 2 * copy_length + 1,  # symbols, delimiter, recall
        'temporal_order': 10,  # t1 in [T//10, T//5] after E, t2 before B
    }[task]


def check_task(task: str, seq_len: int, copy_length: int = 10) -> None:
    """Raises ConfigError naming the key for a task, length or copy length that does
    not work."""
    require(task in TASKS, 'task', f'must be one of {", ".join(TASKS)}', task)
    require(
        isinstance(copy_length, int) and copy_length > 0,
        'copy_length',
        'must be a positive integer',
        copy_length,
    )
    shortest = min_seq_len(task, copy_length)
    require(
        isinstance(seq_len, int) and seq_len >= shortest,
        'seq_len',
        f'must be an integer >= {shortest} for task={task!r}',
        seq_len,
    )


def adding(rng: np.random.Generator, n: int, seq_len: int) -> dict[str, np.ndarray]:
    values = rng.random((n, seq_len))
    half = seq_len // 2
    first = rng.integers(0, half, n)
    second = rng.integers(half, seq_len, n)
    rows = np.arange(n)
    markers = np.zeros((n, seq_len))
    markers[rows, first] = 1.0
    markers[rows, second] = 1.0
    return {
        'inputs': np.stack([values, markers], -1).astype(np.float32),
        'targets': (values[rows, first] + values[rows, second]).astype(np.float32),
    }


def copy(
    rng: np.random.Generator, n: int, seq_len: int, copy_length: int = 10
) -> dict[str, np.ndarray]:
    symbols = rng.integers(0, COPY_SYMBOLS, (n, copy_length))
    ids = np.full((n, seq_len), COPY_BLANK)
    ids[:, :copy_length] = 1 + symbols
    ids[:, seq_len - copy_length - 1] = COPY_DELIMITER
    return {'inputs': _one_hot(ids, NUM_FEATURES['copy']), 'targets': symbols.astype(np.int32)}


def temporal_order(rng: np.random.Generator, n: int, seq_len: int) -> dict[str, np.ndarray]:
    index = {s: i for i, s in enumerate(ORDER_ALPHABET)}
    ids = rng.integers(0, 4, (n, seq_len))  # distractors a..d
    ids[:, 0], ids[:, -1] = index['E'], index['B']
    t1 = rng.integers(seq_len // 10, seq_len // 5 + 1, n)
    t2 = rng.integers(seq_len // 2, 3 * seq_len // 5 + 1, n)
    is_y = rng.integers(0, 2, (n, 2))
    rows = np.arange(n)
    ids[rows, t1] = index['X'] + is_y[:, 0]
    ids[rows, t2] = index['X'] + is_y[:, 1]
    return {
        'inputs': _one_hot(ids, NUM_FEATURES['temporal_order']),
        'targets': (2 * is_y[:, 0] + is_y[:, 1]).astype(np.int32),
    }


def generate(
    task: str, rng: np.random.Generator, n: int, seq_len: int, copy_length: int = 10
) -> dict[str, np.ndarray]:
    """n examples of `task` drawn from `rng`."""
    if task == 'copy':
        return copy(rng, n, seq_len, copy_length)
    return {'adding': adding, 'temporal_order': temporal_order}[task](rng, n, seq_len)


def _one_hot(ids: np.ndarray, depth: int) -> np.ndarray:
    return np.eye(depth, dtype=np.float32)[ids]


@dataclasses.dataclass(eq=False)
class SyntheticData:
    """Training batch `step` is drawn from the seed sequence (seed, train stream, step),
    so it is a function of the step alone and a resumed run sees the same data; the
    evaluation set is `num_eval_examples` examples of the separate eval stream (seed,
    eval stream), in batches of batch_size rows, the last padded with weight 0."""

    task: str
    seq_len: int
    batch_size: int
    seed: int
    num_eval_examples: int
    copy_length: int = 10

    def __post_init__(self):
        check_task(self.task, self.seq_len, self.copy_length)

    def _draw(self, stream: int, index: int, n: int) -> dict[str, np.ndarray]:
        rng = np.random.default_rng([self.seed & _MASK64, stream, index])
        return generate(self.task, rng, n, self.seq_len, self.copy_length)

    def train_batch(
        self, step: int, process_index: int = 0, process_count: int = 1
    ) -> dict[str, np.ndarray]:
        """This process's rows of global batch `step` (every process draws the whole
        global batch, which costs little, and keeps its rows)."""
        if step < 0:
            raise ValueError(f'step must be >= 0, got {step}')
        rows = process_rows(self.batch_size, process_index, process_count)
        return {k: v[rows] for k, v in self._draw(_TRAIN_STREAM, step, self.batch_size).items()}

    @functools.cached_property
    def eval_set(self) -> dict[str, np.ndarray]:
        return self._draw(_EVAL_STREAM, 0, self.num_eval_examples)

    def eval_batches(
        self, process_index: int = 0, process_count: int = 1, num_batches: int | None = None
    ) -> Iterator[dict[str, np.ndarray]]:
        """This process's rows of each evaluation batch, in order."""
        rows = process_rows(self.batch_size, process_index, process_count)
        total = -(-self.num_eval_examples // self.batch_size)
        total = total if num_batches is None else min(total, num_batches)
        for k in range(total):
            index = np.arange(k * self.batch_size + rows.start, k * self.batch_size + rows.stop)
            real = index < self.num_eval_examples
            batch = {key: v[np.where(real, index, 0)] for key, v in self.eval_set.items()}
            yield dict(batch, weights=real.astype(np.float32))

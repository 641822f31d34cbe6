"""Batches for character-level language modelling, addressed by step.

`make_char_lm_data` turns a `dataset` config string into a `CharLMData`:

* ``python_stdlib``: the embedded default, the Python standard library's sources
  (see `corpora`), train/validation split by file.
* ``text:PATH``: a UTF-8 file, split by characters (``val_fraction``, nanoGPT style).
* ``tfds:NAME[/CONFIG]``: a TFDS catalog dataset with a text feature; validation is
  its ``validation`` split, else ``test``.

Config keys it reads (flat, next to the common ones): ``dataset``, ``seq_len``,
``batch_size`` (global), ``seed``, ``data_dir`` (TFDS cache, default
``~/.cache/seqmodels/tfds``), ``val_fraction`` (``text:`` only, default 0.1) and
``max_chars`` (None, or a cap on the characters used, for quick runs and tests:
see `tfds_text`; for ``tfds:`` datasets it truncates each split).

Training batches are random windows of the encoded training text. The window of global
row ``i = step * batch_size + r`` starts at ``splitmix64(splitmix64(seed) ^ i)`` modulo
the number of start positions, so any step's batch is computed directly from
``(seed, step)``: a resumed run needs no iterator state to see exactly the data an
uninterrupted run would have seen. Process ``p`` of ``P`` gets rows
``[p·B/P, (p+1)·B/P)`` of each global batch (`rows.process_rows`).

Evaluation walks the validation text in consecutive non-overlapping windows of
``seq_len`` predictions, so every character after the first is predicted exactly once;
the last window and the last batch are padded with ``weights == 0``. Every process
runs the same number of eval batches, as SPMD steps require.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator

import grain
import numpy as np

from seqmodels.data import corpora, tfds_text
from seqmodels.data.char_vocab import CharVocab
from seqmodels.data.corpora import DataError
from seqmodels.data.rows import process_batch, process_rows

_MASK64 = (1 << 64) - 1
# MapDataset needs a length; no run will come near 2**62 rows.
_MAX_ROWS = 1 << 62


def _splitmix64(x: int) -> int:
    """Steele et al.'s SplitMix64 finaliser: a fixed, version-proof hash of a 64-bit int."""
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def window_start(seed: int, row: int, num_starts: int) -> int:
    """Start of training window `row` (global row index); uniform over [0, num_starts)."""
    return _splitmix64(_splitmix64(seed & _MASK64) ^ row) % num_starts


@dataclasses.dataclass(eq=False)
class CharLMData:
    """Encoded train/validation text plus the batch functions the training engine calls."""

    vocab: CharVocab
    train_ids: np.ndarray  # int32[num_train_chars]
    val_ids: np.ndarray  # int32[num_val_chars]
    seq_len: int
    batch_size: int
    seed: int
    eval_batch_size: int
    description: str = ''
    # The train and eval MapDatasets of windows; per instance so the arrays are not
    # pinned by a class-level cache after the object goes away.
    _datasets: dict = dataclasses.field(default_factory=dict, init=False, repr=False)

    @property
    def num_train_chars(self) -> int:
        return len(self.train_ids)

    @property
    def num_val_chars(self) -> int:
        return len(self.val_ids)

    @property
    def vocab_size(self) -> int:
        return self.vocab.vocab_size

    @property
    def num_eval_windows(self) -> int:
        return -(-(self.num_val_chars - 1) // self.seq_len)

    @property
    def num_eval_batches(self) -> int:
        return -(-self.num_eval_windows // self.eval_batch_size)

    # -- training ---------------------------------------------------------------------

    def _train_window(self, row: int) -> dict[str, np.ndarray]:
        num_starts = self.num_train_chars - self.seq_len
        start = window_start(self.seed, row, num_starts)
        chunk = self.train_ids[start : start + self.seq_len + 1]
        return {'inputs': chunk[:-1], 'targets': chunk[1:]}

    def _train_windows(self) -> grain.MapDataset:
        # Element i is global row i: batch `step` is elements [step*B, (step+1)*B).
        if 'train' not in self._datasets:
            self._datasets['train'] = grain.MapDataset.range(_MAX_ROWS).map(self._train_window)
        return self._datasets['train']

    def train_batch(
        self, step: int, process_index: int = 0, process_count: int = 1
    ) -> dict[str, np.ndarray]:
        """This process's rows of global batch `step`: int32[B/P, seq_len] inputs, targets."""
        if step < 0:
            raise ValueError(f'step must be >= 0, got {step}.')
        return process_batch(
            self._train_windows(), step, self.batch_size, process_index, process_count
        )

    # -- evaluation -------------------------------------------------------------------

    def _eval_window(self, window: int) -> dict[str, np.ndarray]:
        inputs = np.zeros(self.seq_len, np.int32)
        targets = np.zeros(self.seq_len, np.int32)
        weights = np.zeros(self.seq_len, np.float32)
        start = window * self.seq_len
        n = max(0, min(self.seq_len, self.num_val_chars - 1 - start))
        inputs[:n] = self.val_ids[start : start + n]
        targets[:n] = self.val_ids[start + 1 : start + 1 + n]
        weights[:n] = 1.0
        return {'inputs': inputs, 'targets': targets, 'weights': weights}

    def _eval_windows(self) -> grain.MapDataset:
        if 'eval' not in self._datasets:
            padded_windows = self.num_eval_batches * self.eval_batch_size
            windows = grain.MapDataset.range(padded_windows).map(self._eval_window)
            self._datasets['eval'] = windows
        return self._datasets['eval']

    def eval_batches(
        self, process_index: int = 0, process_count: int = 1, num_batches: int | None = None
    ) -> Iterator[dict[str, np.ndarray]]:
        """This process's rows of each validation batch; `num_batches` caps the count."""
        total = self.num_eval_batches
        if num_batches is not None:
            total = min(total, num_batches)
        windows = self._eval_windows()
        key = 'batch_size' if self.eval_batch_size == self.batch_size else 'eval_batch_size'
        args = (self.eval_batch_size, process_index, process_count, key)
        process_rows(*args)  # bad process arguments fail on the call, not on the first next()
        return (process_batch(windows, k, *args) for k in range(total))


def _stdlib_texts(data_dir, max_chars):
    sources = tfds_text.char_corpus_data_sources(
        tfds_text.python_stdlib_config(max_chars), data_dir
    )
    describe = f"dataset 'python_stdlib' (stdlib in {corpora.stdlib_root()!r})"
    return (
        tfds_text.split_text(sources['train']),
        tfds_text.split_text(sources['validation']),
        describe,
    )


def _text_file_texts(path, data_dir, val_fraction, max_chars):
    path = os.path.abspath(os.path.expanduser(path))
    config = tfds_text.text_file_config(path, val_fraction, max_chars)
    sources = tfds_text.char_corpus_data_sources(config, data_dir)
    train, val = (tfds_text.split_text(sources[s]) for s in ('train', 'validation'))
    return train, val, f'text file {path!r}'


def _catalog_texts(name, data_dir, max_chars):
    sources, feature = tfds_text.catalog_data_sources(name, data_dir)
    val_split = next((s for s in ('validation', 'test') if s in sources), None)
    if 'train' not in sources or val_split is None:
        raise DataError(
            f'TFDS dataset {name!r} has splits {sorted(sources)}; a character LM needs '
            "'train' and 'validation' (or 'test')."
        )
    texts = [tfds_text.split_text(sources[s], feature) for s in ('train', val_split)]
    if max_chars is not None:
        texts = [t[:max_chars] for t in texts]
    return texts[0], texts[1], f'TFDS dataset {name!r}'


def make_char_lm_data(
    dataset: str,
    seq_len: int,
    batch_size: int,
    seed: int,
    data_dir: str = tfds_text.DEFAULT_DATA_DIR,
    vocab_path: str | None = None,
    val_fraction: float = 0.1,
    max_chars: int | None = None,
    eval_batch_size: int | None = None,
) -> CharLMData:
    """Prepares (or reads back from `data_dir`) the corpus and its vocabulary.

    If `vocab_path` exists the vocabulary is loaded from it (a resumed run must keep its
    ids); otherwise it is built from the training split and, if a path is given, saved.
    """
    if seq_len < 1 or batch_size < 1:
        raise ValueError(f'seq_len and batch_size must be >= 1, got {seq_len}, {batch_size}.')
    if max_chars is not None and max_chars < 1:
        raise ValueError(f'max_chars must be None or >= 1, got {max_chars}.')
    kind, arg = corpora.parse_dataset(dataset)
    if kind == 'python_stdlib':
        train, val, describe = _stdlib_texts(data_dir, max_chars)
    elif kind == 'text':
        train, val, describe = _text_file_texts(arg, data_dir, val_fraction, max_chars)
    else:
        train, val, describe = _catalog_texts(arg, data_dir, max_chars)

    need = seq_len + 1  # a window of inputs plus its next-character targets
    for split, text in (('training', train), ('validation', val)):
        if len(text) < need:
            raise DataError(
                f'The {split} split of {describe} has {len(text)} characters (train '
                f'{len(train)}, validation {len(val)}), fewer than one sequence needs: '
                f'seq_len + 1 = {need}. Use more text, a smaller seq_len'
                + (' or another val_fraction.' if kind == 'text' else '.')
            )

    if vocab_path and os.path.exists(vocab_path):
        vocab = CharVocab.load(vocab_path)
    else:
        vocab = CharVocab.from_text(train)
        if vocab_path:
            vocab.save(vocab_path)

    return CharLMData(
        vocab=vocab,
        train_ids=vocab.encode(train),
        val_ids=vocab.encode(val),
        seq_len=seq_len,
        batch_size=batch_size,
        seed=seed,
        eval_batch_size=eval_batch_size or batch_size,
        description=describe,
    )

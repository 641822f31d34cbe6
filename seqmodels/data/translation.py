"""Translation input pipeline: parallel text -> SentencePiece ids -> length-bucketed batches.

Datasets (the `dataset` config key):

* `cldr_en_de` - the embedded default, generated offline from CLDR locale data
  (`seqmodels.data.locale_corpus`); splits train / val / test, languages en and de.
* `parallel:DIR` - line-aligned UTF-8 files `DIR/<split>.<lang>`.
* `tfds:NAME[/CONFIG]` - a TFDS catalog dataset with one text feature per language,
  e.g. `tfds:wmt14_translate/de-en`; read from `array_record` with `tfds.data_source`.
  Preparing it the first time needs the `tf` extra and internet access.

Sequences (ids: pad=0, unk=1, bos=2, eos=3):

    src      = source pieces + EOS            src_lengths = len(src without padding)
    tgt_in   = BOS + target pieces            (decoder input, teacher forcing)
    tgt_out  = target pieces + EOS            (what the decoder predicts)
    weights  = 1.0 on the real tgt_out positions, 0.0 on padding

`max_source_length` / `max_target_length` bound the padded lengths, EOS/BOS included:
a training pair is kept when len(src) <= max_source_length and len(tgt_out) <=
max_target_length. Evaluation splits are never filtered, so BLEU covers every line.

Training batches are length-bucketed. Each kept pair falls in the bucket of the
smallest boundary >= max(len(src), len(tgt_out)); inside each bucket the pairs are
shuffled once (seeded) and cut into fixed batches of `batch_size` sentences; the
remainders of all buckets are merged, in length order, into a few more batches, the
last one topped up with dummy rows of weight 0 so that one epoch is every kept pair
exactly once. A batch is padded to its bucket boundary, so jit sees one shape per
boundary. The order of the batches is shuffled per epoch from (seed, epoch) by a
`grain.MapDataset`, which gives random access by step: `train_batch(step)` is a pure
function of (seed, step), and a resumed run sees exactly the data it would have seen.

Dummy rows (padding rows of a global batch) hold `src=[EOS]`, `tgt_in=[BOS]`,
`tgt_out=[EOS]` with weight 0 rather than all-pad rows, so that no model sees a
zero-length sequence (an all-masked softmax) in a row whose loss is discarded anyway.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, ClassVar

import grain
import numpy as np

from seqmodels.data import locale_corpus, tokenizers
from seqmodels.data.errors import DataError
from seqmodels.data.rows import process_rows
from seqmodels.data.tokenizers import BOS_ID, EOS_ID, PAD_ID
from seqmodels.errors import require

ROLES = ('train', 'validation', 'test')
DEFAULT_BOUNDARIES = (8, 12, 16, 20, 24, 32, 40, 48, 64, 96, 128, 192, 256, 384, 512)
DROP_REASONS = ('empty_source', 'empty_target', 'source_too_long', 'target_too_long')
_ENCODE_CHUNK = 100_000  # sentences per SentencePiece call; bounds the Python-list peak


@dataclasses.dataclass(frozen=True)
class TranslationDataConfig:
    """Every knob of the pipeline; `make_translation_data` reads them from a config."""

    dataset: str = locale_corpus.NAME
    source_lang: str = 'en'
    target_lang: str = 'de'
    # Split stems (file stems for parallel:DIR, split names for tfds); None = the
    # dataset's default, "" = the dataset has no such split.
    train_split: str | None = None
    validation_split: str | None = None
    test_split: str | None = None
    vocab_size: int = 8000
    model_type: str = 'unigram'
    joint_vocab: bool = True
    character_coverage: float = 1.0
    split_digits: bool = False
    batch_size: int = 64  # global, in sentences
    eval_batch_size: int | None = None  # None = batch_size
    seed: int = 0
    max_source_length: int = 128
    max_target_length: int = 128
    bucket_boundaries: tuple[int, ...] | None = None
    corpus_sizes: Mapping[str, int] | None = None  # cldr_en_de only: {train, val, test}
    corpus_seed: int = locale_corpus.DEFAULT_SEED  # cldr_en_de only
    data_dir: str | None = None  # tfds only


def make_translation_data(
    config: Any = None,
    workdir: str | os.PathLike | None = None,
    *,
    verbose: bool = True,
    **overrides,
) -> TranslationData:
    """Builds the pipeline from a (flat) experiment config plus keyword overrides.

    Keys of `config` that are not pipeline options (model, learning_rate, ...) are
    ignored. With `workdir`, the tokenizer is stored in `workdir/tokenizer/`.
    """
    values = {}
    for field in dataclasses.fields(TranslationDataConfig):
        if config is not None and field.name in config:
            value = config[field.name]
            if hasattr(value, 'to_dict'):
                value = value.to_dict()
            values[field.name] = value
    values.update(overrides)
    if values.get('bucket_boundaries') is not None:
        values['bucket_boundaries'] = tuple(int(b) for b in values['bucket_boundaries'])
    return TranslationData(TranslationDataConfig(**values), workdir, verbose=verbose)


def load(config, workdir: str | os.PathLike | None) -> TranslationData:
    """The pipeline of an experiment config, its evaluation splits read at once so that a
    bad file fails before anything compiles; every data problem is a DataError."""
    try:
        data = make_translation_data(
            config, workdir, data_dir=os.path.expanduser(config.data_dir) or None
        )
        for role in ('validation', 'test'):
            if data.split_stems[role]:
                data.sources(role)
        return data
    except (ValueError, FileNotFoundError, RuntimeError) as e:
        raise DataError(f'translation data {config.dataset!r}: {e}') from None


def check_config(config) -> None:
    """The pipeline's keys of an experiment config, checked before anything is read;
    raises ConfigError naming the key."""
    dataset = config.dataset
    require(
        dataset == locale_corpus.NAME or dataset.startswith(('parallel:', 'tfds:')),
        'dataset',
        f"must be '{locale_corpus.NAME}', 'parallel:DIR' or 'tfds:NAME[/CONFIG]'",
        dataset,
    )
    require(
        config.source_lang != config.target_lang,
        'target_lang',
        f'must differ from source_lang={config.source_lang!r}',
        config.target_lang,
    )
    require(config.train_split != '', 'train_split', 'is required', config.train_split)
    require(config.vocab_size >= 16, 'vocab_size', 'must be >= 16', config.vocab_size)
    for key in ('max_source_length', 'max_target_length'):
        require(
            isinstance(config[key], int) and config[key] >= 2,
            key,
            'must be an integer >= 2 (it counts EOS/BOS)',
            config[key],
        )


def tokenizer_paths(
    workdir, joint_vocab: bool, source_lang: str, target_lang: str
) -> tuple[str, str]:
    """Where a run keeps its SentencePiece models (one file for a joint vocabulary)."""
    folder = os.path.join(os.fspath(workdir), 'tokenizer')
    names = ('joint', 'joint') if joint_vocab else (source_lang, target_lang)
    return tuple(os.path.join(folder, f'spm_{name}.model') for name in names)


def load_tokenizers(config, workdir) -> tuple[tokenizers.SentencePieceTokenizer, ...]:
    """(source, target) tokenizers a training run stored in its workdir."""
    paths = tokenizer_paths(workdir, config.joint_vocab, config.source_lang, config.target_lang)
    for path in paths:
        if not os.path.exists(path):
            raise DataError(
                f'{path} does not exist: is {workdir} the workdir of a translation training run?'
            )
    return tuple(tokenizers.SentencePieceTokenizer.load(p) for p in paths)


def fit_to_length(batch: Mapping[str, np.ndarray], limit: int | None) -> dict:
    """Cuts the columns of a batch beyond `limit` (a Transformer's position table).
    Only long evaluation lines need it: training pairs are filtered to fit."""
    out = dict(batch)
    if limit is None:
        return out
    for key in ('src', 'tgt_in', 'tgt_out', 'weights'):
        if key in out and out[key].shape[1] > limit:
            out[key] = out[key][:, :limit]
    return out


# --------------------------------------------------------------------------------------
# Reading raw text.
# --------------------------------------------------------------------------------------


def read_lines(path: str | os.PathLike) -> list[str]:
    """UTF-8 lines of `path`, split on '\\n' only (U+2028 and friends stay in a line)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f'parallel corpus file {path} does not exist')
    with open(path, 'rb') as f:
        data = f.read()
    try:
        text = data.decode('utf-8')
    except UnicodeDecodeError as error:
        line = data.count(b'\n', 0, error.start) + 1
        raise ValueError(
            f'{path} is not valid UTF-8: byte offset {error.start} (line {line}) holds '
            f'{data[error.start : error.start + 4]!r}'
        ) from None
    text = text.removeprefix('\ufeff')
    lines = text.split('\n')
    if lines and lines[-1] == '':
        lines.pop()
    return [line.removesuffix('\r') for line in lines]


def read_parallel(
    source_path: str | os.PathLike, target_path: str | os.PathLike
) -> tuple[list[str], list[str]]:
    sources, targets = read_lines(source_path), read_lines(target_path)
    if len(sources) != len(targets):
        raise ValueError(
            f'parallel files are not line-aligned: {os.fspath(source_path)} has '
            f'{len(sources)} lines but {os.fspath(target_path)} has {len(targets)} lines'
        )
    return sources, targets


class _ParallelDir:
    default_stems: ClassVar[dict[str, str]] = {
        'train': 'train',
        'validation': 'val',
        'test': 'test',
    }

    def __init__(self, directory: str, source_lang: str, target_lang: str):
        self.directory, self.source_lang, self.target_lang = directory, source_lang, target_lang
        if not os.path.isdir(directory):
            raise FileNotFoundError(f'parallel corpus directory {directory} does not exist')

    def paths(self, stem: str) -> tuple[str, str]:
        return (
            os.path.join(self.directory, f'{stem}.{self.source_lang}'),
            os.path.join(self.directory, f'{stem}.{self.target_lang}'),
        )

    def check(self, role: str, stem: str) -> None:
        for path in self.paths(stem):
            if not os.path.isfile(path):
                raise FileNotFoundError(
                    f'parallel corpus file {path} does not exist (the {role} split '
                    f"'{stem}'; set the `{role}_split` "
                    "config key to the right stem, or to '' when there is no such split)"
                )

    def load(self, stem: str) -> tuple[list[str], list[str]]:
        return read_parallel(*self.paths(stem))


class _LocaleCorpus:
    default_stems: ClassVar[dict[str, str]] = {
        'train': 'train',
        'validation': 'val',
        'test': 'test',
    }

    def __init__(self, source_lang: str, target_lang: str, sizes, seed: int):
        for lang in (source_lang, target_lang):
            if lang not in locale_corpus.LANGUAGES:
                raise ValueError(
                    f'{locale_corpus.NAME} has the languages '
                    f'{locale_corpus.LANGUAGES}, not {lang!r}'
                )
        self.source_lang, self.target_lang = source_lang, target_lang
        self._corpus = locale_corpus.build_corpus(dict(sizes) if sizes else None, seed)

    def check(self, role: str, stem: str) -> None:
        if stem not in self._corpus:
            raise ValueError(
                f'{locale_corpus.NAME} has the splits '
                f'{tuple(self._corpus)}, not {stem!r} (the {role} split)'
            )

    def load(self, stem: str) -> tuple[list[str], list[str]]:
        sides = self._corpus[stem]
        return list(sides[self.source_lang]), list(sides[self.target_lang])


class _TfdsCorpus:
    default_stems: ClassVar[dict[str, str]] = {
        'train': 'train',
        'validation': 'validation',
        'test': 'test',
    }

    def __init__(self, name: str, source_lang: str, target_lang: str, data_dir: str | None):
        self.name, self.data_dir = name, data_dir
        self.source_lang, self.target_lang = source_lang, target_lang
        self._prepared = False

    def check(self, role: str, stem: str) -> None:
        del role, stem  # the split names are known only once the builder is prepared

    def _data_source(self, stem: str):
        import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel

        if not self._prepared:
            try:
                return tfds.data_source(
                    self.name, split=stem, data_dir=self.data_dir, download=False
                )
            # TFDS raises several types for "not prepared here"; all lead to preparing.
            except Exception as missing:  # noqa: BLE001
                self._prepare(tfds, missing)
        return tfds.data_source(self.name, split=stem, data_dir=self.data_dir, download=False)

    def _prepare(self, tfds, missing: Exception) -> None:
        where = self.data_dir or 'the default TFDS data_dir (~/tensorflow_datasets)'
        try:
            import tensorflow  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import
        except ImportError:
            raise RuntimeError(
                f"dataset 'tfds:{self.name}' is not prepared in {where}, and preparing it "
                "needs TensorFlow and internet access: pip install 'seqmodels[tf]' on a "
                'machine online, or prepare it elsewhere with '
                f"tfds.builder('{self.name}').download_and_prepare(file_format='array_record') "
                'and set `data_dir` to the copy. For an offline run use the default '
                f"dataset '{locale_corpus.NAME}' or 'parallel:DIR'. "
                f'(TFDS said: {str(missing).splitlines()[0]})'
            ) from missing
        try:
            builder = tfds.builder(self.name, data_dir=self.data_dir)
            builder.download_and_prepare(file_format='array_record')
        except Exception as error:
            raise RuntimeError(
                f"could not download and prepare 'tfds:{self.name}' in {where} (it needs "
                f'internet access and disk space): {error}'
            ) from error
        self._prepared = True

    def load(self, stem: str) -> tuple[list[str], list[str]]:
        def text(value) -> str:
            return value.decode('utf-8') if isinstance(value, bytes) else str(value)

        pairs = grain.MapDataset.source(self._data_source(stem)).map(
            lambda ex: (text(ex[self.source_lang]), text(ex[self.target_lang]))
        )
        sources, targets = [], []
        for source, target in pairs.to_iter_dataset():
            sources.append(source)
            targets.append(target)
        return sources, targets


def _open_dataset(config: TranslationDataConfig):
    dataset = config.dataset
    if dataset == locale_corpus.NAME:
        return _LocaleCorpus(
            config.source_lang, config.target_lang, config.corpus_sizes, config.corpus_seed
        )
    if dataset.startswith('parallel:'):
        return _ParallelDir(dataset[len('parallel:') :], config.source_lang, config.target_lang)
    if dataset.startswith('tfds:'):
        return _TfdsCorpus(
            dataset[len('tfds:') :], config.source_lang, config.target_lang, config.data_dir
        )
    raise ValueError(
        f"unknown translation dataset {dataset!r}: use '{locale_corpus.NAME}', "
        "'parallel:DIR' or 'tfds:NAME[/CONFIG]'"
    )


# --------------------------------------------------------------------------------------
# Token storage, filtering, batching.
# --------------------------------------------------------------------------------------


class _Ragged:
    """Many short id sequences in one flat array, so millions of pairs stay compact."""

    def __init__(self, rows: Sequence[Sequence[int]]):
        lengths = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
        self.offsets = np.concatenate([[0], np.cumsum(lengths)])
        self.ids = np.fromiter(
            (t for r in rows for t in r), dtype=np.int32, count=int(self.offsets[-1])
        )

    @classmethod
    def encode(cls, tokenizer: tokenizers.SentencePieceTokenizer, texts: Sequence[str]) -> _Ragged:
        parts = [
            cls(tokenizer.encode_batch(texts[i : i + _ENCODE_CHUNK]))
            for i in range(0, len(texts), _ENCODE_CHUNK)
        ]
        return cls.concatenate(parts)

    @classmethod
    def concatenate(cls, parts: Sequence[_Ragged]) -> _Ragged:
        joined = cls([])
        if parts:
            joined.ids = np.concatenate([p.ids for p in parts])
            starts = np.cumsum([0] + [p.offsets[-1] for p in parts[:-1]])
            joined.offsets = np.concatenate(
                [[0]] + [p.offsets[1:] + s for p, s in zip(parts, starts)]
            )
        return joined

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i: int) -> np.ndarray:
        return self.ids[self.offsets[i] : self.offsets[i + 1]]

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def take(self, indices: np.ndarray) -> _Ragged:
        lengths = self.lengths[indices]
        taken = _Ragged([])
        taken.offsets = np.concatenate([[0], np.cumsum(lengths)])
        shift = np.repeat(self.offsets[:-1][indices] - taken.offsets[:-1], lengths)
        taken.ids = self.ids[np.arange(taken.offsets[-1]) + shift]
        return taken


def length_filter(
    source_lengths: np.ndarray,
    target_lengths: np.ndarray,
    max_source_length: int,
    max_target_length: int,
) -> tuple[np.ndarray, dict[str, int]]:
    """Indices of the pairs kept, and how many were dropped for each reason.

    Lengths are in subword tokens without EOS/BOS; the bounds include them. A dropped
    pair counts once, under the first reason of DROP_REASONS that applies.
    """
    reasons = (
        source_lengths == 0,
        target_lengths == 0,
        source_lengths + 1 > max_source_length,
        target_lengths + 1 > max_target_length,
    )
    dropped = np.zeros(len(source_lengths), dtype=bool)
    counts = {}
    for name, hit in zip(DROP_REASONS, reasons):
        counts[name] = int(np.sum(hit & ~dropped))
        dropped |= hit
    return np.flatnonzero(~dropped), counts


def _bucket_length(length: int, boundaries: Sequence[int]) -> int:
    """The smallest boundary >= length; beyond the last, its next multiple (eval only)."""
    index = int(np.searchsorted(boundaries, length, side='left'))
    if index < len(boundaries):
        return int(boundaries[index])
    last = int(boundaries[-1])
    return -(-length // last) * last


def plan_bucketed_batches(
    pair_lengths: np.ndarray, batch_size: int, boundaries: Sequence[int], seed: int
) -> list[tuple[np.ndarray, int]]:
    """One epoch of batches as (pair indices with -1 for dummy rows, padded length).

    Every pair index appears exactly once. `pair_lengths` is the padded length each
    pair needs (max of its source and target sequence lengths).
    """
    rng = np.random.default_rng(seed)
    bucket = np.searchsorted(boundaries, pair_lengths, side='left')
    if len(pair_lengths) and bucket.max() >= len(boundaries):
        raise ValueError(
            f'a pair of length {pair_lengths.max()} exceeds the last bucket '
            f'boundary {boundaries[-1]}'
        )
    plan, leftovers = [], []
    for b, boundary in enumerate(boundaries):
        members = np.flatnonzero(bucket == b)
        rng.shuffle(members)
        full = len(members) - len(members) % batch_size
        plan += [(members[i : i + batch_size], int(boundary)) for i in range(0, full, batch_size)]
        leftovers.append(members[full:])
    # Remainders are kept in length order, so merged batches still pad little.
    rest = np.concatenate(leftovers) if leftovers else np.zeros(0, np.int64)
    for i in range(0, len(rest), batch_size):
        chunk = rest[i : i + batch_size]
        length = _bucket_length(int(pair_lengths[chunk].max()), boundaries)
        chunk = np.concatenate([chunk, np.full(batch_size - len(chunk), -1, chunk.dtype)])
        plan.append((chunk, length))
    return [(ids.astype(np.int64), length) for ids, length in plan]


def padding_fraction(
    plan: Sequence[tuple[np.ndarray, int]], source_lengths: np.ndarray, target_lengths: np.ndarray
) -> float:
    """Share of src + tgt_out positions that are padding (dummy rows are padding)."""
    real = total = 0
    for ids, length in plan:
        kept = ids[ids >= 0]
        real += int(np.sum(source_lengths[kept] + 1) + np.sum(target_lengths[kept] + 1))
        total += 2 * len(ids) * length
    return 1.0 - real / total if total else 0.0


def plan_unbucketed_batches(
    pair_lengths: np.ndarray, batch_size: int, seed: int
) -> list[tuple[np.ndarray, int]]:
    """The baseline: shuffled batches, each padded to its own longest pair."""
    order = np.random.default_rng(seed).permutation(len(pair_lengths))
    plan = []
    for i in range(0, len(order), batch_size):
        chunk = order[i : i + batch_size]
        chunk = np.concatenate([chunk, np.full(batch_size - len(chunk), -1, chunk.dtype)])
        plan.append((chunk, int(pair_lengths[chunk[chunk >= 0]].max())))
    return plan


def assemble_batch(
    sources: Sequence[np.ndarray | None], targets: Sequence[np.ndarray | None], length: int
) -> dict[str, np.ndarray]:
    """Pads pieces into src / tgt_in / tgt_out / src_lengths / weights; None = dummy row."""
    rows = len(sources)
    src = np.full((rows, length), PAD_ID, np.int32)
    tgt_in = np.full((rows, length), PAD_ID, np.int32)
    tgt_out = np.full((rows, length), PAD_ID, np.int32)
    weights = np.zeros((rows, length), np.float32)
    src_lengths = np.ones(rows, np.int32)
    tgt_in[:, 0], tgt_out[:, 0], src[:, 0] = BOS_ID, EOS_ID, EOS_ID
    for row, (source, target) in enumerate(zip(sources, targets)):
        if source is None:
            continue
        n, m = len(source), len(target)
        src[row, :n] = source
        src[row, n] = EOS_ID
        src_lengths[row] = n + 1
        tgt_in[row, 1 : m + 1] = target
        tgt_out[row, :m] = target
        tgt_out[row, m] = EOS_ID
        weights[row, : m + 1] = 1.0
    return {
        'src': src,
        'tgt_in': tgt_in,
        'tgt_out': tgt_out,
        'src_lengths': src_lengths,
        'weights': weights,
    }


def _boundaries(config: TranslationDataConfig) -> tuple[int, ...]:
    longest = max(config.max_source_length, config.max_target_length)
    if config.bucket_boundaries is not None:
        chosen = sorted({int(b) for b in config.bucket_boundaries})
        if not chosen or chosen[0] < 2:
            raise ValueError(f'bucket_boundaries must be >= 2, got {config.bucket_boundaries}')
        chosen = [b for b in chosen if b < longest]
    else:
        chosen = [b for b in DEFAULT_BOUNDARIES if b < longest]
    return tuple(chosen + [longest])


# --------------------------------------------------------------------------------------
# The pipeline object.
# --------------------------------------------------------------------------------------


@dataclasses.dataclass
class _Split:
    stem: str
    sources: list[str]
    references: list[str]
    encoded: tuple[_Ragged, _Ragged] | None = None


class TranslationData:
    """Tokenizer, seeded training batches by step, and ordered evaluation batches."""

    def __init__(
        self,
        config: TranslationDataConfig,
        workdir: str | os.PathLike | None = None,
        verbose: bool = True,
    ):
        self.config = config
        if config.source_lang == config.target_lang:
            raise ValueError(f'source_lang and target_lang are both {config.source_lang!r}')
        if config.batch_size < 1:
            raise ValueError(f'batch_size must be positive, got {config.batch_size}')
        if min(config.max_source_length, config.max_target_length) < 2:
            raise ValueError(
                'max_source_length and max_target_length must be >= 2 (they count EOS/BOS)'
            )
        self._dataset = _open_dataset(config)
        stems = {
            'train': config.train_split,
            'validation': config.validation_split,
            'test': config.test_split,
        }
        self.split_stems = {
            role: self._dataset.default_stems[role] if stem is None else stem
            for role, stem in stems.items()
        }
        if not self.split_stems['train']:
            raise ValueError('the train split is required (train_split is empty)')
        for role, stem in self.split_stems.items():
            if stem:
                self._dataset.check(role, stem)
        self._splits: dict[str, _Split] = {}
        self.bucket_boundaries = _boundaries(config)

        train = self._split('train')
        self.source_tokenizer, self.target_tokenizer = self._tokenizers(train, workdir)
        self.tokenizer = self.target_tokenizer
        src_all = _Ragged.encode(self.source_tokenizer, train.sources)
        tgt_all = _Ragged.encode(self.target_tokenizer, train.references)
        kept, dropped = length_filter(
            src_all.lengths, tgt_all.lengths, config.max_source_length, config.max_target_length
        )
        if not len(kept):
            raise ValueError(f'no training pair survives the length filter: {dropped}')
        self._train_src, self._train_tgt = src_all.take(kept), tgt_all.take(kept)
        self.train_kept_indices = kept  # line numbers of the kept pairs in the train split

        src_len, tgt_len = self._train_src.lengths, self._train_tgt.lengths
        pair_lengths = np.maximum(src_len, tgt_len) + 1
        self._plan = plan_bucketed_batches(
            pair_lengths, config.batch_size, self.bucket_boundaries, config.seed
        )
        # grain gives each epoch its own order from (seed, epoch), by random access.
        self._order = grain.MapDataset.source(self._plan).shuffle(seed=config.seed % 2**32).repeat()
        unbucketed = plan_unbucketed_batches(pair_lengths, config.batch_size, config.seed)
        self.stats = {
            'train': {
                'pairs': len(train.sources),
                'kept': len(kept),
                'dropped': dropped,
                'dropped_total': int(sum(dropped.values())),
            },
            'vocab_size': self.tokenizer.vocab_size,
            'source_vocab_size': self.source_tokenizer.vocab_size,
            'bucket_boundaries': list(self.bucket_boundaries),
            'batches_per_epoch': len(self._plan),
            'batches_per_length': {
                int(b): sum(1 for _, n in self._plan if n == b)
                for b in sorted({n for _, n in self._plan})
            },
            'padding_fraction': padding_fraction(self._plan, src_len, tgt_len),
            'padding_fraction_unbucketed': padding_fraction(unbucketed, src_len, tgt_len),
        }
        if verbose:
            print(self.report())

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.vocab_size

    @property
    def batches_per_epoch(self) -> int:
        return len(self._plan)

    def report(self) -> str:
        s, t = self.stats, self.stats['train']
        reasons = ', '.join(f'{k}={v}' for k, v in t['dropped'].items())
        return (
            f'[translation] {self.config.dataset} {self.config.source_lang}->'
            f'{self.config.target_lang}: {t["pairs"]} training pairs, kept {t["kept"]}, '
            f'dropped {t["dropped_total"]} ({reasons}); vocab {s["vocab_size"]}; '
            f'{s["batches_per_epoch"]} batches/epoch of {self.config.batch_size} over '
            f'lengths {s["bucket_boundaries"]}; padding {s["padding_fraction"]:.1%} '
            f'bucketed vs {s["padding_fraction_unbucketed"]:.1%} unbucketed'
        )

    # -- splits -----------------------------------------------------------------------

    def _role(self, split: str) -> str:
        if split in ('val', 'valid', 'dev'):
            split = 'validation'
        if split in ROLES and self.split_stems[split]:
            return split
        for role, stem in self.split_stems.items():
            if stem and split == stem:
                return role
        available = [r for r in ROLES if self.split_stems[r]]
        raise ValueError(
            f'unknown split {split!r}: this dataset has {available} '
            f'(stems {[self.split_stems[r] for r in available]})'
        )

    def _split(self, split: str) -> _Split:
        role = self._role(split)
        if role not in self._splits:
            stem = self.split_stems[role]
            sources, references = self._dataset.load(stem)
            self._splits[role] = _Split(stem, sources, references)
        return self._splits[role]

    def sources(self, split: str) -> list[str]:
        """The raw source lines of a split, in file order, unfiltered."""
        return self._split(split).sources

    def references(self, split: str) -> list[str]:
        """The raw target lines of a split (the references for sacreBLEU)."""
        return self._split(split).references

    def _tokenizers(self, train: _Split, workdir):
        options = {
            'vocab_size': self.config.vocab_size,
            'model_type': self.config.model_type,
            'character_coverage': self.config.character_coverage,
            'split_digits': self.config.split_digits,
        }
        source_path, target_path = (
            (None, None)
            if workdir is None
            else tokenizer_paths(
                workdir, self.config.joint_vocab, self.config.source_lang, self.config.target_lang
            )
        )
        if self.config.joint_vocab:
            joint = tokenizers.load_or_train_sentencepiece(
                source_path, train.sources + train.references, **options
            )
            return joint, joint
        return (
            tokenizers.load_or_train_sentencepiece(source_path, train.sources, **options),
            tokenizers.load_or_train_sentencepiece(target_path, train.references, **options),
        )

    # -- training ---------------------------------------------------------------------

    def train_example_ids(
        self, step: int, process_index: int = 0, process_count: int = 1
    ) -> np.ndarray:
        """Indices into the kept training pairs of this process's rows (-1 = dummy)."""
        if step < 0:
            raise ValueError(f'step must be >= 0, got {step}')
        ids, _ = self._order[int(step)]
        return ids[process_rows(self.config.batch_size, process_index, process_count)]

    def train_batch(
        self, step: int, process_index: int = 0, process_count: int = 1
    ) -> dict[str, np.ndarray]:
        """This process's rows of the global training batch of `step`."""
        ids = self.train_example_ids(step, process_index, process_count)
        _, length = self._order[int(step)]
        return assemble_batch(
            [None if i < 0 else self._train_src[i] for i in ids],
            [None if i < 0 else self._train_tgt[i] for i in ids],
            length,
        )

    def train_pair(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Source and target pieces of kept training pair `index` (no EOS/BOS)."""
        return self._train_src[index], self._train_tgt[index]

    # -- evaluation -------------------------------------------------------------------

    def _encoded(self, split: _Split) -> tuple[_Ragged, _Ragged]:
        if split.encoded is None:
            split.encoded = (
                _Ragged.encode(self.source_tokenizer, split.sources),
                _Ragged.encode(self.target_tokenizer, split.references),
            )
        return split.encoded

    def eval_batches(
        self,
        split: str,
        process_index: int = 0,
        process_count: int = 1,
        num_examples: int | None = None,
    ) -> grain.MapDataset:
        """Batches over the first `num_examples` lines of a split, in line order.

        Each batch also has `example_ids` (the line number, -1 for padding rows); the
        last batch is topped up with dummy rows of weight 0. Lines are not filtered:
        a batch is padded to the bucket boundary of its longest pair (to a multiple of
        the last boundary beyond it).
        """
        data = self._split(split)
        sources, targets = self._encoded(data)
        total = len(data.sources) if num_examples is None else min(num_examples, len(data.sources))
        key = 'eval_batch_size' if self.config.eval_batch_size else 'batch_size'
        batch_size = self.config.eval_batch_size or self.config.batch_size
        rows = process_rows(batch_size, process_index, process_count, key)
        boundaries = self.bucket_boundaries
        lengths = np.maximum(sources.lengths[:total], targets.lengths[:total]) + 1

        def batch(index: int) -> dict[str, np.ndarray]:
            start = index * batch_size
            line_ids = np.arange(start, start + batch_size)
            line_ids[line_ids >= total] = -1
            length = _bucket_length(int(lengths[start : start + batch_size].max()), boundaries)
            mine = line_ids[rows]
            out = assemble_batch(
                [None if i < 0 else sources[i] for i in mine],
                [None if i < 0 else targets[i] for i in mine],
                length,
            )
            out['example_ids'] = mine.astype(np.int32)
            return out

        return grain.MapDataset.range(-(-total // batch_size)).map(batch)

    def eval_iterator(self, *args, **kwargs) -> Iterator[dict[str, np.ndarray]]:
        """`eval_batches` read in order on this thread (no grain prefetch threads)."""
        batches = self.eval_batches(*args, **kwargs)
        return (batches[i] for i in range(len(batches)))

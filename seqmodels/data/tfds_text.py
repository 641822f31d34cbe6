"""Text corpora as TFDS datasets in ``array_record`` format, read without TensorFlow.

`CharCorpus` is one `GeneratorBasedBuilder` whose configs are made on the fly:

* `python_stdlib_config(max_chars)`: the embedded default corpus (see `corpora`), splits
  ``train`` / ``validation`` / ``test``, one record per source file in sorted path order.
* `text_file_config(path, val_fraction, max_chars)`: a user's UTF-8 file, splits
  ``train`` / ``validation``, records are consecutive chunks of `CHUNK_CHARS` characters.

A config's name carries a hash of everything its content depends on (file list or
path, sizes, mtimes, `val_fraction`, `max_chars`), so the first run prepares the
dataset under ``data_dir`` and every later run (or a resume) just reads it back, while
an edited file or another interpreter gets a fresh build. Records keep their
generation order (``disable_shuffling``), so concatenating a split gives the text back.

``max_chars`` (None = no cap) bounds the characters written, for quick experiments
and tests. Stdlib: the cap is shared out 90/5/5 over the splits and each split takes
its files in sorted order, cutting the last one, so every split stays non-empty and
split by file. Text file: only the first ``max_chars`` characters are read, then split.

`catalog_data_sources` prepares a TFDS catalog dataset (``tfds:NAME[/CONFIG]``) the
same way; that needs internet access and, for many catalog builders, TensorFlow.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import sys
from collections.abc import Iterator

import grain
import tensorflow_datasets as tfds
from etils import epath

from seqmodels.data import corpora
from seqmodels.data.corpora import DataError

CHUNK_CHARS = 1 << 16  # records of a text file; any size works, it only bounds record size
DEFAULT_DATA_DIR = os.path.join('~', '.cache', 'seqmodels', 'tfds')


@dataclasses.dataclass(eq=False)
class CharCorpusConfig(tfds.core.BuilderConfig):
    source: str = 'python_stdlib'  # or "text"
    path: str = ''
    val_fraction: float = 0.1
    max_chars: int | None = None


class CharCorpus(tfds.core.GeneratorBasedBuilder):
    """Character-LM corpora: records ``{'source': str, 'text': str}``."""

    name = 'seqmodels_char_corpus'
    VERSION = tfds.core.Version('1.0.0')
    RELEASE_NOTES = {'1.0.0': 'Python stdlib sources and user text files.'}

    @tfds.core.utils.classproperty
    @classmethod
    def code_path(cls) -> epath.Path:
        # TFDS 4.9.10 locates a builder's file through the `importlib_resources` backport,
        # which it only declares for Python < 3.9 (tensorflow/datasets#11212); naming the
        # file directly keeps this builder working without it.
        return epath.Path(__file__)

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description='Character-level LM corpora: records of text with their source.',
            features=tfds.features.FeaturesDict(
                {'source': tfds.features.Text(), 'text': tfds.features.Text()}
            ),
            disable_shuffling=True,
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # everything is local
        cfg = self.builder_config
        if cfg.source == 'python_stdlib':
            splits = _stdlib_records(cfg.max_chars)
        elif cfg.source == 'text':
            splits = _text_file_records(cfg.path, cfg.val_fraction, cfg.max_chars)
        else:
            raise DataError(f'Unknown CharCorpus source {cfg.source!r}.')
        return {split: self._generate_examples(records) for split, records in splits.items()}

    def _generate_examples(self, records):
        for index, (source, text) in enumerate(records):
            yield index, {'source': source, 'text': text}


def _stdlib_records(max_chars: int | None) -> dict[str, Iterator[tuple[str, str]]]:
    root = corpora.stdlib_root()
    by_split: dict[str, list[str]] = {s: [] for s in corpora.STDLIB_SPLIT_PERCENT}
    for rel in corpora.stdlib_files(root):
        by_split[corpora.stdlib_split_of(rel)].append(rel)

    def records(relpaths, budget):
        for rel in relpaths:
            if budget is not None and budget <= 0:
                return
            text = corpora.read_stdlib_file(root, rel)
            if not text:
                continue
            if budget is not None:
                text = text[:budget]
                budget -= len(text)
            yield rel, text

    def budget(split):
        # At least one character, so that no split is empty (TFDS refuses to write one).
        if max_chars is None:
            return None
        return max(1, max_chars * corpora.STDLIB_SPLIT_PERCENT[split] // 100)

    return {split: records(relpaths, budget(split)) for split, relpaths in by_split.items()}


def _text_file_records(path, val_fraction, max_chars) -> dict[str, Iterator[tuple[str, str]]]:
    text = corpora.read_text_file(path)
    if max_chars is not None:
        text = text[:max_chars]
    train, val = corpora.split_by_chars(text, val_fraction)

    def chunks(part, start):
        # range(..) or [0]: an empty split still gets one (empty) record, because TFDS
        # refuses to write a split without examples; the pipeline then reports its length.
        for i in range(0, len(part), CHUNK_CHARS) or [0]:
            yield f'{path}@{start + i}', part[i : i + CHUNK_CHARS]

    return {'train': chunks(train, 0), 'validation': chunks(val, len(train))}


def python_stdlib_config(max_chars: int | None = None) -> CharCorpusConfig:
    root = corpora.stdlib_root()
    files = corpora.stdlib_files(root)
    key = corpora.stdlib_fingerprint(root, files) + f'|max_chars={max_chars}'
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    py = f'py{sys.version_info.major}{sys.version_info.minor}'
    return CharCorpusConfig(
        name=f'python_stdlib_{py}_{digest}',
        description=f'Python {sys.version.split()[0]} standard library sources in {root}',
        source='python_stdlib',
        max_chars=max_chars,
    )


def text_file_config(path: str, val_fraction: float = 0.1, max_chars: int | None = None):
    path = os.path.abspath(os.path.expanduser(path))
    key = corpora.file_fingerprint(path) + f'|val_fraction={val_fraction!r}|max_chars={max_chars}'
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    stem = ''.join(c if c.isalnum() else '_' for c in os.path.basename(path))[:40]
    return CharCorpusConfig(
        name=f'text_{stem}_{digest}',
        description=f'Text file {path}',
        source='text',
        path=path,
        val_fraction=val_fraction,
        max_chars=max_chars,
    )


def char_corpus_data_sources(config: CharCorpusConfig, data_dir: str) -> dict:
    """Prepares the config's dataset if needed; returns {split: ArrayRecord data source}."""
    builder = CharCorpus(config=config, data_dir=os.path.expanduser(data_dir))
    builder.download_and_prepare(file_format='array_record')
    return {split: builder.as_data_source(split=split) for split in builder.info.splits}


def catalog_data_sources(name: str, data_dir: str) -> tuple[dict, str]:
    """Prepares a TFDS catalog dataset as array_record.

    Returns ({split: data source}, name of its text feature).
    """
    data_dir = os.path.expanduser(data_dir)
    try:
        builder = tfds.builder(name, data_dir=data_dir)
        builder.download_and_prepare(file_format='array_record')
        sources = {
            split: tfds.data_source(name, split=split, data_dir=data_dir, download=False)
            for split in builder.info.splits
        }
    except Exception as e:  # any failure here is the user's setup: say what to do
        raise DataError(
            f'Could not prepare TFDS dataset {name!r} in {data_dir!r} as array_record: '
            f'{type(e).__name__}: {_first_line(e)}. {_catalog_hint(e)}'
        ) from e
    return sources, _text_feature(name, builder.info.features)


def _first_line(e: Exception) -> str:
    return (str(e).strip().splitlines() or [''])[0][:300].rstrip('.')


def _catalog_hint(e: Exception) -> str:
    if isinstance(e, tfds.core.registered.DatasetNotFoundError):
        return 'No TFDS catalog dataset has that name; check the spelling (NAME[/CONFIG]).'
    if isinstance(e, ModuleNotFoundError) and e.name == 'importlib_resources':
        # TFDS 4.9.10 needs this backport but declares it only for Python < 3.9.
        return 'Install it: `pip install importlib_resources` (tensorflow/datasets#11212).'
    if isinstance(e, ModuleNotFoundError) and (e.name or '').startswith('tensorflow'):
        return (
            'This catalog builder needs TensorFlow to prepare the data: '
            '`pip install seqmodels[tf]` (reading it back afterwards does not).'
        )
    return (
        'Catalog datasets are downloaded on first use, which needs internet access and, '
        'for many catalog builders (tiny_shakespeare among them), TensorFlow '
        '(`pip install seqmodels[tf]`); once prepared they read without either. Offline, '
        "use dataset='text:PATH' or the embedded default 'python_stdlib'."
    )


def _text_feature(name: str, features) -> str:
    text_keys = [k for k, f in features.items() if isinstance(f, tfds.features.Text)]
    if 'text' in text_keys:
        return 'text'
    if len(text_keys) == 1:
        return text_keys[0]
    raise DataError(
        f'TFDS dataset {name!r} has features {sorted(features.keys())}; a character LM '
        "needs exactly one Text feature (or one named 'text')."
    )


def split_text(data_source, feature: str = 'text') -> str:
    """The records of one split concatenated, in record order."""
    records = grain.MapDataset.source(data_source).map(lambda r: _as_str(r[feature]))
    return ''.join(records[i] for i in range(len(records)))


def _as_str(value) -> str:
    return value.decode('utf-8') if isinstance(value, bytes) else str(value)

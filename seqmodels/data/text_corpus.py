"""Pre-training text as documents of sentences, for subword language models (GPT, BERT).

`load_text_corpus(dataset, normalize=..., val_fraction=...)` returns a `TextCorpus`
(train / validation documents; the embedded corpus also a test split). Datasets:

* ``python_docs`` (the embedded default): English prose that ships with every Python:
  the help topics of `pydoc_data.topics` (the language reference chapters that
  ``help('assert')`` shows), in sorted topic order, then the docstrings of the standard
  library's modules, classes and functions, read with `ast` (nothing is imported), file
  by file in sorted path order and in source order within a file (`corpora.stdlib_files`:
  no tests, no site-packages). Each topic or docstring is one document. Only prose
  paragraphs are kept: code examples (indented lines, ``>>>`` sessions) and headings
  underlined with reStructuredText markup are dropped. It depends on the Python version (3.11: about
  2,500 documents, 1.5 M characters). It is reference documentation, not fiction or
  news: a model trained on it learns the register of technical English.
* ``text:PATH``: a UTF-8 file, or a folder of ``*.txt`` files (walked in sorted order of
  their relative paths). Paragraphs (separated by blank lines) are grouped in order into
  documents of at least `DOCUMENT_CHARS` characters, so that a long book yields many
  documents and consecutive sentences mostly share one.
* ``tfds:NAME[/CONFIG]``: a TFDS catalog dataset with a text feature (downloaded on
  first use: needs internet access), one document per record; validation is its
  ``validation`` (else ``test``) split, else every k-th training document.

Documents are split into train / validation (and test) by position, every k-th document
with k = round(1 / val_fraction), so that the held-out text is spread over the corpus
rather than being its last chapters. The embedded corpus always holds out 10% +
10%, whatever `val_fraction` says, so that its derived labelled task
(`labeled.cloze_examples`) never tests on text a language model was pre-trained on.

Within a paragraph, line breaks are spaces (hard-wrapped text reads as one line);
sentences end at ``.``, ``!`` or ``?`` (plus closing quotes or brackets) followed by
whitespace and a capital letter, digit or opening quote, except after a title or a
common abbreviation (Mr., Dr., St., e.g., ...). `normalize` ('none' or 'lower')
is applied after sentence splitting, which needs the capitals, and the same function
normalises labelled text (`labeled`), so that both steps of a run see one alphabet.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import os
import re
from collections.abc import Iterable, Sequence

from seqmodels.data import corpora
from seqmodels.data.errors import DataError

NORMALIZATIONS = ('none', 'lower')
EMBEDDED = 'python_docs'
DOCUMENT_CHARS = 2000
EMBEDDED_HELD_OUT_PERIOD = 10  # every 10th document validation, the one before it test

# The end of a sentence: its closing punctuation, then the space before the next one.
_SENTENCE_END = re.compile(r'[.!?]["\')\]]*(\s+)(?=["\'(\[]?[A-Z0-9])')
# Titles and Latin abbreviations whose full stop ends no sentence.
_ABBREVIATION = re.compile(r'(?:^|\W)(?:Mr|Mrs|Ms|Dr|St|Jr|Sr|vs|etc|viz|e\.g|i\.e)\.$', re.I)
_MARKUP_LINE = re.compile(r'^\W+$')  # '*******', '======', '----'


@dataclasses.dataclass(frozen=True)
class Document:
    source: str  # where it came from: a file and paragraph, a topic, a module.qualname
    sentences: tuple[str, ...]

    @property
    def text(self) -> str:
        return ' '.join(self.sentences)


@dataclasses.dataclass(frozen=True)
class TextCorpus:
    name: str
    train: tuple[Document, ...]
    validation: tuple[Document, ...]
    test: tuple[Document, ...] = ()

    def split(self, name: str) -> tuple[Document, ...]:
        return {'train': self.train, 'validation': self.validation, 'test': self.test}[name]

    def describe(self) -> str:
        counts = ', '.join(
            f'{len(self.split(s))} {s}' for s in ('train', 'validation', 'test') if self.split(s)
        )
        chars = sum(len(d.text) for d in self.train)
        return f'{self.name}: {counts} documents ({chars:,} training characters)'


def check_normalize(normalize: str) -> None:
    if normalize not in NORMALIZATIONS:
        raise ValueError(f'normalize must be one of {NORMALIZATIONS}, got {normalize!r}')


def normalize_text(text: str, normalize: str) -> str:
    """The text as the model sees it: unchanged ('none') or lower-cased ('lower')."""
    check_normalize(normalize)
    return text.lower() if normalize == 'lower' else text


def split_paragraphs(text: str) -> list[str]:
    """Blank-line separated paragraphs, each on one line with single spaces."""
    paragraphs, lines = [], []
    for line in text.splitlines() + ['']:
        if line.strip():
            lines.append(line.strip())
        elif lines:
            paragraphs.append(' '.join(' '.join(lines).split()))
            lines = []
    return paragraphs


def split_sentences(paragraph: str) -> list[str]:
    """The sentences of one paragraph (see the module docstring for the rule)."""
    sentences, start = [], 0
    for end in _SENTENCE_END.finditer(paragraph):
        if _ABBREVIATION.search(paragraph, max(0, end.start(1) - 6), end.start(1)):
            continue
        sentences.append(paragraph[start : end.start(1)])
        start = end.end(1)
    sentences.append(paragraph[start:])
    return [s.strip() for s in sentences if s.strip()]


def documents_from_text(
    source: str, text: str, normalize: str, document_chars: int = DOCUMENT_CHARS
) -> list[Document]:
    """Paragraphs grouped in order into documents of >= `document_chars` characters."""
    documents, sentences, size, first = [], [], 0, 0
    for index, paragraph in enumerate(split_paragraphs(text)):
        sentences += [normalize_text(s, normalize) for s in split_sentences(paragraph)]
        size += len(paragraph)
        if size >= document_chars:
            documents.append(Document(f'{source}:{first}', tuple(sentences)))
            sentences, size, first = [], 0, index + 1
    if sentences:
        documents.append(Document(f'{source}:{first}', tuple(sentences)))
    return documents


def prose_paragraphs(text: str) -> list[str]:
    """The paragraphs of documentation that are prose: no code, no markup lines."""
    kept, lines = [], []
    for line in text.splitlines() + ['']:
        code = line.startswith((' ', '\t')) or line.lstrip().startswith(('>>>', '...'))
        markup = bool(_MARKUP_LINE.match(line.strip()))
        if line.strip() and not code and not markup:
            lines.append(line.strip())
            continue
        # A line of markup underlines a heading: the heading goes too.
        if lines and not markup and any(c.isalpha() for c in ''.join(lines)):
            kept.append(' '.join(' '.join(lines).split()))
        lines = []
    return kept


@functools.lru_cache(maxsize=1)
def python_docs_texts() -> tuple[tuple[str, str], ...]:
    """(source, prose) of every embedded document, in the corpus order (cached)."""
    from pydoc_data import topics  # pylint: disable=import-outside-toplevel

    texts = [(f'topic:{name}', topics.topics[name]) for name in sorted(topics.topics)]
    root = corpora.stdlib_root()
    for relpath in corpora.stdlib_files(root):
        source = corpora.read_stdlib_file(root, relpath)
        if source is None:
            continue
        try:
            tree = ast.parse(source)
        except SyntaxError:  # a file for another Python version: not the user's problem
            continue
        module = relpath.removesuffix('.py').replace('/', '.')
        texts += [(f'{module}{name}', doc) for name, doc in _docstrings(tree, '')]
    kept = []
    for source, text in texts:
        paragraphs = prose_paragraphs(text)
        if paragraphs:
            kept.append((source, '\n\n'.join(paragraphs)))
    return tuple(kept)


def _docstrings(node, prefix: str):
    """(qualified name, docstring) of a node and its classes and functions, in source order."""
    doc = ast.get_docstring(node)
    if doc:
        yield prefix, doc
    for child in getattr(node, 'body', ()):
        if isinstance(child, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            yield from _docstrings(child, f'{prefix}.{child.name}')


def python_docs_documents(normalize: str = 'none') -> list[Document]:
    documents = []
    for source, text in python_docs_texts():
        sentences = [
            normalize_text(s, normalize)
            for paragraph in split_paragraphs(text)
            for s in split_sentences(paragraph)
        ]
        documents.append(Document(source, tuple(sentences)))
    return documents


def read_text_path(path: str) -> list[tuple[str, str]]:
    """(file, text) of a UTF-8 file, or of every ``*.txt`` file below a folder."""
    path = os.path.abspath(os.path.expanduser(path))
    if not os.path.exists(path):
        raise DataError(f'text path {path!r} does not exist')
    if not os.path.isdir(path):
        return [(path, corpora.read_text_file(path))]
    files = []
    for dirpath, dirnames, filenames in os.walk(path):
        dirnames.sort()
        files += [os.path.join(dirpath, n) for n in sorted(filenames) if n.endswith('.txt')]
    files.sort(key=lambda f: os.path.relpath(f, path).replace(os.sep, '/'))
    if not files:
        raise DataError(f'text folder {path!r} holds no *.txt files')
    return [(f, corpora.read_text_file(f)) for f in files]


def split_documents(
    documents: Sequence[Document], period: int, with_test: bool = False
) -> dict[str, tuple[Document, ...]]:
    """Every `period`-th document to validation (and the one before it to test); the
    last document when there are fewer than `period`."""
    if period < 2 + with_test:
        raise DataError(f'val_fraction leaves no training documents (period {period})')
    splits: dict[str, list[Document]] = {'train': [], 'validation': [], 'test': []}
    for index, document in enumerate(documents):
        position = index % period
        if position == period - 1:
            splits['validation'].append(document)
        elif with_test and position == period - 2:
            splits['test'].append(document)
        else:
            splits['train'].append(document)
    if not splits['validation'] and len(splits['train']) > 1:  # fewer than `period` documents
        splits['validation'].append(splits['train'].pop())
    return {name: tuple(docs) for name, docs in splits.items()}


def is_text_dataset(dataset: str) -> bool:
    return dataset == EMBEDDED or dataset.startswith(('text:', 'tfds:'))


def load_text_corpus(
    dataset: str,
    *,
    normalize: str = 'none',
    val_fraction: float = 0.05,
    data_dir: str | None = None,
    document_chars: int = DOCUMENT_CHARS,
) -> TextCorpus:
    """The documents of a pre-training `dataset` string (see the module docstring)."""
    check_normalize(normalize)
    if not 0 < val_fraction < 1:
        raise ValueError(f'val_fraction must lie in (0, 1), got {val_fraction}')
    period = max(2, round(1 / val_fraction))
    if dataset == EMBEDDED:
        splits = split_documents(
            python_docs_documents(normalize), EMBEDDED_HELD_OUT_PERIOD, with_test=True
        )
        return TextCorpus(EMBEDDED, **splits)
    if dataset.startswith('text:') and dataset != 'text:':
        documents = []
        for source, text in read_text_path(dataset[len('text:') :]):
            documents += documents_from_text(source, text, normalize, document_chars)
        splits = split_documents(_non_empty(documents, dataset), period)
        return TextCorpus(dataset, splits['train'], splits['validation'])
    if dataset.startswith('tfds:') and dataset != 'tfds:':
        return _tfds_corpus(dataset[len('tfds:') :], normalize, period, data_dir)
    raise DataError(
        f"unknown pre-training dataset {dataset!r}: use '{EMBEDDED}' (embedded), "
        "'text:PATH' (a UTF-8 file or a folder of .txt files) or "
        "'tfds:NAME[/CONFIG]'"
    )


def _non_empty(documents: list[Document], dataset: str) -> list[Document]:
    documents = [d for d in documents if d.sentences]
    if len(documents) < 2:
        raise DataError(
            f'dataset {dataset!r} holds {len(documents)} document(s) of text; '
            f'pre-training needs at least 2 (one to train, one to validate)'
        )
    return documents


def _tfds_corpus(name: str, normalize: str, period: int, data_dir: str | None) -> TextCorpus:
    # Imported here: TFDS is heavy, and only this dataset kind needs it.
    from seqmodels.data import tfds_text  # pylint: disable=import-outside-toplevel

    sources, feature = tfds_text.catalog_data_sources(name, data_dir or tfds_text.DEFAULT_DATA_DIR)
    if 'train' not in sources:
        raise DataError(f"TFDS dataset {name!r} has splits {sorted(sources)}, no 'train'")

    def documents(split: str) -> list[Document]:
        out = []
        for index, text in enumerate(_records(sources[split], feature)):
            out += documents_from_text(
                f'tfds:{name}/{split}[{index}]', text, normalize, document_chars=len(text) + 1
            )
        return _non_empty(out, f'tfds:{name}')

    held_out = next((s for s in ('validation', 'test') if s in sources), None)
    if held_out is None:
        splits = split_documents(documents('train'), period)
        return TextCorpus(f'tfds:{name}', splits['train'], splits['validation'])
    return TextCorpus(f'tfds:{name}', tuple(documents('train')), tuple(documents(held_out)))


def _records(data_source, feature: str) -> Iterable[str]:
    for i in range(len(data_source)):
        value = data_source[i][feature]
        yield value.decode('utf-8') if isinstance(value, bytes) else str(value)

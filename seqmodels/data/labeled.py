"""Labelled text for fine-tuning: single sentences, sentence pairs, multiple choice.

`load_labeled_data(dataset, task_type, ...)` returns a `LabeledData` with the examples
of each split and the class names. Datasets:

* ``labeled:DIR``: one UTF-8 file per split, ``DIR/<stem>``, the stems from the config
  keys `train_split`, `validation_split`, `test_split` ('' = no such split; train is
  required). The task type fixes the line format:

  - classification: ``LABEL TEXT`` (SST-2's format): the first space (or tab) ends the
    label;
  - entailment, similarity: ``LABEL<TAB>A<TAB>B`` (premise and hypothesis, or the two
    sentences);
  - multiple_choice: ``LABEL<TAB>CONTEXT<TAB>OPTION_1<TAB>...<TAB>OPTION_K`` with LABEL
    the 0-based index of the right option, K >= 2 and the same on every line.

  Lines to `predict` are the same without the label (a classification line is all
  text). Class labels are any strings; their ids are the training split's labels in
  sorted order (numerically when all are integers); for multiple choice the classes are
  the option indices. A bad line is a `DataError` naming ``file:line`` and what is
  wrong, as is a label in another split that the training split does not have.
* ``python_docs_cloze`` (embedded, multiple_choice): a story-cloze-style task derived
  from the embedded pre-training corpus (`text_corpus`, ``python_docs``): the context is
  3 consecutive sentences of a document, the options are the sentence that follows
  them and 3 sentences drawn from other documents of the same split; chance is 25%.
  Documents give non-overlapping windows of 4 sentences; its train / validation / test
  examples come from the corpus's train / validation / test documents, so a model
  pre-trained on ``python_docs`` is tested on text it has not seen. Deterministic for a
  given `seed` and Python version. It tests whether a model has learned which
  sentences of this documentation follow each other (topic and wording carry most of
  the signal); it is not the Story Cloze Test of Mostafazadeh et al. (2016), and its
  scores are not comparable to published ones.

`normalize` ('none' | 'lower', `text_corpus.normalize_text`) applies to every text
field, never to the label.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Sequence

import numpy as np

from seqmodels.data import text_corpus
from seqmodels.data.errors import DataError

TASK_TYPES = ('classification', 'entailment', 'similarity', 'multiple_choice')
ROLES = ('train', 'validation', 'test')
CLOZE = 'python_docs_cloze'
CLOZE_CONTEXT_SENTENCES = 3
CLOZE_NUM_OPTIONS = 4
CLOZE_MIN_WORDS = 4  # shorter sentences ('See below.') are neither asked for nor offered

_FORMATS = {
    'classification': 'LABEL TEXT',
    'entailment': 'LABEL<TAB>PREMISE<TAB>HYPOTHESIS',
    'similarity': 'LABEL<TAB>SENTENCE_1<TAB>SENTENCE_2',
    'multiple_choice': 'LABEL<TAB>CONTEXT<TAB>OPTION_1<TAB>...<TAB>OPTION_K',
}


@dataclasses.dataclass(frozen=True)
class Example:
    """One example: its label (None for unlabelled input) and its texts in file order:
    (text,), (a, b), or (context, option_1, ..., option_k)."""

    label: str | None
    texts: tuple[str, ...]
    where: str = dataclasses.field(default='', compare=False)  # 'file:line', for errors


def check_task_type(task_type: str) -> None:
    if task_type not in TASK_TYPES:
        raise ValueError(f'task_type must be one of {", ".join(TASK_TYPES)}, got {task_type!r}')


def fit_pair(
    a: Sequence[int], b: Sequence[int], budget: int, a_from_front: bool = False
) -> tuple[list[int], list[int]]:
    """The token ids of a pair's two texts cut to at most `budget` together, one token at
    a time from the longer (b on a tie) and from its end, or from a's front when
    `a_from_front` (a multiple-choice context keeps the words next to its option)."""
    a, b = list(a), list(b)
    while len(a) + len(b) > budget:
        if len(a) > len(b):
            a.pop(0 if a_from_front else -1)
        else:
            b.pop()
    return a, b


def line_format(task_type: str, with_labels: bool = True) -> str:
    check_task_type(task_type)
    text = _FORMATS[task_type]
    if with_labels:
        return text
    return text.removeprefix('LABEL<TAB>').removeprefix('LABEL ')


def parse_line(line: str, task_type: str, with_labels: bool = True) -> Example:
    """One line as an Example; ValueError saying what is wrong with it."""
    check_task_type(task_type)
    expected = f"expected '{line_format(task_type, with_labels)}'"
    if not line.strip():
        raise ValueError(f'empty line; {expected}')
    if task_type == 'classification':
        if not with_labels:
            return Example(None, (line.strip(),))
        parts = re.split(r'[ \t]', line, maxsplit=1)
        if len(parts) < 2 or not parts[0] or not parts[1].strip():
            raise ValueError(
                f'{"no label" if not parts[0] else "no text"}; {expected} '
                '(the first space ends the label)'
            )
        return Example(parts[0], (parts[1].strip(),))
    fields = line.split('\t')
    label = fields.pop(0) if with_labels else None
    if with_labels and not label.strip():
        raise ValueError(f'empty label; {expected}')
    need = 3 if task_type == 'multiple_choice' else 2
    if len(fields) < need or (task_type != 'multiple_choice' and len(fields) != need):
        raise ValueError(
            f'{len(fields)} tab-separated text field(s) after the label; {expected}'
            if with_labels
            else f'{len(fields)} tab-separated text field(s); {expected}'
        )
    empty = [i + 1 for i, f in enumerate(fields) if not f.strip()]
    if empty:
        raise ValueError(f'text field {empty[0]} is empty; {expected}')
    texts = tuple(f.strip() for f in fields)
    if task_type == 'multiple_choice' and with_labels:
        label = label.strip()
        if not (label.isdigit() and int(label) < len(texts) - 1):
            raise ValueError(
                f'label {label!r} is not an option index 0..{len(texts) - 2} '
                f'(the 0-based index of the right one of the '
                f'{len(texts) - 1} options)'
            )
    return Example(label, texts)


def parse_lines(
    lines: Sequence[str],
    task_type: str,
    *,
    with_labels: bool = True,
    source: str = '<input>',
    normalize: str = 'none',
) -> list[Example]:
    """Every line as an Example; DataError `source:line: what is wrong`."""
    examples = []
    for number, line in enumerate(lines, 1):
        where = f'{source}:{number}'
        try:
            example = parse_line(line, task_type, with_labels)
        except ValueError as e:
            raise DataError(f'{where}: {e}') from None
        if (
            task_type == 'multiple_choice'
            and examples
            and (len(example.texts) != len(examples[0].texts))
        ):
            raise DataError(
                f'{where}: {len(example.texts) - 1} options, but line 1 has '
                f'{len(examples[0].texts) - 1}; every line needs the same number'
            )
        texts = tuple(text_corpus.normalize_text(t, normalize) for t in example.texts)
        examples.append(Example(example.label, texts, where))
    return examples


def read_labeled(
    path: str, task_type: str, with_labels: bool = True, normalize: str = 'none'
) -> list[Example]:
    """The examples of a labelled file (format: see the module docstring)."""
    check_task_type(task_type)
    if not os.path.exists(path):
        raise DataError(f'labelled file {path} does not exist')
    if os.path.isdir(path):
        raise DataError(f'labelled file {path} is a directory')
    with open(path, 'rb') as f:
        raw = f.read()
    try:
        text = raw.decode('utf-8')
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b'\n') + 1
        raise DataError(f'{path}:{line}: not UTF-8 text (byte offset {e.start})') from None
    lines = text.removeprefix('\ufeff').split('\n')
    if lines[-1] == '':
        lines.pop()
    examples = parse_lines(
        [line.removesuffix('\r') for line in lines],
        task_type,
        with_labels=with_labels,
        source=path,
        normalize=normalize,
    )
    if not examples:
        raise DataError(f'labelled file {path} holds no examples')
    return examples


def class_names_of(examples: Sequence[Example], task_type: str) -> tuple[str, ...]:
    """The classes of a training split: sorted labels, or the option indices."""
    if task_type == 'multiple_choice':
        return tuple(str(i) for i in range(len(examples[0].texts) - 1))
    labels = {e.label for e in examples}
    if all(label.lstrip('-').isdigit() for label in labels):
        return tuple(sorted(labels, key=int))
    return tuple(sorted(labels))


@dataclasses.dataclass(eq=False)
class LabeledData:
    name: str
    task_type: str
    class_names: tuple[str, ...]
    splits: dict[str, list[Example]]  # the roles this dataset has: train, validation, test

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def num_options(self) -> int:
        """Options per example (multiple choice), else 0."""
        if self.task_type != 'multiple_choice':
            return 0
        return len(self.splits['train'][0].texts) - 1

    def examples(self, role: str) -> list[Example]:
        if role not in self.splits:
            raise DataError(
                f'dataset {self.name!r} has no {role} split (its splits: {", ".join(self.splits)})'
            )
        return self.splits[role]

    def label_ids(self, role: str) -> np.ndarray:
        return label_ids(self.examples(role), self.class_names)

    def describe(self) -> str:
        sizes = ', '.join(f'{len(v)} {k}' for k, v in self.splits.items())
        return f'{self.name} ({self.task_type}): {sizes} examples, classes {list(self.class_names)}'


def label_ids(examples: Sequence[Example], class_names: Sequence[str]) -> np.ndarray:
    """int32 class ids; DataError naming file:line for a label outside `class_names`."""
    index = {name: i for i, name in enumerate(class_names)}
    ids = np.empty(len(examples), np.int32)
    for i, example in enumerate(examples):
        if example.label not in index:
            raise DataError(
                f'{example.where or f"example {i}"}: label {example.label!r} is '
                f'not a class of the training split ({", ".join(class_names)})'
            )
        ids[i] = index[example.label]
    return ids


def is_labeled_dataset(dataset: str) -> bool:
    return dataset == CLOZE or dataset.startswith('labeled:')


def load_labeled_data(
    dataset: str,
    task_type: str,
    *,
    train_split: str = 'train',
    validation_split: str = '',
    test_split: str = '',
    normalize: str = 'none',
    seed: int = 0,
) -> LabeledData:
    """The splits of `dataset` (see the module docstring); labels checked against train."""
    text_corpus.check_normalize(normalize)
    if dataset == CLOZE:
        if task_type != 'multiple_choice':
            raise DataError(f'dataset {CLOZE!r} is a multiple_choice task, not {task_type!r}')
        splits = python_docs_cloze(normalize, seed)
    elif dataset.startswith('labeled:') and dataset != 'labeled:':
        check_task_type(task_type)
        directory = os.path.expanduser(dataset[len('labeled:') :])
        if not os.path.isdir(directory):
            raise DataError(f'dataset {dataset!r}: {directory} is not a directory')
        if not train_split:
            raise DataError(
                f'dataset {dataset!r}: train_split is empty; it names the file '
                f'of training examples in {directory}'
            )
        stems = dict(zip(ROLES, (train_split, validation_split, test_split)))
        splits = {
            role: read_labeled(os.path.join(directory, stem), task_type, normalize=normalize)
            for role, stem in stems.items()
            if stem
        }
    else:
        raise DataError(
            f"unknown labelled dataset {dataset!r}: use 'labeled:DIR' or the embedded '{CLOZE}'"
        )
    if task_type == 'multiple_choice':
        first = splits['train'][0]
        for examples in splits.values():
            if len(examples[0].texts) != len(first.texts):
                raise DataError(
                    f'{examples[0].where}: {len(examples[0].texts) - 1} options, '
                    f'but {first.where} has {len(first.texts) - 1}'
                )
    class_names = class_names_of(splits['train'], task_type)
    if len(class_names) < 2:
        raise DataError(
            f'{splits["train"][0].where.rsplit(":", 1)[0]}: every example has '
            f'the label {class_names[0]!r}; a classifier needs two classes or more'
        )
    data = LabeledData(dataset, task_type, class_names, splits)
    for role in splits:
        data.label_ids(role)  # an unknown label fails here, before anything compiles
    return data


def cloze_examples(
    documents: Sequence[text_corpus.Document],
    seed: int,
    context_sentences: int = CLOZE_CONTEXT_SENTENCES,
    num_options: int = CLOZE_NUM_OPTIONS,
    source: str = CLOZE,
) -> list[Example]:
    """Story-cloze-style multiple choice from documents (see the module docstring).

    Distractors are sentences of the other documents of length within a factor of two
    of the true one (when such exist), so that length alone does not give it away.
    """
    rng = np.random.default_rng(seed)
    pool = [
        (d, s)
        for d, doc in enumerate(documents)
        for s in doc.sentences
        if len(s.split()) >= CLOZE_MIN_WORDS
    ]
    lengths = np.array([len(s.split()) for _, s in pool])
    examples = []
    for d, doc in enumerate(documents):
        # Windows of context + 1 sentences, the last sentence of each the true option.
        for start in range(0, len(doc.sentences) - context_sentences, context_sentences + 1):
            true = doc.sentences[start + context_sentences]
            n = len(true.split())
            if n < CLOZE_MIN_WORDS:
                continue
            similar = np.flatnonzero((lengths >= n / 2) & (lengths <= 2 * n))
            candidates = similar if len(similar) >= 4 * num_options else np.arange(len(pool))
            distractors: list[str] = []
            for i in candidates[rng.integers(len(candidates), size=16 * num_options)]:
                other_doc, sentence = pool[i]
                if other_doc != d and sentence != true and sentence not in distractors:
                    distractors.append(sentence)
                    if len(distractors) == num_options - 1:
                        break
            if len(distractors) < num_options - 1:
                continue
            label = int(rng.integers(num_options))
            options = distractors[:label] + [true] + distractors[label:]
            context = ' '.join(doc.sentences[start : start + context_sentences])
            examples.append(Example(str(label), (context, *options), f'{source}[{len(examples)}]'))
    return examples


def python_docs_cloze(normalize: str = 'none', seed: int = 0) -> dict[str, list[Example]]:
    corpus = text_corpus.load_text_corpus(text_corpus.EMBEDDED, normalize=normalize)
    return {
        role: cloze_examples(corpus.split(role), seed + i, source=f'{CLOZE}/{role}')
        for i, role in enumerate(ROLES)
    }

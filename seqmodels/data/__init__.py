"""Datasets, vocabularies and input pipelines.

Character-level LM: `make_char_lm_data(dataset, seq_len, batch_size, seed, ...)`
returns a `CharLMData` with `vocab`, `train_batch(step, process_index, process_count)`
and `eval_batches(process_index, process_count, num_batches)`; see `lm_pipeline`.

Pre-training text: `load_text_corpus(dataset, normalize=...)` returns a `TextCorpus`
of `Document`s (sentences); labelled fine-tuning sets: `load_labeled_data(dataset,
task_type, ...)` returns a `LabeledData` of `Example`s; see `text_corpus` and `labeled`.

Every loader takes its rows of a global batch from `rows.process_rows`. The pipeline
names are imported on first use: `seqmodels.training` imports `seqmodels.data.rows`,
which must not pull in grain and TFDS.
"""

import importlib

from seqmodels.data.char_vocab import UNK_ID, UNK_TOKEN, CharVocab
from seqmodels.data.errors import DataError

_LAZY = {
    'CharLMData': 'lm_pipeline',
    'make_char_lm_data': 'lm_pipeline',
    'Example': 'labeled',
    'LabeledData': 'labeled',
    'load_labeled_data': 'labeled',
    'Document': 'text_corpus',
    'TextCorpus': 'text_corpus',
    'load_text_corpus': 'text_corpus',
}

__all__ = [
    'CharLMData',
    'CharVocab',
    'DataError',
    'Document',
    'Example',
    'LabeledData',
    'TextCorpus',
    'UNK_ID',
    'UNK_TOKEN',
    'load_labeled_data',
    'load_text_corpus',
    'make_char_lm_data',
]


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(f'{__name__}.{_LAZY[name]}'), name)
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')

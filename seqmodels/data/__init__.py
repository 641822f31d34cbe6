"""Datasets, vocabularies and input pipelines.

Character-level LM: `make_char_lm_data(dataset, seq_len, batch_size, seed, ...)`
returns a `CharLMData` with `vocab`, `train_batch(step, process_index, process_count)`
and `eval_batches(process_index, process_count, num_batches)`; see `lm_pipeline`.
"""

from seqmodels.data.char_vocab import UNK_ID, UNK_TOKEN, CharVocab
from seqmodels.data.corpora import DataError
from seqmodels.data.lm_pipeline import CharLMData, make_char_lm_data

__all__ = [
    "CharLMData",
    "CharVocab",
    "DataError",
    "UNK_ID",
    "UNK_TOKEN",
    "make_char_lm_data",
]

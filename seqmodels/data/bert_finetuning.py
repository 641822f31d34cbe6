"""BERT fine-tuning inputs (Devlin et al. 2019 §4, Figure 4): labelled examples as
`[CLS] A [SEP]` or `[CLS] A [SEP] B [SEP]` token ids with segment ids, batched by step.

Task types (`seqmodels.data.labeled`):

* classification: `[CLS] text [SEP]`, all segment 0; int32[seq_len] per example.
* entailment, similarity: `[CLS] a [SEP] b [SEP]`, segment 1 from b to its [SEP].
* multiple_choice: one `[CLS] context [SEP] option_k [SEP]` row per option (§4.4,
  SWAG); int32[num_options, seq_len] per example.

Too long a pair loses one token at a time from its longer segment (b on a tie), from
b's end, or from a's end, except for multiple choice, whose context loses its first
tokens so that the words next to the option are kept. A single text loses its end.

Batches of the encoded splits by step: `split_batches.SplitBatches`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import numpy as np

from seqmodels.data.bert_pretraining import pack_pair, special_ids
from seqmodels.data.errors import DataError
from seqmodels.data.labeled import TASK_TYPES, LabeledData, fit_pair
from seqmodels.data.split_batches import SplitBatches


def encode_example(
    pieces: Sequence[Sequence[int]], task_type: str, seq_len: int, cls_id: int, sep_id: int
) -> tuple[np.ndarray, np.ndarray]:
    """(tokens, segment_ids) of one example given the token ids of its texts."""
    if task_type not in TASK_TYPES:
        raise ValueError(f'task_type must be one of {", ".join(TASK_TYPES)}, got {task_type!r}')
    if task_type == 'classification':
        (text,) = pieces
        return pack_pair(list(text)[: seq_len - 2], None, seq_len, cls_id, sep_id)
    if task_type == 'multiple_choice':
        context, *options = pieces
        rows = [
            pack_pair(
                *fit_pair(context, option, seq_len - 3, a_from_front=True), seq_len, cls_id, sep_id
            )
            for option in options
        ]
        return np.stack([t for t, _ in rows]), np.stack([s for _, s in rows])
    a, b = pieces
    return pack_pair(*fit_pair(a, b, seq_len - 3), seq_len, cls_id, sep_id)


@dataclasses.dataclass(eq=False)
class EncodedSplit:
    """One split as arrays: tokens and segment_ids [N, (K,) seq_len], labels [N] (or
    None for unlabelled input)."""

    tokens: np.ndarray
    segment_ids: np.ndarray
    labels: np.ndarray | None

    def __len__(self) -> int:
        return len(self.tokens)

    @classmethod
    def encode(
        cls,
        texts: Sequence[Sequence[str]],
        labels: np.ndarray | None,
        task_type: str,
        seq_len: int,
        encode_batch: Callable[[list[str]], list],
        cls_id: int,
        sep_id: int,
    ) -> EncodedSplit:
        """`texts[i]` the texts of example i; `encode_batch` a tokenizer's."""
        if seq_len < 5:
            raise ValueError(f'seq_len={seq_len}: [CLS] a [SEP] b [SEP] needs at least 5')
        flat = [text for example in texts for text in example]
        pieces = iter(encode_batch(flat) if flat else [])
        rows = [
            encode_example([next(pieces) for _ in example], task_type, seq_len, cls_id, sep_id)
            for example in texts
        ]
        if not rows:
            raise DataError('no examples to encode')
        return cls(
            np.stack([t for t, _ in rows]),
            np.stack([s for _, s in rows]),
            None if labels is None else np.asarray(labels, np.int32),
        )

    def rows(self, indices: np.ndarray, weights: np.ndarray | None = None) -> dict:
        batch = {'tokens': self.tokens[indices], 'segment_ids': self.segment_ids[indices]}
        if self.labels is not None:
            batch['labels'] = self.labels[indices]
        if weights is not None:
            batch['weights'] = weights
        return batch


def encode_texts(
    texts: Sequence[Sequence[str]], labels, task_type: str, tokenizer, seq_len: int
) -> EncodedSplit:
    """Examples' texts (and label ids, or None) encoded with a tokenizer that reserves
    `bert_pretraining.SPECIAL_TOKENS`."""
    ids = special_ids(tokenizer)
    return EncodedSplit.encode(
        texts, labels, task_type, seq_len, tokenizer.encode_batch, ids['cls'], ids['sep']
    )


def make_finetuning_data(
    labeled: LabeledData, tokenizer, *, seq_len: int, batch_size: int, seed: int
) -> SplitBatches:
    """Every split of a labelled dataset, encoded, with its batches."""
    splits = {
        role: encode_texts(
            [e.texts for e in examples],
            labeled.label_ids(role),
            labeled.task_type,
            tokenizer,
            seq_len,
        )
        for role, examples in labeled.splits.items()
    }
    return SplitBatches(splits, batch_size, seed)

"""BERT pre-training examples: sentence pairs for next-sentence prediction, masked for the
masked LM (Devlin et al. 2019 §3.1 and Appendix A.1-A.2), addressed by row.

Input is a corpus of documents, each a list of sentences, encoded once into token ids
(`EncodedDocuments`). Example `row` is computed from (seed, stream, row) alone:

1. Target length. `max_tokens = seq_len - 3` (room for [CLS] and two [SEP]); with
   probability `short_seq_prob` the target is drawn uniformly from [2, max_tokens]
   instead (the paper's released code does this for 10% of examples, so that the model
   also sees the short inputs of fine-tuning).
2. Segment A and the true continuation. A start sentence is drawn uniformly among the
   sentences that have a next sentence in their document; consecutive sentences are
   gathered from it until they hold `target` tokens (and at least two sentences) or the
   document ends. A is the first k of them, k uniform in [1, gathered - 1].
3. Segment B. With probability `next_sentence_prob` (0.5) B is the rest of the
   gathered sentences, the true next segment (`next_sentence_label` 0, IsNext);
   otherwise B starts at a uniformly drawn sentence of a uniformly drawn *other*
   document and gathers sentences until it holds `target - len(A)` tokens (label 1,
   NotNext). A is built the same way for both labels,
   so nothing about A tells them apart.
4. Truncation. While len(A) + len(B) > max_tokens, one token goes from the longer
   segment (B on a tie), from its front or its back with equal probability.
5. Layout: `[CLS] A [SEP] B [SEP]`, padded with PAD_ID to `seq_len`; `segment_ids` are
   0 up to and including the first [SEP], 1 for B and the second [SEP], 0 on padding.
6. Masked LM: `seqmodels.models.bert.mask_tokens` (15% of the non-special tokens; of
   those 80% [MASK], 10% a random ordinary token, 10% unchanged). The chosen positions
   are listed in `masked_positions` (int32[max_predictions], in increasing order) with
   the original tokens in `masked_ids` and `masked_weights` 1.0; unused slots are
   position 0 with weight 0. In the rare row where more positions are chosen than
   `max_predictions`, a uniformly drawn subset of that size is kept and the others are
   restored to their original tokens, so no input is corrupted without a target.

Row r of training batch `step` is global row `step * batch_size + r`; process p of P
loads the rows `seqmodels.data.rows.process_rows` gives it, so a resumed run, or a run
on another number of processes, sees exactly the same examples.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Sequence

import grain
import numpy as np

from seqmodels.data.errors import DataError
from seqmodels.data.rows import process_batch, process_rows
from seqmodels.models.bert import PAD_ID, mask_tokens

_MASK64 = (1 << 64) - 1
_MAX_ROWS = 1 << 62  # MapDataset needs a length; no run comes near it
TRAIN_STREAM, EVAL_STREAM = 0, 1
NEXT, RANDOM_NEXT = 0, 1  # next_sentence_label values (IsNext, NotNext)


def row_rng(seed: int, stream: int, row: int) -> np.random.Generator:
    """The generator of one example: a pure function of (seed, stream, row)."""
    return np.random.Generator(
        np.random.PCG64(np.random.SeedSequence([seed & _MASK64, stream, row]))
    )


@dataclasses.dataclass(frozen=True)
class EncodedDocuments:
    """Documents of sentences as token ids, flat: sentence s is
    `ids[sentence_starts[s]:sentence_starts[s + 1]]`; document d holds the sentences
    `doc_starts[d]` to `doc_starts[d + 1] - 1`. Empty sentences and documents are dropped."""

    ids: np.ndarray  # int32[num_tokens]
    sentence_starts: np.ndarray  # int64[num_sentences + 1]
    doc_starts: np.ndarray  # int64[num_docs + 1]

    @classmethod
    def from_token_lists(cls, documents: Sequence[Sequence[Sequence[int]]]) -> EncodedDocuments:
        lengths, doc_sizes, pieces = [], [], []
        for document in documents:
            kept = [np.asarray(s, np.int32) for s in document if len(s)]
            if kept:
                doc_sizes.append(len(kept))
                lengths.extend(len(s) for s in kept)
                pieces.extend(kept)
        ids = np.concatenate(pieces) if pieces else np.zeros(0, np.int32)
        return cls(
            ids,
            np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)]),
            np.concatenate([[0], np.cumsum(doc_sizes, dtype=np.int64)]),
        )

    @classmethod
    def encode(
        cls,
        documents: Sequence[Sequence[str]],
        encode_batch: Callable[[list[str]], list[list[int]]],
    ) -> EncodedDocuments:
        """Encodes every sentence with `encode_batch` (e.g. a tokenizer's `encode_batch`)."""
        flat = [sentence for document in documents for sentence in document]
        encoded = iter(encode_batch(flat) if flat else [])
        return cls.from_token_lists([[next(encoded) for _ in document] for document in documents])

    @property
    def num_docs(self) -> int:
        return len(self.doc_starts) - 1

    @property
    def num_sentences(self) -> int:
        return len(self.sentence_starts) - 1

    @property
    def num_tokens(self) -> int:
        return len(self.ids)

    def document_of(self, sentence: int) -> int:
        return int(np.searchsorted(self.doc_starts, sentence, side='right')) - 1

    def sentence(self, s: int) -> np.ndarray:
        return self.ids[self.sentence_starts[s] : self.sentence_starts[s + 1]]

    def span(self, first: int, stop: int) -> np.ndarray:
        """The tokens of sentences [first, stop), concatenated."""
        return self.ids[self.sentence_starts[first] : self.sentence_starts[stop]]


def pack_pair(a, b, seq_len: int, cls_id: int, sep_id: int) -> tuple[np.ndarray, np.ndarray]:
    """`[CLS] a [SEP]` (+ `b [SEP]` when b is not None), padded with PAD_ID to seq_len ->
    (tokens, segment_ids), int32[seq_len] each. The caller makes it fit."""
    a = np.asarray(a, np.int32)
    parts = [[cls_id], a, [sep_id]]
    if b is not None:
        parts += [np.asarray(b, np.int32), [sep_id]]
    body = np.concatenate(parts).astype(np.int32)
    if len(body) > seq_len:
        raise ValueError(f'{len(body)} tokens do not fit in seq_len={seq_len}')
    tokens = np.full(seq_len, PAD_ID, np.int32)
    tokens[: len(body)] = body
    segments = np.zeros(seq_len, np.int32)
    segments[len(a) + 2 : len(body)] = 1
    return tokens, segments


def truncate_pair(
    a: np.ndarray, b: np.ndarray, max_tokens: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Drops tokens, one at a time from the longer segment (b on a tie) at its front or
    back (a coin flip each), until len(a) + len(b) <= max_tokens."""
    a_lo, a_hi, b_lo, b_hi = 0, len(a), 0, len(b)
    while (a_hi - a_lo) + (b_hi - b_lo) > max_tokens:
        front = rng.random() < 0.5
        if a_hi - a_lo > b_hi - b_lo:
            a_lo, a_hi = (a_lo + 1, a_hi) if front else (a_lo, a_hi - 1)
        else:
            b_lo, b_hi = (b_lo + 1, b_hi) if front else (b_lo, b_hi - 1)
    return a[a_lo:a_hi], b[b_lo:b_hi]


@dataclasses.dataclass(eq=False)
class PretrainingExamples:
    """Example `row` of one stream (a dict of numpy arrays), as the module docstring says."""

    documents: EncodedDocuments
    seq_len: int
    vocab_size: int
    cls_id: int
    sep_id: int
    mask_id: int
    special_ids: tuple[int, ...]  # never masked, never a random replacement; PAD included
    max_predictions: int
    seed: int
    stream: int = TRAIN_STREAM
    mask_prob: float = 0.15
    next_sentence_prob: float = 0.5
    short_seq_prob: float = 0.1
    name: str = 'the corpus'  # for errors

    def __post_init__(self):
        docs = self.documents
        if self.seq_len < 5:
            raise ValueError(
                f'seq_len={self.seq_len}: a pair needs [CLS], [SEP], [SEP] and '
                'at least one token of each segment (seq_len >= 5)'
            )
        if not 1 <= self.max_predictions <= self.seq_len:
            raise ValueError(
                f'max_predictions={self.max_predictions} must lie in [1, seq_len={self.seq_len}]'
            )
        self.special_ids = tuple(
            sorted({PAD_ID, self.cls_id, self.sep_id, self.mask_id, *self.special_ids})
        )
        if docs.num_docs < 2:
            raise DataError(
                f'{self.name} has {docs.num_docs} non-empty document(s); '
                'next-sentence prediction draws its negatives from another '
                'document, so it needs at least 2'
            )
        # Sentences with a successor in their document: where segment A may start.
        last = docs.doc_starts[1:] - 1
        self._starts = np.setdiff1d(np.arange(docs.num_sentences), last)
        if not len(self._starts):
            raise DataError(
                f'{self.name} has no document of two or more sentences; a '
                'true next segment needs one'
            )

    def pair(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, int]:
        """(A, B, next_sentence_label) before truncation."""
        docs = self.documents
        max_tokens = self.seq_len - 3
        target = max_tokens
        if rng.random() < self.short_seq_prob:
            target = int(rng.integers(2, max_tokens + 1))
        first = int(self._starts[rng.integers(len(self._starts))])
        doc = docs.document_of(first)
        doc_end = int(docs.doc_starts[doc + 1])
        stop, length = first, 0
        while stop < doc_end and (length < target or stop - first < 2):
            length += len(docs.sentence(stop))
            stop += 1
        a_stop = first + int(rng.integers(1, stop - first))
        a = docs.span(first, a_stop)
        if rng.random() < self.next_sentence_prob:
            return a, docs.span(a_stop, stop), NEXT
        other = int(rng.integers(docs.num_docs - 1))
        other += other >= doc
        b_first = int(rng.integers(docs.doc_starts[other], docs.doc_starts[other + 1]))
        b_end = int(docs.doc_starts[other + 1])
        b_target = max(1, target - len(a))
        b_stop, length = b_first, 0
        while b_stop < b_end and length < b_target:
            length += len(docs.sentence(b_stop))
            b_stop += 1
        return a, docs.span(b_first, b_stop), RANDOM_NEXT

    def __getitem__(self, row: int) -> dict[str, np.ndarray]:
        rng = row_rng(self.seed, self.stream, row)
        a, b, label = self.pair(rng)
        a, b = truncate_pair(a, b, self.seq_len - 3, rng)
        tokens, segments = pack_pair(a, b, self.seq_len, self.cls_id, self.sep_id)
        masked, _, weights = mask_tokens(
            rng, tokens, self.vocab_size, self.mask_id, self.special_ids, self.mask_prob
        )
        chosen = np.flatnonzero(weights)
        if len(chosen) > self.max_predictions:
            kept = np.sort(rng.choice(chosen, self.max_predictions, replace=False))
            dropped = np.setdiff1d(chosen, kept)
            masked[dropped] = tokens[dropped]
            chosen = kept
        n = len(chosen)
        positions = np.zeros(self.max_predictions, np.int32)
        ids = np.zeros(self.max_predictions, np.int32)
        mlm_weights = np.zeros(self.max_predictions, np.float32)
        positions[:n], ids[:n], mlm_weights[:n] = chosen, tokens[chosen], 1.0
        return {
            'tokens': masked,
            'segment_ids': segments,
            'masked_positions': positions,
            'masked_ids': ids,
            'masked_weights': mlm_weights,
            'next_sentence_label': np.int32(label),
        }


@dataclasses.dataclass(eq=False)
class BertPretrainingData:
    """Training batches by step and a fixed set of evaluation batches, for the engine."""

    train: PretrainingExamples
    validation: PretrainingExamples
    batch_size: int
    num_eval_batches: int

    def __post_init__(self):
        self._train = grain.MapDataset.range(_MAX_ROWS).map(self.train.__getitem__)
        self._eval = grain.MapDataset.range(self.num_eval_batches * self.batch_size).map(
            self.validation.__getitem__
        )

    def train_batch(
        self, step: int, process_index: int = 0, process_count: int = 1
    ) -> dict[str, np.ndarray]:
        """This process's rows of global batch `step`."""
        if step < 0:
            raise ValueError(f'step must be >= 0, got {step}')
        return process_batch(self._train, step, self.batch_size, process_index, process_count)

    def eval_batches(
        self, process_index: int = 0, process_count: int = 1, num_batches: int | None = None
    ) -> Iterator[dict[str, np.ndarray]]:
        """This process's rows of each of the fixed evaluation batches (validation
        documents, their own stream of draws); `num_batches` caps the count."""
        total = (
            self.num_eval_batches
            if num_batches is None
            else min(num_batches, self.num_eval_batches)
        )
        process_rows(self.batch_size, process_index, process_count)  # fail on the call
        return (
            process_batch(self._eval, k, self.batch_size, process_index, process_count)
            for k in range(total)
        )


SPECIAL_TOKENS = ('[CLS]', '[SEP]', '[MASK]')  # reserved in the tokenizer, in this order


def special_ids(tokenizer) -> dict[str, int]:
    """{'cls', 'sep', 'mask'} ids of a tokenizer trained with SPECIAL_TOKENS, plus 'all':
    every id that is not a word piece (pad, unk, bos, eos and the three)."""
    cls_id, sep_id, mask_id = (tokenizer.special_id(t) for t in SPECIAL_TOKENS)
    fixed = (tokenizer.pad_id, tokenizer.unk_id, tokenizer.bos_id, tokenizer.eos_id)
    return {
        'cls': cls_id,
        'sep': sep_id,
        'mask': mask_id,
        'all': tuple(sorted({*fixed, cls_id, sep_id, mask_id})),
    }


def make_pretraining_data(
    train_documents,
    validation_documents,
    tokenizer,
    *,
    seq_len: int,
    batch_size: int,
    seed: int,
    num_eval_batches: int,
    max_predictions: int,
    mask_prob: float = 0.15,
    next_sentence_prob: float = 0.5,
    short_seq_prob: float = 0.1,
    name: str = 'the corpus',
) -> BertPretrainingData:
    """Pre-training batches from documents of sentences (objects with `.sentences`, as
    `seqmodels.data.text_corpus` gives them) and a tokenizer that reserves
    SPECIAL_TOKENS."""
    ids = special_ids(tokenizer)

    def examples(documents, stream, split):
        encoded = EncodedDocuments.encode([d.sentences for d in documents], tokenizer.encode_batch)
        return PretrainingExamples(
            encoded,
            seq_len=seq_len,
            vocab_size=tokenizer.vocab_size,
            cls_id=ids['cls'],
            sep_id=ids['sep'],
            mask_id=ids['mask'],
            special_ids=ids['all'],
            max_predictions=max_predictions,
            seed=seed,
            stream=stream,
            mask_prob=mask_prob,
            next_sentence_prob=next_sentence_prob,
            short_seq_prob=short_seq_prob,
            name=f'the {split} split of {name}',
        )

    return BertPretrainingData(
        examples(train_documents, TRAIN_STREAM, 'training'),
        examples(validation_documents, EVAL_STREAM, 'validation'),
        batch_size,
        num_eval_batches,
    )

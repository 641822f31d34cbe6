"""GPT's inputs: the pre-training token stream, and the task input transformations of
Radford et al. 2018, "Improving Language Understanding by Generative Pre-Training"
§3.3 and Figure 1, batched by step.

Pre-training (`make_lm_data`): every document's subword ids after an eos, the
documents concatenated in corpus order into one stream per split; training batches are
random windows of it, evaluation walks the validation stream (`lm_pipeline.CharLMData`,
which works on any id stream). An eos therefore marks the start of a document, which is
how `tokenizers.StreamingVocab` starts a prompt.

Fine-tuning (`transform`): each example becomes S sequences of ids, `s` = <start>,
`d` = <delim>, `e` = <extract>:

    classification   [s] text [e]                               S = 1
    entailment       [s] premise [d] hypothesis [e]             S = 1
    similarity       [s] a [d] b [e],  [s] b [d] a [e]           S = 2 (both orders)
    multiple_choice  [s] context [d] option_k [e]  for each k    S = K

The model reads each sequence's final state at its [e] (`last`); how the S states are
combined (added, or scored one by one) is the model's part (`GPT.task_logits`). Too long
a sequence loses one token at a time from the longer of its two texts (b on a tie),
from its end, except that a multiple-choice context loses its first tokens, so that the
words next to the option are kept; a single text loses its end.

The auxiliary language-modelling loss L1 of §3.2 is taken on the same sequences;
`lm_weights[.., t]` is 1 where position t predicts a text token (not padding or a
special token), the weights of the mean.

Batches of the encoded splits by step: `split_batches.SplitBatches`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from seqmodels.data import labeled as labeled_lib
from seqmodels.data import text_corpus
from seqmodels.data.labeled import fit_pair
from seqmodels.data.split_batches import SplitBatches
from seqmodels.data.errors import DataError
from seqmodels.data.lm_pipeline import CharLMData
from seqmodels.data.tokenizers import (
    BOS_ID,
    EOS_ID,
    PAD_ID,
    SentencePieceTokenizer,
    StreamingVocab,
)

SPECIAL_TOKENS = ('<start>', '<delim>', '<extract>')
SEQUENCES = {'classification': 1, 'entailment': 1, 'similarity': 2}  # multiple choice: K


@dataclasses.dataclass(frozen=True)
class SpecialIds:
    start: int
    delim: int
    extract: int

    @classmethod
    def of(cls, tokenizer: SentencePieceTokenizer) -> SpecialIds:
        missing = [t for t in SPECIAL_TOKENS if t not in tokenizer.special_tokens]
        if missing:
            raise DataError(
                f'the tokenizer reserves no {", ".join(missing)}: it was not '
                'trained by a GPT pre-training run of this version'
            )
        return cls(*(tokenizer.special_id(t) for t in SPECIAL_TOKENS))


def make_lm_data(
    corpus: text_corpus.TextCorpus,
    tokenizer: SentencePieceTokenizer,
    *,
    seq_len: int,
    batch_size: int,
    seed: int,
    eval_batch_size: int | None = None,
) -> CharLMData:
    """Windows of the subword stream of `corpus` (train) and its validation split."""
    streams = []
    for split in ('train', 'validation'):
        documents = corpus.split(split)
        pieces = tokenizer.encode_batch([d.text for d in documents])
        ids = np.fromiter((i for p in pieces for i in (EOS_ID, *p)), np.int32)
        if len(ids) < seq_len + 1:
            raise DataError(
                f'the {split} split of {corpus.name} is {len(ids)} tokens long, '
                f'fewer than one sequence needs (seq_len + 1 = {seq_len + 1}); '
                'use more text, a smaller seq_len or (text:PATH) a larger '
                'val_fraction'
            )
        streams.append(ids)
    return CharLMData(
        vocab=StreamingVocab(tokenizer),
        train_ids=streams[0],
        val_ids=streams[1],
        seq_len=seq_len,
        batch_size=batch_size,
        seed=seed,
        eval_batch_size=eval_batch_size or batch_size,
        description=corpus.describe(),
    )


def transform(
    pieces: Sequence[Sequence[int]], task_type: str, ids: SpecialIds, max_len: int
) -> list[list[int]]:
    """The sequences of one example (Figure 1) from the ids of its texts."""
    labeled_lib.check_task_type(task_type)
    s, d, e = ids.start, ids.delim, ids.extract
    if max_len < (3 if task_type == 'classification' else 5):
        raise ValueError(
            f'max_len={max_len} leaves no room for the text between the special tokens'
        )
    if task_type == 'classification':
        (text,) = pieces
        return [[s, *list(text)[: max_len - 2], e]]
    if task_type == 'multiple_choice':
        context, *options = pieces
        return [
            [s, *c, d, *o, e]
            for c, o in (
                fit_pair(context, option, max_len - 3, a_from_front=True) for option in options
            )
        ]
    a, b = fit_pair(*pieces, max_len - 3)
    if task_type == 'entailment':
        return [[s, *a, d, *b, e]]
    return [[s, *a, d, *b, e], [s, *b, d, *a, e]]


@dataclasses.dataclass(eq=False)
class EncodedSplit:
    """Examples as arrays: tokens int32[N, S, L] (PAD after [e]), last int32[N, S] (the
    position of [e]), lm_weights float32[N, S, L], labels int32[N] (or None)."""

    tokens: np.ndarray
    last: np.ndarray
    lm_weights: np.ndarray
    labels: np.ndarray | None

    def __len__(self) -> int:
        return len(self.tokens)

    @property
    def seq_len(self) -> int:
        return self.tokens.shape[-1]

    def rows(self, index: np.ndarray, weights: np.ndarray | None = None) -> dict:
        batch = {
            'tokens': self.tokens[index],
            'last': self.last[index],
            'lm_weights': self.lm_weights[index],
        }
        if self.labels is not None:
            batch['labels'] = self.labels[index]
        batch['weights'] = np.ones(len(index), np.float32) if weights is None else weights
        return batch


def encode(
    examples: Sequence[labeled_lib.Example],
    task_type: str,
    tokenizer: SentencePieceTokenizer,
    max_len: int,
    labels: np.ndarray | None = None,
    length: int | None = None,
) -> EncodedSplit:
    """Transformed, padded examples. `length` (<= max_len) pads to that many positions,
    else to the longest sequence; a sequence longer than `length` is re-fitted to it."""
    if not examples:
        raise DataError('no examples to encode')
    ids = SpecialIds.of(tokenizer)
    texts = [t for example in examples for t in example.texts]
    pieces = iter(tokenizer.encode_batch(texts))
    fit = min(max_len, length or max_len)
    sequences = [
        transform([next(pieces) for _ in ex.texts], task_type, ids, fit) for ex in examples
    ]
    counts = {len(s) for s in sequences}
    if len(counts) != 1:
        raise DataError(
            f'examples have {sorted(counts)} sequences each; a batch needs one '
            'number (multiple choice: the same number of options on every line)'
        )
    width = length or max(len(seq) for seqs in sequences for seq in seqs)
    tokens = np.full((len(sequences), counts.pop(), width), PAD_ID, np.int32)
    last = np.zeros(tokens.shape[:2], np.int32)
    for n, seqs in enumerate(sequences):
        for k, seq in enumerate(seqs):
            tokens[n, k, : len(seq)] = seq
            last[n, k] = len(seq) - 1
    is_text = ~np.isin(tokens, [PAD_ID, BOS_ID, EOS_ID, ids.start, ids.delim, ids.extract])
    lm_weights = np.zeros(tokens.shape, np.float32)
    lm_weights[..., :-1] = is_text[..., 1:]  # position t predicts token t + 1
    return EncodedSplit(
        tokens, last, lm_weights, None if labels is None else np.asarray(labels, np.int32)
    )


def make_task_batches(
    data: labeled_lib.LabeledData,
    tokenizer: SentencePieceTokenizer,
    *,
    max_len: int,
    batch_size: int,
    seed: int,
) -> SplitBatches:
    """Every split encoded, padded to the longest training sequence (so that training
    and evaluation compile one shape each)."""
    train = encode(
        data.examples('train'), data.task_type, tokenizer, max_len, data.label_ids('train')
    )
    splits = {'train': train}
    for role in data.splits:
        if role != 'train':
            splits[role] = encode(
                data.examples(role),
                data.task_type,
                tokenizer,
                max_len,
                data.label_ids(role),
                length=train.seq_len,
            )
    return SplitBatches(splits, batch_size, seed)

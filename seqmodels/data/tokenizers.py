"""SentencePiece subword tokenizers: trained once on the training split, kept in the workdir.

Ids are fixed across every model the project trains: pad=0, unk=1, bos=2, eos=3, so
that models, losses and decoders can rely on them without reading the tokenizer.
Training is deterministic (one thread, every sentence used, no input shuffling), and
the trained model is written next to a JSON record of the options and the training
text's fingerprint; a resumed run reloads it instead of training again, and refuses a
file that was trained from different options or different text.

Special tokens that a later step needs (GPT's start/delimiter/extract, BERT's
[CLS]/[SEP]/[MASK]) are reserved when the tokenizer is trained, as SentencePiece
control symbols: they take the ids right after eos (4, 5, ...) in the order given, so a
pre-trained embedding table already has their rows when fine-tuning starts. Control
symbols are never produced by `encode` (a review that contains the text "[SEP]" stays
text) and decode to nothing; a pipeline inserts them by id (`special_id`).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
from collections.abc import Iterable, Sequence

import numpy as np
import sentencepiece as spm

PAD_ID = 0
UNK_ID = 1
BOS_ID = 2
EOS_ID = 3
FIRST_SPECIAL_ID = 4  # the first reserved special token, then one id per token in order

MODEL_TYPES = ('bpe', 'unigram')
WORD_BOUNDARY = '\u2581'  # SentencePiece's '▁': a piece that starts a word


class SentencePieceTokenizer:
    """Text <-> ids with the project's fixed special ids."""

    def __init__(self, model_proto: bytes):
        self.model_proto = bytes(model_proto)
        self._sp = spm.SentencePieceProcessor(model_proto=self.model_proto)
        specials = (self._sp.pad_id(), self._sp.unk_id(), self._sp.bos_id(), self._sp.eos_id())
        if specials != (PAD_ID, UNK_ID, BOS_ID, EOS_ID):
            raise ValueError(
                'a SentencePiece model for seqmodels needs pad=0 unk=1 bos=2 eos=3, this one '
                f'has pad={specials[0]} unk={specials[1]} bos={specials[2]} eos={specials[3]}'
            )
        # The reserved special tokens: the control symbols after eos, in id order.
        self.special_tokens: tuple[str, ...] = tuple(
            self._sp.id_to_piece(i)
            for i in range(FIRST_SPECIAL_ID, self.vocab_size)
            if self._sp.is_control(i)
        )
        self._piece_text: list[str] | None = None

    @classmethod
    def load(cls, path: str | os.PathLike) -> SentencePieceTokenizer:
        with open(path, 'rb') as f:
            return cls(f.read())

    @property
    def vocab_size(self) -> int:
        return self._sp.get_piece_size()

    pad_id, unk_id, bos_id, eos_id = PAD_ID, UNK_ID, BOS_ID, EOS_ID

    def special_id(self, token: str) -> int:
        """The id of a special token reserved at training time (KeyError if it was not)."""
        if token not in self.special_tokens:
            raise KeyError(
                f'{token!r} is not a special token of this tokenizer; it reserves '
                f'{list(self.special_tokens)}'
            )
        return self._sp.piece_to_id(token)

    def encode(self, text: str) -> list[int]:
        """Subword ids of `text`, without BOS/EOS (the pipeline adds them where needed)."""
        return self._sp.encode(text)

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return self._sp.encode(list(texts))

    def pieces(self, text: str) -> list[str]:
        return self._sp.encode(text, out_type=str)

    def decode(self, ids: Sequence[int] | np.ndarray) -> str:
        """Detokenised text of model output: stops at the first EOS, skips pad and BOS."""
        kept = []
        for token in np.asarray(ids).reshape(-1).tolist():
            if token == EOS_ID:
                break
            if token not in (PAD_ID, BOS_ID):
                kept.append(int(token))
        return self._sp.decode(kept)

    def decode_batch(self, rows: Iterable[Sequence[int]] | np.ndarray) -> list[str]:
        return [self.decode(row) for row in rows]

    def decode_piece(self, token: int) -> str:
        """The text one id adds when appended to a stream of decoded pieces.

        A word-initial piece carries its space ('▁the' -> ' the'), so concatenating the
        pieces of a sequence gives its text with the spaces where they belong (plus a
        leading space before the first word); `decode` of the whole sequence drops that.
        pad, bos and the reserved special tokens add nothing, unknown pieces add ' ⁇ ',
        and eos, the end of a document, adds a paragraph break.
        """
        if self._piece_text is None:
            self._piece_text = [self._text_of(i) for i in range(self.vocab_size)]
        if not 0 <= token < self.vocab_size:
            raise ValueError(f'id {token} is outside the vocabulary [0, {self.vocab_size})')
        return self._piece_text[token]

    def _text_of(self, token: int) -> str:
        if token == EOS_ID:
            return '\n\n'
        if token == UNK_ID:
            return ' \u2047 '
        if self._sp.is_control(token):
            return ''
        return self._sp.id_to_piece(token).replace(WORD_BOUNDARY, ' ')


class StreamingVocab:
    """A tokenizer seen the way `inference.Sampler` uses a vocabulary.

    `encode(prompt)` starts with eos, the document boundary of the pre-training stream,
    so that a prompt (even an empty one) is continued as the start of a document;
    `decode([id])` is the text that one generated id adds (`decode_piece`).
    """

    def __init__(self, tokenizer: SentencePieceTokenizer):
        self.tokenizer = tokenizer

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.vocab_size

    def encode(self, text: str) -> list[int]:
        return [EOS_ID] + self.tokenizer.encode(text)

    def decode(self, ids: Sequence[int]) -> str:
        return ''.join(self.tokenizer.decode_piece(int(i)) for i in ids)


def text_fingerprint(sentences: Iterable[str]) -> str:
    """A SHA-256 over the sentences, so a stored tokenizer can be matched to its text."""
    digest = hashlib.sha256()
    for sentence in sentences:
        digest.update(sentence.encode('utf-8'))
        digest.update(b'\n')
    return digest.hexdigest()


def train_sentencepiece(
    sentences: Sequence[str],
    *,
    vocab_size: int,
    model_type: str = 'unigram',
    character_coverage: float = 1.0,
    normalization_rule_name: str = 'nmt_nfkc',
    split_digits: bool = False,
    special_tokens: Sequence[str] = (),
) -> SentencePieceTokenizer:
    """Trains a model in memory from `sentences` (the training split only).

    `vocab_size` is a soft limit: a small corpus may give fewer pieces than asked
    (read `tokenizer.vocab_size` to size the embedding) instead of a training error.
    `special_tokens` get the ids 4, 5, ... in their order (see the module docstring).
    """
    if model_type not in MODEL_TYPES:
        raise ValueError(f'model_type must be one of {MODEL_TYPES}, got {model_type!r}')
    special_tokens = list(special_tokens)
    if len(set(special_tokens)) != len(special_tokens) or not all(special_tokens):
        raise ValueError(f'special_tokens must be distinct non-empty strings, got {special_tokens}')
    sentences = [s for s in sentences if s]
    if not sentences:
        raise ValueError('SentencePiece needs at least one non-empty training sentence')
    model = io.BytesIO()
    extra = {'control_symbols': special_tokens} if special_tokens else {}
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(sentences),
        model_writer=model,
        vocab_size=vocab_size,
        model_type=model_type,
        character_coverage=character_coverage,
        normalization_rule_name=normalization_rule_name,
        split_digits=split_digits,
        pad_id=PAD_ID,
        unk_id=UNK_ID,
        bos_id=BOS_ID,
        eos_id=EOS_ID,
        # Determinism: every sentence, in the given order, on one thread.
        input_sentence_size=0,
        shuffle_input_sentence=False,
        num_threads=1,
        hard_vocab_limit=False,
        minloglevel=2,
        **extra,
    )
    return SentencePieceTokenizer(model.getvalue())


def load_or_train_sentencepiece(
    path: str | os.PathLike | None,
    sentences: Sequence[str],
    **options,
) -> SentencePieceTokenizer:
    """Reloads the tokenizer at `path` or trains one there (atomically, for multi-host).

    The JSON beside the model records `options` and the training text's fingerprint; a
    mismatch means the workdir belongs to a different experiment, which is an error
    rather than a silent retrain that would invalidate the checkpoints.
    """
    if not options.get('special_tokens', True):
        del options['special_tokens']  # records written before special tokens existed
    elif 'special_tokens' in options:
        options['special_tokens'] = list(options['special_tokens'])
    record = {
        **options,
        'text_sha256': text_fingerprint(sentences),
        'num_sentences': len(sentences),
    }
    if path is None:
        return train_sentencepiece(sentences, **options)
    path = os.fspath(path)
    record_path = path + '.json'
    if os.path.exists(path):
        stored = None
        if os.path.exists(record_path):
            with open(record_path, encoding='utf-8') as f:
                stored = json.load(f)
        if stored != record:
            raise ValueError(
                f'{path} was trained with {stored}, but this run asks for {record}; '
                'use a fresh workdir (or delete the tokenizer files) to retrain'
            )
        return SentencePieceTokenizer.load(path)
    tokenizer = train_sentencepiece(sentences, **options)
    os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
    _write_atomically(record_path, json.dumps(record, indent=1, sort_keys=True).encode())
    _write_atomically(path, tokenizer.model_proto)
    return tokenizer


def _write_atomically(path: str, data: bytes) -> None:
    # Several hosts may train the same model at once; rename makes the last one win whole.
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path) or '.', prefix='.tmp_')
    with os.fdopen(fd, 'wb') as f:
        f.write(data)
    os.replace(tmp, path)

"""Character vocabulary, built from the training split and stored in the workdir.

Ids: 0 is reserved for ``<unk>``; the distinct characters of the training text follow
in code-point order as ids 1..N, so ``vocab_size == N + 1``. Any character outside
the vocabulary (in the validation text, or in a sampling prompt) encodes to ``<unk>``
instead of raising; ``<unk>`` and ids outside ``[0, vocab_size)`` decode to U+FFFD
(the Unicode replacement character), so decoding a model's output never fails either.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable

import numpy as np

from seqmodels.data.corpora import DataError

UNK_ID = 0
UNK_TOKEN = '<unk>'
UNK_DECODED = '\ufffd'
_FORMAT = 'seqmodels.CharVocab'
_FORMAT_VERSION = 1


def _code_points(text: str) -> np.ndarray:
    # UTF-32 gives one fixed-width code unit per character: vectorised, no Python loop.
    # surrogatepass: a lone surrogate (e.g. from a mangled prompt) becomes <unk>, no crash.
    return np.frombuffer(text.encode('utf-32-le', 'surrogatepass'), dtype=np.uint32)


class CharVocab:
    """Maps characters to int32 ids and back (see module doc for the id layout)."""

    def __init__(self, chars: Iterable[str]):
        chars = sorted(set(chars))
        for c in chars:
            if len(c) != 1:
                raise ValueError(f'CharVocab entries must be single characters, got {c!r}.')
        self.chars: list[str] = chars
        self._sorted_points = np.array([ord(c) for c in chars], dtype=np.uint32)
        self._id_to_char = np.array([UNK_DECODED] + chars, dtype=object)

    @classmethod
    def from_text(cls, text: str) -> CharVocab:
        return cls(chr(p) for p in np.unique(_code_points(text)))

    @property
    def vocab_size(self) -> int:
        return len(self.chars) + 1

    def __len__(self) -> int:
        return self.vocab_size

    def __eq__(self, other) -> bool:
        return isinstance(other, CharVocab) and self.chars == other.chars

    def encode(self, text: str) -> np.ndarray:
        points = _code_points(text)
        if not self.chars:
            return np.full(points.shape, UNK_ID, dtype=np.int32)
        pos = np.searchsorted(self._sorted_points, points)
        clipped = np.minimum(pos, len(self.chars) - 1)
        known = self._sorted_points[clipped] == points
        return np.where(known, clipped + 1, UNK_ID).astype(np.int32)

    def decode(self, ids) -> str:
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        ids = np.where((ids >= 0) & (ids < self.vocab_size), ids, UNK_ID)
        return ''.join(self._id_to_char[ids])

    def save(self, path: str) -> None:
        """Writes JSON atomically: a run killed mid-write must not leave a torn vocab."""
        path = os.fspath(path)
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        payload = {
            'format': _FORMAT,
            'version': _FORMAT_VERSION,
            'unk_id': UNK_ID,
            'unk_token': UNK_TOKEN,
            'chars': self.chars,
        }
        tmp = f'{path}.tmp{os.getpid()}'
        with open(tmp, 'w', encoding='utf-8') as f:
            json.dump(payload, f, ensure_ascii=True, indent=1)
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str) -> CharVocab:
        path = os.fspath(path)
        try:
            with open(path, encoding='utf-8') as f:
                payload = json.load(f)
        except FileNotFoundError:
            raise DataError(f'Vocabulary file {path!r} does not exist.') from None
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise DataError(f'Vocabulary file {path!r} is not valid JSON: {e}') from None
        if not isinstance(payload, dict) or payload.get('format') != _FORMAT:
            raise DataError(f'Vocabulary file {path!r} is not a {_FORMAT} file.')
        if payload.get('version') != _FORMAT_VERSION:
            raise DataError(
                f'Vocabulary file {path!r} has version {payload.get("version")}, '
                f'this code reads version {_FORMAT_VERSION}.'
            )
        return cls(payload['chars'])

    def __repr__(self) -> str:
        return f'CharVocab(vocab_size={self.vocab_size})'

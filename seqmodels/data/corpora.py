"""Raw text corpora for character-level language modelling, with clear errors.

Two offline sources live here; `tfds_text` turns them into TFDS datasets.

* ``python_stdlib`` (the embedded default): the ``.py`` sources of the running
  interpreter's standard library, the Python analogue of the Linux-kernel C corpus of
  Karpathy, Johnson & Fei-Fei (2015), "Visualizing and Understanding Recurrent
  Networks". Every machine that runs this code has it, so the default experiment needs
  no download. What is included:

  - every ``*.py`` file under ``sysconfig.get_paths()['stdlib']``, walked in sorted
    order of their relative POSIX paths;
  - except anything below a directory named in `STDLIB_EXCLUDED_DIRS`: installed
    third-party packages (``site-packages``) are not the standard library, and the test
    suites (``test``, ``tests``, ``idle_test``) are dominated by generated data and
    deliberately malformed sources (files in Latin-1 or KOI8-R, bad syntax) rather
    than ordinary code;
  - files that are not valid UTF-8 are skipped (none remain after the exclusions on
    CPython 3.11; the standard library is not the user's data, so a stray one should
    not stop training).

  Files are split into train/validation/test 90/5/5 BY FILE, from the SHA-256 of the
  relative path (`stdlib_split_of`), so the split is the same on every machine and a
  file never straddles two splits. The corpus depends on the Python version
  (CPython 3.11: 734 files, ~12.1 M characters).

* ``text:PATH``: any UTF-8 text file, split by characters like nanoGPT's
  ``shakespeare_char``: the first ``int(n * (1 - val_fraction))`` characters train,
  the rest validation.
"""

from __future__ import annotations

import hashlib
import os
import sysconfig

from seqmodels.data.errors import DataError

STDLIB_EXCLUDED_DIRS = frozenset(
    {'site-packages', 'dist-packages', 'test', 'tests', 'idle_test', '__pycache__'}
)

# Percent of the stdlib files per split; a `max_chars` cap is shared out the same way.
STDLIB_SPLIT_PERCENT = {'train': 90, 'validation': 5, 'test': 5}


def check_text_file(path: str) -> os.stat_result:
    """The cheap checks (exists, is a file, not empty), before anything is cached."""
    if not os.path.exists(path):
        raise DataError(f'Text file {path!r} does not exist.')
    if os.path.isdir(path):
        raise DataError(f'Text file {path!r} is a directory, not a file.')
    st = os.stat(path)
    if st.st_size == 0:
        raise DataError(f'Text file {path!r} is empty (0 bytes).')
    return st


def read_text_file(path: str) -> str:
    """Returns the whole file decoded as UTF-8, or raises DataError naming it."""
    path = os.fspath(path)
    check_text_file(path)
    with open(path, 'rb') as f:
        raw = f.read()
    if not raw:
        raise DataError(f'Text file {path!r} is empty (0 bytes).')
    try:
        return raw.decode('utf-8')
    except UnicodeDecodeError as e:
        bad = raw[e.start : e.start + 1].hex()
        raise DataError(
            f'Text file {path!r} is not valid UTF-8: byte 0x{bad} at byte offset {e.start} '
            f'({e.reason}). Convert it first, e.g. `iconv -f latin1 -t utf-8`.'
        ) from None


def split_by_chars(text: str, val_fraction: float) -> tuple[str, str]:
    """nanoGPT's character split: the head trains, the tail validates."""
    if not 0.0 < val_fraction < 1.0:
        raise DataError(f'val_fraction must be in (0, 1), got {val_fraction}.')
    n_train = int(len(text) * (1.0 - val_fraction))
    return text[:n_train], text[n_train:]


def stdlib_root() -> str:
    return sysconfig.get_paths()['stdlib']


def stdlib_files(root: str | None = None) -> list[str]:
    """Relative POSIX paths of the corpus files, sorted (before the UTF-8 filter)."""
    root = root or stdlib_root()
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        # Pruning in place stops os.walk from descending into excluded trees.
        dirnames[:] = [d for d in dirnames if d not in STDLIB_EXCLUDED_DIRS]
        for name in filenames:
            if name.endswith('.py'):
                rel = os.path.relpath(os.path.join(dirpath, name), root)
                found.append(rel.replace(os.sep, '/'))
    return sorted(found)


def stdlib_split_of(relpath: str) -> str:
    """'train', 'validation' or 'test' for a file, from the hash of its relative path."""
    bucket = int.from_bytes(hashlib.sha256(relpath.encode('utf-8')).digest()[:8], 'big') % 100
    for split, percent in STDLIB_SPLIT_PERCENT.items():
        if bucket < percent:
            return split
        bucket -= percent
    raise AssertionError('STDLIB_SPLIT_PERCENT must sum to 100')


def read_stdlib_file(root: str, relpath: str) -> str | None:
    """The file's text, or None when it is not UTF-8 (skipped, see module doc)."""
    with open(os.path.join(root, *relpath.split('/')), 'rb') as f:
        raw = f.read()
    try:
        return raw.decode('utf-8')
    except UnicodeDecodeError:
        return None


def stdlib_fingerprint(root: str, relpaths: list[str]) -> str:
    """Hash of the file list with sizes and mtimes: a changed interpreter rebuilds."""
    h = hashlib.sha256()
    for rel in relpaths:
        st = os.stat(os.path.join(root, *rel.split('/')))
        h.update(f'{rel}\0{st.st_size}\0{st.st_mtime_ns}\n'.encode())
    return h.hexdigest()


def file_fingerprint(path: str) -> str:
    """Hash of the file's absolute path, size and mtime: an edited file rebuilds."""
    st = check_text_file(path)
    key = f'{os.path.abspath(path)}\0{st.st_size}\0{st.st_mtime_ns}'
    return hashlib.sha256(key.encode()).hexdigest()


def parse_dataset(dataset: str) -> tuple[str, str]:
    """Splits a `dataset` config string into (kind, argument).

    kinds: 'python_stdlib' (argument ''), 'text' (a path), 'tfds' (NAME[/CONFIG]).
    """
    if dataset == 'python_stdlib':
        return 'python_stdlib', ''
    for kind in ('text', 'tfds'):
        prefix = kind + ':'
        if dataset.startswith(prefix):
            arg = dataset[len(prefix) :]
            if not arg:
                raise DataError(f'dataset {dataset!r}: nothing after {prefix!r}.')
            return kind, arg
    raise DataError(
        f"Unknown character-LM dataset {dataset!r}; expected 'python_stdlib' (the embedded "
        "default), 'text:PATH' (a UTF-8 file) or 'tfds:NAME[/CONFIG]' (TFDS catalog)."
    )

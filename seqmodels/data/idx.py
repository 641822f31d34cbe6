"""Reader for the IDX format that MNIST and Fashion-MNIST ship in.

Layout (LeCun et al., http://yann.lecun.com/exdb/mnist/): two zero bytes, a type
code, the number of dimensions; one big-endian int32 per dimension; then the data in
C order, big-endian. Files may be gzipped; we sniff gzip's magic rather than trust
the extension, because mirrors rename files freely.
"""

from __future__ import annotations

import gzip
import os
import pathlib
import zlib

import numpy as np

from seqmodels.data.errors import DataError

# IDX type codes and the big-endian dtype each stands for.
_DTYPES = {
    0x08: np.dtype('>u1'),
    0x09: np.dtype('>i1'),
    0x0B: np.dtype('>i2'),
    0x0C: np.dtype('>i4'),
    0x0D: np.dtype('>f4'),
    0x0E: np.dtype('>f8'),
}

_GZIP_MAGIC = b'\x1f\x8b'


def _read_bytes(path: pathlib.Path) -> bytes:
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DataError(f'{path}: cannot read IDX file: {e}') from e
    if raw[:2] != _GZIP_MAGIC:
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f'{path}: corrupt or truncated gzip stream: {e}') from e


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Reads one IDX file (gzipped or not) into a native-endian numpy array."""
    path = pathlib.Path(path)
    data = _read_bytes(path)
    if len(data) < 4:
        raise DataError(
            f'{path}: truncated IDX file: expected at least a 4-byte header, got {len(data)} bytes'
        )
    zero0, zero1, type_code, ndim = data[:4]
    if zero0 != 0 or zero1 != 0 or type_code not in _DTYPES:
        raise DataError(
            f'{path}: wrong magic number 0x{data[:4].hex()}: an IDX file starts '
            f'with two zero bytes and a type code in '
            f'{{{", ".join(f"0x{c:02x}" for c in _DTYPES)}}} (0x08 = unsigned byte)'
        )
    header_size = 4 + 4 * ndim
    if len(data) < header_size:
        raise DataError(
            f'{path}: truncated IDX header: {ndim} dimensions need '
            f'{header_size} bytes, the file has {len(data)}'
        )
    shape = tuple(int(d) for d in np.frombuffer(data, dtype='>u4', count=ndim, offset=4))
    dtype = _DTYPES[type_code]
    expected = header_size + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) != expected:
        what = 'truncated' if len(data) < expected else 'oversized'
        raise DataError(
            f'{path}: {what} IDX file: shape {shape} of {dtype.name} needs '
            f'{expected} bytes, the file has {len(data)}'
        )
    array = np.frombuffer(data, dtype=dtype, offset=header_size).reshape(shape)
    return array.astype(dtype.newbyteorder('='))


def find_idx_file(directory: str | os.PathLike, prefix: str, kind: str) -> pathlib.Path:
    """Finds e.g. prefix='train', kind='images' -> train-images-idx3-ubyte[.gz].

    Accepts both the original names and the `train-images.idx3-ubyte` spelling
    that some mirrors use.
    """
    directory = pathlib.Path(directory)
    suffix = {'images': 'idx3-ubyte', 'labels': 'idx1-ubyte'}[kind]
    candidates = [f'{prefix}-{kind}{sep}{suffix}{gz}' for sep in ('-', '.') for gz in ('', '.gz')]
    for name in candidates:
        if (directory / name).is_file():
            return directory / name
    raise DataError(
        f"{directory}: no {kind} file for the '{prefix}' split; looked for {', '.join(candidates)}"
    )


def load_idx_split(directory: str | os.PathLike, prefix: str):
    """Returns (images [N, H, W, C], labels [N], images_path, labels_path)."""
    images_path = find_idx_file(directory, prefix, 'images')
    labels_path = find_idx_file(directory, prefix, 'labels')
    images = read_idx(images_path)
    labels = read_idx(labels_path)
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4:
        raise DataError(
            f'{images_path}: expected images of shape [N, H, W] or [N, H, W, C], got {images.shape}'
        )
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise DataError(
            f'{labels_path}: expected a 1-D integer array of labels, got '
            f'{labels.dtype.name}{list(labels.shape)}'
        )
    if len(images) != len(labels):
        raise DataError(
            f'{images_path} holds {len(images)} images but {labels_path} holds {len(labels)} labels'
        )
    if len(labels) and labels.min() < 0:
        raise DataError(f'{labels_path}: negative label {labels.min()}')
    return images, labels.astype(np.int32), images_path, labels_path

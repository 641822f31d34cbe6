"""Image classification data for the ViT experiment.

`make_image_data(dataset, batch_size, seed, data_dir)` understands three dataset
strings (the `dataset` config key):

- ``digits``: the embedded default, scikit-learn's 8x8 handwritten digits (1,797
  images, pixels 0..16). Split once with the fixed `DIGITS_SPLIT_SEED` (never the
  run seed, so every run tests on the same images): 1,437 train / 360 test.
- ``idx:DIR``: MNIST-format files in DIR, gzipped or not:
  ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``,
  ``t10k-labels-idx1-ubyte`` (Debian's ``dataset-fashion-mnist`` puts Fashion-MNIST in
  /usr/share/datasets/fashion-mnist). A DIR whose path mentions "fashion" gets
  Fashion-MNIST's class names; otherwise classes are named by their index.
- ``tfds:NAME[/CONFIG]``: a TFDS catalog dataset (mnist, fashion_mnist, cifar10),
  downloaded to `data_dir` as array_record and read with `tfds.data_source`.

Normalisation: each channel is standardised with the mean and std of the raw pixel
values of the TRAIN split (so train pixels have mean 0 and std 1 per channel; the
same affine map is applied to test). Augmentation happens on raw pixels before
that, so `random_crop_padding` pads with black (raw 0), the background of MNIST.

The training stream is random access: `train_batch(step, ...)` is a pure function of
(seed, step), so a resumed run sees exactly the batches it would have seen.
Global position `step * batch_size + row` is split into (epoch, position in epoch);
grain's shuffle permutes positions with a seed derived from (seed, epoch), and the
augmentation generator is seeded from (seed, position), i.e. from (seed, step, row).
"""

from __future__ import annotations

import dataclasses
import math
import pathlib
from typing import Callable, Iterator, Sequence

import grain
import numpy as np

from seqmodels.data.idx import DataError, load_idx_split
from seqmodels.data.rows import process_batch, process_rows

__all__ = [
    'DataError',
    'ImageData',
    'make_image_data',
    'check_patch_size',
    'digits_split',
    'random_crop',
    'random_flip',
    'DIGITS_SPLIT_SEED',
    'DIGITS_NUM_TEST',
    'FASHION_MNIST_CLASS_NAMES',
]

DIGITS_SPLIT_SEED = 0
DIGITS_NUM_TEST = 360

FASHION_MNIST_CLASS_NAMES = (
    'T-shirt/top',
    'Trouser',
    'Pullover',
    'Dress',
    'Coat',
    'Sandal',
    'Shirt',
    'Sneaker',
    'Bag',
    'Ankle boot',
)


# ---------------------------------------------------------------- validation


def _as_hw(size) -> tuple[int, int]:
    if isinstance(size, (int, np.integer)):
        return int(size), int(size)
    size = tuple(int(s) for s in size)
    return size[0], size[1]


def check_patch_size(image_size, patch_size) -> None:
    """Raises DataError unless `patch_size` tiles `image_size` (ints or (H, W))."""
    h, w = _as_hw(image_size)
    ph, pw = _as_hw(patch_size)
    if ph <= 0 or pw <= 0 or h % ph or w % pw:
        raise DataError(
            f'model.patch_size={patch_size} does not divide the image size {h}x{w}: '
            f'ViT cuts images into non-overlapping patches, so choose a '
            f'model.patch_size that divides both {h} and {w}'
        )


# -------------------------------------------------------------- augmentation


def random_crop(image: np.ndarray, padding: int, rng: np.random.Generator) -> np.ndarray:
    """Zero-pads H and W by `padding`, then crops back to H x W at a random offset.

    The content moves by at most `padding` pixels in each direction.
    """
    if padding <= 0:
        return image
    h, w = image.shape[:2]
    padded = np.pad(image, ((padding, padding), (padding, padding), (0, 0)))
    top, left = rng.integers(0, 2 * padding + 1, size=2)
    return padded[top : top + h, left : left + w]


def random_flip(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Mirrors left-right with probability 1/2."""
    return image[:, ::-1] if rng.random() < 0.5 else image


# ------------------------------------------------------------------ sources


@dataclasses.dataclass(frozen=True)
class _Split:
    images: np.ndarray  # [N, H, W, C], raw pixel values
    labels: np.ndarray  # [N] int32


class _ArraySource:
    """grain random-access source over in-memory arrays."""

    def __init__(self, split: _Split):
        self._split = split

    def __len__(self) -> int:
        return len(self._split.labels)

    def __getitem__(self, index: int):
        return {'image': self._split.images[index], 'label': self._split.labels[index]}


def digits_split() -> tuple[np.ndarray, np.ndarray]:
    """(train_indices, test_indices) into sklearn's load_digits, fixed forever."""
    from sklearn.datasets import load_digits  # pylint: disable=import-outside-toplevel

    n = len(load_digits().target)
    order = np.random.default_rng(DIGITS_SPLIT_SEED).permutation(n)
    return np.sort(order[DIGITS_NUM_TEST:]), np.sort(order[:DIGITS_NUM_TEST])


def _load_digits():
    from sklearn.datasets import load_digits  # pylint: disable=import-outside-toplevel

    digits = load_digits()
    images = digits.images.astype(np.uint8)[..., None]
    labels = digits.target.astype(np.int32)
    train_idx, test_idx = digits_split()
    names = tuple(str(c) for c in range(10))
    return (
        _Split(images[train_idx], labels[train_idx]),
        _Split(images[test_idx], labels[test_idx]),
        names,
    )


def _load_idx(directory: str):
    train_images, train_labels, train_path, _ = load_idx_split(directory, 'train')
    test_images, test_labels, test_path, _ = load_idx_split(directory, 't10k')
    if train_images.shape[1:] != test_images.shape[1:]:
        raise DataError(
            f'{train_path} holds images of shape {train_images.shape[1:]} but '
            f'{test_path} holds {test_images.shape[1:]}'
        )
    num_classes = int(max(train_labels.max(initial=0), test_labels.max(initial=0))) + 1
    if 'fashion' in str(directory).lower() and num_classes == 10:
        names = FASHION_MNIST_CLASS_NAMES
    else:
        names = tuple(str(c) for c in range(num_classes))
    return (_Split(train_images, train_labels), _Split(test_images, test_labels), names)


def _load_tfds(name: str, data_dir: str | None):
    def fail(e: Exception):
        # First line only: TFDS appends its whole catalog to "not found" errors.
        cause = (str(e).strip().splitlines() or [''])[0][:300].rstrip('.')
        return DataError(
            f"could not load TFDS dataset '{name}' (data_dir={data_dir!r}): "
            f'{type(e).__name__}: {cause}. TFDS catalog datasets need a download on '
            f"first use; offline, use the embedded 'digits' or 'idx:DIR' instead"
        )

    try:
        import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel

        sources = tfds.data_source(
            name,
            split=['train', 'test'],
            data_dir=data_dir,
            download=True,
            builder_kwargs={'file_format': 'array_record'},
        )
    except Exception as e:  # any failure (network, missing builder, no TF) is fatal
        raise fail(e) from e

    def to_split(source) -> _Split:
        # The small image datasets fit in memory; reading them once also gives the
        # train statistics for normalisation.
        chunk = 4096
        images, labels = [], []
        for start in range(0, len(source), chunk):
            records = source.__getitems__(range(start, min(start + chunk, len(source))))
            images.extend(np.asarray(r['image']) for r in records)
            labels.extend(int(r['label']) for r in records)
        return _Split(np.stack(images), np.asarray(labels, np.int32))

    try:
        train, test = (to_split(s) for s in sources)
        label_feature = sources[0].dataset_info.features['label']
        names = tuple(label_feature.names)
    except Exception as e:
        raise fail(e) from e
    if train.images.ndim == 3:
        train = _Split(train.images[..., None], train.labels)
        test = _Split(test.images[..., None], test.labels)
    return train, test, names


# ------------------------------------------------------------------ pipeline


def _channel_stats(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and std in float64, in chunks to bound memory."""
    channels = images.shape[-1]
    total = np.zeros(channels)
    total_sq = np.zeros(channels)
    for start in range(0, len(images), 8192):
        x = images[start : start + 8192].reshape(-1, channels).astype(np.float64)
        total += x.sum(0)
        total_sq += (x * x).sum(0)
    count = images.size // channels
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean * mean, 0.0))
    return mean, np.maximum(std, 1e-6)  # a constant channel must not divide by 0


class ImageData:
    """Train stream (random access by step) and eval batches over one dataset."""

    def __init__(
        self,
        train: _Split,
        test: _Split,
        class_names: Sequence[str],
        batch_size: int,
        seed: int,
        random_crop_padding: int = 0,
        random_flip: bool = False,
        name: str = '',
    ):
        if batch_size <= 0:
            raise DataError(f'batch_size must be positive, got {batch_size}')
        if len(train.labels) == 0 or len(test.labels) == 0:
            raise DataError(f"dataset '{name}' has an empty train or test split")
        if random_crop_padding < 0:
            raise DataError(f'random_crop_padding must be >= 0, got {random_crop_padding}')
        self.name = name
        self.batch_size = batch_size
        self.seed = seed
        self.random_crop_padding = int(random_crop_padding)
        self.random_flip = bool(random_flip)
        self._train = train
        self._test = test
        self.image_shape = tuple(int(d) for d in train.images.shape[1:])
        self.class_names = tuple(class_names)
        self.num_classes = len(self.class_names)
        self.num_train = len(train.labels)
        self.num_test = len(test.labels)
        self.mean, self.std = _channel_stats(train.images)
        # Two independent 32-bit streams (shuffle, augment) from the one run seed.
        self._shuffle_seed, self._augment_seed = (
            int(s) for s in np.random.SeedSequence(seed).generate_state(2)
        )
        self._train_examples: grain.MapDataset | None = None

    def normalize(self, images: np.ndarray) -> np.ndarray:
        return ((images - self.mean) / self.std).astype(np.float32)

    def _augment(self, example, rng: np.random.Generator):
        image = random_crop(example['image'], self.random_crop_padding, rng)
        if self.random_flip:
            image = random_flip(image, rng)
        return {'image': image, 'label': example['label']}

    def _to_model_input(self, example):
        return {'images': self.normalize(example['image']), 'labels': np.int32(example['label'])}

    def _train_stream(self) -> grain.MapDataset:
        """Model inputs by global position: batch `step` is [step*B, (step+1)*B)."""
        if self._train_examples is None:
            ds = grain.MapDataset.source(_ArraySource(self._train))
            # Shuffle indices past one epoch are (epoch, position) pairs, permuted
            # with seed + epoch; repeat only lifts the length to infinity.
            ds = ds.shuffle(seed=self._shuffle_seed).repeat()
            if self.random_crop_padding or self.random_flip:
                ds = ds.random_map(self._augment, seed=self._augment_seed)
            self._train_examples = ds.map(self._to_model_input)
        return self._train_examples

    def train_batch(self, step: int, process_index: int = 0, process_count: int = 1):
        """This process's rows [p*B/P, (p+1)*B/P) of the global batch for `step`."""
        if step < 0:
            raise DataError(f'step must be >= 0, got {step}')
        return process_batch(
            self._train_stream(), step, self.batch_size, process_index, process_count
        )

    def num_eval_batches(self, num_batches: int | None = None) -> int:
        total = math.ceil(self.num_test / self.batch_size)
        return total if num_batches is None else min(total, num_batches)

    def eval_batches(
        self, process_index: int = 0, process_count: int = 1, num_batches: int | None = None
    ) -> Iterator[dict]:
        """The test split once, in order, in global batches of `batch_size` rows.

        Every process yields the same number of batches (SPMD steps must line up);
        rows past the end of the split are zeros with weight 0.
        """
        rows = process_rows(self.batch_size, process_index, process_count)
        local = rows.stop - rows.start
        count = self.num_eval_batches(num_batches)

        def generate():
            for b in range(count):
                start = b * self.batch_size + rows.start
                stop = min(b * self.batch_size + rows.stop, self.num_test)
                n = max(stop - start, 0)
                images = np.zeros((local, *self.image_shape), np.float32)
                labels = np.zeros((local,), np.int32)
                weights = np.zeros((local,), np.float32)
                if n:
                    images[:n] = self.normalize(self._test.images[start:stop])
                    labels[:n] = self._test.labels[start:stop]
                    weights[:n] = 1.0
                yield {'images': images, 'labels': labels, 'weights': weights}

        return generate()


def make_image_data(
    dataset: str,
    batch_size: int,
    seed: int,
    data_dir: str | None = None,
    random_crop_padding: int = 0,
    random_flip: bool = False,
) -> ImageData:
    """Builds the data for the `dataset` config string (see the module docstring)."""
    loaders: dict[str, Callable] = {
        'digits': lambda arg: _load_digits(),
        'idx': lambda arg: _load_idx(arg),
        'tfds': lambda arg: _load_tfds(arg, data_dir),
    }
    kind, _, arg = dataset.partition(':')
    if kind not in loaders or (kind == 'digits') == bool(arg):
        raise DataError(
            f"unknown dataset '{dataset}': expected 'digits', 'idx:DIR' or 'tfds:NAME[/CONFIG]'"
        )
    if kind == 'idx' and not pathlib.Path(arg).is_dir():
        raise DataError(f"dataset '{dataset}': {arg} is not a directory")
    train, test, names = loaders[kind](arg)
    return ImageData(
        train,
        test,
        names,
        batch_size=batch_size,
        seed=seed,
        random_crop_padding=random_crop_padding,
        random_flip=random_flip,
        name=dataset,
    )

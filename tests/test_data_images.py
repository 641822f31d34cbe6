"""Image data: IDX reader, digits split, random-access train stream, eval, augmentation.

IDX files are written here with `struct` straight from the format's definition, so the
reader is checked against an independent writer rather than against itself.
"""

import gzip
import pathlib
import struct

import numpy as np
import pytest

from seqmodels.data import idx, images

FASHION_DIR = pathlib.Path('/usr/share/datasets/fashion-mnist')


def write_idx(path, array, type_code=0x08, fmt='B', compress=False):
    array = np.asarray(array)
    header = struct.pack('>BBBB', 0, 0, type_code, array.ndim)
    header += struct.pack(f'>{array.ndim}i', *array.shape)
    body = struct.pack(f'>{array.size}{fmt}', *array.ravel().tolist())
    data = header + body
    path = pathlib.Path(path)
    path.write_bytes(gzip.compress(data) if compress else data)
    return path


def write_dataset(directory, train_images, train_labels, test_images, test_labels, compress=False):
    gz = '.gz' if compress else ''
    write_idx(directory / f'train-images-idx3-ubyte{gz}', train_images, compress=compress)
    write_idx(directory / f'train-labels-idx1-ubyte{gz}', train_labels, compress=compress)
    write_idx(directory / f't10k-images-idx3-ubyte{gz}', test_images, compress=compress)
    write_idx(directory / f't10k-labels-idx1-ubyte{gz}', test_labels, compress=compress)
    return directory


def constant_images(values, size=4):
    """Image i is filled with values[i]: the image identifies its source row."""
    return np.repeat(np.asarray(values, np.uint8), size * size).reshape(-1, size, size)


def source_rows(data, batch_images):
    """Recovers which constant-valued source image each row came from."""
    raw = batch_images * data.std + data.mean
    return np.rint(raw.reshape(len(raw), -1).mean(1)).astype(int)


def assert_shards_concatenate(shards, whole):
    """Process shards, concatenated in process order, are the global batch bit for bit."""
    assert all(shard.keys() == whole.keys() for shard in shards)
    for key, value in whole.items():
        joined = np.concatenate([shard[key] for shard in shards])
        assert (joined.dtype, joined.shape) == (value.dtype, value.shape), key
        assert joined.tobytes() == value.tobytes(), key


@pytest.fixture
def tiny_dir(tmp_path):
    # 24 train images with distinct values 10, 11, ..., 33; 10 test images 100..109.
    return write_dataset(
        tmp_path,
        constant_images(np.arange(24) + 10),
        np.arange(24) % 3,
        constant_images(np.arange(10) + 100),
        np.arange(10) % 3,
    )


# -------------------------------------------------------------------- IDX


@pytest.mark.parametrize('compress', [False, True])
def test_read_idx_round_trip(tmp_path, compress):
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(5, 3, 4), dtype=np.uint8)
    path = write_idx(tmp_path / 'x-idx3-ubyte', pixels, compress=compress)
    got = idx.read_idx(path)
    assert got.dtype == np.uint8 and got.shape == (5, 3, 4)
    np.testing.assert_array_equal(got, pixels)


def test_read_idx_big_endian_int32(tmp_path):
    values = np.array([[1, -2, 70000], [3, 2**31 - 1, -(2**31)]], np.int64)
    path = write_idx(tmp_path / 'ints', values, type_code=0x0C, fmt='i')
    np.testing.assert_array_equal(idx.read_idx(path), values)


def test_wrong_magic_names_file(tmp_path):
    path = tmp_path / 'bad-images-idx3-ubyte'
    path.write_bytes(b'\x00\x01\x08\x03' + bytes(12))
    with pytest.raises(idx.DataError, match='wrong magic') as e:
        idx.read_idx(path)
    assert str(path) in str(e.value)


def test_truncated_file_gives_expected_and_actual_sizes(tmp_path):
    path = write_idx(tmp_path / 'short-idx3-ubyte', np.zeros((4, 5, 6), np.uint8))
    data = path.read_bytes()
    path.write_bytes(data[:-7])
    with pytest.raises(idx.DataError, match='truncated') as e:
        idx.read_idx(path)
    message = str(e.value)
    assert str(path) in message
    assert str(16 + 120) in message and str(16 + 120 - 7) in message


def test_count_mismatch_names_both_files(tmp_path):
    write_dataset(
        tmp_path, constant_images(range(6)), np.arange(5), constant_images(range(2)), np.arange(2)
    )
    with pytest.raises(idx.DataError) as e:
        images.make_image_data(f'idx:{tmp_path}', batch_size=2, seed=0)
    message = str(e.value)
    assert 'train-images-idx3-ubyte' in message and 'train-labels-idx1-ubyte' in message
    assert '6 images' in message and '5 labels' in message


def test_missing_file_lists_names_tried(tmp_path):
    with pytest.raises(idx.DataError, match='train-images-idx3-ubyte.gz'):
        images.make_image_data(f'idx:{tmp_path}', batch_size=2, seed=0)


def test_gzipped_dataset_loads_same_as_plain(tmp_path, tiny_dir):
    gz_dir = tmp_path / 'gz'
    gz_dir.mkdir()
    write_dataset(
        gz_dir,
        constant_images(np.arange(24) + 10),
        np.arange(24) % 3,
        constant_images(np.arange(10) + 100),
        np.arange(10) % 3,
        compress=True,
    )
    plain = images.make_image_data(f'idx:{tiny_dir}', batch_size=8, seed=3)
    gzipped = images.make_image_data(f'idx:{gz_dir}', batch_size=8, seed=3)
    assert gzipped.image_shape == (4, 4, 1) and gzipped.num_classes == 3
    for key in ('images', 'labels'):
        np.testing.assert_array_equal(plain.train_batch(1)[key], gzipped.train_batch(1)[key])


# ------------------------------------------------------ config-level checks


def test_check_patch_size():
    images.check_patch_size(28, 7)
    images.check_patch_size((32, 16), (4, 4))
    with pytest.raises(ValueError, match=r'model\.patch_size') as e:
        images.check_patch_size((28, 28), 5)
    assert '28x28' in str(e.value)


def test_unknown_dataset_string():
    with pytest.raises(ValueError, match="expected 'digits', 'idx:DIR'"):
        images.make_image_data('mnist', batch_size=2, seed=0)


def test_tfds_failure_names_dataset(tmp_path):
    # Offline (and without a builder of that name) TFDS must fail with our message.
    with pytest.raises(images.DataError, match='no_such_image_dataset'):
        images.make_image_data(
            'tfds:no_such_image_dataset', batch_size=2, seed=0, data_dir=str(tmp_path)
        )


class FakeTfdsSource:
    """Stands in for what tfds.data_source returns once a dataset is prepared."""

    class _Label:
        names = ['airplane', 'automobile', 'bird']

    def __init__(self, pixels, labels):
        self._records = [{'image': p, 'label': y} for p, y in zip(pixels, labels)]
        self.dataset_info = type('Info', (), {'features': {'label': self._Label()}})()

    def __len__(self):
        return len(self._records)

    def __getitems__(self, keys):
        return [self._records[k] for k in keys]


def test_tfds_records_become_arrays(monkeypatch):
    import tensorflow_datasets as tfds

    rng = np.random.default_rng(0)
    train = rng.integers(0, 256, size=(6, 4, 4, 3), dtype=np.uint8)
    test = rng.integers(0, 256, size=(3, 4, 4, 3), dtype=np.uint8)
    calls = []

    def fake_data_source(name, **kwargs):
        calls.append((name, kwargs))
        return [FakeTfdsSource(train, [0, 1, 2, 0, 1, 2]), FakeTfdsSource(test, [2, 1, 0])]

    monkeypatch.setattr(tfds, 'data_source', fake_data_source)
    data = images.make_image_data('tfds:cifar10', batch_size=3, seed=0, data_dir='/d')
    assert calls[0][0] == 'cifar10' and calls[0][1]['split'] == ['train', 'test']
    assert calls[0][1]['builder_kwargs'] == {'file_format': 'array_record'}
    assert calls[0][1]['data_dir'] == '/d'
    assert data.image_shape == (4, 4, 3) and data.num_classes == 3
    assert data.class_names[1] == 'automobile'
    np.testing.assert_allclose(data.mean, train.reshape(-1, 3).mean(0))  # per channel
    batch = next(iter(data.eval_batches()))
    np.testing.assert_allclose(batch['images'], (test - data.mean) / data.std, rtol=1e-5)
    np.testing.assert_array_equal(batch['labels'], [2, 1, 0])


# ------------------------------------------------------------------ digits


def test_digits_split_is_fixed_and_complete():
    train_idx, test_idx = images.digits_split()
    assert len(train_idx) == 1437 and len(test_idx) == 360
    assert len(np.union1d(train_idx, test_idx)) == 1797
    assert len(np.intersect1d(train_idx, test_idx)) == 0
    from sklearn.datasets import load_digits

    raw = load_digits().images
    a = images.make_image_data('digits', batch_size=128, seed=0)
    b = images.make_image_data('digits', batch_size=128, seed=1)
    assert (a.num_train, a.num_test, a.image_shape) == (1437, 360, (8, 8, 1))
    assert a.class_names == tuple('0123456789')
    eval_a = np.concatenate([x['images'] for x in a.eval_batches()])
    eval_b = np.concatenate([x['images'] for x in b.eval_batches()])
    np.testing.assert_array_equal(eval_a, eval_b)  # the run seed does not move the split
    # The test images are sklearn's rows test_idx, standardised with train statistics
    # computed here in float64.
    train_pixels = raw[train_idx].astype(np.float64)
    expected = (raw[test_idx] - train_pixels.mean()) / train_pixels.std()
    np.testing.assert_allclose(eval_a[:360, ..., 0], expected, rtol=1e-5, atol=1e-5)


def test_digits_train_is_standardised_and_not_augmented():
    data = images.make_image_data('digits', batch_size=479, seed=5)  # 3 x 479 = 1437
    epoch = np.concatenate([data.train_batch(s)['images'] for s in range(3)])
    assert abs(epoch.mean()) < 1e-4 and abs(epoch.std() - 1) < 1e-4
    from sklearn.datasets import load_digits

    raw = load_digits().images[images.digits_split()[0]]
    expected = np.sort(((raw - data.mean) / data.std).reshape(len(raw), -1), axis=0)
    got = np.sort(epoch.reshape(len(epoch), -1), axis=0)
    np.testing.assert_allclose(got, expected, atol=1e-5)  # no flips, no crops


# -------------------------------------------------------------- train stream


def test_same_seed_and_step_give_identical_batches(tiny_dir):
    a = images.make_image_data(
        f'idx:{tiny_dir}', batch_size=8, seed=7, random_crop_padding=1, random_flip=True
    )
    b = images.make_image_data(
        f'idx:{tiny_dir}', batch_size=8, seed=7, random_crop_padding=1, random_flip=True
    )
    c = images.make_image_data(f'idx:{tiny_dir}', batch_size=8, seed=8)
    for step in (5, 0, 3):  # out of order: access is random, not sequential
        for key in ('images', 'labels'):
            np.testing.assert_array_equal(a.train_batch(step)[key], b.train_batch(step)[key])
    orders = [source_rows(d, d.train_batch(0)['images']) for d in (a, c)]
    assert not np.array_equal(*orders)


@pytest.mark.parametrize('dataset', ['tiny', 'digits'])
def test_process_shards_concatenate_to_global_batch(tiny_dir, dataset):
    # digits: 360 test images in batches of 16, so the last eval batch is half padding
    # and processes 2 and 3 of 4 get only padding rows there.
    name = f'idx:{tiny_dir}' if dataset == 'tiny' else 'digits'
    data = images.make_image_data(
        name, batch_size=16, seed=1, random_crop_padding=1, random_flip=True
    )
    whole_eval = list(data.eval_batches(0, 1))
    for count in (2, 4):
        for step in (0, 4):
            shards = [data.train_batch(step, p, count) for p in range(count)]
            assert shards[0]['images'].shape == (16 // count, *data.image_shape)
            assert_shards_concatenate(shards, data.train_batch(step, 0, 1))
        per_process = [list(data.eval_batches(p, count)) for p in range(count)]
        assert [len(batches) for batches in per_process] == [len(whole_eval)] * count
        for b, batch in enumerate(whole_eval):
            assert_shards_concatenate([batches[b] for batches in per_process], batch)
    with pytest.raises(images.DataError, match='batch_size=16 is not divisible by the 3 '):
        data.train_batch(0, 0, 3)
    with pytest.raises(images.DataError, match='batch_size=16 is not divisible by the 3 '):
        data.eval_batches(0, 3)


def test_each_epoch_visits_every_image_once(tiny_dir):
    # batch 16 does not divide 24: step 1 straddles epochs 0 and 1.
    data = images.make_image_data(f'idx:{tiny_dir}', batch_size=16, seed=2)
    rows = np.concatenate([source_rows(data, data.train_batch(s)['images']) for s in range(3)])
    labels = np.concatenate([data.train_batch(s)['labels'] for s in range(3)])
    first, second = rows[:24], rows[24:]
    np.testing.assert_array_equal(np.sort(first), np.arange(24) + 10)
    np.testing.assert_array_equal(np.sort(second), np.arange(24) + 10)
    assert not np.array_equal(first, second)  # reshuffled per epoch
    assert not np.array_equal(first, np.arange(24) + 10)  # actually shuffled
    np.testing.assert_array_equal(labels, (rows - 10) % 3)  # labels travel with images
    assert data.train_batch(0)['labels'].dtype == np.int32
    assert data.train_batch(0)['images'].dtype == np.float32


# --------------------------------------------------------------------- eval


def test_eval_covers_test_split_once_in_order(tiny_dir):
    data = images.make_image_data(f'idx:{tiny_dir}', batch_size=4, seed=0)
    per_process = [list(data.eval_batches(p, 2)) for p in range(2)]
    assert [len(b) for b in per_process] == [3, 3]  # ceil(10 / 4), same on every process
    rows, weights, labels = [], [], []
    for b in range(3):
        for p in range(2):
            batch = per_process[p][b]
            rows.append(source_rows(data, batch['images']))
            weights.append(batch['weights'])
            labels.append(batch['labels'])
    rows, weights, labels = map(np.concatenate, (rows, weights, labels))
    np.testing.assert_array_equal(weights, [1] * 10 + [0] * 2)
    np.testing.assert_array_equal(rows[weights == 1], np.arange(10) + 100)
    np.testing.assert_array_equal(labels[weights == 1], np.arange(10) % 3)
    assert len(list(data.eval_batches(num_batches=2))) == 2


# ------------------------------------------------------------- augmentation


def test_random_crop_shifts_content_by_at_most_padding():
    image = np.zeros((9, 9, 1), np.uint8)
    image[4, 4] = 255
    padding = 2
    shifts = set()
    for seed in range(60):
        out = images.random_crop(image, padding, np.random.default_rng(seed))
        assert out.shape == image.shape
        ys, xs = np.nonzero(out[..., 0])
        assert len(ys) == 1  # the pixel stays whole: padding 2 cannot push it out
        dy, dx = int(ys[0]) - 4, int(xs[0]) - 4
        assert abs(dy) <= padding and abs(dx) <= padding
        shifts.add((dy, dx))
    assert len(shifts) > 10  # the offset really is random, both axes
    # Content pushed past the edge is replaced by zeros, not wrapped around.
    edge = np.zeros((9, 9, 1), np.uint8)
    edge[:, 0] = 1
    outs = [images.random_crop(edge, padding, np.random.default_rng(s)) for s in range(60)]
    assert any(o.sum() == 0 for o in outs)
    assert all(o[:, -padding:].sum() == 0 for o in outs)


def test_random_flip_mirrors():
    image = np.arange(12, dtype=np.uint8).reshape(3, 4, 1)
    outs = [images.random_flip(image, np.random.default_rng(s)) for s in range(20)]
    mirrored = image[:, [3, 2, 1, 0]]
    assert all(np.array_equal(o, image) or np.array_equal(o, mirrored) for o in outs)
    assert any(np.array_equal(o, mirrored) for o in outs)
    assert any(np.array_equal(o, image) for o in outs)


def test_pipeline_flip_gives_source_or_mirror(tmp_path):
    # Left half dark, right half bright: flipped rows swap which half is bright.
    left_right = np.zeros((8, 4, 4), np.uint8)
    left_right[:, :, 2:] = 200
    write_dataset(tmp_path, left_right, np.zeros(8, int), left_right[:2], np.zeros(2, int))
    data = images.make_image_data(f'idx:{tmp_path}', batch_size=8, seed=0, random_flip=True)
    batch = np.concatenate([data.train_batch(s)['images'] for s in range(4)])[..., 0]
    bright_right = batch[:, :, 3].mean(1) > batch[:, :, 0].mean(1)
    assert bright_right.any() and (~bright_right).any()
    expected = data.normalize(left_right[0])
    for row, right in zip(batch, bright_right):
        np.testing.assert_allclose(row, expected if right else expected[:, ::-1])


# ------------------------------------------------------------ Fashion-MNIST


def test_real_fashion_mnist():
    if not (FASHION_DIR / 'train-images-idx3-ubyte.gz').exists():
        pytest.skip(
            f'Fashion-MNIST is absent from {FASHION_DIR} (apt-get install dataset-fashion-mnist)'
        )
    data = images.make_image_data(f'idx:{FASHION_DIR}', batch_size=100, seed=0)
    assert (data.num_train, data.num_test, data.image_shape) == (60000, 10000, (28, 28, 1))
    assert data.num_classes == 10 and data.class_names[0] == 'T-shirt/top'
    assert data.class_names[9] == 'Ankle boot'
    # Widely published Fashion-MNIST train statistics on [0, 1] pixels: 0.2860 / 0.3530.
    assert abs(data.mean[0] / 255 - 0.2860) < 1e-3
    assert abs(data.std[0] / 255 - 0.3530) < 1e-3
    # The dataset is balanced: 6,000 train and 1,000 test images per class.
    labels = np.concatenate([b['labels'] for b in data.eval_batches()])
    np.testing.assert_array_equal(np.bincount(labels, minlength=10), [1000] * 10)
    batch = data.train_batch(0)
    assert batch['images'].shape == (100, 28, 28, 1)

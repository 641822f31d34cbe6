"""Character-LM data: corpora, vocabulary, TFDS array_record builders, grain batches.

References are computed here independently of the code under test: splits by the
documented rules on the raw file text, substring search in that text, the published
Tiny Shakespeare numbers (nanoGPT shakespeare_char: 1,115,394 characters, 65 distinct,
1,003,854 train / 111,540 val).
"""

import ast
import hashlib
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import tensorflow_datasets as tfds
from etils import epath

from seqmodels.data import CharVocab, DataError, UNK_ID, make_char_lm_data
from seqmodels import training
from seqmodels.data import corpora, tfds_text
from seqmodels.data.rows import process_rows

ROOT = pathlib.Path(__file__).resolve().parents[1]
ALPHABET = list('abcdefghijklmnopqrstuvwxyz ,.\néλ→')


@pytest.fixture(scope='module')
def data_dir(tmp_path_factory):
    tfds.disable_progress_bar()
    return str(tmp_path_factory.mktemp('tfds'))


def _write(path, text):
    path.write_text(text, encoding='utf-8')
    return str(path)


@pytest.fixture(scope='module')
def random_text_file(tmp_path_factory):
    # Random text makes every 16-character window unique, so a window's position in the
    # corpus can be recovered by substring search.
    rng = np.random.default_rng(0)
    text = ''.join(rng.choice(ALPHABET, size=6000))
    return _write(tmp_path_factory.mktemp('txt') / 'random.txt', text), text


@pytest.fixture(scope='module')
def random_data(random_text_file, data_dir):
    path, _ = random_text_file
    return make_char_lm_data(f'text:{path}', seq_len=16, batch_size=8, seed=3, data_dir=data_dir)


def assert_shards_concatenate(shards, whole):
    """Process shards, concatenated in process order, are the global batch bit for bit."""
    assert all(shard.keys() == whole.keys() for shard in shards)
    for key, value in whole.items():
        joined = np.concatenate([shard[key] for shard in shards])
        assert (joined.dtype, joined.shape) == (value.dtype, value.shape), key
        assert joined.tobytes() == value.tobytes(), key


def _nanogpt_split(text, val_fraction=0.1):
    n = int(len(text) * (1 - val_fraction))
    return text[:n], text[n:]


# -- vocabulary -------------------------------------------------------------------------


def test_vocab_ids_roundtrip_unk_and_json(tmp_path):
    vocab = CharVocab.from_text('hello, wörld')
    assert vocab.chars == sorted(set('hello, wörld'))
    assert vocab.vocab_size == len(set('hello, wörld')) + 1
    ids = vocab.encode('hello, wörld')
    assert ids.dtype == np.int32
    np.testing.assert_array_equal(ids, [vocab.chars.index(c) + 1 for c in 'hello, wörld'])
    assert vocab.decode(ids) == 'hello, wörld'
    # Unknown characters (incl. a lone surrogate) map to <unk>; bad ids decode, no crash.
    np.testing.assert_array_equal(vocab.encode('hzQ\ud800'), [vocab.encode('h')[0], 0, 0, 0])
    assert vocab.decode([UNK_ID, -1, vocab.vocab_size, 10**9]) == '\ufffd' * 4
    path = tmp_path / 'sub' / 'vocab.json'
    vocab.save(str(path))
    assert CharVocab.load(str(path)) == vocab
    assert CharVocab.load(str(path)).encode('wörld?').tolist() == vocab.encode('wörld?').tolist()
    path.write_text('{not json', encoding='utf-8')
    with pytest.raises(DataError, match='vocab.json'):
        CharVocab.load(str(path))


def test_vocab_from_train_split_and_resume(tmp_path, data_dir):
    # 'Z' occurs only in the last 10% (validation): it must encode to <unk> there.
    path = _write(tmp_path / 'z.txt', 'abc ' * 90 + 'abZc' * 10)
    vocab_path = str(tmp_path / 'work' / 'vocab.json')
    data = make_char_lm_data(f'text:{path}', 8, 2, 0, data_dir, vocab_path=vocab_path)
    assert data.vocab.chars == [' ', 'a', 'b', 'c']
    assert os.path.exists(vocab_path)
    val_text = _nanogpt_split(open(path, encoding='utf-8').read())[1]
    np.testing.assert_array_equal(data.val_ids == UNK_ID, np.array([c == 'Z' for c in val_text]))
    # An existing vocab file wins (a resumed run keeps its ids), even if it differs.
    CharVocab('abcZ ').save(vocab_path)
    resumed = make_char_lm_data(f'text:{path}', 8, 2, 0, data_dir, vocab_path=vocab_path)
    assert resumed.vocab.chars == [' ', 'Z', 'a', 'b', 'c']
    assert not (resumed.val_ids == UNK_ID).any()


# -- training batches -------------------------------------------------------------------


def test_train_windows_are_shifted_slices_of_train_text(random_text_file, random_data):
    _, text = random_text_file
    train_text, val_text = _nanogpt_split(text)
    assert (random_data.num_train_chars, random_data.num_val_chars) == (5400, 600)
    vocab = random_data.vocab
    for step in (0, 1, 12345):
        batch = random_data.train_batch(step, 0, 1)
        assert set(batch) == {'inputs', 'targets'}
        for key in batch:
            assert batch[key].shape == (8, 16) and batch[key].dtype == np.int32
        for inputs, targets in zip(batch['inputs'], batch['targets']):
            start = train_text.find(vocab.decode(inputs))
            assert 0 <= start <= len(train_text) - 17
            assert vocab.decode(targets) == train_text[start + 1 : start + 17]


def test_train_batch_is_a_function_of_seed_and_step(random_text_file, random_data, data_dir):
    path, _ = random_text_file
    again = make_char_lm_data(f'text:{path}', 16, 8, seed=3, data_dir=data_dir)
    other_seed = make_char_lm_data(f'text:{path}', 16, 8, seed=4, data_dir=data_dir)
    # Out of order on purpose: access is random by step, no iterator state.
    for step in (7, 0, 7, 100):
        np.testing.assert_array_equal(
            random_data.train_batch(step)['inputs'], again.train_batch(step)['inputs']
        )
    assert not np.array_equal(
        random_data.train_batch(0)['inputs'], random_data.train_batch(1)['inputs']
    )
    assert not np.array_equal(
        random_data.train_batch(0)['inputs'], other_seed.train_batch(0)['inputs']
    )


@pytest.mark.parametrize('process_count', [2, 4, 8])
def test_process_shards_concatenate_to_global_batch(random_data, process_count):
    for step in (0, 5):
        shards = [random_data.train_batch(step, p, process_count) for p in range(process_count)]
        assert shards[0]['inputs'].shape == (8 // process_count, 16)
        assert_shards_concatenate(shards, random_data.train_batch(step, 0, 1))
    whole = list(random_data.eval_batches(0, 1))
    per_process = [list(random_data.eval_batches(p, process_count)) for p in range(process_count)]
    assert [len(batches) for batches in per_process] == [len(whole)] * process_count
    for k, batch in enumerate(whole):
        assert_shards_concatenate([batches[k] for batches in per_process], batch)


def test_bad_process_arguments_raise(random_data):
    with pytest.raises(DataError, match='batch_size=8 is not divisible by the 3 processes'):
        random_data.train_batch(0, 0, 3)
    with pytest.raises(ValueError, match='process_index=2 is not in'):
        random_data.train_batch(0, 2, 2)
    # Raised by the call, before the first batch is asked for.
    with pytest.raises(DataError, match='batch_size=8 is not divisible by the 3 processes'):
        random_data.eval_batches(0, 3)


# -- rows of a global batch per process ------------------------------------------------


def test_process_rows_split_a_batch_evenly_in_process_order():
    assert process_rows(12, 2, 4) == slice(6, 9)
    assert process_rows(5, 0, 1) == slice(0, 5)
    for batch_size, count in ((8, 2), (12, 4), (12, 3), (8, 8)):
        parts = [np.arange(batch_size)[process_rows(batch_size, p, count)] for p in range(count)]
        assert {len(part) for part in parts} == {batch_size // count}
        np.testing.assert_array_equal(np.concatenate(parts), np.arange(batch_size))
    assert process_rows(8) == slice(0, 8)  # this test is JAX process 0 of 1
    assert training.process_rows is process_rows  # one function, re-exported


def test_process_rows_errors_name_the_key():
    with pytest.raises(DataError) as info:
        process_rows(10, 0, 4)
    message = str(info.value)
    assert message.startswith('batch_size=10 is not divisible by the 4 processes')
    assert '\n' not in message
    with pytest.raises(DataError, match='^eval_batch_size=6 is not divisible by the 4 proc'):
        process_rows(6, 1, 4, 'eval_batch_size')
    for index, count in ((-1, 2), (2, 2), (0, 0)):
        with pytest.raises(ValueError, match=f'process_index={index} is not in'):
            process_rows(8, index, count)


def test_data_is_below_training():
    # seqmodels.data never imports seqmodels.training, and importing the training engine
    # (which re-exports process_rows) loads neither grain nor TFDS.
    for path in sorted(ROOT.glob('seqmodels/data/*.py')):
        tree = ast.parse(path.read_text(encoding='utf-8'))
        for node in ast.walk(tree):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or '']
                if isinstance(node, ast.ImportFrom)
                else []
            )
            assert not any(n.startswith('seqmodels.training') for n in names), path
    code = (
        'import sys, seqmodels.training; '
        "print(sorted({'grain', 'tensorflow_datasets'} & set(sys.modules)))"
    )
    out = subprocess.run(
        [sys.executable, '-c', code], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout
    assert out.strip() == '[]'


def test_window_starts_cover_every_position(tmp_path, data_dir):
    # 40 distinct characters: train is the first 36, and a window's first character
    # gives its start. Every valid start 0 .. 36 - seq_len - 1 must be drawn (an
    # off-by-one would never train on the corpus's last character), and nothing beyond.
    text = 'abcdefghijklmnopqrstuvwxyz0123456789ABCD'
    path = _write(tmp_path / 'distinct.txt', text)
    data = make_char_lm_data(f'text:{path}', seq_len=3, batch_size=8, seed=0, data_dir=data_dir)
    starts = set()
    for step in range(300):
        for row in data.train_batch(step)['inputs']:
            starts.add(text.index(data.vocab.decode(row[:1])))
    assert starts == set(range(33))


# -- evaluation -------------------------------------------------------------------------


def test_eval_windows_cover_val_text_once_in_order(random_text_file, random_data):
    _, text = random_text_file
    val_ids = random_data.vocab.encode(_nanogpt_split(text)[1])
    batches = list(random_data.eval_batches(0, 1))
    # 599 predictions / 16 per window -> 38 windows -> 5 batches of 8 (2 padded rows).
    assert len(batches) == 5 == random_data.num_eval_batches
    inputs = np.concatenate([b['inputs'] for b in batches]).reshape(-1)
    targets = np.concatenate([b['targets'] for b in batches]).reshape(-1)
    weights = np.concatenate([b['weights'] for b in batches]).reshape(-1)
    assert weights.sum() == len(val_ids) - 1
    np.testing.assert_array_equal(weights[: len(val_ids) - 1], 1.0)
    np.testing.assert_array_equal(targets[weights > 0], val_ids[1:])
    np.testing.assert_array_equal(inputs[weights > 0], val_ids[:-1])
    assert batches[-1]['weights'][-2:].sum() == 0  # the two padded rows
    # num_batches caps every process alike (process shards: see the test above).
    assert len(list(random_data.eval_batches(1, 2, num_batches=3))) == 3


# -- errors -----------------------------------------------------------------------------


def test_missing_empty_directory_and_non_utf8_files(tmp_path, data_dir):
    missing = str(tmp_path / 'missing.txt')
    with pytest.raises(DataError, match='missing.txt.*does not exist'):
        make_char_lm_data(f'text:{missing}', 8, 2, 0, data_dir)
    empty = _write(tmp_path / 'empty.txt', '')
    with pytest.raises(DataError, match='empty.txt.*empty'):
        make_char_lm_data(f'text:{empty}', 8, 2, 0, data_dir)
    with pytest.raises(DataError, match='directory'):
        make_char_lm_data(f'text:{tmp_path}', 8, 2, 0, data_dir)
    bad = tmp_path / 'latin1.txt'
    bad.write_bytes('Grüße aus Köln, '.encode() + 'Straße'.encode('latin-1'))
    expected_offset = len('Grüße aus Köln, Stra'.encode())  # the Latin-1 'ß'
    with pytest.raises(DataError) as info:
        make_char_lm_data(f'text:{bad}', 8, 2, 0, data_dir)
    assert 'latin1.txt' in str(info.value) and 'UTF-8' in str(info.value)
    assert f'byte offset {expected_offset}' in str(info.value)
    assert isinstance(info.value, ValueError)


def test_corpus_shorter_than_one_sequence(tmp_path, data_dir):
    path = _write(tmp_path / 'short.txt', '0123456789' * 10)  # train 90, validation 10
    with pytest.raises(DataError, match=r'short.txt.* 90 characters.*seq_len \+ 1 = 96'):
        make_char_lm_data(f'text:{path}', 95, 2, 0, data_dir)
    with pytest.raises(DataError, match=r'validation split.*short.txt.* 10 characters.* = 21'):
        make_char_lm_data(f'text:{path}', 20, 2, 0, data_dir)
    assert make_char_lm_data(f'text:{path}', 9, 2, 0, data_dir).num_val_chars == 10


def test_unknown_dataset_string():
    with pytest.raises(DataError, match='python_stdlib'):
        make_char_lm_data('shakespeare', 8, 2, 0)


def test_edited_file_is_rebuilt_not_read_from_cache(tmp_path, data_dir):
    path = tmp_path / 'edit.txt'
    _write(path, 'abcd' * 50)
    assert make_char_lm_data(f'text:{path}', 8, 2, 0, data_dir).num_train_chars == 180
    _write(path, 'wxyz' * 60)
    data = make_char_lm_data(f'text:{path}', 8, 2, 0, data_dir)
    assert data.num_train_chars == 216 and data.vocab.chars == ['w', 'x', 'y', 'z']


# -- TFDS catalog path ------------------------------------------------------------------


class SeqmodelsTestTinyCatalog(tfds.core.GeneratorBasedBuilder):
    """Stands in for a catalog dataset offline: registered by name, one Text feature."""

    VERSION = tfds.core.Version('1.0.0')

    @tfds.core.utils.classproperty
    @classmethod
    def code_path(cls):
        return epath.Path(__file__)

    def _info(self):
        features = {'body': tfds.features.Text(), 'n': tfds.features.Scalar(np.int64)}
        return tfds.core.DatasetInfo(
            builder=self, features=tfds.features.FeaturesDict(features), disable_shuffling=True
        )

    def _split_generators(self, dl_manager):
        return {'train': self._generate_examples(0, 30), 'test': self._generate_examples(30, 5)}

    def _generate_examples(self, first, count):
        for i in range(first, first + count):
            yield i, {'body': f'line {i:03d};', 'n': i}


def test_catalog_dataset_read_through_tfds_data_source(data_dir):
    data = make_char_lm_data('tfds:seqmodels_test_tiny_catalog', 8, 4, 0, data_dir)
    train = ''.join(f'line {i:03d};' for i in range(30))
    test = ''.join(f'line {i:03d};' for i in range(30, 35))
    assert data.vocab.decode(data.train_ids) == train  # 'test' is used for validation
    assert data.vocab.decode(data.val_ids) == test


def test_catalog_errors_are_clear(data_dir, monkeypatch):
    with pytest.raises(DataError, match='no_such_dataset_xyz'):
        make_char_lm_data('tfds:no_such_dataset_xyz', 8, 2, 0, data_dir)

    class Offline:
        def download_and_prepare(self, **kwargs):
            raise ConnectionError("Failed to resolve 'raw.githubusercontent.com'")

    monkeypatch.setattr(tfds, 'builder', lambda name, data_dir: Offline())
    with pytest.raises(DataError) as info:
        make_char_lm_data('tfds:tiny_shakespeare', 8, 2, 0, data_dir)
    message = str(info.value)
    assert 'tiny_shakespeare' in message and 'ConnectionError' in message
    assert 'internet' in message and 'text:PATH' in message


# -- embedded default corpus ------------------------------------------------------------


def _reference_split(relpath):
    bucket = int.from_bytes(hashlib.sha256(relpath.encode()).digest()[:8], 'big') % 100
    return 'train' if bucket < 90 else 'validation' if bucket < 95 else 'test'


def test_stdlib_files_and_their_split():
    files = corpora.stdlib_files()
    assert len(files) > 100 and files == sorted(files)
    assert 'os.py' in files and 'json/decoder.py' in files
    for rel in files:
        assert not set(rel.split('/')[:-1]) & {'site-packages', 'test', 'tests', 'idle_test'}
    splits = [corpora.stdlib_split_of(rel) for rel in files]
    assert splits == [_reference_split(rel) for rel in files]
    assert 0.85 < splits.count('train') / len(files) < 0.95


def test_stdlib_split_is_by_file_and_deterministic(tmp_path):
    max_chars = 400_000
    config = tfds_text.python_stdlib_config(max_chars)
    builds = [
        tfds_text.char_corpus_data_sources(config, str(tmp_path / name)) for name in ('a', 'b')
    ]
    root = corpora.stdlib_root()
    listings = []
    for sources in builds:
        assert sorted(sources) == ['test', 'train', 'validation']
        listing = {}
        for split, source in sources.items():
            records = [source[i] for i in range(len(source))]
            paths = [r['source'].decode() for r in records]
            assert paths == sorted(paths) and all(_reference_split(p) == split for p in paths)
            texts = [r['text'].decode() for r in records]
            for rel, text in zip(paths, texts):
                with open(os.path.join(root, rel), encoding='utf-8') as f:
                    assert f.read().startswith(text)  # whole files; the last one may be cut
            # The cap is shared out 90/5/5 and met exactly.
            assert sum(map(len, texts)) == max_chars * {'train': 90}.get(split, 5) // 100
            listing[split] = paths
        listings.append(listing)
    assert listings[0] == listings[1]
    assert not set(listings[0]['train']) & set(listings[0]['validation'])

    data = make_char_lm_data('python_stdlib', 32, 4, 0, str(tmp_path / 'a'), max_chars=max_chars)
    assert (data.num_train_chars, data.num_val_chars) == (360_000, 20_000)
    assert (data.train_batch(0)['inputs'] != UNK_ID).all()


# -- Tiny Shakespeare -------------------------------------------------------------------


def test_tiny_shakespeare_published_sizes(tiny_shakespeare, data_dir):
    # `tiny_shakespeare` (conftest) skips, naming the path, when ../shared/data lacks it.
    text = tiny_shakespeare.read_text(encoding='utf-8')
    assert len(text) == 1_115_394 and len(set(text)) == 65
    data = make_char_lm_data(f'text:{tiny_shakespeare}', 64, 4, 0, data_dir)
    assert (data.num_train_chars, data.num_val_chars) == (1_003_854, 111_540)
    assert data.vocab.chars == sorted(set(text[:1_003_854])) and len(data.vocab.chars) == 65
    assert data.vocab_size == 66  # + <unk>
    assert data.vocab.decode(data.val_ids) == text[1_003_854:]

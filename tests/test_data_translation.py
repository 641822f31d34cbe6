"""Translation data: the CLDR corpus, number words, SentencePiece, bucketed batches."""

import dataclasses
import datetime
import pathlib
import re

import ml_collections
import numpy as np
import pytest
import sentencepiece as spm

from seqmodels.data import locale_corpus, tokenizers, translation
from seqmodels.data.tokenizers import BOS_ID, EOS_ID, PAD_ID, UNK_ID

MULTI30K = pathlib.Path(__file__).resolve().parents[1].parent / 'shared' / 'data' / 'multi30k'
SMALL_SIZES = {'train': 800, 'val': 90, 'test': 70}


def _write(path, lines):
    path.write_text(''.join(line + '\n' for line in lines), encoding='utf-8')


def assert_shards_concatenate(shards, whole):
    """Process shards, concatenated in process order, are the global batch bit for bit."""
    assert all(shard.keys() == whole.keys() for shard in shards)
    for key, value in whole.items():
        joined = np.concatenate([shard[key] for shard in shards])
        assert (joined.dtype, joined.shape) == (value.dtype, value.shape), key
        assert joined.tobytes() == value.tobytes(), key


@pytest.fixture(scope='module')
def default_corpus():
    return locale_corpus.build_corpus()


@pytest.fixture(scope='module')
def small_data():
    return translation.make_translation_data(
        {'batch_size': 16, 'vocab_size': 400, 'corpus_sizes': SMALL_SIZES, 'seed': 7}, verbose=False
    )


# -- bad input -------------------------------------------------------------------------


def test_mismatched_line_counts_name_both_files_and_counts(tmp_path):
    _write(tmp_path / 'train.en', ['a', 'b', 'c'])
    _write(tmp_path / 'train.de', ['x', 'y'])
    with pytest.raises(ValueError) as error:
        translation.make_translation_data(
            {'dataset': f'parallel:{tmp_path}', 'validation_split': '', 'test_split': ''}
        )
    message = str(error.value)
    assert str(tmp_path / 'train.en') in message and str(tmp_path / 'train.de') in message
    assert re.search(r'\b3 lines\b', message) and re.search(r'\b2 lines\b', message)


def test_missing_file_and_bad_utf8_are_named(tmp_path):
    _write(tmp_path / 'train.en', ['a'])
    _write(tmp_path / 'train.de', ['x'])
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / 'val.en'))):
        translation.make_translation_data({'dataset': f'parallel:{tmp_path}'})
    (tmp_path / 'val.en').write_bytes(b'good line\nbad \xff byte\n')
    _write(tmp_path / 'val.de', ['x', 'y'])
    with pytest.raises(ValueError, match=r'val\.en is not valid UTF-8: byte offset 14 \(line 2\)'):
        translation.read_lines(tmp_path / 'val.en')
    with pytest.raises(ValueError, match='unknown translation dataset'):
        translation.make_translation_data({'dataset': 'wmt'})


def test_tfds_without_tensorflow_gives_a_clear_error(tmp_path):
    try:
        import tensorflow  # noqa: F401

        pytest.skip('TensorFlow is installed: this run would try to download WMT')
    except ImportError:
        pass
    with pytest.raises(RuntimeError, match=r'TensorFlow and internet.*seqmodels\[tf\]'):
        translation.make_translation_data(
            {
                'dataset': 'tfds:wmt14_translate/de-en',
                'source_lang': 'de',
                'target_lang': 'en',
                'data_dir': str(tmp_path),
            }
        )


# -- the generated corpus --------------------------------------------------------------


def test_corpus_is_deterministic_sized_and_disjoint(default_corpus):
    assert {s: len(default_corpus[s]['en']) for s in locale_corpus.SPLITS} == {
        'train': 40_000,
        'val': 1_000,
        'test': 1_000,
    }
    assert {s: len(default_corpus[s]['de']) for s in locale_corpus.SPLITS} == {
        'train': 40_000,
        'val': 1_000,
        'test': 1_000,
    }
    # A second, independent build gives the same lines; val and test are drawn first,
    # so a smaller training split leaves them unchanged and is a prefix of the full one.
    again = locale_corpus.build_corpus({'train': 3000})
    assert again['val'] == default_corpus['val'] and again['test'] == default_corpus['test']
    assert again['train'] == {lang: lines[:3000] for lang, lines in default_corpus['train'].items()}
    for lang in locale_corpus.LANGUAGES:
        splits = [set(default_corpus[s][lang]) for s in locale_corpus.SPLITS]
        assert sum(map(len, splits)) == 42_000  # no repeats inside or across splits
    assert locale_corpus.build_corpus(SMALL_SIZES, seed=1) != locale_corpus.build_corpus(
        SMALL_SIZES, seed=2
    )


def test_corpus_has_verb_final_subordinate_clauses(default_corpus):
    en, de = default_corpus['train']['en'], default_corpus['train']['de']
    clauses = [(e, d) for e, d in zip(en, de) if ' that the ' in e and ' arrives at ' in e]
    assert len(clauses) > 50
    for e, d in clauses:
        # English: verb straight after the subject; German: verb closes the clause.
        assert re.search(r'that the \w+ arrives at \d', e), e
        assert re.search(r', dass (der|die|das) \w+ am \w+ um [\d:]+ Uhr ankommt\.$', d), d
    main = [(e, d) for e, d in zip(en, de) if re.fullmatch(r'The \w+ leaves at .*\.', e)]
    assert main and all(d.endswith(' ab.') for _, d in main)  # separable prefix at the end


def test_corpus_dates_weekdays_and_articles_agree(default_corpus):
    weekdays = ['Montag', 'Dienstag', 'Mittwoch', 'Donnerstag', 'Freitag', 'Samstag', 'Sonntag']
    months = [
        'Januar',
        'Februar',
        'März',
        'April',
        'Mai',
        'Juni',
        'Juli',
        'August',
        'September',
        'Oktober',
        'November',
        'Dezember',
    ]
    dates_seen = 0
    for e, d in zip(default_corpus['train']['en'], default_corpus['train']['de']):
        match = re.search(r' am (\w+), dem (\d+)\. (\w+) (\d{4})', d)
        if match:
            day = datetime.date(int(match[4]), months.index(match[3]) + 1, int(match[2]))
            assert weekdays[day.weekday()] == match[1], d
            assert e.startswith('The ') and f'{day.day}' in e and str(day.year) in e
            dates_seen += 1
    assert dates_seen > 500
    accusative = {
        'Zug': 'den',
        'Bus': 'den',
        'Fähre': 'die',
        'Sitzung': 'die',
        'Konzert': 'das',
        'Spiel': 'das',
        'Film': 'den',
        'Feier': 'die',
    }
    seen = 0
    for d in default_corpus['train']['de']:
        for article, noun in re.findall(r'auf (den|die|das) (\w+)\.', d):
            if noun in accusative:
                assert accusative[noun] == article, d
                seen += 1
    assert seen > 200


NUMBER_WORDS = [
    (0, 'zero', 'null'),
    (1, 'one', 'eins'),
    (7, 'seven', 'sieben'),
    (16, 'sixteen', 'sechzehn'),
    (17, 'seventeen', 'siebzehn'),
    (21, 'twenty-one', 'einundzwanzig'),
    (30, 'thirty', 'dreißig'),
    (67, 'sixty-seven', 'siebenundsechzig'),
    (100, 'one hundred', 'hundert'),
    (101, 'one hundred one', 'hunderteins'),
    (321, 'three hundred twenty-one', 'dreihunderteinundzwanzig'),
    (1000, 'one thousand', 'tausend'),
    (2025, 'two thousand twenty-five', 'zweitausendfünfundzwanzig'),
    (21_000, 'twenty-one thousand', 'einundzwanzigtausend'),
    (
        999_999,
        'nine hundred ninety-nine thousand nine hundred ninety-nine',
        'neunhundertneunundneunzigtausendneunhundertneunundneunzig',
    ),
    (1_000_000, 'one million', 'eine Million'),
    (2_500_000, 'two million five hundred thousand', 'zwei Millionen fünfhunderttausend'),
    (21_000_001, 'twenty-one million one', 'einundzwanzig Millionen eins'),
    (1_000_000_000, 'one billion', 'eine Milliarde'),
]

ORDINALS = [
    (1, 'first', 'erste'),
    (2, 'second', 'zweite'),
    (3, 'third', 'dritte'),
    (7, 'seventh', 'siebte'),
    (8, 'eighth', 'achte'),
    (12, 'twelfth', 'zwölfte'),
    (16, 'sixteenth', 'sechzehnte'),
    (20, 'twentieth', 'zwanzigste'),
    (21, 'twenty-first', 'einundzwanzigste'),
    (33, 'thirty-third', 'dreiunddreißigste'),
    (100, 'one hundredth', 'hundertste'),
    (103, 'one hundred third', 'hundertdritte'),
]


@pytest.mark.parametrize('n, english, german', NUMBER_WORDS)
def test_number_to_words(n, english, german):
    assert locale_corpus.number_to_words_en(n) == english
    assert locale_corpus.number_to_words_de(n) == german


@pytest.mark.parametrize('n, english, german', ORDINALS)
def test_ordinal_words(n, english, german):
    assert locale_corpus.ordinal_words_en(n) == english
    assert locale_corpus.ordinal_words_de(n) == german
    assert locale_corpus.ordinal_words_de(n, 'en') == german + 'n'  # "am dritten März"


def test_number_words_reject_out_of_range():
    for bad in (-1, 10**12):
        with pytest.raises(ValueError):
            locale_corpus.number_to_words_en(bad)
        with pytest.raises(ValueError):
            locale_corpus.number_to_words_de(bad)


# -- SentencePiece ---------------------------------------------------------------------


def test_tokenizer_ids_round_trip_and_determinism(small_data, tmp_path, monkeypatch):
    train = locale_corpus.build_corpus(SMALL_SIZES)['train']
    lines = train['en'] + train['de']
    tok = tokenizers.train_sentencepiece(lines, vocab_size=300, model_type='bpe')
    assert (
        tokenizers.train_sentencepiece(lines, vocab_size=300, model_type='bpe').model_proto
        == tok.model_proto
    )
    raw = spm.SentencePieceProcessor(model_proto=tok.model_proto)
    assert [raw.id_to_piece(i) for i in range(4)] == ['<pad>', '<unk>', '<s>', '</s>']
    assert (raw.pad_id(), raw.unk_id(), raw.bos_id(), raw.eos_id()) == (0, 1, 2, 3)
    held_out = (
        small_data.references('test')[:20]
        + small_data.sources('test')[:20]
        + ['Der Zug kommt um 15:45 Uhr an.', 'The price of the lamp fell by 4.5% in March.']
    )
    for tokenizer in (tok, small_data.tokenizer):
        for text in held_out:
            ids = tokenizer.encode(text)
            assert ids and not {PAD_ID, BOS_ID, EOS_ID} & set(ids)
            assert tokenizer.decode(ids) == text
            assert tokenizer.decode([BOS_ID] + ids + [EOS_ID, 57, 9, PAD_ID]) == text
    assert UNK_ID in tok.encode('☃')

    # Stored in the workdir and reloaded on resume, never retrained.
    path = tmp_path / 'spm.model'
    first = tokenizers.load_or_train_sentencepiece(path, lines, vocab_size=300, model_type='bpe')
    monkeypatch.setattr(tokenizers, 'train_sentencepiece', lambda *a, **k: 1 / 0)
    again = tokenizers.load_or_train_sentencepiece(path, lines, vocab_size=300, model_type='bpe')
    assert again.model_proto == first.model_proto == path.read_bytes()
    with pytest.raises(ValueError, match='fresh workdir'):
        tokenizers.load_or_train_sentencepiece(path, lines, vocab_size=301, model_type='bpe')


# -- batches ---------------------------------------------------------------------------


def test_train_batches_are_deterministic(small_data):
    again = translation.make_translation_data(
        ml_collections.ConfigDict(
            {
                'batch_size': 16,
                'vocab_size': 400,
                'corpus_sizes': SMALL_SIZES,
                'seed': 7,
                'learning_rate': 1e-3,
            }
        ),  # not a pipeline key: ignored
        verbose=False,
    )
    other_seed = translation.make_translation_data(
        {'batch_size': 16, 'vocab_size': 400, 'corpus_sizes': SMALL_SIZES, 'seed': 8}, verbose=False
    )
    steps = [0, 3, small_data.batches_per_epoch + 3, 1000]
    for step in steps:
        a, b = small_data.train_batch(step), again.train_batch(step)
        assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    assert any(
        not np.array_equal(small_data.train_batch(s)['src'], other_seed.train_batch(s)['src'])
        for s in steps
    )


@pytest.mark.parametrize('process_count', [2, 4])
def test_process_shards_concatenate_to_global_batch(small_data, process_count):
    for step in (0, 3, small_data.batches_per_epoch + 3):
        shards = [small_data.train_batch(step, p, process_count) for p in range(process_count)]
        assert all(s['src'].shape[0] == 16 // process_count for s in shards)
        assert_shards_concatenate(shards, small_data.train_batch(step))
    # validation: 90 lines, so its last batch is 10 lines and 6 dummy rows.
    for split in ('validation', 'test'):
        whole = list(small_data.eval_iterator(split))
        per_process = [
            list(small_data.eval_iterator(split, p, process_count)) for p in range(process_count)
        ]
        assert [len(batches) for batches in per_process] == [len(whole)] * process_count
        for k, batch in enumerate(whole):
            assert_shards_concatenate([batches[k] for batches in per_process], batch)


def test_bad_process_count_names_the_batch_size_key(small_data):
    with pytest.raises(ValueError, match='^batch_size=16 is not divisible by the 3 processes'):
        small_data.train_batch(0, 0, 3)
    with pytest.raises(ValueError, match='^batch_size=16 is not divisible by the 3 processes'):
        small_data.eval_batches('validation', 0, 3)
    eval12 = translation.TranslationData(
        dataclasses.replace(small_data.config, eval_batch_size=12), verbose=False
    )
    with pytest.raises(ValueError, match='^eval_batch_size=12 is not divisible by the 8 proc'):
        eval12.eval_batches('validation', 0, 8)


def test_train_batch_contents_match_the_text(small_data):
    data = small_data
    train_src, train_tgt = data.sources('train'), data.references('train')
    boundaries = set(data.bucket_boundaries)
    for step in range(6):
        batch = data.train_batch(step)
        ids = data.train_example_ids(step)
        length = batch['src'].shape[1]
        assert length in boundaries
        assert {k: v.dtype for k, v in batch.items()} == {
            'src': np.int32,
            'tgt_in': np.int32,
            'tgt_out': np.int32,
            'src_lengths': np.int32,
            'weights': np.float32,
        }
        for row, pair in enumerate(ids):
            if pair < 0:
                assert batch['weights'][row].sum() == 0
                continue
            line = data.train_kept_indices[pair]
            source = data.tokenizer.encode(train_src[line])
            target = data.tokenizer.encode(train_tgt[line])
            n, m = len(source), len(target)
            expected_src = np.zeros(length, np.int32)
            expected_src[: n + 1] = source + [EOS_ID]
            np.testing.assert_array_equal(batch['src'][row], expected_src)
            assert batch['src_lengths'][row] == n + 1
            expected_in = np.zeros(length, np.int32)
            expected_in[: m + 1] = [BOS_ID] + target
            expected_out = np.zeros(length, np.int32)
            expected_out[: m + 1] = target + [EOS_ID]
            np.testing.assert_array_equal(batch['tgt_in'][row], expected_in)
            np.testing.assert_array_equal(batch['tgt_out'][row], expected_out)
            np.testing.assert_array_equal(batch['weights'][row], (expected_out != 0))
            assert data.tokenizer.decode(batch['tgt_out'][row]) == train_tgt[line]


def test_one_epoch_covers_each_kept_pair_once_and_bucketing_saves_padding(small_data):
    data, kept = small_data, small_data.stats['train']['kept']
    epoch = data.batches_per_epoch
    batches = [data.train_batch(s) for s in range(epoch)]
    for e in range(2):
        seen = np.concatenate([data.train_example_ids(e * epoch + s) for s in range(epoch)])
        np.testing.assert_array_equal(np.sort(seen[seen >= 0]), np.arange(kept))
    orders = [
        [int(data.train_example_ids(e * epoch + s)[0]) for s in range(epoch)] for e in range(2)
    ]
    assert orders[0] != orders[1]  # each epoch has its own batch order
    assert len({b['src'].shape for b in batches}) <= len(data.bucket_boundaries)

    def padding(batches):
        real = sum(int((b['src'] != PAD_ID).sum() + b['weights'].sum()) for b in batches)
        total = sum(b['src'].size + b['tgt_out'].size for b in batches)
        return 1 - real / total

    bucketed = padding(batches)
    assert bucketed == pytest.approx(data.stats['padding_fraction'])
    # The baseline: the same pairs in random batches, each padded to its longest pair.
    src = [data.train_pair(i)[0] for i in range(kept)]
    tgt = [data.train_pair(i)[1] for i in range(kept)]
    order = np.random.default_rng(0).permutation(kept)
    baseline = []
    for i in range(0, kept, 16):
        rows = order[i : i + 16]
        length = max(max(len(src[r]), len(tgt[r])) + 1 for r in rows)
        baseline.append(
            translation.assemble_batch(
                [src[r] for r in rows] + [None] * (16 - len(rows)),
                [tgt[r] for r in rows] + [None] * (16 - len(rows)),
                length,
            )
        )
    assert bucketed < 0.6 * padding(baseline)
    assert data.stats['padding_fraction_unbucketed'] == pytest.approx(padding(baseline), abs=0.05)


def test_eval_batches_keep_line_order_and_cover_the_split(small_data):
    data = small_data
    for split, count in (('validation', SMALL_SIZES['val']), ('test', SMALL_SIZES['test'])):
        batches = list(data.eval_batches(split))
        assert len(batches) == -(-count // 16)
        ids = np.concatenate([b['example_ids'] for b in batches])
        np.testing.assert_array_equal(ids[:count], np.arange(count))
        assert (ids[count:] == -1).all() and all(b['src'].shape[0] == 16 for b in batches)
        decoded = [data.tokenizer.decode(row) for b in batches for row in b['tgt_out']]
        assert decoded[:count] == data.references(split)
        assert batches[-1]['weights'][count % 16 or 16 :].sum() == 0
    first = list(data.eval_iterator('val', num_examples=20))
    assert [int(i) for b in first for i in b['example_ids'] if i >= 0] == list(range(20))
    assert data.sources('test') == locale_corpus.build_corpus(SMALL_SIZES)['test']['en']


def test_length_filter_counts(tmp_path):
    # The bounds count EOS/BOS: a source of 7 pieces fits 8, a target of 8 fits 9.
    src = np.array([3, 0, 5, 8, 7, 0, 20, 4, 1])
    tgt = np.array([4, 2, 0, 3, 8, 0, 20, 4, 9])
    kept, counts = translation.length_filter(src, tgt, max_source_length=8, max_target_length=9)
    np.testing.assert_array_equal(kept, [0, 4, 7])
    assert counts == {
        'empty_source': 2,
        'empty_target': 1,
        'source_too_long': 2,
        'target_too_long': 1,
    }

    long = ' '.join(['word'] * 40)
    pairs = [
        ('a house', 'ein Haus'),
        ('', 'leer'),
        ('empty', ''),
        (long, 'lang'),
        ('long', long),
        ('a tree', 'ein Baum'),
    ] * 3
    _write(tmp_path / 'train.en', [s for s, _ in pairs])
    _write(tmp_path / 'train.de', [t for _, t in pairs])
    data = translation.make_translation_data(
        {
            'dataset': f'parallel:{tmp_path}',
            'validation_split': '',
            'test_split': '',
            'vocab_size': 60,
            'batch_size': 4,
            'max_source_length': 16,
            'max_target_length': 16,
        },
        tmp_path / 'work',
        verbose=False,
    )
    assert data.stats['train'] == {
        'pairs': 18,
        'kept': 6,
        'dropped_total': 12,
        'dropped': {
            'empty_source': 3,
            'empty_target': 3,
            'source_too_long': 3,
            'target_too_long': 3,
        },
    }
    np.testing.assert_array_equal(data.train_kept_indices, [0, 5, 6, 11, 12, 17])
    # The tokenizer saw the training split only, all of its 2 x 18 lines.
    assert '"num_sentences": 36' in (tmp_path / 'work/tokenizer/spm_joint.model.json').read_text()


def test_multi30k_line_counts():
    if not MULTI30K.is_dir():
        pytest.skip(f'Multi30k is absent: {MULTI30K} (it lives in ../shared/data beside the repo)')
    counts = {}
    for stem in ('train', 'val', 'test_2016_flickr'):
        en, de = translation.read_parallel(MULTI30K / f'{stem}.en', MULTI30K / f'{stem}.de')
        counts[stem] = len(en)
        assert all(en) and all(de)
    assert counts == {'train': 29_000, 'val': 1_014, 'test_2016_flickr': 1_000}

"""The shared fine-tuning data layer: labelled files, pre-training text, the embedded
cloze task and subword tokenizers with reserved special tokens."""

import pytest

from seqmodels.data import DataError, labeled, text_corpus, tokenizers
from seqmodels.data.labeled import Example
from seqmodels.data.text_corpus import Document


def write(path, text, encoding='utf-8'):
    path.write_bytes(text.encode(encoding) if isinstance(text, str) else text)
    return str(path)


# -- labelled files ---------------------------------------------------------------------


def test_line_formats_of_each_task_type():
    parse = labeled.parse_line
    # SST-2: the first space ends the label, the rest (spaces and all) is the text.
    assert parse(
        '1 a stirring , funny and finally transporting re-imagining', 'classification'
    ) == Example('1', ('a stirring , funny and finally transporting re-imagining',))
    assert parse('pos\tgreat film', 'classification') == Example('pos', ('great film',))
    assert parse('great film', 'classification', with_labels=False) == Example(
        None, ('great film',)
    )
    assert parse('yes\tA man sleeps.\tA person rests.', 'entailment') == Example(
        'yes', ('A man sleeps.', 'A person rests.')
    )
    assert parse('A b.\tC d.', 'similarity', with_labels=False).texts == ('A b.', 'C d.')
    assert parse('2\tctx\ta\tb\tc', 'multiple_choice') == Example('2', ('ctx', 'a', 'b', 'c'))
    assert parse('ctx\ta\tb', 'multiple_choice', with_labels=False).texts == ('ctx', 'a', 'b')


@pytest.mark.parametrize(
    'task_type, line, message',
    [
        ('classification', '1', 'no text'),
        ('classification', ' good film', 'no label'),
        ('classification', '   ', 'empty line'),
        ('entailment', '1\tonly a premise', '1 tab-separated text field'),
        ('similarity', '1\ta\tb\tc', '3 tab-separated text field'),
        ('entailment', '1\ta\t ', 'text field 2 is empty'),
        ('multiple_choice', '1\tctx\tonly one option', '2 tab-separated'),
        ('multiple_choice', '2\tctx\ta\tb', "label '2' is not an option index 0..1"),
        ('multiple_choice', 'b\tctx\ta\tb', "label 'b' is not an option index"),
    ],
)
def test_bad_lines_name_the_file_the_line_and_the_problem(tmp_path, task_type, line, message):
    good = {
        'classification': '0 fine',
        'entailment': '0\ta\tb',
        'similarity': '0\ta\tb',
        'multiple_choice': '0\tctx\ta\tb',
    }[task_type]
    path = write(tmp_path / 'train', f'{good}\n{good}\n{line}\n{good}\n')
    with pytest.raises(DataError) as error:
        labeled.read_labeled(path, task_type)
    assert str(error.value).startswith(f'{path}:3: {message}')


def test_file_level_errors(tmp_path):
    mixed = write(tmp_path / 'mc', '0\tctx\ta\tb\n1\tctx\ta\tb\tc\n')
    with pytest.raises(DataError, match=r'mc:2: 3 options, but line 1 has 2'):
        labeled.read_labeled(mixed, 'multiple_choice')
    latin1 = write(tmp_path / 'latin1', '0 ok\n1 café\n', encoding='latin-1')
    with pytest.raises(DataError, match=r'latin1:2: not UTF-8 text'):
        labeled.read_labeled(latin1, 'classification')
    with pytest.raises(DataError, match='holds no examples'):
        labeled.read_labeled(write(tmp_path / 'empty', ''), 'classification')
    with pytest.raises(DataError, match='does not exist'):
        labeled.read_labeled(str(tmp_path / 'nope'), 'classification')
    # A byte-order mark and Windows line ends are not part of the data.
    crlf = write(tmp_path / 'crlf', '\ufeff1 good\r\n0 bad\r\n')
    assert labeled.read_labeled(crlf, 'classification') == [
        Example('1', ('good',)),
        Example('0', ('bad',)),
    ]


def test_classes_come_from_the_training_split(tmp_path):
    write(tmp_path / 'train', '10 a\n2 b\n2 c\n')
    write(tmp_path / 'dev', '2 d\n10 e\n')
    write(tmp_path / 'test', '2 f\n3 g\n')
    data = labeled.load_labeled_data(
        f'labeled:{tmp_path}', 'classification', train_split='train', validation_split='dev'
    )
    assert data.class_names == ('2', '10')  # integers sort as numbers
    assert data.label_ids('train').tolist() == [1, 0, 0]
    assert data.label_ids('validation').tolist() == [0, 1]
    assert 'test' not in data.splits  # test_split '' = none
    with pytest.raises(DataError, match=r"test:2: label '3' is not a class of the training"):
        labeled.load_labeled_data(
            f'labeled:{tmp_path}', 'classification', train_split='train', test_split='test'
        )
    write(tmp_path / 'words', 'neutral a\ncontradiction b\nentailment c\n')
    words = labeled.load_labeled_data(f'labeled:{tmp_path}', 'classification', train_split='words')
    assert words.class_names == ('contradiction', 'entailment', 'neutral')
    write(tmp_path / 'one', 'yes a\nyes b\n')
    with pytest.raises(DataError, match=r"one: every example has the label 'yes'"):
        labeled.load_labeled_data(f'labeled:{tmp_path}', 'classification', train_split='one')
    with pytest.raises(DataError, match='missing does not exist'):
        labeled.load_labeled_data(
            f'labeled:{tmp_path}', 'classification', train_split='train', validation_split='missing'
        )


def test_normalize_lowers_every_text_field_never_the_label(tmp_path):
    write(tmp_path / 'train', 'Yes\tThe Cat.\tA Dog.\nNo\tX.\tY.\n')
    data = labeled.load_labeled_data(f'labeled:{tmp_path}', 'entailment', normalize='lower')
    assert data.examples('train') == [
        Example('Yes', ('the cat.', 'a dog.')),
        Example('No', ('x.', 'y.')),
    ]


def test_multiple_choice_classes_are_the_option_indices(tmp_path):
    write(tmp_path / 'train', '1\tctx\ta\tb\tc\n0\tctx\ta\tb\tc\n')
    write(tmp_path / 'dev', '1\tctx\ta\tb\n')
    data = labeled.load_labeled_data(f'labeled:{tmp_path}', 'multiple_choice')
    assert (data.class_names, data.num_options) == (('0', '1', '2'), 3)
    assert data.label_ids('train').tolist() == [1, 0]
    with pytest.raises(DataError, match=r'dev:1: 2 options, but .*train:1 has 3'):
        labeled.load_labeled_data(f'labeled:{tmp_path}', 'multiple_choice', validation_split='dev')


# -- pre-training text ------------------------------------------------------------------


def test_sentences_and_paragraphs():
    paragraph = (
        '"Well, Prince, so Genoa and Lucca are now just family estates." '
        'It was in July, 1805. Mr. Smith went to St. Petersburg! Did he? (Yes.) '
        'see e.g. this one.'
    )
    assert text_corpus.split_sentences(paragraph) == [
        '"Well, Prince, so Genoa and Lucca are now just family estates."',
        'It was in July, 1805.',
        'Mr. Smith went to St. Petersburg!',
        'Did he?',
        '(Yes.) see e.g. this one.',
    ]  # a lower-case word starts no sentence
    assert text_corpus.split_paragraphs('a b\nc\n\n\n  d  \ne\n') == ['a b c', 'd e']


def test_text_files_become_documents_of_whole_paragraphs(tmp_path):
    paragraphs = [f'Paragraph {i} starts. It ends here.' for i in range(10)]
    text = '\n\n'.join(p.replace(' It', '\nIt') for p in paragraphs)  # hard-wrapped
    documents = text_corpus.documents_from_text('f', text, 'lower', document_chars=60)
    # Paragraphs of 33 characters: each document gathers two (>= 60 characters).
    assert [len(d.sentences) for d in documents] == [4, 4, 4, 4, 4]
    assert [s for d in documents for s in d.sentences] == [
        s.lower() for p in paragraphs for s in text_corpus.split_sentences(p)
    ]
    assert documents[1].source == 'f:2'
    # Every k-th document validates; the embedded corpus also holds out a test split.
    docs = [Document(str(i), ('x',)) for i in range(10)]
    splits = text_corpus.split_documents(docs, 5, with_test=True)
    assert [d.source for d in splits['validation']] == ['4', '9']
    assert [d.source for d in splits['test']] == ['3', '8']
    assert len(splits['train']) == 6


def test_a_folder_is_its_txt_files_in_sorted_order(tmp_path):
    (tmp_path / 'b').mkdir()
    write(tmp_path / 'b' / '1.txt', 'Third file. Its text.')
    write(tmp_path / 'a.txt', 'First file.')
    write(tmp_path / 'a.md', 'Not a text file.')
    write(tmp_path / 'b.txt', 'Second file.')
    sources = [s for s, _ in text_corpus.read_text_path(str(tmp_path))]
    assert [s[len(str(tmp_path)) + 1 :] for s in sources] == ['a.txt', 'b.txt', 'b/1.txt']
    corpus = text_corpus.load_text_corpus(f'text:{tmp_path}', val_fraction=0.5)
    assert [d.text for d in corpus.train] == ['First file.', 'Third file. Its text.']
    assert [d.text for d in corpus.validation] == ['Second file.']
    (tmp_path / 'empty').mkdir()
    with pytest.raises(DataError, match=r'holds no \*\.txt files'):
        text_corpus.load_text_corpus(f'text:{tmp_path}/empty')
    with pytest.raises(DataError, match='unknown pre-training dataset'):
        text_corpus.load_text_corpus('wikipedia')


def test_a_tfds_name_that_does_not_exist_is_one_clear_error():
    # As far as an offline test goes: the catalog lookup fails before any download.
    with pytest.raises(DataError, match='No TFDS catalog dataset has that name'):
        text_corpus.load_text_corpus('tfds:no_such_dataset_here')


@pytest.fixture(scope='module')
def python_docs():
    return text_corpus.load_text_corpus('python_docs')


def test_the_embedded_corpus_is_prose_with_held_out_documents(python_docs):
    corpus = python_docs
    assert corpus.train[0].source == 'topic:assert'
    sentences = [s for d in corpus.train for s in d.sentences]
    assert len(sentences) > 10_000 and sum(len(d.text) for d in corpus.train) > 500_000
    assert not any(s.startswith('>>>') for s in sentences)
    assert (
        len(corpus.validation) == len(corpus.test) == pytest.approx(len(corpus.train) / 8, rel=0.01)
    )
    sources = [{d.source for d in corpus.split(s)} for s in ('train', 'validation', 'test')]
    assert not (sources[0] & sources[1] or sources[0] & sources[2] or sources[1] & sources[2])
    lower = text_corpus.load_text_corpus('python_docs', normalize='lower')
    assert lower.train[5].sentences == tuple(s.lower() for s in corpus.train[5].sentences)


# -- the embedded cloze task ------------------------------------------------------------


def test_cloze_examples_ask_for_the_true_next_sentence():
    documents = [
        Document(f'd{d}', tuple(f'Document {d} says thing number {s} here.' for s in range(9)))
        for d in range(6)
    ]
    examples = labeled.cloze_examples(documents, seed=3)
    assert len(examples) == 6 * 2  # windows of 3 + 1 sentences: 0-3 and 4-7
    for example in examples:
        context, *options = example.texts
        doc = context.split()[1]
        first = int(context.split()[5])
        assert context == ' '.join(
            f'Document {doc} says thing number {s} here.' for s in range(first, first + 3)
        )
        assert options[int(example.label)] == (
            f'Document {doc} says thing number {first + 3} here.'
        )
        others = [o for i, o in enumerate(options) if i != int(example.label)]
        assert len(set(others)) == 3 and all(o.split()[1] != doc for o in others)
    assert labeled.cloze_examples(documents, seed=3) == examples
    assert labeled.cloze_examples(documents, seed=4) != examples


def test_the_embedded_cloze_task_is_derived_from_the_held_out_splits(python_docs):
    data = labeled.load_labeled_data('python_docs_cloze', 'multiple_choice')
    assert data.class_names == ('0', '1', '2', '3') and data.num_options == 4
    assert len(data.examples('train')) > 1000 and len(data.examples('test')) > 100
    counts = [list(data.label_ids('train')).count(k) for k in range(4)]
    assert min(counts) > 0.2 * len(data.examples('train'))
    test_sentences = {s for d in python_docs.test for s in d.sentences}
    for example in data.examples('test')[:50]:
        assert example.texts[1 + int(example.label)] in test_sentences
    with pytest.raises(DataError, match='is a multiple_choice task'):
        labeled.load_labeled_data('python_docs_cloze', 'classification')


# -- subword tokenizers with reserved special tokens ------------------------------------

GPT_SPECIALS = ('<start>', '<delim>', '<extract>')


@pytest.fixture(scope='module')
def tokenizer(python_docs):
    sentences = [s for d in python_docs.train[:400] for s in d.sentences]
    return tokenizers.train_sentencepiece(
        sentences, vocab_size=500, model_type='bpe', special_tokens=GPT_SPECIALS
    )


def test_special_tokens_take_the_ids_after_eos_and_never_come_from_text(tokenizer):
    assert tokenizer.special_tokens == GPT_SPECIALS
    assert [tokenizer.special_id(t) for t in GPT_SPECIALS] == [4, 5, 6]
    ids = tokenizer.encode('Return <start> the [SEP] <extract> value.')
    assert not {4, 5, 6} & set(ids)
    assert tokenizer.decode([4] + tokenizer.encode('Return the value.') + [6]) == (
        'Return the value.'
    )
    with pytest.raises(KeyError, match=r"'\[CLS\]' is not a special token"):
        tokenizer.special_id('[CLS]')


def test_pieces_decode_one_at_a_time_with_their_spaces(tokenizer):
    text = 'Return the number of items in a container, or raise ValueError.'
    ids = tokenizer.encode(text)
    streamed = ''.join(tokenizer.decode_piece(i) for i in ids)
    assert streamed == ' ' + tokenizer.decode(ids)
    assert [tokenizer.decode_piece(i) for i in (0, 2, 3, 4)] == ['', '', '\n\n', '']
    vocab = tokenizers.StreamingVocab(tokenizer)
    assert vocab.encode('Return') == [tokenizers.EOS_ID] + tokenizer.encode('Return')
    assert vocab.encode('') == [tokenizers.EOS_ID]
    assert vocab.decode(ids) == streamed


def test_special_tokens_are_part_of_the_stored_record(tmp_path, monkeypatch):
    lines = ['A few words of text.', 'Some more words here.'] * 20
    path = tmp_path / 'spm.model'
    first = tokenizers.load_or_train_sentencepiece(
        path, lines, vocab_size=60, model_type='bpe', special_tokens=GPT_SPECIALS
    )
    assert first.special_tokens == GPT_SPECIALS
    with pytest.raises(ValueError, match='fresh workdir'):
        tokenizers.load_or_train_sentencepiece(
            path,
            lines,
            vocab_size=60,
            model_type='bpe',
            special_tokens=('[CLS]', '[SEP]', '[MASK]'),
        )
    # No special tokens: the record is the one written before they existed.
    plain = tmp_path / 'plain.model'
    tokenizers.load_or_train_sentencepiece(plain, lines, vocab_size=60, special_tokens=())
    monkeypatch.setattr(tokenizers, 'train_sentencepiece', lambda *a, **k: 1 / 0)
    assert tokenizers.load_or_train_sentencepiece(plain, lines, vocab_size=60).special_tokens == ()

"""The BERT driver end to end on a tiny model: pre-training logs the masked-LM and
next-sentence metrics, fine-tuning starts from exactly the pre-trained weights and
reaches >= 95% on a trivially separable labelled set, evaluate and predict read the
run, and config mistakes are one-line errors."""

import csv
import json
import os

import jax
import numpy as np
import pytest

from configs import bert as bert_config
from experiments import bert
from seqmodels import training
from seqmodels.tasks.bert import FinetuningTask
from seqmodels.training import ConfigError

WORDS = (
    'the cat sat on a mat while one dog ran in the park with its ball '
    'red blue green house tree river stone light dark'
).split()
A_WORDS, B_WORDS = WORDS[:8], WORDS[16:]


def tiny(config, **overrides):
    config.update(
        {
            **dict(
                tokenizer_vocab_size=64,
                seq_len=24,
                max_predictions_per_seq=6,
                batch_size=8,
                num_train_steps=4,
                warmup_steps=1,
                log_every_steps=2,
                eval_every_steps=0,
                checkpoint_every_steps=0,
                num_eval_batches=1,
            ),
            **overrides,
        }
    )
    # No dropout: its random bits take most of the train step's compile time on CPU.
    config.model.update(
        num_layers=1,
        d_model=16,
        num_heads=2,
        d_ff=32,
        max_len=24,
        dropout=0.0,
        attention_dropout=0.0,
    )
    return config


@pytest.fixture(scope='module')
def pretrained(tmp_path_factory):
    root = tmp_path_factory.mktemp('bert')
    rng = np.random.default_rng(0)
    paragraphs = [
        ' '.join(
            ' '.join(rng.choice(WORDS, rng.integers(4, 9))).capitalize() + '.' for _ in range(8)
        )
        for _ in range(100)
    ]
    (root / 'corpus.txt').write_text('\n\n'.join(paragraphs))
    config = tiny(
        bert_config.get_config('mini'), dataset=f'text:{root / "corpus.txt"}', val_fraction=0.5
    )
    bert.validate(config)
    workdir = str(root / 'pre')
    bert.train(config, workdir)
    return root, workdir


def labelled_dir(root, rng):
    directory = root / 'labelled'
    directory.mkdir(exist_ok=True)
    for split, n in (('train', 64), ('dev', 16), ('test', 40)):
        lines = [
            f'{"pos" if i % 2 else "neg"} {" ".join(rng.choice(A_WORDS if i % 2 else B_WORDS, 5))}'
            for i in range(n)
        ]
        (directory / split).write_text('\n'.join(lines) + '\n')
    return directory


def finetune_config(root, init_from, **overrides):
    config = tiny(
        bert_config.get_config('sst2'),
        normalize='none',
        init_from=init_from,
        dataset=f'labeled:{labelled_dir(root, np.random.default_rng(1))}',
        train_split='train',
        validation_split='dev',
        test_split='test',
        num_train_steps=100,
        warmup_steps=5,
        learning_rate=5e-3,
        seq_len=16,
        log_every_steps=50,
        num_eval_batches=0,
    )
    return training.apply_overrides(config, overrides)


@pytest.fixture(scope='module')
def finetuned(pretrained):
    root, pre = pretrained
    config = finetune_config(root, pre, validation_split='')  # no eval step to compile
    workdir = str(root / 'fine')
    bert.validate(config)
    bert.train(config, workdir)
    return workdir


def test_pretraining_logs_masked_lm_and_next_sentence_metrics(pretrained):
    _, workdir = pretrained
    records = [json.loads(line) for line in open(os.path.join(workdir, 'metrics.jsonl'))]
    last = records[-1]
    assert last['step'] == 4
    assert last['train/loss'] == pytest.approx(
        last['train/mlm_loss'] + last['train/nsp_loss'], rel=1e-5
    )
    # Near chance at the start: ln(vocabulary) for the masked LM, ln 2 for NSP.
    config = json.load(open(os.path.join(workdir, 'config.json')))
    assert abs(last['eval/mlm_loss'] - np.log(config['model']['vocab_size'])) < 1.0
    assert abs(last['eval/nsp_loss'] - np.log(2)) < 0.1
    again = bert.evaluate(workdir)
    assert again['mlm_loss'] == pytest.approx(last['eval/mlm_loss'], rel=1e-5)
    assert again['nsp_accuracy'] == pytest.approx(last['eval/nsp_accuracy'])


def test_finetuning_starts_from_exactly_the_pretrained_weights(pretrained, tmp_path):
    root, pre = pretrained
    config = finetune_config(root, pre)
    _, _, task = bert.build(config, str(tmp_path / 'run'))
    assert isinstance(task, FinetuningTask)
    params = jax.device_get(jax.jit(task.init_params)(jax.random.key(7)))
    saved = training.restore_params(pre)
    assert set(params) == set(saved) - {'mlm_head', 'nsp_head'} | {'classifier'}
    for path, leaf in jax.tree_util.tree_leaves_with_path(
        {k: v for k, v in params.items() if k != 'classifier'}
    ):
        expected = saved
        for key in path:
            expected = expected[key.key]
        np.testing.assert_array_equal(leaf, expected)
    assert params['classifier']['kernel'].shape == (16, 2)
    assert np.std(params['classifier']['kernel']) > 0  # a fresh head, not zeros
    # The tokenizer is the pre-trained run's, byte for byte.
    assert (tmp_path / 'run' / 'tokenizer.model').read_bytes() == open(
        os.path.join(pre, 'tokenizer.model'), 'rb'
    ).read()
    # load_weights=False: the same tokenizer and shapes, fresh weights.
    _, _, fresh_task = bert.build(
        finetune_config(root, pre, load_weights=False), str(tmp_path / 'fresh')
    )
    assert fresh_task.pretrained is None  # so init_params is the model's own init
    fresh = jax.eval_shape(fresh_task.init_params, jax.random.key(7))
    assert jax.tree.map(np.shape, fresh) == jax.tree.map(np.shape, params)


def test_tiny_model_fine_tunes_to_95_percent_then_evaluates_and_predicts(finetuned):
    result = bert.evaluate(finetuned)
    assert result['split'] == 'test' and result['accuracy'] >= 0.95
    confusion = result['confusion']
    assert confusion.sum() == 40 and np.trace(confusion) / 40 == result['accuracy']
    assert set(result['per_class_accuracy']) == {'neg', 'pos'}
    with open(result['csv']) as f:
        rows = list(csv.reader(f))
    assert rows[0] == ['true\\predicted', 'neg', 'pos'] and len(rows) == 3
    assert os.path.exists(result['png'])
    lines = [' '.join(A_WORDS[:5]), ' '.join(B_WORDS[:5]), ' '.join(A_WORDS[3:])]
    assert bert.predict(finetuned, lines) == ['pos', 'neg', 'pos']
    assert bert.predict(finetuned, []) == []


def test_finetuning_config_must_match_the_pretrained_run(pretrained, finetuned, tmp_path):
    root, pre = pretrained
    with pytest.raises(ConfigError, match='is a fine-tuning run'):
        bert.build(finetune_config(root, finetuned), str(tmp_path / 'z'))
    with pytest.raises(ConfigError, match='model.d_ff'):
        bert.build(finetune_config(root, pre, **{'model.d_ff': 64}), str(tmp_path / 'a'))
    with pytest.raises(ConfigError, match='normalize'):
        bert.build(finetune_config(root, pre, normalize='lower'), str(tmp_path / 'b'))
    with pytest.raises(FileNotFoundError, match='tokenizer.model'):
        bert.build(finetune_config(root, str(tmp_path)), str(tmp_path / 'c'))


@pytest.mark.parametrize(
    'overrides, key',
    [
        ({'seq_len': 600}, 'seq_len'),
        ({'init_from': '/somewhere'}, 'init_from'),
        ({'dataset': 'parallel:/x'}, 'dataset'),
        ({'mask_prob': 0.0}, 'mask_prob'),
        ({'max_predictions_per_seq': 129}, 'max_predictions_per_seq'),
        ({'normalize': 'upper'}, 'normalize'),
    ],
)
def test_bad_config_values_name_the_key(overrides, key):
    config = training.apply_overrides(bert_config.get_config('mini'), overrides)
    with pytest.raises(ConfigError, match=key):
        bert.validate(config)


@pytest.mark.parametrize(
    'overrides, key',
    [
        ({'task_type': 'nli'}, 'task_type'),
        ({'load_weights': False}, 'load_weights'),
        ({'init_from': '/no/such/run'}, 'init_from'),
    ],
)
def test_bad_finetuning_values_name_the_key(overrides, key):
    config = training.apply_overrides(bert_config.get_config('sst2'), overrides)
    with pytest.raises(ConfigError, match=key):
        bert.validate(config)

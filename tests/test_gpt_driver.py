"""The GPT experiment end to end on tiny models: pre-training, fine-tuning from exactly
the pre-trained weights (and the ablations), evaluate / predict / sample, and the
one-line errors of bad configs."""

import csv
import json
import os

import jax
import numpy as np
import pytest
from absl import flags
from absl.testing import flagsaver

from configs import gpt as gpt_config
from experiments import common, gpt
from seqmodels import evaluation, training
from seqmodels.reproduce import runner as claim_runner
from seqmodels.training import ConfigError

# A trivially separable task: every word but the shared ones tells the class.
SHARED = ('the', 'film', 'was', 'a', 'it', 'and')
CLASS_WORDS = {
    'pos': ('good', 'funny', 'music', 'story', 'actors'),
    'neg': ('bad', 'dull', 'long', 'plot', 'scene'),
}
TINY_MODEL = {'d_model': 32, 'num_heads': 2, 'd_ff': 64, 'num_layers': 1, 'max_len': 32}


def tiny(variant, **overrides):
    """A variant of configs/gpt.py at a size that trains in seconds (dotted overrides)."""
    values = {f'model.{k}': v for k, v in TINY_MODEL.items()}
    values.update(
        seq_len=32,
        tokenizer_vocab_size=120,
        batch_size=16,
        log_every_steps=10,
        num_eval_batches=2,
        sample_tokens=0,
    )
    return training.apply_overrides(gpt_config.get_config(variant), {**values, **overrides})


def sentence(rng, label):
    words = list(rng.choice(SHARED + CLASS_WORDS[label], size=rng.integers(4, 9)))
    words.insert(int(rng.integers(len(words))), rng.choice(CLASS_WORDS[label]))
    return ' '.join(words).capitalize() + '.'


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
    """A tiny pre-training run on a text file and a labelled folder (train/dev/test)."""
    root = tmp_path_factory.mktemp('gpt')
    rng = np.random.default_rng(0)
    text = '\n\n'.join(
        ' '.join(sentence(rng, rng.choice(['pos', 'neg'])) for _ in range(6)) for _ in range(150)
    )
    (root / 'book.txt').write_text(text)
    data = root / 'labeled'
    data.mkdir()
    for split, n in (('train', 320), ('dev', 48), ('test', 64)):
        labels = rng.choice(['pos', 'neg'], size=n)
        (data / split).write_text(''.join(f'{y} {sentence(rng, y)}\n' for y in labels))
    pre = str(root / 'pre')
    config = tiny(
        'cpu',
        dataset=f'text:{root}/book.txt',
        num_train_steps=100,
        eval_every_steps=100,
        checkpoint_every_steps=100,
        warmup_steps=10,
        learning_rate=3e-3,
    )
    gpt.validate(config)
    _, task, _, _ = gpt.build(config, pre)
    training.train_and_evaluate(config, pre, task)
    return root, pre, f'labeled:{data}'


def finetune_config(runs, **overrides):
    _, pre, dataset = runs
    values = dict(
        dataset=dataset,
        task_type='classification',
        init_from=pre,
        num_epochs=2.0,
        learning_rate=3e-3,
        warmup_steps=5,
        eval_every_steps=40,
        checkpoint_every_steps=40,
    )
    return tiny('cpu_finetune', **{**values, **overrides})


def test_finetuning_starts_from_exactly_the_pretrained_weights(runs):
    _, pre, _ = runs
    pretrained = training.restore_params(pre)
    config = finetune_config(runs)
    gpt.validate(config)
    model, task, data, tokenizer = gpt.build(config, str(runs[0] / 'check'))
    assert config.model.num_classes == 2 and data.class_names == ('neg', 'pos')
    assert tokenizer.model_proto == open(os.path.join(pre, 'tokenizer.model'), 'rb').read()
    params = jax.jit(task.init_params)(jax.random.key(7))
    assert set(params) == set(pretrained) | {'classifier'}
    for name in pretrained:
        assert jax.tree.all(jax.tree.map(np.array_equal, params[name], pretrained[name]))
    # The ablation: the pre-trained run's tokenizer and architecture, random weights; the
    # head of both is the same fresh initialisation.
    with config.unlocked():
        config.load_weights = False
    _, ablation, _, _ = gpt.build(config, str(runs[0] / 'check'))
    fresh = jax.jit(ablation.init_params)(jax.random.key(7))
    assert jax.tree.all(jax.tree.map(np.array_equal, params['classifier'], fresh['classifier']))
    assert not np.array_equal(
        fresh['token_embed']['embedding'], pretrained['token_embed']['embedding']
    )


def test_the_training_loss_is_l3_and_lm_coef_zero_drops_l1(runs):
    for lm_coef in (0.5, 0.0):
        config = finetune_config(runs, lm_coef=lm_coef)
        _, task, _, _ = gpt.build(config, str(runs[0] / 'check'))
        params = jax.jit(task.init_params)(jax.random.key(0))
        batch = task.train_batch(0, 0, 1)
        loss, aux = jax.jit(task.loss_fn, static_argnums=3)(params, batch, None, True, 0)
        lm_loss = float(aux.get('lm_loss', 0.0))
        assert ('lm_loss' in aux) == (lm_coef > 0) and lm_loss > 1.0 or lm_coef == 0
        assert float(loss) == pytest.approx(float(aux['task_loss']) + lm_coef * lm_loss)


@pytest.fixture(scope='module')
def finetuned(runs):
    workdir = str(runs[0] / 'finetuned')
    config = finetune_config(runs)  # L3 with the paper's λ = 0.5
    gpt.validate(config)
    _, task, _, _ = gpt.build(config, workdir)
    training.train_and_evaluate(config, workdir, task)
    return workdir


def test_a_tiny_gpt_fine_tunes_to_a_separable_task(finetuned, capsys):
    with open(os.path.join(finetuned, 'metrics.jsonl')) as f:
        final = [json.loads(line) for line in f][-1]
    # num_epochs=2 of 320 examples in batches of 16: 40 steps.
    assert final['step'] == 40 and final['eval/accuracy'] >= 0.95
    assert final['train/lm_loss'] > 0
    result = gpt.evaluate(finetuned)
    assert result['split'] == 'test' and result['count'] == 64
    assert result['accuracy'] >= 0.95
    # The confusion matrix counts the returned predictions; the csv holds it.
    expected = np.zeros((2, 2), int)
    np.add.at(expected, (result['labels'], result['predictions']), 1)
    np.testing.assert_array_equal(result['confusion'], expected)
    with open(result['csv']) as f:
        rows = list(csv.reader(f))
    assert rows[0] == ['true\\predicted', 'neg', 'pos']
    assert [[int(x) for x in r[1:]] for r in rows[1:]] == expected.tolist()
    assert result['per_class_accuracy']['pos'] == expected[1, 1] / expected[1].sum()
    # --mode=evaluate (and every classifier driver's) prints it as the JSON line that
    # experiments.reproduce reads.
    capsys.readouterr()
    evaluation.print_evaluation(result)
    printed = claim_runner._last_json_line(capsys.readouterr().out)
    assert printed == {
        'split': 'test',
        'examples': 64,
        'accuracy': result['accuracy'],
        'loss': result['loss'],
        'per_class_accuracy': result['per_class_accuracy'],
    }


def test_predict_writes_one_label_per_line(finetuned, runs, tmp_path):
    lines = ['The film was good and funny.', 'A dull plot, it was bad.', 'Good music.']
    # (every word of the first and third is a 'pos' word or a shared one)
    assert gpt.predict(finetuned, lines, 'x') == ['pos', 'neg', 'pos']
    with pytest.raises(common.DataError, match=r'in.txt:2: empty line'):
        gpt.predict(finetuned, ['good', ''], 'in.txt')
    with pytest.raises(common.UsageError, match='is a pre-training run'):
        gpt.predict(runs[1], lines, 'x')


def test_sample_mode_continues_the_prompt(runs, capsys):
    with flagsaver.flagsaver():
        flags.FLAGS.mark_as_parsed()
        with flagsaver.flagsaver(prompt='The film', num_tokens=8, temperature=0.0):
            gpt.sample_mode(runs[1])
    out = capsys.readouterr().out
    assert out.startswith('The film') and len(out) > len('The film\n')


def test_bad_configs_name_the_key(runs):
    def error(variant, **overrides):
        config = tiny(variant, **overrides)
        with pytest.raises((ConfigError, common.DataError)) as e:
            gpt.validate(config)
            gpt.build(config, str(runs[0] / 'bad'))
        return str(e.value)

    assert 'config.dataset' in error('cpu', dataset='wikipedia')
    assert 'config.seq_len=64' in error('cpu', seq_len=64)
    assert 'config.init_from' in error('cpu', init_from=runs[1])
    assert 'config.model.num_classes' in error('cpu', **{'model.num_classes': 2})
    assert 'config.task_type' in error('cpu_finetune', task_type='regression')
    ft = dict(dataset=runs[2], init_from=runs[1], task_type='classification')
    assert "config.normalize='lower'" in error('cpu_finetune', normalize='lower', **ft)
    message = error('cpu_finetune', **{'model.num_layers': 2}, **ft)
    assert 'config.model.num_layers=2 differs from the pre-trained model (1 in' in message
    message = error('cpu_finetune', **{'model.num_classes': 3}, **ft)
    assert 'does not match labeled:' in message
    assert 'no test or validation' not in message

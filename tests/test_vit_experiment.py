"""The ViT experiment end to end: it learns the digits; evaluate writes a confusion matrix
that agrees with the model's own predictions; attention maps and rollout follow Abnar &
Zuidema's formula; bad configs fail before compiling, naming the key."""

import csv
import json
import os
import subprocess
import sys

import jax
import matplotlib.image
import numpy as np
import pytest
from sklearn.datasets import load_digits

from configs import vit as vit_config
from experiments import common, vit
from seqmodels import analysis, models, training
from seqmodels.data import images
from seqmodels.data.images import DataError
from seqmodels.nn.transformer import stack_layer_params

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tiny_config(**overrides):
    """A ViT small enough to learn the 8x8 digits in a few seconds: 2x2 grid of 4x4
    patches, 2 layers, 32 wide."""
    config = vit_config.get_config('digits')
    config.model.update(
        patch_size=4, d_model=32, num_layers=2, num_heads=2, d_ff=64, image_size=0, num_classes=0
    )  # 0: from the data
    config.update(
        batch_size=64,
        num_train_steps=300,
        learning_rate=3e-3,
        warmup_steps=30,
        log_every_steps=100,
        eval_every_steps=300,
        checkpoint_every_steps=300,
    )
    config.update(overrides)
    return config


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    """(config, workdir) of a tiny ViT trained on the digits through the engine."""
    workdir = str(tmp_path_factory.mktemp('vit_run'))
    config = tiny_config()
    vit.validate(config)
    _, _, task = vit.build(config)
    training.train_and_evaluate(config, workdir, task)
    return config, workdir


def records(workdir):
    with open(os.path.join(workdir, 'metrics.jsonl')) as f:
        return [json.loads(line) for line in f]


def test_tiny_vit_learns_the_digits(trained):
    _, workdir = trained
    log = records(workdir)
    final = log[-1]
    assert final['step'] == 300
    assert final['eval/accuracy'] >= 0.90
    assert final['perf/examples_per_sec'] > 0
    assert {'train/loss', 'train/accuracy', 'train/learning_rate'} <= set(log[0])
    # model.image_size and num_classes were left at 0 and filled in from the data.
    resolved = json.load(open(os.path.join(workdir, 'config.json')))
    assert (resolved['model']['image_size'], resolved['model']['num_classes']) == (8, 10)


def test_evaluate_writes_a_confusion_matrix_of_the_predictions(trained):
    _, workdir = trained
    result = vit.evaluate(workdir)

    # Predictions recomputed here from sklearn's raw digits, the fixed test split and the
    # train-split pixel statistics (mean and std over every train pixel).
    digits = load_digits()
    train_idx, test_idx = images.digits_split()
    raw = digits.images[..., None].astype(np.float64)
    mean, std = raw[train_idx].mean(), raw[train_idx].std()
    inputs = ((raw[test_idx] - mean) / std).astype(np.float32)
    labels = digits.target[test_idx]
    config = common.load_run_config(workdir, 'vit')
    model = models.build_model(config.model)
    params = training.restore_params(workdir)
    predictions = np.asarray(jax.jit(model.apply)({'params': params}, inputs)).argmax(-1)

    expected = np.zeros((10, 10), int)
    for true, guess in zip(labels, predictions):
        expected[true, guess] += 1
    np.testing.assert_array_equal(result['confusion'], expected)
    assert result['confusion'].sum() == len(test_idx) == images.DIGITS_NUM_TEST
    assert result['accuracy'] == pytest.approx(np.trace(expected) / len(test_idx))
    # The same number the training run logged for its last checkpoint.
    assert result['accuracy'] == pytest.approx(records(workdir)[-1]['eval/accuracy'])

    png = matplotlib.image.imread(result['png'])
    assert png.ndim == 3 and min(png.shape[:2]) > 200 and png.std() > 0
    with open(result['csv'], newline='') as f:
        rows = list(csv.reader(f))
    assert rows[0][1:] == [str(c) for c in range(10)]
    np.testing.assert_array_equal(np.array([r[1:] for r in rows[1:]], int), expected)


def test_attention_mode_writes_pngs(trained):
    _, workdir = trained
    paths = vit.draw_attention(workdir, num_images=3)
    paths += vit.draw_attention(workdir, num_images=1, rollout=True)
    assert len(paths) == 4
    for path in paths:
        assert path.startswith(os.path.join(workdir, 'attention'))
        image = matplotlib.image.imread(path)
        assert image.ndim == 3 and image.std() > 0


def numpy_rollout(weights):
    """Abnar & Zuidema 2020, eq. by eq., in float64: per layer average the heads, add
    the identity, renormalise the rows; then R_1 = Â_1 and R_l = Â_l R_{l-1}."""
    weights = np.asarray(weights, np.float64)
    num_layers, batch, _, tokens, _ = weights.shape
    out = np.zeros((batch, tokens, tokens))
    for b in range(batch):
        rollout = np.eye(tokens)
        for layer in range(num_layers):
            a = weights[layer, b].mean(axis=0) + np.eye(tokens)
            a = a / a.sum(axis=1, keepdims=True)
            rollout = a @ rollout
        out[b] = rollout
    return out


def test_attention_rollout_matches_the_formula():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(3, 2, 4, 5, 5)) * 2  # layers, batch, heads, T, T
    weights = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    got = np.asarray(analysis.attention_rollout(weights))
    np.testing.assert_allclose(got, numpy_rollout(weights), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got.sum(-1), 1.0, rtol=1e-5)
    # The layers do not commute: reversing them changes the result.
    assert not np.allclose(got, numpy_rollout(weights[::-1]), atol=1e-3)


@pytest.mark.parametrize('pool', ['cls', 'gap'])
def test_patch_attention_reads_the_sown_weights(pool):
    model = models.ViT(
        image_size=8,
        patch_size=2,
        num_classes=3,
        d_model=16,
        num_layers=2,
        num_heads=2,
        d_ff=32,
        pool=pool,
        head_zero_init=False,
    )
    x = jax.random.normal(jax.random.key(1), (2, 8, 8, 1))
    params = jax.jit(model.init)(jax.random.key(0), x)['params']
    weights = np.asarray(jax.jit(analysis.attention_weights, static_argnums=0)(model, params, x))
    tokens = 16 + (pool == 'cls')
    assert weights.shape == (2, 2, 2, tokens, tokens)
    np.testing.assert_allclose(weights.sum(-1), 1.0, rtol=1e-5)
    # Scanned layers sow the same weights, already stacked.
    scanned = model.clone(scan_layers=True)
    np.testing.assert_allclose(
        jax.jit(analysis.attention_weights, static_argnums=0)(
            scanned, stack_layer_params(params), x
        ),
        weights,
        atol=1e-5,
    )

    rollout = numpy_rollout(weights)
    maps = analysis.patch_attention(model, params, x, rollout=True)
    assert maps.shape == (2, 4, 4)
    if pool == 'cls':
        np.testing.assert_allclose(maps.reshape(2, -1), rollout[:, 0, 1:], atol=1e-5)
        last = analysis.patch_attention(model, params, x)
        np.testing.assert_allclose(last.reshape(2, -1), weights[-1].mean(1)[:, 0, 1:], atol=1e-6)
    else:
        # No [class] token: the head reads the mean of all tokens, all of them patches.
        np.testing.assert_allclose(maps.reshape(2, -1), rollout.mean(1), atol=1e-5)
        np.testing.assert_allclose(maps.sum((1, 2)), 1.0, rtol=1e-5)
        np.testing.assert_allclose(analysis.patch_attention(model, params, x), maps)


def test_label_smoothing_loss():
    config = tiny_config(label_smoothing=0.2)
    data, model, task = vit.build(config)
    batch = task.train_batch(0, 0, 1)
    params = jax.jit(task.init_params)(jax.random.key(0))
    # A zero head (the fine-tuning init) would give uniform logits; make them differ.
    params['head']['kernel'] = jax.random.normal(jax.random.key(1), params['head']['kernel'].shape)
    loss, aux = jax.jit(task.loss_fn, static_argnums=3)(params, batch, jax.random.key(2), True, 0)
    logits = np.asarray(jax.jit(model.apply)({'params': params}, batch['images']), np.float64)
    log_p = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    k = logits.shape[-1]
    target = np.full_like(log_p, 0.2 / k)
    target[np.arange(len(target)), batch['labels']] += 0.8
    assert float(loss) == pytest.approx(-(target * log_p).sum(-1).mean(), rel=1e-5)
    assert aux['num_examples'] == config.batch_size


def test_bad_patch_size_is_named_before_compiling():
    config = tiny_config()
    config.model.patch_size = 3
    vit.validate(config)  # image_size 0: the data decides
    with pytest.raises(DataError, match=r'model\.patch_size=3'):
        vit.build(config)
    config.model.image_size = 8
    with pytest.raises(DataError, match=r'model\.patch_size=3'):
        vit.validate(config)


@pytest.mark.parametrize(
    'key,value,named',
    [
        ('num_heads', 3, 'model.d_model'),
        ('num_classes', 7, 'model.num_classes'),
        ('image_size', 16, 'model.image_size'),
        ('position_embedding', 'sincos', 'model.position_embedding'),
    ],
)
def test_bad_model_keys_are_named(key, value, named):
    config = tiny_config()
    config.model[key] = value
    with pytest.raises(training.ConfigError, match=named.replace('.', r'\.')):
        vit.validate(config)
        vit.build(config)


def test_cli_reports_a_bad_patch_size_in_one_line(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            '-m',
            'experiments.vit',
            '--config=configs/vit.py',
            f'--workdir={tmp_path}',
            '--config.model.patch_size=3',
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, 'JAX_PLATFORMS': 'cpu'},
    )
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1].startswith('error: model.patch_size=3')
    assert 'Traceback' not in proc.stderr


def test_config_variants():
    default = vit_config.get_config()
    assert default.dataset == 'digits' and not default.random_flip
    vit.validate(default)
    data, model, _ = vit.build(default)  # its explicit image_size and num_classes fit
    assert (
        (model.image_size, model.num_classes) == (8, 10) == (data.image_shape[0], data.num_classes)
    )
    assert default.optimizer == 'adamw' and default.schedule == 'warmup_cosine'
    small = vit_config.get_config('small')
    assert small.dataset == 'idx:/usr/share/datasets/fashion-mnist'
    assert 28 % small.model.patch_size == 0
    b32 = vit_config.get_config('b32').model
    assert (b32.patch_size, b32.d_model, b32.num_layers, b32.num_heads, b32.d_ff) == (
        32,
        768,
        12,
        12,
        3072,
    )
    h14 = vit_config.get_config('h14').model
    assert (h14.patch_size, h14.d_model, h14.num_layers, h14.d_ff) == (14, 1280, 32, 5120)
    ti16 = vit_config.get_config('ti16').model
    assert (ti16.d_model, ti16.num_heads) == (192, 3)
    for bad in ('b17', 'b0', 'x16', 'small2'):
        with pytest.raises(ValueError, match='unknown variant'):
            vit_config.get_config(bad)

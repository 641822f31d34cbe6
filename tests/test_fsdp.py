"""Meshes from the config, FSDP rules, FSDP = data parallelism, checkpoints across meshes."""

import json
import math
import os
import subprocess
import sys

import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from seqmodels import models, training
from seqmodels.training.sharding import fsdp_spec, parse_mesh

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(REPO, 'tests', 'scripts', 'fsdp_check.py')


def test_mesh_specs():
    assert parse_mesh('data:-1', 8) == {'data': 8}
    assert parse_mesh('data:-1,fsdp:2', 8) == {'data': 4, 'fsdp': 2}
    assert parse_mesh('fsdp:4, data:2', 8) == {'fsdp': 4, 'data': 2}
    assert parse_mesh('data:2,fsdp:-1') == {'data': 2, 'fsdp': -1}  # no device count yet
    for spec, problem in [
        ('data:3', 'multiply to 3, not to the 8 devices'),
        ('data:-1,fsdp:3', 'do not split'),
        ('model:2', "unknown axis 'model'"),
        ('data:-1,data:1', 'appears twice'),
        ('data:two', 'must be an integer'),
        ('data:0', 'positive or -1'),
        ('data:-1,fsdp:-1', 'at most one axis'),
    ]:
        with pytest.raises(ValueError, match=problem):
            parse_mesh(spec, 8)


def test_a_bad_mesh_is_one_config_error():
    config = training.default_config()
    config.batch_size, config.num_train_steps, config.mesh = 8, 1, 'data:2,fsdp:2'
    with pytest.raises(training.ConfigError) as error:
        training.validate_config(config, num_devices=8)
    assert str(error.value).startswith("config.mesh='data:2,fsdp:2': the axis sizes multiply")


def test_fsdp_splits_the_largest_divisible_axis_never_the_scanned_layer_axis():
    assert fsdp_spec(('params', 'ffn', 'wi', 'kernel'), (16, 64), 4) == P(None, 'fsdp')
    assert fsdp_spec(('params', 'ffn', 'wo', 'kernel'), (64, 16), 4) == P('fsdp', None)
    assert fsdp_spec(('params', 'out', 'bias'), (6,), 4) == P()  # nothing divides
    assert fsdp_spec(('params', 'w'), (16, 64), 1) == P()  # no fsdp axis
    assert fsdp_spec(('opt_state', '0', 'count'), (), 4) == P()
    # A scanned stack's leading axis is walked one layer at a time by the scan.
    assert fsdp_spec(('params', 'decoder', 'layers', 'wi', 'kernel'), (8, 16, 6), 4) == P(
        None, 'fsdp', None
    )
    assert fsdp_spec(('params', 'decoder', 'layers', 'norm', 'scale'), (8, 6), 4) == P()


def test_a_scanned_gpt_holds_about_one_fsdp_th_of_its_parameters_per_device():
    config = dict(
        name='gpt',
        vocab_size=64,
        max_len=16,
        d_model=32,
        num_heads=4,
        d_ff=128,
        num_layers=4,
        scan_layers=True,
    )
    model = models.build_model(config)
    params = jax.eval_shape(lambda key: models.init_params(config, model, key), jax.random.key(0))
    total = held = 0
    for path, leaf in jax.tree_util.tree_leaves_with_path(params):
        names = ('params',) + tuple(k.key for k in path)
        spec = fsdp_spec(names, leaf.shape, 8)
        size = math.prod(leaf.shape)
        total += size
        held += size // 8 if 'fsdp' in spec else size
        if 'layers' in names:
            assert spec == P() or spec[0] is None
    assert total / 8 <= held < 1.05 * total / 8  # only small vectors stay whole


@pytest.fixture(scope='module')
def fsdp_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp('fsdp')
    env = dict(os.environ, JAX_PLATFORMS='cpu', PYTHONPATH=REPO)
    env.pop('XLA_FLAGS', None)
    out = workdir / 'result.json'
    result = subprocess.run(
        [sys.executable, SCRIPT, '--workdir', str(workdir), '--out', str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(out.read_text())


def test_fsdp_gives_the_data_parallel_loss_curve(fsdp_run):
    data, fsdp = fsdp_run['data'], fsdp_run['fsdp']
    assert [r['step'] for r in fsdp] == [r['step'] for r in data] == list(range(1, 13))
    np.testing.assert_allclose(
        [r['train/loss'] for r in fsdp], [r['train/loss'] for r in data], rtol=1e-5
    )
    np.testing.assert_allclose(
        [r['train/grad_norm'] for r in fsdp], [r['train/grad_norm'] for r in data], rtol=1e-5
    )
    evals = [(r['eval/loss'], s['eval/loss']) for r, s in zip(fsdp, data) if 'eval/loss' in s]
    assert len(evals) == 2
    np.testing.assert_allclose(*zip(*evals), rtol=1e-5)
    # The loss moved: equal curves are not two flat lines.
    assert data[-1]['train/loss'] < 0.9 * data[0]['train/loss']


def test_each_device_holds_a_quarter_of_the_state_with_fsdp_4(fsdp_run):
    # Every leaf of the toy MLP has an axis that 4 divides; Adam's step count stays whole.
    ratio = fsdp_run['fsdp_device0_bytes'] / fsdp_run['fsdp_total_bytes']
    assert 0.25 <= ratio < 0.26


def test_checkpoints_restore_bitwise_onto_other_meshes(fsdp_run):
    assert fsdp_run['restore_data4_fsdp2'] is True
    assert fsdp_run['restore_one_device'] is True

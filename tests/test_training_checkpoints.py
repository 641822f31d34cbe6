"""Damaged checkpoints: resume skips them (moved aside), restore_params skips them."""

import glob
import logging
import os
import shutil
import sys

import jax
import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), 'scripts'))
from train_toy import ToyTask, toy_config

from seqmodels import training
from tests.conftest import assert_params_equal, read_metrics

# One compile per program across this module's runs.
pytestmark = pytest.mark.usefixtures('jax_cache_dir')


def _entries(workdir):
    return sorted(os.listdir(os.path.join(workdir, 'checkpoints')))


def _truncate(path):
    with open(path, 'r+b') as f:
        f.truncate(os.path.getsize(path) // 2)


def _data_file(workdir, step, item):
    """The largest file of the merged array store of `item` in checkpoint `step`."""
    files = glob.glob(os.path.join(workdir, 'checkpoints', str(step), item, 'd', '*'))
    assert files, f'no array data of {item} in step {step}: orbax layout changed'
    return max(files, key=os.path.getsize)


@pytest.fixture(scope='module')
def reference(tmp_path_factory):
    """12 uninterrupted steps with checkpoints at 4, 8 and 12 (all three kept)."""
    workdir = str(tmp_path_factory.mktemp('reference') / 'run')
    config = toy_config(eval_every_steps=0)
    state = training.train_and_evaluate(config, workdir, ToyTask(config))
    assert _entries(workdir) == ['12', '4', '8']
    return workdir, config, jax.tree.map(np.asarray, state.params)


@pytest.fixture
def copy(reference, tmp_path):
    workdir = str(tmp_path / 'run')
    shutil.copytree(reference[0], workdir)
    return workdir


def _warnings(caplog):
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and 'damaged' in r.getMessage()
    ]


@pytest.mark.parametrize('damage', ['truncate', 'delete'])
def test_damaged_latest_checkpoint_is_moved_aside_and_resume_is_bitwise(
    reference, copy, damage, caplog
):
    _, config, params = reference
    if damage == 'truncate':
        _truncate(_data_file(copy, 12, 'params'))
    else:
        os.remove(_data_file(copy, 12, 'train'))
        os.makedirs(os.path.join(copy, 'checkpoints', '12.damaged'))  # an earlier casualty
    moved = '12.damaged' if damage == 'truncate' else '12.damaged.1'
    with caplog.at_level(logging.WARNING):
        state = training.train_and_evaluate(config, copy, ToyTask(config))
    warnings = _warnings(caplog)
    assert len(warnings) == 1, warnings
    assert 'checkpoint step 12 is damaged' in warnings[0]
    assert moved in warnings[0] and 'resuming from step 8' in warnings[0]
    assert '\n' not in warnings[0]
    assert_params_equal(state.params, params)
    # Steps 9-12 were trained again and 12 saved anew beside the damaged one.
    assert moved in _entries(copy) and '12' in _entries(copy)
    assert_params_equal(training.restore_params(copy), params)
    strip = lambda rs: [{k: v for k, v in r.items() if not k.startswith('perf/')} for r in rs]
    assert strip(read_metrics(copy)) == strip(read_metrics(reference[0]))


def test_two_damaged_steps_resume_from_the_third(reference, copy, caplog):
    _, config, params = reference
    _truncate(_data_file(copy, 12, 'train'))
    os.remove(_data_file(copy, 8, 'params'))
    with caplog.at_level(logging.WARNING):
        state = training.train_and_evaluate(config, copy, ToyTask(config))
    warnings = _warnings(caplog)
    assert len(warnings) == 2 and all('resuming from step 4' in w for w in warnings)
    assert_params_equal(state.params, params)
    assert _entries(copy) == ['12', '12.damaged', '4', '8', '8.damaged']


def test_no_intact_checkpoint_is_a_clear_error_and_moves_nothing(reference, copy):
    _, config, _ = reference
    for step in (4, 8, 12):
        _truncate(_data_file(copy, step, 'params'))
    with pytest.raises(training.CheckpointError) as error:
        training.train_and_evaluate(config, copy, ToyTask(config))
    message = str(error.value)
    assert 'no intact checkpoint' in message and 'new --workdir' in message
    assert 'steps 12, 8, 4 all fail' in message and '\n' not in message
    assert error.value.exit_code == 1
    # A rerun must not silently restart from step 0: everything stays in place.
    assert _entries(copy) == ['12', '4', '8']


def test_checkpoint_of_another_model_is_not_damage(reference, copy):
    _, config, _ = reference
    config = toy_config(eval_every_steps=0, **{'model.hidden': 32})
    with pytest.raises(training.CheckpointError, match='does not fit .*shape') as error:
        training.train_and_evaluate(config, copy, ToyTask(config))
    assert 'step 12' in str(error.value) and 'config.json' in str(error.value)
    assert _entries(copy) == ['12', '4', '8']


def test_restore_params_skips_a_damaged_latest_step_without_moving_it(reference, copy, caplog):
    workdir = reference[0]
    _truncate(_data_file(copy, 12, 'params'))
    with caplog.at_level(logging.WARNING):
        params = training.restore_params(copy)
    assert_params_equal(params, training.restore_params(workdir, step=8))
    warnings = _warnings(caplog)
    assert len(warnings) == 1 and 'step 12' in warnings[0] and 'using step 8' in warnings[0]
    assert _entries(copy) == ['12', '4', '8']
    with pytest.raises(training.CheckpointError, match='step 12 .* is damaged'):
        training.restore_params(copy, step=12)
    assert_params_equal(
        training.restore_params(copy, step=4), training.restore_params(workdir, step=4)
    )

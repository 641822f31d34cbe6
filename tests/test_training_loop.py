"""The loop on one device, in process: outputs, determinism, resume, accumulation, NaNs."""

import io
import json
import math
import os
import sys

import jax
import numpy as np
import optax
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), 'scripts'))
from train_toy import ToyTask, toy_config

from seqmodels import training
from seqmodels.training.metrics import Progress
from tests.conftest import assert_params_equal, read_metrics

# One compile per program across this module's runs.
pytestmark = pytest.mark.usefixtures('jax_cache_dir')


def _numpy_eval(task, params):
    """Cross-entropy and accuracy of the MLP in float64 NumPy over the eval set."""
    p = jax.tree.map(lambda x: np.asarray(x, np.float64), params)
    losses, correct = [], []
    for batch in task.eval_batches(0, 1):
        h = np.maximum(batch['x'] @ p['Dense_0']['kernel'] + p['Dense_0']['bias'], 0)
        logits = h @ p['Dense_1']['kernel'] + p['Dense_1']['bias']
        z = logits - logits.max(-1, keepdims=True)
        log_probs = z - np.log(np.exp(z).sum(-1, keepdims=True))
        losses.extend(-log_probs[np.arange(len(batch['y'])), batch['y']])
        correct.extend(np.argmax(logits, -1) == batch['y'])
    return np.mean(losses), np.mean(correct)


@pytest.fixture(scope='module')
def reference(tmp_path_factory):
    """12 steps: log every step, eval at 6 and 12, checkpoints at 4, 8, 12 (keep 2)."""
    workdir = str(tmp_path_factory.mktemp('reference'))
    config = toy_config(keep_checkpoints=2)
    task = ToyTask(config)
    state = training.train_and_evaluate(config, workdir, task)
    return workdir, config, task, jax.tree.map(np.asarray, state.params)


def test_outputs_of_a_run(reference):
    workdir, _, task, params = reference
    records = read_metrics(workdir)
    assert [r['step'] for r in records] == list(range(1, 13))
    for r in records:
        assert {
            'train/loss',
            'train/accuracy',
            'train/learning_rate',
            'train/grad_norm',
            'perf/steps_per_sec',
            'perf/examples_per_sec',
        } <= set(r)
        assert r['perf/examples_per_sec'] > 0 and math.isfinite(r['train/loss'])
    assert 'perf/compile_time_sec' in records[0]
    assert not any('perf/compile_time_sec' in r for r in records[1:])
    assert [r['step'] for r in records if 'eval/loss' in r] == [6, 12]
    final = records[-1]
    assert final['eval/loss_bits'] == pytest.approx(final['eval/loss'] / math.log(2))
    # The engine's sum/weight reduction against a float64 forward pass.
    loss, accuracy = _numpy_eval(task, params)
    assert final['eval/loss'] == pytest.approx(loss, rel=1e-5)
    assert final['eval/accuracy'] == pytest.approx(accuracy)
    assert final['eval/loss'] < math.log(4) - 0.2  # it learned something
    with open(os.path.join(workdir, 'config.json')) as f:
        saved = json.load(f)
    assert saved['optimizer'] == 'adam' and saved['keep_checkpoints'] == 2
    assert saved['model']['dropout_rate'] == 0.3 and saved['grad_accum_steps'] == 1
    assert any(name.startswith('events.out.tfevents') for name in os.listdir(workdir))
    with open(os.path.join(workdir, 'samples.txt')) as f:
        samples = f.read()
    assert '=== step 6 summary ===' in samples and '=== step 12 summary ===' in samples
    steps = sorted(int(d) for d in os.listdir(os.path.join(workdir, 'checkpoints')) if d.isdigit())
    assert steps == [8, 12]
    assert_params_equal(training.restore_params(workdir), params)
    assert_params_equal(training.restore_params(workdir, step=12), params)
    earlier = training.restore_params(workdir, step=8)
    assert any(
        not np.array_equal(a, b) for a, b in zip(jax.tree.leaves(earlier), jax.tree.leaves(params))
    )
    with pytest.raises(FileNotFoundError, match='step 6 .*saved steps: 8, 12'):
        training.restore_params(workdir, step=6)


def test_same_config_same_run_bitwise(reference, tmp_path):
    _, config, task, params = reference
    state = training.train_and_evaluate(config, str(tmp_path), task)
    assert_params_equal(state.params, params)


def test_rerun_of_a_finished_workdir_changes_nothing(reference):
    workdir, config, task, params = reference
    before = read_metrics(workdir)
    state = training.train_and_evaluate(config, workdir, task)
    assert_params_equal(state.params, params)
    assert int(state.step) == 12 and read_metrics(workdir) == before


class _Interrupt(Exception):
    pass


class _InterruptedTask(ToyTask):
    def train_batch(self, step, process_index, process_count):
        if step == 9:
            raise _Interrupt
        return super().train_batch(step, process_index, process_count)


def test_interrupted_run_resumes_bitwise(reference, tmp_path):
    workdir, config, task, params = reference
    with pytest.raises(_Interrupt):
        training.train_and_evaluate(config, str(tmp_path), _InterruptedTask(config))
    # Steps 1..9 were logged but only 8 checkpointed: step 9 is logged again.
    assert [r['step'] for r in read_metrics(tmp_path)] == list(range(1, 10))
    state = training.train_and_evaluate(config, str(tmp_path), task)
    assert_params_equal(state.params, params)
    resumed = read_metrics(tmp_path)
    assert [r['step'] for r in resumed] == list(range(1, 13))
    strip = lambda rs: [{k: v for k, v in r.items() if not k.startswith('perf/')} for r in rs]
    assert strip(resumed) == strip(read_metrics(workdir))


def test_gradient_accumulation_equals_one_large_batch(tmp_path):
    runs = {}
    for k in (1, 4):
        # 32 rows: divisible by k x the devices, whatever this process has (<= 8).
        config = toy_config(
            grad_accum_steps=k,
            batch_size=32,
            num_train_steps=5,
            eval_every_steps=0,
            checkpoint_every_steps=0,
        )
        config.model.dropout_rate = 0.0
        state = training.train_and_evaluate(config, str(tmp_path / f'k{k}'), ToyTask(config))
        runs[k] = (jax.tree.map(np.asarray, state.params), read_metrics(tmp_path / f'k{k}'))
    (p1, r1), (p4, r4) = runs[1], runs[4]
    for a, b in zip(jax.tree.leaves(p1), jax.tree.leaves(p4)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    for a, b in zip(r1, r4):
        assert b['train/loss'] == pytest.approx(a['train/loss'], rel=1e-5)
        assert b['train/grad_norm'] == pytest.approx(a['train/grad_norm'], rel=1e-4)
        assert b['train/accuracy'] == pytest.approx(a['train/accuracy'])
    # Params moved far beyond the tolerance: the comparison has teeth.
    init = training.init_train_state(
        ToyTask(config).init_params, optax.identity(), config.seed
    ).params
    assert (
        max(
            np.abs(a - np.asarray(b)).max()
            for a, b in zip(jax.tree.leaves(p1), jax.tree.leaves(init))
        )
        > 0.05
    )


def test_non_finite_loss_stops_before_saving(tmp_path):
    config = toy_config(log_every_steps=0, eval_every_steps=0, checkpoint_every_steps=4)
    # Batch index 6 is poisoned: update 7 is the first bad one; it is noticed at
    # the step-8 checkpoint, which must not be written.
    with pytest.raises(training.NonFiniteError) as error:
        training.train_and_evaluate(config, str(tmp_path), ToyTask(config, nan_at_step=6))
    assert error.value.step == 7 and error.value.last_checkpoint == 4
    assert 'step 7' in str(error.value) and 'checkpoint is step 4' in str(error.value)
    checkpoints = sorted(int(d) for d in os.listdir(tmp_path / 'checkpoints') if d.isdigit())
    assert checkpoints == [4]
    params = training.restore_params(str(tmp_path))
    assert all(np.isfinite(x).all() for x in jax.tree.leaves(params))


class _StepLossTask(ToyTask):
    """Loss = the step it is handed, with zero gradients (params never move)."""

    def loss_fn(self, params, batch, rng, deterministic, step):
        loss, aux = super().loss_fn(params, batch, rng, deterministic, step)
        return 0.0 * loss + step.astype(np.float32), {**aux, 'step_seen': step}


@pytest.mark.parametrize('grad_accum_steps', [1, 2])
def test_loss_fn_is_handed_the_step_being_trained(tmp_path, grad_accum_steps):
    config = toy_config(
        grad_accum_steps=grad_accum_steps,
        num_train_steps=5,
        eval_every_steps=0,
        checkpoint_every_steps=0,
    )
    state = training.train_and_evaluate(config, str(tmp_path), _StepLossTask(config))
    records = read_metrics(tmp_path)
    # Record N holds update N - 1 (0-based), the same index train_batch received;
    # under accumulation both micro-batches see it, so their mean is that index too.
    assert [r['step'] for r in records] == [1, 2, 3, 4, 5]
    assert [r['train/loss'] for r in records] == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert [r['train/step_seen'] for r in records] == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert all(r['train/grad_norm'] == 0.0 for r in records)
    assert int(state.step) == 5


class _FakeTerminal(io.StringIO):
    def isatty(self):
        return True


def _visible_lines(text):
    """What a terminal keeps of each line: a carriage return rewrites it from the start."""
    return [line.split('\r')[-1].rstrip() for line in text.split('\n')]


def test_terminal_shows_each_evaluation_as_a_line_above_the_bar():
    terminal = _FakeTerminal()
    progress = Progress(10, 0, stream=terminal)
    progress.update(3)
    progress.report(3, {'train/loss': 1.5, 'perf/steps_per_sec': 9.0})
    progress.update(5)
    progress.report(
        5,
        {
            'train/loss': 1.25,
            'eval/loss': 1.234567,
            'perf/steps_per_sec': 8.0,
            'eval/bits_per_char': 1.7810612,
            'eval/bleu': 34.5,
        },
    )
    progress.close()
    text = terminal.getvalue()
    assert '5/10' in text  # the bar itself was drawn on this stream
    shown = [line for line in _visible_lines(text) if line.startswith('step ')]
    assert shown == ['step 5: eval/loss=1.2346 eval/bits_per_char=1.7811 eval/bleu=34.5']


def test_a_run_on_a_terminal_shows_its_evaluations(tmp_path, monkeypatch):
    config = toy_config(checkpoint_every_steps=0)
    terminal = _FakeTerminal()
    monkeypatch.setattr(sys, 'stderr', terminal)
    training.train_and_evaluate(config, str(tmp_path), ToyTask(config))
    lines = _visible_lines(terminal.getvalue())
    shown = {}
    for line in lines:
        if line.startswith('step ') and 'eval/' in line:
            step, values = line.split(': ', 1)
            shown[int(step.split()[1])] = dict(v.split('=') for v in values.split())
    records = {r['step']: r for r in read_metrics(tmp_path) if 'eval/loss' in r}
    assert sorted(shown) == sorted(records) == [6, 12]
    for step, values in shown.items():
        expected = {k: v for k, v in records[step].items() if k.startswith('eval/')}
        assert set(values) == set(expected)
        for name, value in values.items():
            assert float(value) == pytest.approx(expected[name], rel=1e-4)
    assert '[step 12] summary:' in lines  # the text samples too

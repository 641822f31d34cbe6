"""The synthetic tasks: generators against NumPy checks, the model, the gradient-flow
measurement against a hand-written BPTT, and the driver end to end on a tiny config."""

import json
import os

import jax
import numpy as np
import pytest

from configs import synthetic as synthetic_config
from experiments import synthetic
from seqmodels import gradient_flow, models, plots, training
from seqmodels.data import synthetic as data
from seqmodels.models.sequence_rnn import SequenceRNN


def test_adding_has_one_marker_per_half_and_the_marked_sum_as_target():
    for seq_len in (2, 11, 100):
        batch = data.adding(np.random.default_rng(seq_len), 200, seq_len)
        values, markers = batch['inputs'][..., 0], batch['inputs'][..., 1]
        assert batch['inputs'].shape == (200, seq_len, 2)
        assert ((values >= 0) & (values < 1)).all()
        assert set(np.unique(markers)) <= {0.0, 1.0}
        half = seq_len // 2
        assert (markers[:, :half].sum(1) == 1).all() and (markers[:, half:].sum(1) == 1).all()
        np.testing.assert_allclose(batch['targets'], (values * markers).sum(1), rtol=1e-6)
    # Both halves are covered: the positions are uniform there, not fixed.
    batch = data.adding(np.random.default_rng(0), 500, 10)
    positions = np.nonzero(batch['inputs'][..., 1])[1]
    assert set(positions) == set(range(10))


def test_copy_layout():
    seq_len, k = 15, 3
    batch = data.copy(np.random.default_rng(0), 50, seq_len, k)
    ids = batch['inputs'].argmax(-1)
    assert (batch['inputs'].sum(-1) == 1).all()  # one-hot
    assert ((ids[:, :k] >= 1) & (ids[:, :k] <= 8)).all()
    np.testing.assert_array_equal(batch['targets'], ids[:, :k] - 1)
    assert (ids[:, seq_len - k - 1] == 9).all()
    rest = np.delete(ids, list(range(k)) + [seq_len - k - 1], axis=1)
    assert (rest == 0).all()


def test_temporal_order_labels_match_the_symbols_and_positions():
    seq_len = 100
    batch = data.temporal_order(np.random.default_rng(0), 300, seq_len)
    letters = np.array(data.ORDER_ALPHABET)[batch['inputs'].argmax(-1)]
    assert (letters[:, 0] == 'E').all() and (letters[:, -1] == 'B').all()
    classes = {'XX': 0, 'XY': 1, 'YX': 2, 'YY': 3}
    for row, label in zip(letters, batch['targets']):
        t1, t2 = np.nonzero(np.isin(row, ['X', 'Y']))[0]
        assert 10 <= t1 <= 20 and 50 <= t2 <= 60  # H&S Experiment 6a's ranges
        assert np.isin(np.delete(row, [0, t1, t2, seq_len - 1]), list('abcd')).all()
        assert label == classes[row[t1] + row[t2]]
    assert set(batch['targets']) == {0, 1, 2, 3}


def test_batches_are_a_function_of_seed_and_step_and_eval_is_held_out():
    a = data.SyntheticData('adding', 20, 8, seed=3, num_eval_examples=10)
    b = data.SyntheticData('adding', 20, 8, seed=3, num_eval_examples=10)
    for step in (0, 5):
        np.testing.assert_array_equal(a.train_batch(step)['inputs'], b.train_batch(step)['inputs'])
    assert not np.array_equal(a.train_batch(0)['inputs'], a.train_batch(1)['inputs'])
    other_seed = data.SyntheticData('adding', 20, 8, seed=4, num_eval_examples=10)
    assert not np.array_equal(a.train_batch(0)['inputs'], other_seed.train_batch(0)['inputs'])
    # Process shards concatenate to the global batch.
    halves = [a.train_batch(2, p, 2)['targets'] for p in (0, 1)]
    np.testing.assert_array_equal(np.concatenate(halves), a.train_batch(2)['targets'])
    # The eval set: its own stream, the same whatever the batch size, none of the
    # training examples of the first steps.
    c = data.SyntheticData('adding', 20, 4, seed=3, num_eval_examples=10)
    np.testing.assert_array_equal(a.eval_set['inputs'], c.eval_set['inputs'])
    train = np.concatenate([a.train_batch(s)['inputs'] for s in range(50)])
    for example in a.eval_set['inputs']:
        assert not (train == example).all(axis=(1, 2)).any()
    batches = list(a.eval_batches())
    assert len(batches) == 2 and sum(b['weights'].sum() for b in batches) == 10
    np.testing.assert_array_equal(batches[1]['weights'], [1, 1, 0, 0, 0, 0, 0, 0])


def tiny_config(**overrides):
    return training.apply_overrides(synthetic_config.get_config('tiny'), overrides)


def test_bad_config_values_name_the_key():
    with pytest.raises(training.ConfigError, match=r'config\.task=.*must be one of'):
        synthetic.validate(tiny_config(task='parity'))
    with pytest.raises(training.ConfigError, match=r'config\.seq_len=20: .*>= 21'):
        synthetic.validate(tiny_config(task='copy', seq_len=20, **{'model.readout': 'every_step'}))
    with pytest.raises(training.ConfigError, match=r'config\.seq_len=9'):
        synthetic.validate(tiny_config(task='temporal_order', seq_len=9))
    with pytest.raises(training.ConfigError, match=r'config\.model\.readout'):
        synthetic.validate(tiny_config(task='copy', seq_len=30))
    with pytest.raises(training.ConfigError, match=r'config\.model\.num_outputs'):
        synthetic.validate(tiny_config(**{'model.num_outputs': 3}))
    with pytest.raises(training.ConfigError, match=r'config\.copy_length'):
        synthetic.validate(tiny_config(copy_length=0))


def test_every_variant_validates_and_builds():
    for variant in synthetic_config.VARIANTS:
        config = synthetic_config.get_config(variant)
        synthetic.validate(config)
        _, model, _ = synthetic.build(config)
        assert isinstance(model, SequenceRNN) and model.readout == data.READOUT[config.task]


def _model(cell, readout='last', num_outputs=1, features=2):
    model = SequenceRNN(
        num_outputs=num_outputs,
        input_features=features,
        embed_dim=4,
        hidden_size=6,
        cell=cell,
        readout=readout,
    )
    return model, models.init_params({'name': 'sequence_rnn'}, model, jax.random.key(0))


def test_the_final_output_depends_on_the_marked_values():
    model, params = _model('lstm')
    batch = data.adding(np.random.default_rng(0), 3, 8)
    grads = jax.jit(jax.grad(lambda x: model.apply({'params': params}, x).sum()))(batch['inputs'])
    marked = batch['inputs'][..., 1] == 1
    assert (np.abs(np.asarray(grads)[..., 0][marked]) > 1e-6).all()


def test_copy_outputs_every_step_and_scores_the_recall_steps():
    config = tiny_config(task='copy', seq_len=9, copy_length=2, **{'model.readout': 'every_step'})
    d, model, task = synthetic.build(config)
    params = task.init_params(jax.random.key(0))
    batch = next(d.eval_batches())
    outputs, metrics = jax.jit(
        lambda p, b: (model.apply({'params': p}, b['inputs']), task.eval_metrics(p, b))
    )(params, batch)
    assert outputs.shape == (8, 9, 8)
    assert float(metrics['accuracy'][1]) == 2 * batch['weights'].sum()
    recall = np.asarray(outputs[:, -2:])
    expected = (recall.argmax(-1) == batch['targets']).sum()
    assert float(metrics['accuracy'][0]) == expected


def _numpy_tanh_rnn_gradient_norms(params, inputs, targets):
    """An Elman RNN by hand, in float64: forward, then dL/dh_t back through time for
    L = (y_T - target)^2 per row, averaged over rows."""
    p = jax.tree.map(lambda x: np.asarray(x, np.float64), params)
    cell = p['rnn']['layers_0']['cell']
    u, b, w = cell['input']['kernel'], cell['input']['bias'], cell['recurrent']['kernel']
    x = inputs.astype(np.float64) @ p['project']['kernel'] + p['project']['bias']
    batch, length, hidden = x.shape[0], x.shape[1], w.shape[0]
    hs, h = [], np.zeros((batch, hidden))
    for t in range(length):
        h = np.tanh(x[:, t] @ u + b + h @ w)
        hs.append(h)
    y = hs[-1] @ p['head']['kernel'][:, 0] + p['head']['bias'][0]
    g = (2 * (y - targets))[:, None] * p['head']['kernel'][:, 0]  # dL/dh_T
    norms = [np.linalg.norm(g, axis=1).mean()]
    for t in range(length - 1, 0, -1):
        g = (g * (1 - hs[t] ** 2)) @ w.T  # dL/dh_{t-1}
        norms.append(np.linalg.norm(g, axis=1).mean())
    return np.array(norms[::-1]), y


def _squared_error(outputs, targets):
    return (outputs[:, 0] - targets) ** 2


def test_gradient_norms_match_a_hand_written_bptt():
    model, params = _model('rnn')
    # Smaller recurrent weights than at init, so the norms shrink a lot over the steps.
    params['rnn']['layers_0']['cell']['recurrent']['kernel'] *= 0.5
    batch = data.adding(np.random.default_rng(1), 5, 12)
    expected, y = _numpy_tanh_rnn_gradient_norms(params, batch['inputs'], batch['targets'])
    np.testing.assert_allclose(
        jax.jit(model.apply)({'params': params}, batch['inputs'])[:, 0], y, rtol=1e-5
    )
    norms = gradient_flow.hidden_gradient_norms(
        model, params, batch['inputs'], batch['targets'], _squared_error
    )
    np.testing.assert_allclose(norms, expected, rtol=1e-4)
    assert expected[-1] / expected[0] > 10


def test_lstm_gradient_norm_at_the_last_step_is_the_heads():
    model, params = _model('lstm')
    batch = data.adding(np.random.default_rng(2), 4, 7)
    norms = gradient_flow.hidden_gradient_norms(
        model, params, batch['inputs'], batch['targets'], _squared_error
    )
    y = np.asarray(jax.jit(model.apply)({'params': params}, batch['inputs'])[:, 0])
    head = np.linalg.norm(np.asarray(params['head']['kernel'][:, 0]))
    np.testing.assert_allclose(
        norms[-1], np.mean(np.abs(2 * (y - batch['targets']))) * head, rtol=1e-5
    )
    assert norms.shape == (7,) and (norms > 0).all()


def test_fit_decay_rate_and_plot(tmp_path):
    norms = 3.0 * 0.9 ** np.arange(20)[::-1]  # norms[-1] = 3 at the last step
    assert gradient_flow.fit_decay_rate(norms) == pytest.approx(np.log(0.9), rel=1e-9)
    summary = gradient_flow.summary(norms)
    assert summary['first_to_last_ratio'] == pytest.approx(0.9**19)
    path = plots.plot_gradient_flow({'a': norms, 'b': norms / 2}, str(tmp_path / 'flow.png'))
    with open(path, 'rb') as f:
        assert f.read(8) == b'\x89PNG\r\n\x1a\n'


def test_tiny_run_end_to_end(tmp_path, jax_cache_dir):
    # The persistent cache lets evaluate() reuse the training run's eval step.
    workdir = str(tmp_path / 'run')
    synthetic.train(tiny_config(), workdir)
    with open(os.path.join(workdir, 'metrics.jsonl')) as f:
        records = [json.loads(line) for line in f]
    final = records[-1]
    assert final['step'] == 4
    for key in ('mse', 'abs_error', 'solved_fraction', 'mean_predictor_mse', 'loss'):
        assert np.isfinite(final[f'eval/{key}']), key
    assert final['eval/mse'] == final['eval/loss']
    assert 0.05 < final['eval/mean_predictor_mse'] < 0.35  # 1/6 on average; 20 examples
    assert synthetic.evaluate(workdir)['eval/mse'] == pytest.approx(final['eval/mse'], rel=1e-6)
    report = synthetic.measure_gradient_flow(workdir, num_examples=5)
    assert set(report) == {'initialisation', 'trained'}
    assert len(report['trained']['norms']) == 10
    assert os.path.exists(os.path.join(workdir, 'gradient_flow.png'))

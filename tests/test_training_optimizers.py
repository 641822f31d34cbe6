"""Schedules and optimizers against their equations in float64 NumPy."""

import math

import jax
import numpy as np
import pytest

from seqmodels import training


def _config(**overrides):
    config = training.default_config()
    config.batch_size, config.num_train_steps = 8, 100
    config.model.d_model = 512
    for key, value in overrides.items():
        setattr(config, key, value)
    return training.validate_config(config)


def _evaluate(schedule, counts):
    return np.array([float(schedule(np.int32(c))) for c in counts])


def test_constant_schedule_with_linear_warmup():
    schedule = training.make_schedule(_config(learning_rate=0.1, warmup_steps=4))
    counts = np.arange(10)
    expected = 0.1 * np.minimum(1.0, (counts + 1) / 4)
    np.testing.assert_allclose(_evaluate(schedule, counts), expected, rtol=1e-6)
    assert _evaluate(training.make_schedule(_config(learning_rate=0.1)), [0, 50]) == pytest.approx(
        [0.1, 0.1]
    )


def test_warmup_cosine_schedule():
    lr, warmup, total, floor = 0.5, 10, 100, 0.1
    schedule = training.make_schedule(
        _config(schedule='warmup_cosine', learning_rate=lr, warmup_steps=warmup, min_lr_ratio=floor)
    )
    counts = np.arange(0, 121)
    progress = np.clip((counts - warmup) / (total - warmup), 0, 1)
    cosine = lr * (floor + (1 - floor) * 0.5 * (1 + np.cos(np.pi * progress)))
    expected = np.where(counts < warmup, lr * (counts + 1) / warmup, cosine)
    np.testing.assert_allclose(_evaluate(schedule, counts), expected, rtol=1e-5, atol=1e-7)
    # The landmarks: peak after warmup, half-way point, floor at the end and after.
    peak, middle, end, after = _evaluate(schedule, [warmup, 55, total, 120])
    assert peak == pytest.approx(lr)
    assert middle == pytest.approx(lr * (floor + (1 - floor) / 2), rel=1e-5)
    assert end == pytest.approx(lr * floor) and after == pytest.approx(lr * floor)


def test_warmup_linear_schedule():
    lr, warmup, total, floor = 0.5, 10, 100, 0.1
    schedule = training.make_schedule(
        _config(schedule='warmup_linear', learning_rate=lr, warmup_steps=warmup, min_lr_ratio=floor)
    )
    # By hand: warmup 0.5 * (count + 1) / 10 up to the peak on the 10th update (count 9),
    # then 0.5 * (0.1 + 0.9 * (1 - (count - 10) / 90)), and the floor 0.05 from count 100.
    landmarks = {
        0: 0.05,
        4: 0.25,
        9: 0.5,
        10: 0.5,
        28: 0.41,
        55: 0.275,
        91: 0.095,
        100: 0.05,
        120: 0.05,
    }
    np.testing.assert_allclose(
        _evaluate(schedule, list(landmarks)), list(landmarks.values()), rtol=1e-6
    )
    counts = np.arange(0, 121)
    progress = np.clip((counts - warmup) / (total - warmup), 0, 1)
    expected = np.where(
        counts < warmup, lr * (counts + 1) / warmup, lr * (floor + (1 - floor) * (1 - progress))
    )
    np.testing.assert_allclose(_evaluate(schedule, counts), expected, rtol=1e-5, atol=1e-7)


def test_warmup_linear_with_bert_settings_decays_to_zero():
    config = _config(schedule='warmup_linear', learning_rate=1e-4, warmup_steps=10_000)
    config.num_train_steps = 1_000_000
    schedule = training.make_schedule(config)
    got = _evaluate(schedule, [4_999, 9_999, 505_000, 990_100, 1_000_000])
    np.testing.assert_allclose(got, [5e-5, 1e-4, 5e-5, 1e-6, 0.0], rtol=1e-4, atol=1e-12)


def test_rsqrt_schedule_is_the_transformer_schedule():
    config = _config(schedule='rsqrt', learning_rate=1.0, warmup_steps=4000)
    schedule = training.make_schedule(config)
    counts = np.array([0, 1, 999, 3998, 3999, 4000, 9999, 99999])
    s = counts + 1.0
    expected = 512**-0.5 * np.minimum(s**-0.5, s * 4000**-1.5)
    np.testing.assert_allclose(_evaluate(schedule, counts), expected, rtol=1e-5)
    # Peak at step 4000 of the base model: 512^-0.5 * 4000^-0.5 ~= 6.99e-4.
    assert _evaluate(schedule, [3999])[0] == pytest.approx(6.988e-4, rel=1e-3)
    config.learning_rate = 2.0
    assert _evaluate(training.make_schedule(config), [3999])[0] == pytest.approx(
        2 * 6.988e-4, rel=1e-3
    )


# --- optimizers: three updates on fixed gradients, against NumPy float64 ---


def _params_and_grads():
    rng = np.random.default_rng(0)
    # `scale` is 2-D like a LayerNorm scale of scanned (stacked) layers: never decayed.
    params = {
        'kernel': rng.normal(size=(3, 2)),
        'bias': rng.normal(size=(2,)),
        'scale': rng.normal(size=(2, 3)),
    }
    grads = [{k: rng.normal(size=v.shape) for k, v in params.items()} for _ in range(3)]
    return params, grads


def _run_optax(config, params, grads):
    tx, _ = training.make_optimizer(config)
    p = jax.tree.map(lambda x: np.asarray(x, np.float32), params)
    state = tx.init(p)
    for g in grads:
        updates, state = tx.update(jax.tree.map(lambda x: np.asarray(x, np.float32), g), state, p)
        p = jax.tree.map(lambda a, u: a + u, p, updates)
    return jax.tree.map(np.asarray, p)


def _reference(name, params, grads, lr, **h):
    p = {k: v.copy() for k, v in params.items()}
    m = {k: np.zeros_like(v) for k, v in p.items()}
    v2 = {k: np.zeros_like(v) for k, v in p.items()}
    for t, g in enumerate(grads, start=1):
        if h.get('clip'):
            norm = math.sqrt(sum(np.sum(x**2) for x in g.values()))
            g = {k: x * min(1.0, h['clip'] / norm) for k, x in g.items()}
        for k in p:  # noqa: PLC0206 (four dicts indexed by the same key)
            if name == 'sgd':
                m[k] = h.get('momentum', 0.0) * m[k] + g[k]
                p[k] = p[k] - lr * m[k]
            elif name == 'rmsprop':
                v2[k] = h['decay'] * v2[k] + (1 - h['decay']) * g[k] ** 2
                p[k] = p[k] - lr * g[k] / np.sqrt(v2[k] + h['eps'])
            else:  # adam / adamw (Kingma & Ba 2015, Alg. 1; Loshchilov & Hutter 2019)
                m[k] = h['b1'] * m[k] + (1 - h['b1']) * g[k]
                v2[k] = h['b2'] * v2[k] + (1 - h['b2']) * g[k] ** 2
                m_hat, v_hat = m[k] / (1 - h['b1'] ** t), v2[k] / (1 - h['b2'] ** t)
                step = m_hat / (np.sqrt(v_hat) + h['eps'])
                if name == 'adamw' and k == 'kernel':
                    step = step + h['wd'] * p[k]
                p[k] = p[k] - lr * step
    return p


@pytest.mark.parametrize(
    'name, overrides, hyper',
    [
        ('sgd', {}, {}),
        ('sgd', {'momentum': 0.9}, {'momentum': 0.9}),
        ('sgd', {'grad_clip_norm': 0.5}, {'clip': 0.5}),
        ('rmsprop', {'rmsprop_decay': 0.8, 'rmsprop_eps': 1e-6}, {'decay': 0.8, 'eps': 1e-6}),
        (
            'adam',
            {'adam_b1': 0.8, 'adam_b2': 0.95, 'adam_eps': 1e-6},
            {'b1': 0.8, 'b2': 0.95, 'eps': 1e-6},
        ),
        ('adamw', {'weight_decay': 0.1}, {'b1': 0.9, 'b2': 0.999, 'eps': 1e-8, 'wd': 0.1}),
        ('adam', {'grad_clip_norm': 1.0}, {'b1': 0.9, 'b2': 0.999, 'eps': 1e-8, 'clip': 1.0}),
    ],
)
def test_optimizer_matches_reference(name, overrides, hyper):
    params, grads = _params_and_grads()
    config = _config(optimizer=name, learning_rate=0.05, **overrides)
    got = _run_optax(config, params, grads)
    want = _reference(name, params, grads, 0.05, **hyper)
    for key in params:
        np.testing.assert_allclose(got[key], want[key], rtol=2e-5, atol=2e-6, err_msg=key)
    # The updates are large enough that a wrong rule could not pass.
    assert max(np.abs(want[k] - params[k]).max() for k in params) > 0.01


def test_clipping_bounds_the_update_of_a_huge_gradient():
    params = {'w': np.zeros(4)}
    grads = [{'w': np.array([3e4, 4e4, 0.0, 0.0])}]  # norm 5e4
    got = _run_optax(_config(optimizer='sgd', learning_rate=1.0, grad_clip_norm=2.0), params, grads)
    np.testing.assert_allclose(got['w'], [-1.2, -1.6, 0.0, 0.0], rtol=1e-6)

"""Smoke test of benchmarks/run.py on tiny shapes (in one process, two repeats).

The benchmark compares against PyTorch, which CI does not install: its tests are
skipped there. The fused LSTM that the benchmarks led to is tested, without torch, in
test_recurrent.py.
"""

import math
import random

import pytest


@pytest.fixture(scope='module')
def results(tmp_path_factory):
    pytest.importorskip(
        'torch',
        reason='benchmarks compare against PyTorch (the `bench` extra), which is not installed',
    )
    from benchmarks import run

    path = tmp_path_factory.mktemp('bench') / 'corpus.txt'
    rng = random.Random(0)
    path.write_text(''.join(rng.choice('abcdefgh \n') for _ in range(2000)))
    # Every part but `compile`, whose code path (the engine's step) the *_jax parts run.
    return run.main(
        [
            '--quick',
            '--in-process',
            '--repeats',
            '2',
            '--steps',
            '1',
            '--warmup',
            '1',
            '--dataset',
            f'text:{path}',
            '--parts',
            'matmul,lstm_jax,lstm_torch,gpt_jax,gpt_torch,sample,translate',
        ]
    )


def test_every_figure_is_measured(results):
    for part in ('lstm_jax', 'lstm_torch', 'gpt_jax', 'gpt_torch'):
        r = results[part]
        assert len(r['times']) == 2 and all(t > 0 for t in r['times'])
        assert r['min'] <= r['tokens_per_s'] <= r['max']
        assert math.isfinite(r['loss'])
    for framework in ('jax', 'torch'):
        assert results['matmul'][framework]['gflops'] > 0
    assert results['sample']['cache_s'] > 0 and results['sample']['full_s'] > 0
    t = results['translate']
    for name in ('greedy', 'beam2'):  # the tiny translation config's beam
        assert t[name]['min'] <= t[name]['sentences_per_s'] <= t[name]['max']
        # Each row decodes at least one token (EOS) and never past the limit.
        assert t['batch'] <= t[f'{name}_tokens'] <= t['batch'] * t['max_decode_len']


def test_torch_twins_have_the_flax_models_parameters(results):
    # torch.nn.LSTM keeps two bias vectors per layer (b_ih, b_hh) where the Flax cell
    # has one: exactly num_layers * 4 * hidden more. The GPTs must match exactly.
    m = results['lstm_jax']['model']
    extra = m['num_layers'] * 4 * m['hidden_size']
    assert results['lstm_torch']['params'] == results['lstm_jax']['params'] + extra
    assert results['gpt_torch']['params'] == results['gpt_jax']['params']


def test_flop_counts_match_the_shapes(results):
    # Hand count for the quick LSTM (vocab V, embed 16, 2 x 32): per token, layer 1
    # 2*(16+32)*128, layer 2 2*(32+32)*128, softmax 2*32*V; x3 for forward+backward.
    v = results['lstm_jax']['model']['vocab_size']
    assert results['lstm_jax']['flops_per_token'] == 3 * (2 * 48 * 128 + 2 * 64 * 128 + 2 * 32 * v)
    g = results['gpt_jax']['model']
    d, layers, ctx = g['d_model'], g['num_layers'], 16
    weights = layers * (4 * d * d + 2 * d * g['d_ff']) + v * d
    assert results['gpt_jax']['flops_per_token'] == 6 * weights + 12 * layers * ctx * d


def test_cached_and_full_sampling_draw_the_same_tokens(results):
    # Same keys, same context: the KV cache must not change what is sampled.
    assert results['sample']['token_agreement'] == 1.0

"""Smoke tests of the benchmark scripts on tiny shapes.

benchmarks/run.py (in one process, two repeats) compares against PyTorch, which CI does
not install: its tests are skipped there. The fused LSTM that the benchmarks led to is
tested, without torch, in test_recurrent.py. benchmarks/gpu_bf16.py runs here on the
CPU in its --smoke mode.
"""

import json
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


@pytest.mark.slow
def test_gpu_bf16_smoke_writes_its_table(tmp_path):
    from benchmarks import gpu_bf16

    # Two settings that differ in all three keys, both models; unrolled layers compile
    # faster (the full --smoke run, ~50 s here, scans them as the GPU run does).
    results = gpu_bf16.main(
        ['--smoke', '--unroll', '--settings', 'none,remat', '--steps', '2', '--warmup', '1']
        + ['--out', str(tmp_path)]
    )
    with open(tmp_path / 'gpu_bf16.json') as f:
        assert json.load(f) == json.loads(json.dumps(results))
    table = (tmp_path / 'gpu_bf16.md').read_text().splitlines()
    header = next(i for i, line in enumerate(table) if line.startswith('| model |'))
    assert table[header] == '| ' + ' | '.join(gpu_bf16.COLUMNS) + ' |'
    rows = [line.split(' | ') for line in table[header + 2 :] if line.startswith('|')]
    assert len(rows) == 4 and all(len(r) == len(gpu_bf16.COLUMNS) for r in rows)

    measured = results['header']['matmul_bf16_flops']
    settings = {s.name: s for s in gpu_bf16.SETTINGS}
    for row in results['configurations']:
        setting = settings[row['setting']]
        assert (row['precision'], row['attention'], row['remat']) == (
            setting.precision,
            setting.attention,
            setting.remat,
        )
        # 'reference' refuses every fused call; 'auto' fuses them all (no attention dropout).
        fused = 0 if setting.attention == 'reference' else row['attention_calls']
        assert row['attention_calls'] > 0 and row['fused_attention_calls'] == fused
        assert not row['cudnn_attention']  # a CPU
        assert 0 < row['step_s_min'] <= row['step_s'] <= row['step_s_max']
        assert math.isfinite(row['loss']) and row['xla_estimate_bytes'] > 0
        assert row['peak_memory_bytes'] is None  # in one process, and a CPU has none
        assert row['mfu_measured_bf16'] == pytest.approx(
            row['model_flops_per_step'] / row['step_s'] / measured
        )
        assert row['mfu_datasheet_bf16'] is None  # no CPU in the table of peaks
    # GPT by hand: 3 passes x B*T tokens x (L layers x (QKVO and FFN matmuls + QK^T and
    # AV over T keys) + the tied head).
    gpt = next(r for r in results['configurations'] if r['model'] == 'gpt2_small')
    m = gpu_bf16.SMOKE_MODELS['gpt2_small']
    d, batch, length = m['d_model'], *gpu_bf16.SHAPES['gpt2_small'][1]
    layer = 2 * (4 * d * d + 2 * d * m['d_ff']) + 4 * length * d
    per_token = m['num_layers'] * layer + 2 * d * m['vocab_size']
    assert gpt['tokens_per_step'] == batch * length
    assert gpt['model_flops_per_step'] == 3 * batch * length * per_token

"""The char-LM experiment end to end on tiny configs: train, resume, evaluate, sample."""

import json
import math
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import char_lm as char_lm_config
from experiments import char_lm
from seqmodels import inference, models, training

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

TEXT = ''.join(
    f'line {i}: the quick brown fox jumps over the lazy dog {i % 7}\n' for i in range(300)
)


def tiny_config(tmp_path, variant='lstm', **overrides):
    path = tmp_path / 'corpus.txt'
    path.write_text(TEXT, encoding='utf-8')
    config = char_lm_config.get_config(variant)
    config.dataset = f'text:{path}'
    config.data_dir = str(tmp_path / 'tfds')
    config.seq_len = 16
    config.batch_size = 4
    config.num_train_steps = 6
    config.log_every_steps = 2
    config.eval_every_steps = 3
    config.checkpoint_every_steps = 3
    config.num_eval_batches = 2
    config.sample_chars = 20
    config.warmup_steps = 1
    if config.model.name == 'rnn_lm':
        config.model.hidden_size, config.model.embed_dim, config.model.num_layers = 16, 8, 1
    else:
        config.model.update(num_layers=2, d_model=16, num_heads=2, d_ff=32, max_len=16)
    config.update(overrides)
    return config


def test_train_writes_the_workdir_contract(tmp_path):
    config = tiny_config(tmp_path)
    workdir = str(tmp_path / 'run')
    char_lm.validate(config)
    data, model, task = char_lm.build(config, workdir)
    training.train_and_evaluate(config, workdir, task)

    records = [json.loads(line) for line in open(os.path.join(workdir, 'metrics.jsonl'))]
    assert [r['step'] for r in records] == [2, 3, 4, 6]
    assert {'train/loss', 'train/learning_rate', 'train/grad_norm', 'perf/tokens_per_sec'} <= set(
        records[0]
    )
    final = records[-1]
    assert final['eval/bits_per_char'] == pytest.approx(final['eval/loss'] / math.log(2))
    # An untrained model is near uniform over the vocabulary; training moved it.
    assert final['eval/loss'] < math.log(data.vocab_size)
    resolved = json.load(open(os.path.join(workdir, 'config.json')))
    assert resolved['model']['vocab_size'] == data.vocab_size == len(set(TEXT)) + 1
    assert os.path.exists(os.path.join(workdir, 'vocab.json'))
    assert 'sample' in open(os.path.join(workdir, 'samples.txt')).read()

    # --mode=evaluate on the finished run gives the final eval record again.
    mesh = training.make_mesh()
    params = training.restore_params(workdir)
    again = training.evaluate(task, training.make_eval_step(task, mesh), params, mesh)
    assert again['loss'] == pytest.approx(final['eval/loss'], rel=1e-6)


def test_scheduled_sampling_follows_the_step_the_engine_hands_in(tmp_path):
    # eps(step) = max(0, 1 - step): the true character at step 0, the model's own from 1 on.
    config = tiny_config(tmp_path, scheduled_sampling='linear', ss_k=1.0, ss_c=1.0)
    data, model, task = char_lm.build(config, str(tmp_path / 'run'))
    batch = task.train_batch(0, 0, 1)
    assert set(batch) == {'inputs', 'targets'}  # nothing step-dependent rides in the batch
    params = task.init_params(jax.random.key(0))
    rng = jax.random.key(1)
    loss_fn = jax.jit(task.loss_fn, static_argnames='deterministic')
    forced, _ = loss_fn(params, batch, rng, deterministic=True, step=0)
    scheduled, _ = loss_fn(params, batch, rng, deterministic=False, step=0)
    np.testing.assert_allclose(scheduled, forced, rtol=1e-6)
    # With eps = 0 every input after the first is the model's own sample: a different loss.
    own, _ = loss_fn(params, batch, rng, deterministic=False, step=3)
    assert abs(float(own) - float(forced)) > 1e-4


@pytest.mark.parametrize('variant', ['lstm', 'gpt'])
def test_greedy_sampler_matches_the_full_forward_pass(tmp_path, variant):
    """Streaming generation (RNN carry / GPT cache, refilled past max_len) picks the
    argmax of a full forward pass over everything generated so far."""
    config = tiny_config(tmp_path, variant)
    data, model, task = char_lm.build(config, str(tmp_path / 'run'))
    params = task.init_params(jax.random.key(3))
    # Random weights are nearly uniform; sharpen the output so argmax is not a near-tie.
    params = jax.tree.map(lambda x: 4 * x, params)
    sampler = inference.Sampler(model, params, data.vocab)
    prompt = 'line 1'
    text = sampler.generate(prompt, 30, jax.random.key(0), temperature=0.0)
    ids = list(data.vocab.encode(prompt + text))
    # Both models are causal, so padding every context on the right to one length
    # changes none of the logits we read, and the forward pass compiles once.
    width = len(ids)
    forward = jax.jit(lambda tokens: model.apply({'params': params}, tokens))
    for t, start in enumerate(
        _context_starts(len(prompt), len(ids), variant, model), start=len(prompt)
    ):
        context = ids[start:t]
        padded = jnp.array([context + [0] * (min(width, model_width(model)) - len(context))])
        logits = forward(padded)
        assert int(logits[0, len(context) - 1].argmax()) == ids[t], f'position {t}'


def model_width(model):
    return getattr(model, 'max_len', 10**9)


def _context_starts(prompt_len, total, variant, model):
    """Where the context of each generated position starts: 0 for the RNN; for GPT the
    cache holds at most max_len positions and is refilled with the last 3/4 of them."""
    if variant != 'gpt':
        return [0] * (total - prompt_len)
    keep = (3 * model.max_len) // 4
    start, index, starts = 0, prompt_len, []
    for t in range(prompt_len, total):
        starts.append(start)
        if index >= model.max_len:
            start, index = t + 1 - keep, keep
        else:
            index += 1
    return starts


def test_gpt_config_keys_are_validated(tmp_path):
    config = tiny_config(tmp_path, 'gpt')
    config.model.num_heads = 3
    with pytest.raises(training.ConfigError, match='model.d_model'):
        char_lm.validate(config)
    config = tiny_config(tmp_path, 'gpt', seq_len=32)
    with pytest.raises(training.ConfigError, match='seq_len'):
        char_lm.validate(config)
    config = tiny_config(tmp_path, scheduled_sampling='exponential', ss_k=2.0)
    with pytest.raises(training.ConfigError, match='scheduled_sampling'):
        char_lm.validate(config)


def test_bad_text_file_exits_nonzero_with_the_byte_offset(tmp_path):
    bad = tmp_path / 'latin1.txt'
    bad.write_bytes('abc Stra\xdfe'.encode('latin-1'))
    env = dict(os.environ, JAX_PLATFORMS='cpu')
    result = subprocess.run(
        [
            sys.executable,
            '-m',
            'experiments.char_lm',
            '--config=configs/char_lm.py',
            f'--workdir={tmp_path / "run"}',
            f'--config.dataset=text:{bad}',
            f'--config.data_dir={tmp_path / "tfds"}',
        ],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert str(bad) in result.stderr and 'byte offset 8' in result.stderr, result.stderr[-2000:]
    assert 'Traceback' not in result.stderr


def test_every_variant_validates_and_builds_the_model_it_describes():
    for variant in char_lm_config.VARIANTS:
        config = char_lm_config.get_config(variant)
        config.model.vocab_size = 65
        char_lm.validate(config)
        model = models.build_model(config.model)
        fields = {k: v for k, v in config.model.items() if k != 'name'}
        assert {k: getattr(model, k) for k in fields} == fields, variant
        assert type(model).__name__ == {'rnn_lm': 'RNNLM', 'gpt': 'GPT'}[config.model.name]
    with pytest.raises(training.ConfigError, match='unknown variant .* choose one of'):
        char_lm_config.get_config('transformerxl')

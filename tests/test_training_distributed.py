"""Subprocess runs of the toy task: 8 devices, 2 processes, SIGKILL and resume.

One uninterrupted single-device run is the reference for all three; every other
run uses the same config, so they must reach the same result (bitwise where the
devices are the same, to 1e-5 where reductions are split differently).
"""

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

SCRIPT = os.path.join(os.path.dirname(__file__), 'scripts', 'train_toy.py')
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# 24 steps, a checkpoint every 3 (so that kills often land in a save), eval at 12.
NUM_STEPS = 24
CONFIG = [f'num_train_steps={NUM_STEPS}', 'checkpoint_every_steps=3', 'eval_every_steps=12',
          'log_every_steps=1']
TIMEOUT = 120


def _env(cache_dir):
    env = dict(os.environ, JAX_PLATFORMS='cpu', PYTHONPATH=REPO,
               # One compile per program across all the runs of this module.
               JAX_COMPILATION_CACHE_DIR=str(cache_dir),
               JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS='0',
               JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES='0')
    env.pop('XLA_FLAGS', None)
    return env


def _command(workdir, out=None, *extra):
    command = [sys.executable, SCRIPT, '--workdir', str(workdir), *extra, '--config', *CONFIG]
    return command + (['--out', str(out)] if out else [])


def _run(env, workdir, out, *extra):
    result = subprocess.run(_command(workdir, out, *extra), env=env, capture_output=True,
                            text=True, timeout=TIMEOUT, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def _records(workdir):
    with open(os.path.join(workdir, 'metrics.jsonl')) as f:
        return [json.loads(line) for line in f]


@pytest.fixture(scope='module')
def cache_dir(tmp_path_factory):
    # Shared with test_training_loop.py: the single-device programs are the same.
    directory = tmp_path_factory.getbasetemp() / 'seqmodels_training_jax_cache'
    directory.mkdir(exist_ok=True)
    return directory


@pytest.fixture(scope='module')
def reference(tmp_path_factory, cache_dir):
    workdir = tmp_path_factory.mktemp('reference')
    out = workdir / 'params.npz'
    _run(_env(cache_dir), workdir / 'run', out)
    return dict(np.load(out)), _records(workdir / 'run')


def _assert_close_runs(reference, params, records):
    ref_params, ref_records = reference
    assert [r['step'] for r in records] == [r['step'] for r in ref_records]
    ref_loss = np.array([r['train/loss'] for r in ref_records])
    loss = np.array([r['train/loss'] for r in records])
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-5)
    evals = [(r['eval/loss'], s['eval/loss']) for r, s in zip(records, ref_records)
             if 'eval/loss' in s]
    assert len(evals) == 2
    np.testing.assert_allclose(*zip(*evals), rtol=1e-5)
    assert set(params) == set(ref_params)
    for key in params:
        np.testing.assert_allclose(params[key], ref_params[key], rtol=1e-5, atol=1e-6)


def test_eight_devices_give_the_single_device_loss_curve(reference, tmp_path, cache_dir):
    result = _run(_env(cache_dir), tmp_path / 'run', tmp_path / 'params.npz', '--devices', '8')
    assert 'DONE 8 1' in result.stdout
    _assert_close_runs(reference, dict(np.load(tmp_path / 'params.npz')),
                       _records(tmp_path / 'run'))


def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def test_two_processes_train_one_run(reference, tmp_path, cache_dir):
    """2 processes x 2 devices on loopback; each loads only its rows of each batch."""
    port = _free_port()
    procs = []
    try:
        for process_id in range(2):
            procs.append(subprocess.Popen(
                _command(tmp_path / 'run', tmp_path / 'params.npz', '--devices', '2',
                         '--coordinator', f'127.0.0.1:{port}', '--num_processes', '2',
                         '--process_id', str(process_id)),
                env=_env(cache_dir), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                text=True))
        deadline = time.time() + TIMEOUT
        outputs = [p.communicate(timeout=max(deadline - time.time(), 1)) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    for p, (stdout, stderr) in zip(procs, outputs):
        assert p.returncode == 0, stderr[-3000:]
        assert 'DONE 4 2' in stdout
    _assert_close_runs(reference, dict(np.load(tmp_path / 'params.npz')),
                       _records(tmp_path / 'run'))


def _run_until_killed(env, workdir, kill_after_batch, delay):
    """Starts a run; SIGKILLs it `delay` s after it asks for batch `kill_after_batch`."""
    proc = subprocess.Popen(_command(workdir, None, '--print_steps'), env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        deadline = time.time() + TIMEOUT
        for line in proc.stdout:
            if line.strip() == f'batch {kill_after_batch}' or line.startswith('DONE'):
                break
            assert time.time() < deadline, 'the run did not reach the kill point'
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    return proc.returncode


def test_sigkill_at_random_moments_then_resume_is_bitwise_exact(reference, tmp_path,
                                                                cache_dir):
    seed = random.randrange(10 ** 6)
    rng = random.Random(seed)
    env = _env(cache_dir)
    workdir = tmp_path / 'run'
    # Two kills, the second later than the first, each at a random batch and a
    # random delay (a few ms to ~a save's duration): some land inside a save.
    first = rng.randrange(2, NUM_STEPS // 2)
    kills = [(first, rng.uniform(0, 0.05)),
             (rng.randrange(first + 3, NUM_STEPS - 1), rng.uniform(0, 0.05))]
    for batch, delay in kills:
        _run_until_killed(env, workdir, batch, delay)
    _run(env, workdir, tmp_path / 'params.npz')
    ref_params, ref_records = reference
    params = dict(np.load(tmp_path / 'params.npz'))
    context = f'random seed {seed}, kills {kills}'
    for key in ref_params:
        np.testing.assert_array_equal(params[key], ref_params[key], err_msg=context)
    records = _records(workdir)
    assert [r['step'] for r in records] == list(range(1, NUM_STEPS + 1)), context
    strip = lambda rs: [{k: v for k, v in r.items() if not k.startswith('perf/')} for r in rs]
    assert strip(records) == strip(ref_records), context

"""Preemption: SIGTERM/SIGUSR1 save the step in flight, exit 75, and a rerun resumes bitwise."""

import os
import re
import signal
import subprocess
import sys
import threading

import jax
import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), 'scripts'))
from train_toy import ToyTask, toy_config

from seqmodels import training

SCRIPT = os.path.join(os.path.dirname(__file__), 'scripts', 'train_toy.py')
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NUM_STEPS = 20
OVERRIDES = {'num_train_steps': NUM_STEPS, 'checkpoint_every_steps': 8, 'eval_every_steps': 10}
TIMEOUT = 120


@pytest.fixture(scope='module')
def reference(jax_cache_dir, tmp_path_factory):
    """The uninterrupted run, in process (1 device, as the subprocesses)."""
    config = toy_config(**OVERRIDES)
    workdir = tmp_path_factory.mktemp('reference')
    state = training.train_and_evaluate(config, str(workdir), ToyTask(config))
    return jax.tree.map(np.asarray, state.params)


def _flat(params):
    return {
        jax.tree_util.keystr(path): leaf
        for path, leaf in jax.tree_util.tree_leaves_with_path(params)
    }


def _run(jax_cache_dir, workdir, *extra):
    env = dict(
        os.environ,
        JAX_PLATFORMS='cpu',
        PYTHONPATH=REPO,
        JAX_COMPILATION_CACHE_DIR=str(jax_cache_dir),
        JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS='0',
        JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES='0',
    )
    env.pop('XLA_FLAGS', None)
    command = [
        sys.executable,
        SCRIPT,
        '--workdir',
        str(workdir),
        *extra,
        '--config',
        *[f'{k}={v}' for k, v in OVERRIDES.items()],
    ]
    return subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def test_sigterm_saves_the_step_in_flight_exits_75_and_rerun_resumes_bitwise(
    reference, jax_cache_dir, tmp_path
):
    workdir, release = tmp_path / 'run', tmp_path / 'release'
    # train_batch(5) waits for `release`: the signal lands while update 5 (0-based)
    # is being prepared, so the state after it, step 6, is the one to save.
    proc = _run(
        jax_cache_dir,
        workdir,
        '--print_steps',
        '--hold_at_batch',
        '5',
        '--hold_until',
        str(release),
    )
    try:
        for line in proc.stdout:
            if line.strip() == 'batch 5':
                break
        else:
            pytest.fail(f'the run ended before batch 5: {proc.stderr.read()[-2000:]}')
        proc.send_signal(signal.SIGTERM)
        release.touch()
        _, stderr = proc.communicate(timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == training.EXIT_PREEMPTED == 75, stderr[-3000:]
    message = [line for line in stderr.splitlines() if line.startswith('Preempted: ')]
    assert len(message) == 1, stderr[-3000:]
    assert 'SIGTERM' in message[0] and 'rerun the same command' in message[0]
    saved = int(re.search(r'after step (\d+)', message[0]).group(1))
    assert saved == 6
    entries = os.listdir(workdir / 'checkpoints')
    assert sorted(int(d) for d in entries if d.isdigit()) == [6]  # 8 was never reached
    # Requeued: the same command, run to the end.
    out = tmp_path / 'params.npz'
    proc = _run(jax_cache_dir, workdir, '--out', str(out))
    _, stderr = proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == 0, stderr[-3000:]
    params = dict(np.load(out))
    expected = _flat(reference)
    assert set(params) == set(expected)
    for key, value in expected.items():
        np.testing.assert_array_equal(params[key], value, err_msg=key)


class _SignalAt(ToyTask):
    """Sends this process `signum` while batch `step` is being prepared."""

    def __init__(self, config, signum, step):
        super().__init__(config)
        self.signum, self.step = signum, step

    def train_batch(self, step, process_index, process_count):
        if step == self.step:
            os.kill(os.getpid(), self.signum)
        return super().train_batch(step, process_index, process_count)


def test_sigusr1_in_process_raises_preempted_and_restores_the_handlers(
    reference, jax_cache_dir, tmp_path
):
    received = []
    previous = signal.signal(signal.SIGUSR1, lambda signum, frame: received.append(signum))
    try:
        config = toy_config(**OVERRIDES)
        with pytest.raises(training.Preempted) as error:
            training.train_and_evaluate(config, str(tmp_path), _SignalAt(config, signal.SIGUSR1, 9))
        # Batch 9 was being prepared: update 9 completes, the state after it is step 10.
        assert error.value.step == 10 and error.value.exit_code == 75
        assert 'SIGUSR1' in str(error.value)
        assert received == []  # the engine's handler took it...
        os.kill(os.getpid(), signal.SIGUSR1)
        assert received == [signal.SIGUSR1]  # ...and handed the old one back
        state = training.train_and_evaluate(config, str(tmp_path), ToyTask(config))
    finally:
        signal.signal(signal.SIGUSR1, previous)
    for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(reference)):
        np.testing.assert_array_equal(np.asarray(a), b)


def test_outside_the_main_thread_no_handler_is_installed(jax_cache_dir, tmp_path):
    seen = {}

    class Probe(ToyTask):
        def train_batch(self, step, process_index, process_count):
            seen[step] = signal.getsignal(signal.SIGTERM)
            return super().train_batch(step, process_index, process_count)

    config = toy_config(num_train_steps=2, eval_every_steps=0, checkpoint_every_steps=0)
    before = signal.getsignal(signal.SIGTERM)
    thread = threading.Thread(
        target=training.train_and_evaluate, args=(config, str(tmp_path), Probe(config))
    )
    thread.start()
    thread.join(TIMEOUT)
    assert seen and all(handler is before for handler in seen.values())
    # In the main thread it is the engine's own while training, and the old one after.
    training.train_and_evaluate(config, str(tmp_path / 'main'), Probe(config))
    assert all(handler is not before for handler in seen.values())
    assert signal.getsignal(signal.SIGTERM) is before

"""Batches made ahead on a thread: same data, errors in order, waits measured, resume bitwise."""

import os
import sys
import threading
import time

import jax
import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), 'scripts'))
from train_toy import ToyTask, toy_config

from seqmodels import training
from tests.conftest import read_metrics
from seqmodels.training.prefetch import Prefetcher


class _Recorder:
    """make_batch that records which steps it was asked for, optionally slowly."""

    def __init__(self, delay=0.0, fail_at=None):
        self.calls, self.delay, self.fail_at = [], delay, fail_at

    def __call__(self, step):
        self.calls.append(step)
        time.sleep(self.delay)
        if step == self.fail_at:
            raise KeyError(f'no batch {step}')
        return {'step': step}


def test_batches_come_in_order_and_the_thread_stays_depth_ahead():
    make = _Recorder()
    with Prefetcher(make, 3, 20, depth=2) as prefetcher:
        assert prefetcher.get(3) == {'step': 3}
        time.sleep(0.3)
        # Two queued (4, 5) and at most one more made and waiting for room.
        assert 5 <= max(make.calls) <= 6
        assert [prefetcher.get(s)['step'] for s in range(4, 20)] == list(range(4, 20))
    assert make.calls == list(range(3, 20))
    with pytest.raises(ValueError, match='asked for step 5'):
        Prefetcher(make, 3, 20, depth=0).get(5)


def test_an_error_arrives_with_its_step_not_before():
    for depth in (0, 2):
        with Prefetcher(_Recorder(fail_at=3), 0, 10, depth) as prefetcher:
            assert [prefetcher.get(s)['step'] for s in range(3)] == [0, 1, 2]
            with pytest.raises(KeyError, match='no batch 3'):
                prefetcher.get(3)


def test_prefetching_hides_the_time_batches_take():
    waits = {}
    for depth in (0, 2):
        with Prefetcher(_Recorder(delay=0.05), 0, 8, depth) as prefetcher:
            for step in range(8):
                prefetcher.get(step)
                time.sleep(0.06)  # the step's own work, longer than a batch
            waits[depth] = prefetcher.wait_seconds
    assert waits[0] >= 8 * 0.05
    assert waits[2] < 3 * 0.05  # the first batch, and scheduling noise


def test_close_stops_a_thread_blocked_on_a_full_queue():
    before = {t.ident for t in threading.enumerate()}
    prefetcher = Prefetcher(_Recorder(), 0, 1000, depth=1)
    prefetcher.get(0)
    time.sleep(0.1)
    prefetcher.close()
    started = [t for t in threading.enumerate() if t.ident not in before]
    assert not [t for t in started if t.name == 'seqmodels-prefetch']


# --------------------------------------------------------------------------- #
# In the training loop.


def _strip(records):
    return [{k: v for k, v in r.items() if not k.startswith('perf/')} for r in records]


class _Interrupt(Exception):
    pass


class _StopsAtBatch(ToyTask):
    """Slow batches (so the thread is ahead of the loop) and an error at batch `stop`."""

    def __init__(self, config, stop=None, delay=0.0):
        super().__init__(config)
        self.stop, self.delay = stop, delay

    def train_batch(self, step, process_index, process_count):
        time.sleep(self.delay)
        if step == self.stop:
            raise _Interrupt
        return super().train_batch(step, process_index, process_count)


def test_prefetched_run_equals_the_unprefetched_one_and_resumes_bitwise(jax_cache_dir, tmp_path):
    base = dict(num_train_steps=12, checkpoint_every_steps=4, eval_every_steps=6)
    reference = training.train_and_evaluate(
        toy_config(**base, prefetch=0), str(tmp_path / 'plain'), ToyTask(toy_config())
    )
    config = toy_config(**base, prefetch=3)
    with pytest.raises(_Interrupt):
        training.train_and_evaluate(
            config, str(tmp_path / 'run'), _StopsAtBatch(config, stop=9, delay=0.01)
        )
    # The error surfaced when the loop reached batch 9, not when the thread made it.
    assert [r['step'] for r in read_metrics(tmp_path / 'run')] == list(range(1, 10))
    state = training.train_and_evaluate(config, str(tmp_path / 'run'), ToyTask(config))
    for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(reference.params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert _strip(read_metrics(tmp_path / 'run')) == _strip(read_metrics(tmp_path / 'plain'))


def test_the_wait_for_batches_is_logged(jax_cache_dir, tmp_path):
    config = toy_config(
        num_train_steps=6,
        log_every_steps=3,
        eval_every_steps=0,
        checkpoint_every_steps=0,
        prefetch=0,
    )
    training.train_and_evaluate(config, str(tmp_path), _StopsAtBatch(config, delay=0.05))
    records = read_metrics(tmp_path)
    # A toy step takes milliseconds; each batch 50 ms made between steps.
    assert all(0.5 < r['perf/data_wait_fraction'] <= 1.0 for r in records)


def test_prefetch_must_be_a_non_negative_integer():
    with pytest.raises(training.ConfigError, match='prefetch'):
        training.validate_config(toy_config(prefetch=-1))

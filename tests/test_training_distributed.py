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

import jax
import numpy as np
import pytest

SCRIPT = os.path.join(os.path.dirname(__file__), 'scripts', 'train_toy.py')
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# 24 steps, a checkpoint every 3 (so that kills often land in a save), eval at 12;
# batches made 2 ahead on a thread (which must not change a resumed run's data).
NUM_STEPS = 24
CONFIG = [
    f'num_train_steps={NUM_STEPS}',
    'checkpoint_every_steps=3',
    'eval_every_steps=12',
    'log_every_steps=1',
    'prefetch=2',
]
TIMEOUT = 120


def _env(cache_dir):
    env = dict(
        os.environ,
        JAX_PLATFORMS='cpu',
        PYTHONPATH=REPO,
        # One compile per program across all the runs of this module.
        JAX_COMPILATION_CACHE_DIR=str(cache_dir),
        JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS='0',
        JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES='0',
    )
    env.pop('XLA_FLAGS', None)
    return env


def _command(workdir, out=None, *extra):
    command = [sys.executable, SCRIPT, '--workdir', str(workdir), *extra, '--config', *CONFIG]
    return command + (['--out', str(out)] if out else [])


def _run(env, workdir, out, *extra):
    result = subprocess.run(
        _command(workdir, out, *extra),
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
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
    evals = [
        (r['eval/loss'], s['eval/loss']) for r, s in zip(records, ref_records) if 'eval/loss' in s
    ]
    assert len(evals) == 2
    np.testing.assert_allclose(*zip(*evals), rtol=1e-5)
    assert set(params) == set(ref_params)
    for key in params:
        np.testing.assert_allclose(params[key], ref_params[key], rtol=1e-5, atol=1e-6)


def test_eight_devices_give_the_single_device_loss_curve(reference, tmp_path, cache_dir):
    result = _run(_env(cache_dir), tmp_path / 'run', tmp_path / 'params.npz', '--devices', '8')
    assert 'DONE 8 1' in result.stdout
    _assert_close_runs(
        reference, dict(np.load(tmp_path / 'params.npz')), _records(tmp_path / 'run')
    )


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
            procs.append(
                subprocess.Popen(
                    _command(
                        tmp_path / 'run',
                        tmp_path / 'params.npz',
                        '--devices',
                        '2',
                        '--coordinator',
                        f'127.0.0.1:{port}',
                        '--num_processes',
                        '2',
                        '--process_id',
                        str(process_id),
                    ),
                    env=_env(cache_dir),
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                )
            )
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
    _assert_close_runs(
        reference, dict(np.load(tmp_path / 'params.npz')), _records(tmp_path / 'run')
    )


def _run_until_killed(env, workdir, kill_after_batch, delay):
    """Starts a run; SIGKILLs it `delay` s after it asks for batch `kill_after_batch`."""
    proc = subprocess.Popen(
        _command(workdir, None, '--print_steps'),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
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


def test_sigkill_at_random_moments_then_resume_is_bitwise_exact(reference, tmp_path, cache_dir):
    seed = random.randrange(10**6)
    rng = random.Random(seed)
    env = _env(cache_dir)
    workdir = tmp_path / 'run'
    # Two kills, the second later than the first, each at a random batch and a
    # random delay (a few ms to ~a save's duration): some land inside a save.
    first = rng.randrange(2, NUM_STEPS // 2)
    kills = [
        (first, rng.uniform(0, 0.05)),
        (rng.randrange(first + 3, NUM_STEPS - 1), rng.uniform(0, 0.05)),
    ]
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


# --------------------------------------------------------------------------- #
# Which runs a driver joins: flags, JAX_* variables, schedulers.


def test_a_single_task_joins_nothing():
    from seqmodels.training import detect_cluster

    assert detect_cluster(environ={}) is None
    # One SLURM task (as one array trial is), one Open MPI rank: nothing to join.
    slurm = {
        'SLURM_JOB_ID': '7',
        'SLURM_PROCID': '0',
        'SLURM_NTASKS': '1',
        'SLURM_STEP_NODELIST': 'n1',
        'SLURM_LOCALID': '0',
    }
    assert detect_cluster(environ=slurm) is None
    assert (
        detect_cluster(environ={'OMPI_COMM_WORLD_SIZE': '1', 'OMPI_COMM_WORLD_RANK': '0'}) is None
    )
    assert detect_cluster(num_processes=1, environ={}) is None
    # The step's task count decides, not the allocation's: sbatch --ntasks=4 runs its
    # batch script as one task.
    assert (
        detect_cluster(environ={**slurm, 'SLURM_NTASKS': '4', 'SLURM_STEP_NUM_TASKS': '1'}) is None
    )


def test_schedulers_and_flags_describe_the_run():
    from seqmodels.training import Cluster, detect_cluster

    slurm = {
        'SLURM_JOB_ID': '7',
        'SLURM_PROCID': '3',
        'SLURM_NTASKS': '4',
        'SLURM_STEP_NODELIST': 'n[1-2]',
        'SLURM_LOCALID': '1',
    }
    # The coordinator is left to JAX, which takes the first host of the node list.
    assert detect_cluster(environ=slurm) == Cluster('SLURM', 4, 3, None)
    ompi = {
        'OMPI_COMM_WORLD_SIZE': '2',
        'OMPI_COMM_WORLD_RANK': '1',
        'OMPI_MCA_orte_hnp_uri': '1.0;tcp://10.0.0.1:4000',
    }
    assert detect_cluster(environ=ompi) == Cluster('Open MPI', 2, 1, None)
    tpu = {'TPU_WORKER_HOSTNAMES': 'h0,h1,h2,h3', 'TPU_WORKER_ID': '2'}
    assert detect_cluster(environ=tpu) == Cluster('TPU', None, None, None)
    assert detect_cluster(environ={'TPU_WORKER_HOSTNAMES': 'localhost'}) is None
    env = {'JAX_COORDINATOR_ADDRESS': 'h0:1234', 'JAX_NUM_PROCESSES': '2', 'JAX_PROCESS_ID': '1'}
    assert detect_cluster(environ=env) == Cluster('JAX_NUM_PROCESSES', 2, 1, 'h0:1234')
    # Flags win over variables, variables over the scheduler.
    assert detect_cluster('h9:1', 3, 0, environ=env) == Cluster('flags', 3, 0, 'h9:1')
    assert detect_cluster(environ={**slurm, **env}).num_processes == 2
    assert detect_cluster(num_processes=1, environ=slurm) is None


@pytest.mark.parametrize(
    'args, environ, message',
    [
        (('h:1', None, 0), {}, 'need --num_processes'),
        ((None, 2, 0), {}, 'needs --coordinator_address'),
        (('h:1', 2, None), {}, 'needs --process_id'),
        (('h:1', 2, 2), {}, 'must lie in [0, 2)'),
        ((None, 0, None), {}, 'must be >= 1'),
        ((None, None, None), {'JAX_NUM_PROCESSES': 'two'}, "JAX_NUM_PROCESSES='two'"),
        # Open MPI 5 (PMIx) leaves no URI that JAX could find the coordinator from.
        (
            (None, None, None),
            {'OMPI_COMM_WORLD_SIZE': '2', 'OMPI_COMM_WORLD_RANK': '0'},
            'needs --coordinator_address',
        ),
    ],
)
def test_an_incomplete_description_is_one_clear_error(args, environ, message):
    from seqmodels.training import detect_cluster

    with pytest.raises(ValueError) as error:
        detect_cluster(*args, environ=environ)
    assert message in str(error.value)


# --------------------------------------------------------------------------- #
# The char-LM driver as 2 processes.

CORPUS = ''.join(
    f'line {i}: the quick brown fox jumps over the lazy dog {i % 7}\n' for i in range(300)
)
CHAR_LM = {
    'seq_len': 16,
    'batch_size': 8,
    'num_train_steps': 4,
    'log_every_steps': 1,
    'eval_every_steps': 0,
    'checkpoint_every_steps': 0,
    'num_eval_batches': 2,
    'sample_chars': 0,
    'model.hidden_size': 16,
    'model.embed_dim': 8,
    'model.num_layers': 1,
    'learning_rate': 0.01,
}


def _char_lm(tmp_path, name, devices, *extra):
    env = dict(
        os.environ,
        JAX_PLATFORMS='cpu',
        PYTHONPATH=REPO,
        XLA_FLAGS=f'--xla_force_host_platform_device_count={devices}',
    )
    for key in list(env):  # a test run inside a cluster job must not join it
        if key.startswith(
            ('SLURM_', 'OMPI_', 'JAX_COORDINATOR', 'JAX_NUM_PROC', 'JAX_PROCESS_ID', 'TPU_WORKER')
        ):
            del env[key]
    command = [
        sys.executable,
        '-m',
        'experiments.char_lm',
        f'--workdir={tmp_path / name}',
        '--config=configs/char_lm.py',
        *[f'--config.{k}={v}' for k, v in CHAR_LM.items()],
        f'--config.dataset=text:{tmp_path / "corpus.txt"}',
        f'--config.data_dir={tmp_path / "tfds"}',
        *extra,
    ]
    return subprocess.Popen(
        command, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _checkpoint(workdir):
    """{item/path: array} of the newest checkpoint, every item read back as numpy."""
    import orbax.checkpoint as ocp

    directory = os.path.join(workdir, 'checkpoints')
    step = max(int(d) for d in os.listdir(directory) if d.isdigit())
    arrays = {}
    checkpointer = ocp.StandardCheckpointer()
    for item in ('params', 'train'):
        path = os.path.join(directory, str(step), item)
        metadata = checkpointer.metadata(path)
        tree = getattr(metadata, 'item_metadata', metadata)
        tree = getattr(tree, 'tree', tree)
        target = jax.tree.map(lambda a: np.zeros(a.shape, a.dtype), tree)
        restored = checkpointer.restore(path, target)
        arrays.update(
            {
                f'{item}{jax.tree_util.keystr(p)}': np.asarray(x)
                for p, x in jax.tree_util.tree_leaves_with_path(restored)
            }
        )
    return step, arrays


def _char_lm_in_process(tmp_path, name):
    """The driver's training path in this (one-device) process: validate, build, train."""
    from configs import char_lm as char_lm_config
    from experiments import char_lm
    from seqmodels import training

    config = training.apply_overrides(
        char_lm_config.get_config('lstm'),
        {
            **CHAR_LM,
            'dataset': f'text:{tmp_path / "corpus.txt"}',
            'data_dir': str(tmp_path / 'tfds'),
        },
    )
    char_lm.validate(config)
    _, _, task = char_lm.build(config, str(tmp_path / name))
    training.train_and_evaluate(config, str(tmp_path / name), task)


def test_char_lm_driver_as_two_processes_equals_one_process(tmp_path):
    from seqmodels.data import make_char_lm_data

    (tmp_path / 'corpus.txt').write_text(CORPUS, encoding='utf-8')
    # Prepared once, before the runs read it side by side.
    make_char_lm_data(
        f'text:{tmp_path / "corpus.txt"}',
        seq_len=16,
        batch_size=8,
        seed=0,
        data_dir=str(tmp_path / 'tfds'),
    )
    port = _free_port()
    procs = {'two_devices': _char_lm(tmp_path, 'two_devices', 2)}
    for i in range(2):
        procs[f'process_{i}'] = _char_lm(
            tmp_path,
            'two_processes',
            1,
            f'--coordinator_address=127.0.0.1:{port}',
            '--num_processes=2',
            f'--process_id={i}',
        )
    try:
        assert len(jax.devices()) == 1
        _char_lm_in_process(tmp_path, 'one_device')
        deadline = time.time() + TIMEOUT
        outputs = {
            name: p.communicate(timeout=max(deadline - time.time(), 1)) for name, p in procs.items()
        }
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()
                p.wait()
    for name, p in procs.items():
        assert p.returncode == 0, f'{name}: {outputs[name][1][-3000:]}'
    assert 'joined a multi-process run as process 1 of 2' in outputs['process_1'][1]
    assert 'joined a multi-process run' not in outputs['two_devices'][1]

    step, two_processes = _checkpoint(tmp_path / 'two_processes')
    assert step == 4 and two_processes["train['step']"] == 4
    _, two_devices = _checkpoint(tmp_path / 'two_devices')
    _, one_device = _checkpoint(tmp_path / 'one_device')
    assert set(two_processes) == set(two_devices) == set(one_device)
    for key, value in two_devices.items():
        np.testing.assert_array_equal(two_processes[key], value, err_msg=key)
        np.testing.assert_allclose(value, one_device[key], rtol=1e-5, atol=1e-6, err_msg=key)
    # Only process 0 wrote the metrics: one record per logged step, not two.
    records = _records(tmp_path / 'two_processes')
    assert [r['step'] for r in records] == [1, 2, 3, 4]
    assert all(r['perf/mfu'] > 0 for r in records)  # the LSTM LM's FLOPs are known
    np.testing.assert_allclose(
        [r['train/loss'] for r in records],
        [r['train/loss'] for r in _records(tmp_path / 'one_device')],
        rtol=1e-5,
    )

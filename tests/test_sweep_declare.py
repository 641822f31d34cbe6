"""Sweep declarations, overrides, the sweep folder's records, outcomes and slots: no
driver runs here (those are in test_sweep_runs.py)."""

import os
import signal
import socket
import statistics

import ml_collections
import pytest
from absl import flags
from ml_collections import config_flags

from seqmodels import sweep as sw
from seqmodels.sweep import records, runner, search
from seqmodels.sweep.local import make_slots
from seqmodels.sweep.overrides import apply_overrides, format_value, override_flags


def test_axis_product_zipped():
    grid = sw.product(sw.axis('a', [1, 2]), sw.axis('b', ['x', 'y', 'z']))
    assert grid == [
        {'a': 1, 'b': 'x'},
        {'a': 1, 'b': 'y'},
        {'a': 1, 'b': 'z'},
        {'a': 2, 'b': 'x'},
        {'a': 2, 'b': 'y'},
        {'a': 2, 'b': 'z'},
    ]
    paired = sw.zipped(sw.axis('model.num_heads', [4, 8]), sw.axis('model.key_size', [64, 32]))
    assert paired == [
        {'model.num_heads': 4, 'model.key_size': 64},
        {'model.num_heads': 8, 'model.key_size': 32},
    ]
    # A product of a zip with an axis: 2 x 2 trials, keys merged.
    assert len(sw.product(paired, sw.axis('seed', [0, 1]))) == 4
    with pytest.raises(sw.SweepError, match='different lengths'):
        sw.zipped(sw.axis('a', [1, 2]), sw.axis('b', [1]))
    with pytest.raises(sw.SweepError, match="key 'a' is set twice"):
        sw.product(sw.axis('a', [1]), sw.axis('a', [2]))
    with pytest.raises(sw.SweepError, match='must be a list'):
        sw.axis('a', 'abc')


def test_log_grid_is_even_in_log_space():
    assert sw.log_grid(1e-4, 1e-2, 5) == [1e-4, 3.16e-4, 1e-3, 3.16e-3, 1e-2]
    with pytest.raises(sw.SweepError):
        sw.log_grid(0.0, 1.0, 3)


def test_random_draws_are_reproducible_from_the_seed_and_in_range():
    space = {
        'learning_rate': sw.loguniform(1e-4, 1e-2),
        'dropout': sw.uniform(0.0, 0.5),
        'cell': ['lstm', 'gru'],
        'layers': sw.randint(1, 3),
        'fixed': 7,
    }
    first = sw.random_draws(space, 400, seed=3)
    assert first == sw.random_draws(space, 400, seed=3)
    assert first != sw.random_draws(space, 400, seed=4)
    # Trial i depends only on (seed, i): a longer search starts with the shorter one.
    assert sw.random_draws(space, 5, seed=3) == first[:5]
    rates = [t['learning_rate'] for t in first]
    assert all(1e-4 <= r < 1e-2 for r in rates)
    # Log-uniform: half the draws fall below the geometric mean 1e-3 (binomial sd 0.025).
    assert abs(sum(r < 1e-3 for r in rates) / len(rates) - 0.5) < 0.1
    drops = [t['dropout'] for t in first]
    assert all(0.0 <= d < 0.5 for d in drops)
    assert abs(statistics.fmean(drops) - 0.25) < 0.03  # uniform mean; sd of mean 0.007
    assert {t['cell'] for t in first} == {'lstm', 'gru'}
    assert {t['layers'] for t in first} == {1, 2, 3}
    assert all(t['fixed'] == 7 for t in first)


def test_planned_trials_per_search():
    space = {'learning_rate': [1e-3, 1e-2], 'model.cell': ['lstm', 'gru'], 'seed': 0}
    grid = search.planned_trials(space, 'grid', None, 0, 'get_sweep')
    # The product of the lists; the fixed seed is not part of the trials.
    assert grid == [
        {'learning_rate': 1e-3, 'model.cell': 'lstm'},
        {'learning_rate': 1e-3, 'model.cell': 'gru'},
        {'learning_rate': 1e-2, 'model.cell': 'lstm'},
        {'learning_rate': 1e-2, 'model.cell': 'gru'},
    ]
    drawn = search.planned_trials(space, 'random', 3, 5, 'get_sweep')
    assert drawn == search.planned_trials(space, 'random', 3, 5, 'get_sweep')
    assert all(set(t) == {'learning_rate', 'model.cell'} for t in drawn)
    assert search.planned_trials(space, 'bayes', 3, 0, 'get_sweep') is None
    with pytest.raises(sw.SweepError, match='--search=random or --search=bayes'):
        search.planned_trials({'lr': sw.loguniform(1e-4, 1e-2)}, 'grid', None, 0, 'get_sweep')
    with pytest.raises(sw.SweepError, match='--num_trials is for'):
        search.planned_trials(space, 'grid', 4, 0, 'get_sweep')
    with pytest.raises(sw.SweepError, match='needs --num_trials'):
        search.planned_trials(space, 'random', None, 0, 'get_sweep')
    with pytest.raises(sw.SweepError, match='search space'):
        search.planned_trials([{'a': 1}], 'random', 2, 0, 'get_sweep')
    with pytest.raises(sw.SweepError, match='non-empty list'):
        search.planned_trials([], 'grid', None, 0, 'get_sweep')


def _config():
    return ml_collections.ConfigDict(
        {
            'learning_rate': 1e-3,
            'num_train_steps': 10,
            'dataset': 'python_stdlib',
            'async_checkpoints': True,
            'nothing': None,
            'typed': ml_collections.config_dict.placeholder(int),
            'model': {'cell': 'lstm', 'dropout': 0.0, 'shape': (2, 2)},
        }
    )


def test_overrides_survive_the_command_line(tmp_path):
    """What the launcher applies is what a driver's config_flags parses back."""
    config_file = tmp_path / 'config.py'
    config_file.write_text(
        f'import ml_collections\n'
        f'def get_config():\n'
        f'    return ml_collections.ConfigDict({_config().to_dict()!r})\n'
    )
    overrides = {
        'learning_rate': 3.1622776601683795e-4,
        'num_train_steps': 7,
        'dataset': 'text:/data/my file.txt',
        'async_checkpoints': False,
        'model.cell': 'gru',
        'model.dropout': 1,
        'model.shape': (3, 1),
    }
    applied = apply_overrides(_config(), overrides)
    values = flags.FlagValues()
    argv = ['prog', f'--config={config_file}', *override_flags(overrides)]
    config_flags.DEFINE_config_file('config', flag_values=values, sys_argv=argv)
    values(argv)
    assert values.config.to_dict() == applied.to_dict()
    assert applied.model.dropout == 1.0 and isinstance(applied.model.dropout, float)
    assert format_value('x', float('inf')) == 'inf'


def test_bad_overrides_name_the_key():
    with pytest.raises(
        sw.SweepError,
        match=r'config.model.cel: no such key \(did you mean '
        r'model.cell\?\)',
    ):
        apply_overrides(_config(), {'model.cel': 'gru'})
    with pytest.raises(
        sw.SweepError,
        match=r'config.num_train_steps=2.5: this int field '
        r'cannot hold a float',
    ):
        apply_overrides(_config(), {'num_train_steps': 2.5})
    with pytest.raises(sw.SweepError, match='is None in the config'):
        apply_overrides(_config(), {'nothing': 3})
    assert apply_overrides(_config(), {'typed': 3}).typed == 3  # a typed placeholder
    with pytest.raises(sw.SweepError, match='cannot be passed'):
        apply_overrides(_config(), {'dataset': {'a': 1}})


def test_trial_names_are_readable_and_path_safe():
    name = records.trial_name(
        7, {'model.cell': 'gru', 'learning_rate': 3.16227e-4, 'dataset': 'text:/a b/c.txt'}
    )
    assert name == '007_model.cell=gru,learning_rate=0.000316,dataset=text--a-b-c.txt'
    assert records.trial_name(12, {}, width=4) == '0012'


def _manifest(**changes):
    manifest = {
        'config': '/r/configs/char_lm.py',
        'variant': 'lstm',
        'driver': 'experiments.char_lm',
        'sweep': 'cells',
        'search': 'grid',
        'search_seed': 0,
        'base_overrides': {'num_train_steps': 100},
        'space': None,
        'num_trials': None,
        'objective': 'eval/loss',
        'direction': 'min',
        'trials': [{'model.cell': 'rnn'}, {'model.cell': 'gru'}],
    }
    manifest.update(changes)
    return manifest


def test_a_rerun_with_other_settings_is_refused_naming_the_difference():
    old = _manifest()
    assert records.manifest_differences(old, _manifest()) == []
    # The objective of a grid only orders the table: not a difference.
    assert records.manifest_differences(old, _manifest(objective='eval/accuracy')) == []
    assert records.manifest_differences(
        old, _manifest(base_overrides={'num_train_steps': 200})
    ) == ['base_overrides: num_train_steps: 100 recorded, 200 now']
    assert records.manifest_differences(old, _manifest(variant='gru')) == [
        "variant: 'lstm' recorded, 'gru' now"
    ]
    assert records.manifest_differences(
        old, _manifest(trials=[{'model.cell': 'rnn'}, {'model.cell': 'lstm'}])
    ) == ["trial 1: model.cell: 'gru' recorded, 'lstm' now"]
    random_old = _manifest(search='random', num_trials=2)
    grown = _manifest(
        search='random',
        num_trials=3,
        trials=[{'model.cell': 'rnn'}, {'model.cell': 'gru'}, {'model.cell': 'x'}],
    )
    assert records.manifest_differences(random_old, grown) == []
    assert (
        'can grow, not shrink'
        in records.manifest_differences(
            random_old, _manifest(search='random', num_trials=1, trials=[{'model.cell': 'rnn'}])
        )[0]
    )
    bayes = _manifest(search='bayes', num_trials=4, trials=None)
    assert records.manifest_differences(bayes, {**bayes, 'direction': 'max'}) == [
        "direction: 'min' recorded, 'max' now"
    ]


def test_json_records_are_replaced_whole(tmp_path):
    path = str(tmp_path / 'status.json')
    records.write_json(path, {'status': 'running', 'values': (1, 2)})
    assert records.read_json(path) == {'status': 'running', 'values': [1, 2]}
    assert os.listdir(tmp_path) == ['status.json']  # no temporary file left behind
    trial = records.Trial(0, '000', str(tmp_path / '000'), {'a': 1})
    trial.save()
    assert trial.status()['status'] == records.PENDING
    trial.update_status(status=records.RUNNING, pid=os.getpid(), host=socket.gethostname())
    assert records.shown_status(trial.status()) == records.RUNNING
    trial.update_status(pid=2**22 + 12345)  # beyond pid_max: no such process
    assert records.shown_status(trial.status()) == 'stopped'
    assert [t.name for t in records.load_trials(str(tmp_path))] == ['000']


@pytest.mark.parametrize(
    'returncode, stderr, expected',
    [
        (0, 'I1206 12:00:00.0 1 loop.py:1] done\n', {'status': 'done', 'error': None}),
        (
            3,
            'error: non-finite loss or gradient at step 12 (loss=nan, grad_norm=nan); no ...\n',
            {'status': 'diverged', 'diverged_step': 12},
        ),
        # A driver from before EXIT_DIVERGED: exit 1 with the divergence line.
        (
            1,
            'error: non-finite loss or gradient at step 4 (loss=inf, ...)\n',
            {'status': 'diverged', 'diverged_step': 4},
        ),
        (
            75,
            'error: preempted by SIGTERM: saved the state after step 9\n',
            {'status': 'preempted', 'error': None},
        ),
        (
            1,
            "I1206 x.py:1] hello\nerror: config.model.cell='bogus': must be one of rnn\n",
            {'status': 'error', 'error': "error: config.model.cell='bogus': must be one of rnn"},
        ),
        (
            1,
            'FATAL Flags parsing error: unknown config key --config.model.cel\nPass --helpshort\n',
            {
                'status': 'error',
                'error': 'FATAL Flags parsing error: unknown config key --config.model.cel',
            },
        ),
        (
            1,
            'Traceback (most recent call last):\n  File "x.py", line 1\nKeyError: \'vocab\'\n',
            {'status': 'error', 'error': "exit status 1: KeyError: 'vocab'"},
        ),
        (
            -signal.SIGKILL,
            'I1206 x.py:1] step 3\n',
            {'status': 'error', 'error': 'killed by SIGKILL'},
        ),
    ],
)
def test_outcome_of_an_attempt(tmp_path, returncode, stderr, expected):
    path = tmp_path / 'stderr.log'
    earlier = 'error: an earlier attempt failed differently\n'
    path.write_text(earlier + stderr)
    result = runner.outcome(returncode, str(path), since=len(earlier))
    assert {k: result[k] for k in expected} == expected
    assert result['exit_code'] == returncode


def test_slots_split_cores_and_devices_without_overlap():
    lines = []
    slots = make_slots(2, cores=[0, 1], log=lines.append)
    assert [s.cores for s in slots] == [[0], [1]] and not lines
    assert [s.cores for s in make_slots(2, cores=[0, 1, 2])] == [[0], [1, 2]]
    slots = make_slots(4, cores=[0, 1], log=lines.append)
    assert len(slots) == 2 and 'running 2 trials at a time' in lines[0]
    gpus = ('gpu', ['0', '1', '2', '3'])
    slots = make_slots(2, 2, cores=range(8), accelerators=gpus)
    assert [s.env['CUDA_VISIBLE_DEVICES'] for s in slots] == ['0,1', '2,3']
    assert [s.cores for s in slots] == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert len(make_slots(3, 2, cores=range(8), accelerators=gpus, log=lines.append)) == 2
    tpu = make_slots(2, 1, cores=range(4), accelerators=('tpu', ['0', '1', '2', '3']))
    assert [s.env['TPU_VISIBLE_CHIPS'] for s in tpu] == ['0', '1']
    assert len({s.env['TPU_PROCESS_PORT'] for s in tpu}) == 2
    with pytest.raises(sw.SweepError, match='one chip'):
        make_slots(1, 2, cores=range(4), accelerators=('tpu', ['0', '1']))
    with pytest.raises(sw.SweepError, match='no GPU'):
        make_slots(1, 1, cores=range(4), accelerators=(None, []))


def test_trial_environment_sizes_thread_pools():
    env = runner.trial_env([2, 3], {'CUDA_VISIBLE_DEVICES': '1'}, base={'PATH': '/bin'})
    assert env['OMP_NUM_THREADS'] == '2' and env['CUDA_VISIBLE_DEVICES'] == '1'
    assert env['PATH'] == '/bin'


def test_declaration_helpers_import_without_jax():
    import subprocess
    import sys

    code = (
        'import sys; from seqmodels import sweep; sweep.product(sweep.axis("a", [1])); '
        'assert "jax" not in sys.modules and "optuna" not in sys.modules, sorted(sys.modules)'
    )
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    subprocess.run([sys.executable, '-c', code], cwd=root, check=True, timeout=60)


def test_slurm_job_parameters_map_the_flags_onto_submitit():
    from seqmodels.sweep.slurm import job_parameters

    params = job_parameters(
        'cells',
        time_min=60,
        parallel=4,
        signal_delay_s=90,
        partition='gpu',
        gpus_per_node=1,
        extra_args=['account=abc', 'qos=high'],
    )
    assert params == {
        'name': 'sweep_cells',
        'timeout_min': 60,
        'nodes': 1,
        'tasks_per_node': 1,
        'slurm_array_parallelism': 4,
        'slurm_signal_delay_s': 90,
        'slurm_partition': 'gpu',
        'gpus_per_node': 1,
        'slurm_additional_parameters': {'account': 'abc', 'qos': 'high'},
    }
    assert 'cpus_per_task' not in params  # 0: the cluster's default
    with pytest.raises(sw.SweepError, match="--slurm_args: 'qos' is not key=value"):
        job_parameters('x', time_min=1, parallel=1, signal_delay_s=1, extra_args=['qos'])


def _fake_slurm_commands(tmp_path, monkeypatch):
    """sbatch and srun on PATH, so that submitit builds its SLURM executor here."""
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir()
    for name in ('sbatch', 'srun'):
        (bin_dir / name).write_text('#!/bin/sh\nexit 1\n')
        (bin_dir / name).chmod(0o755)
    monkeypatch.setenv('PATH', f'{bin_dir}{os.pathsep}{os.environ["PATH"]}')


def test_slurm_multi_node_trial_is_one_job_of_nodes_x_tasks(tmp_path, monkeypatch):
    pytest.importorskip('submitit')
    from seqmodels.sweep.slurm import SubmititExecutor, job_parameters

    common = dict(time_min=60, parallel=2, signal_delay_s=90)
    params = job_parameters(
        'lr', nodes=2, tasks_per_node=4, gpus_per_node=4, cpus_per_task=8, **common
    )
    assert {k: params[k] for k in ('nodes', 'tasks_per_node', 'gpus_per_node')} == {
        'nodes': 2,
        'tasks_per_node': 4,
        'gpus_per_node': 4,
    }
    assert params['cpus_per_task'] == 8
    # submitit's own translation into the sbatch script: one srun step of 2 x 4 tasks.
    _fake_slurm_commands(tmp_path, monkeypatch)
    executor = SubmititExecutor('slurm', 2, params)._executor(str(tmp_path / 'sweep'))
    script = executor._executor._make_submission_file_text('python -m x', 'uid')
    for line in (
        '#SBATCH --nodes=2',
        '#SBATCH --ntasks-per-node=4',
        '#SBATCH --gpus-per-node=4',
        '#SBATCH --cpus-per-task=8',
        '#SBATCH --signal=USR2@90',
    ):
        assert line in script.splitlines()
    assert any(line.startswith('srun ') for line in script.splitlines())

    # Each process of the run takes the GPU at its SLURM_LOCALID: one task per GPU.
    with pytest.raises(sw.SweepError, match='--slurm_tasks_per_node=8'):
        job_parameters('lr', nodes=2, tasks_per_node=1, gpus_per_node=8, **common)
    with pytest.raises(sw.SweepError, match='--slurm_nodes_per_trial must be >= 1'):
        job_parameters('lr', nodes=0, **common)
    with pytest.raises(sw.SweepError, match='--slurm_tasks_per_node must be >= 1'):
        job_parameters('lr', tasks_per_node=0, **common)
    # submitit's local executor sets no SLURM variables: its tasks could not join.
    with pytest.raises(sw.SweepError, match='a trial of 8 tasks needs --executor=slurm'):
        SubmititExecutor('local', 2, params)


def test_slurm_task_rank_from_submitit_or_slurm(monkeypatch):
    pytest.importorskip('submitit')
    from seqmodels.sweep.slurm import _task_rank

    for var in ('SUBMITIT_EXECUTOR', 'SLURM_PROCID', 'SUBMITIT_LOCAL_GLOBALID'):
        monkeypatch.delenv(var, raising=False)
    assert _task_rank() == 0  # not in a job
    monkeypatch.setenv('SLURM_PROCID', '3')
    assert _task_rank() == 3
    monkeypatch.setenv('SUBMITIT_EXECUTOR', 'slurm')
    assert _task_rank() == 3
    monkeypatch.setenv('SUBMITIT_EXECUTOR', 'local')
    monkeypatch.setenv('SUBMITIT_LOCAL_GLOBALID', '2')
    assert _task_rank() == 2


@pytest.fixture
def slurm_task(tmp_path, monkeypatch):
    """A one-trial sweep folder, and a function that runs TrialJob as task `rank` of
    SLURM job 77 (a fake command that leaves a mark) and returns (result, mark)."""
    pytest.importorskip('submitit')
    import sys

    from seqmodels.sweep.slurm import TrialJob

    trial = records.Trial(index=0, name='0', directory=str(tmp_path / '0'), overrides={})
    trial.save()
    for var in ('SLURM_ARRAY_JOB_ID', 'SLURM_ARRAY_TASK_ID', 'SUBMITIT_LOCAL_JOB_ID'):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv('SUBMITIT_EXECUTOR', 'slurm')
    monkeypatch.setenv('SLURM_JOB_ID', '77')
    mark = tmp_path / 'mark'
    command = [sys.executable, '-c', 'import sys; open(sys.argv[1], "w").write("ran")', str(mark)]

    def run(rank):
        monkeypatch.setenv('SLURM_PROCID', str(rank))
        result = TrialJob(trial.directory, command, str(tmp_path), str(tmp_path))()
        return result, mark.exists()

    return trial, run


def test_slurm_task_0_alone_records_the_trial(slurm_task):
    trial, run = slurm_task
    result, ran = run(0)
    assert ran and result['status'] == records.DONE
    status = trial.status()
    assert status['status'] == records.DONE and status['job_id'] == '77'
    assert status['attempts'] == 1
    assert os.path.exists(os.path.join(trial.directory, records.STDOUT_FILE))


def test_slurm_other_tasks_run_the_driver_and_record_nothing(slurm_task):
    trial, run = slurm_task
    # Task 0 has started its driver: the others start theirs and leave status.json be.
    trial.update_status(status=records.RUNNING, job_id='77', attempts=1)
    before = trial.status()
    result, ran = run(1)
    assert ran and result == {'task': 1, 'exit_code': 0}
    assert trial.status() == before
    assert not os.path.exists(os.path.join(trial.directory, records.STDOUT_FILE))
    logs = os.path.join(trial.directory, 'tasks', '1')
    assert os.path.exists(os.path.join(logs, records.STDOUT_FILE))
    assert os.path.exists(os.path.join(logs, records.STDERR_FILE))


def test_slurm_other_tasks_start_nothing_once_task_0_ended_the_job(slurm_task):
    trial, run = slurm_task
    trial.update_status(status=records.ERROR, job_id='77', error='boom')
    before = trial.status()
    result, ran = run(1)
    assert not ran and result['task'] == 1
    assert trial.status() == before

"""Sweeps end to end: real launcher and driver processes on the tiny config of
tests/sweep_configs/tiny.py (a trial takes seconds).

Two sweeps are run once each and read by several tests:
- `four` (local executor, two at a time): four trials, one of them long; the launcher
  is SIGKILLed while the long one runs, then rerun; one trial fails, one diverges;
- `long_space` (the SLURM code path through submitit's local executor, Bayesian
  search with Optuna): two trials, both preempted once (SIGTERM to one driver, as
  SLURM preemption sends; the requeue signal to the other's job, as ahead of a time
  limit), both requeued and resumed.
"""

import json
import os
import re
import signal
import subprocess
import sys
import time
import types

import pytest

from seqmodels.sweep import records, results

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = os.path.join(REPO, 'tests', 'sweep_configs', 'tiny.py')
TIMEOUT_S = 240


@pytest.fixture(scope='module')
def data_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp('tfds'))


def launch(workdir, data_dir, *flags, log=None):
    """The launcher as a process of its own (session too, so that a failed test can
    take it down with everything it started)."""
    command = [
        sys.executable,
        '-m',
        'experiments.sweep',
        f'--config={TINY}',
        '--driver=experiments.char_lm',
        f'--workdir={workdir}',
        f'--config.data_dir={data_dir}',
        *flags,
    ]
    out = open(log or os.path.join(os.path.dirname(workdir), 'launcher.log'), 'ab')
    # All trials of the module share one compilation cache (a resumed trial does not
    # compile again): the local executor's default, given to the submitit path too.
    env = dict(os.environ, JAX_COMPILATION_CACHE_DIR=os.path.join(data_dir, 'jax_cache'))
    return subprocess.Popen(
        command, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, env=env
    )


def finish(process, timeout=TIMEOUT_S):
    try:
        return process.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        raise


def trial_dirs(workdir):
    return [t.directory for t in records.load_trials(workdir)]


def status_of(directory):
    return records.read_json(os.path.join(directory, records.STATUS_FILE), {}) or {}


def alive(pid):
    return records.host_alive(pid, __import__('socket').gethostname())


def poll(condition, timeout, what, process=None, every=0.02):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = condition()
        if value:
            return value
        if process is not None and process.poll() is not None:
            break
        time.sleep(every)
    raise AssertionError(f'timed out waiting for {what}')


def resumed_from(directory):
    """The steps that the driver's attempts started from, by its log lines."""
    text = open(os.path.join(directory, records.STDERR_FILE)).read()
    return [
        (m.group(1), int(m.group(2)))
        for m in re.finditer(r'(starting|resuming) at step (\d+)', text)
    ]


def logged_steps(directory):
    return [r['step'] for r in results.read_metrics(directory)]


# --------------------------------------------------------------------------- #
# The local executor: four trials, the launcher killed and rerun.


@pytest.fixture(scope='module')
def four(tmp_path_factory, data_dir):
    root = tmp_path_factory.mktemp('four')
    workdir = str(root / 'sweep')
    log = str(root / 'launcher.log')
    run = types.SimpleNamespace(workdir=workdir, log=log)

    first = launch(workdir, data_dir, '--sweep=four', '--parallel=2', log=log)
    try:

        def caught():  # trial 0 finished, trial 1 between two of its checkpoints
            dirs = trial_dirs(workdir)
            if len(dirs) < 2 or status_of(dirs[0]).get('status') != 'done':
                return None
            status = status_of(dirs[1])
            step = results.latest_checkpoint(dirs[1])
            return status if status.get('status') == 'running' and step else None

        status = poll(caught, TIMEOUT_S, 'a finished trial and a checkpointed one', first)
    finally:
        os.kill(first.pid, signal.SIGKILL)
        finish(first)
    run.dirs = trial_dirs(workdir)
    run.killed_pid = status['pid']
    run.killed_pid_gone = poll(lambda: alive(run.killed_pid) is False, 5, 'the trial to die')
    run.checkpoint_at_kill = results.latest_checkpoint(run.dirs[1])
    run.at_kill = {d: status_of(d) for d in run.dirs}
    run.finished_metrics = open(os.path.join(run.dirs[0], 'metrics.jsonl')).read()

    started = time.time()
    second = launch(workdir, data_dir, '--sweep=four', '--parallel=2', log=log)
    run.affinities = {}  # trial -> the CPU affinity of its driver while it ran
    while second.poll() is None:
        for directory in run.dirs:
            status = status_of(directory)
            if (
                status.get('status') == 'running'
                and status.get('pid')
                and status['started'] > started
                and alive(status['pid'])
            ):
                try:
                    run.affinities.setdefault(
                        directory, (os.sched_getaffinity(status['pid']), status['cores'])
                    )
                except ProcessLookupError:
                    pass
        time.sleep(0.05)
    run.returncode = finish(second)
    run.output = open(log).read()
    return run


def test_a_killed_launcher_takes_its_trials_along(four):
    assert four.killed_pid_gone
    assert 0 < four.checkpoint_at_kill < 800


def test_a_rerun_skips_finished_trials_and_resumes_the_others(four):
    done = status_of(four.dirs[0])
    assert done['attempts'] == 1 and len(done['history']) == 1
    for directory, before in four.at_kill.items():  # trial 0, maybe trial 3
        if before.get('status') in ('done', 'diverged'):
            assert status_of(directory) == before, directory  # not run again
    assert open(os.path.join(four.dirs[0], 'metrics.jsonl')).read() == four.finished_metrics
    # Trial 1 resumed from the checkpoint it had when its launcher was killed.
    assert resumed_from(four.dirs[1]) == [('starting', 0), ('resuming', four.checkpoint_at_kill)]
    resumed = status_of(four.dirs[1])
    assert resumed['status'] == 'done' and resumed['attempts'] == 2
    steps = logged_steps(four.dirs[1])
    assert steps == sorted(set(steps)) and steps[-1] == 800


def test_two_trials_at_a_time_on_disjoint_cores(four):
    cores = sorted(os.sched_getaffinity(0))
    # Both launches ran two trials at a time.
    spans = [(h['started'], h['ended']) for d in four.dirs for h in status_of(d)['history']]
    overlaps = sum(a[0] < b[1] and b[0] < a[1] for i, a in enumerate(spans) for b in spans[i + 1 :])
    assert overlaps >= 1
    sampled = {d: a for d, a in four.affinities.items() if d != four.dirs[0]}
    assert sampled, 'no running trial was sampled'
    for affinity, recorded in sampled.values():
        # Each trial pinned to its half of the cores, as status.json says.
        assert sorted(affinity) == recorded
        assert len(affinity) == len(cores) // 2
    slots = {tuple(sorted(a)) for a, _ in sampled.values()}
    assert all(set(a).isdisjoint(b) for a in slots for b in slots if a != b)


def test_a_failing_trial_is_isolated_and_reported(four):
    failed = status_of(four.dirs[2])
    assert failed['status'] == 'error'
    assert failed['error'].startswith("error: config.model.cell='bogus'")
    assert four.returncode == 1
    assert f'error: trial {os.path.basename(four.dirs[2])} failed: ' in four.output
    assert 'error: 1 of 4 trials failed' in four.output


def test_a_diverging_trial_is_recorded_as_diverged(four):
    diverged = status_of(four.dirs[3])
    assert diverged['status'] == 'diverged' and diverged['exit_code'] == 3
    stderr = open(os.path.join(four.dirs[3], records.STDERR_FILE)).read()
    step = int(re.search(r'non-finite loss or gradient at step (\d+)', stderr).group(1))
    assert diverged['diverged_step'] == step
    assert f'diverged at step {step}' in open(os.path.join(four.workdir, 'results.md')).read()


def test_the_table_of_the_four_trials(four):
    import csv

    with open(os.path.join(four.workdir, 'results.csv')) as f:
        table = list(csv.DictReader(f))
    names = [os.path.basename(d) for d in four.dirs]
    finals = {
        n: results.final_value(results.read_metrics(d), 'eval/loss')
        for n, d in zip(names, four.dirs)
    }
    done = sorted(names[:2], key=finals.get)
    assert [row['trial'] for row in table] == done + [names[3], names[2]]
    assert [row['status'] for row in table] == ['done', 'done', 'diverged', 'error']
    for row in table[:2]:
        assert float(row['final eval/loss']) == finals[row['trial']]
    assert {row['trial']: row['steps'] for row in table}[names[1]] == '800'
    assert os.path.exists(os.path.join(four.workdir, 'plots', 'objective_vs_learning_rate.png'))
    # Each trial is an ordinary driver run: its own config.json, as the driver wrote it.
    config = json.load(open(os.path.join(four.dirs[1], 'config.json')))
    assert config['model']['cell'] == 'gru' and config['num_train_steps'] == 800


def test_a_rerun_with_other_settings_is_refused(four, data_dir):
    process = launch(
        four.workdir,
        data_dir,
        '--sweep=four',
        '--config.num_eval_batches=2',
        log=os.path.join(os.path.dirname(four.workdir), 'refused.log'),
    )
    assert finish(process) == 1
    output = open(os.path.join(os.path.dirname(four.workdir), 'refused.log')).read()
    assert 'holds a sweep made with other settings' in output
    assert 'base_overrides: num_eval_batches: absent recorded, 2 now' in output


# --------------------------------------------------------------------------- #
# The SLURM code path (submitit's local executor) with Bayesian search.


@pytest.fixture(scope='module')
def cluster(tmp_path_factory, data_dir):
    root = tmp_path_factory.mktemp('cluster')
    workdir = str(root / 'sweep')
    run = types.SimpleNamespace(workdir=workdir, signalled={})
    process = launch(
        workdir,
        data_dir,
        '--sweep=long_space',
        '--search=bayes',
        '--num_trials=2',
        '--executor=submitit_local',
        '--parallel=2',
        log=str(root / 'launcher.log'),
    )
    try:

        def preempt_both():
            for index, directory in enumerate(trial_dirs(workdir)):
                status = status_of(directory)
                step = results.latest_checkpoint(directory)
                if (
                    directory in run.signalled
                    or status.get('status') != 'running'
                    or not step
                    or status.get('attempts') != 1
                ):
                    continue
                if index == 0:  # SLURM preemption: SIGTERM reaches the driver
                    os.kill(status['pid'], signal.SIGTERM)
                else:  # ahead of the time limit: the requeue signal reaches the job
                    os.kill(status['job_pid'], signal.SIGUSR2)
                run.signalled[directory] = step
            return len(run.signalled) == 2

        poll(preempt_both, TIMEOUT_S, 'both trials to checkpoint', process)
        run.returncode = finish(process)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    run.output = open(str(root / 'launcher.log')).read()
    run.dirs = trial_dirs(workdir)
    return run


def test_slurm_path_requeues_and_resumes_preempted_trials(cluster):
    assert cluster.returncode == 0, cluster.output[-3000:]
    assert len(cluster.dirs) == 2
    for directory in cluster.dirs:
        status = status_of(directory)
        assert status['executor'] == 'submitit_local' and status['job_id']
        assert [(h['status'], h['exit_code']) for h in status['history']] == [
            ('preempted', 75),
            ('done', 0),
        ]
        (_, first), (kind, resumed) = resumed_from(directory)
        # Saved after the step in flight: at or past the checkpoint seen when signalled.
        assert first == 0 and kind == 'resuming'
        assert cluster.signalled[directory] <= resumed < 800
        steps = logged_steps(directory)
        assert steps == sorted(set(steps)) and steps[-1] == 800
    assert os.path.isdir(os.path.join(cluster.workdir, 'slurm'))


def test_bayesian_search_keeps_its_study_in_a_journal(cluster):
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    storage = JournalStorage(JournalFileBackend(os.path.join(cluster.workdir, 'optuna.journal')))
    study = optuna.load_study(study_name='sweep', storage=storage)
    assert [t.state.name for t in study.trials] == ['COMPLETE', 'COMPLETE']
    by_number = {t.number: t for t in study.trials}
    for directory in cluster.dirs:
        trial = records.Trial.load(directory)
        told = by_number[trial.optuna_number]
        assert told.params == trial.overrides
        assert set(told.params) == {'learning_rate', 'model.cell'}
        assert 1e-3 <= told.params['learning_rate'] <= 1e-2
        assert told.value == results.final_value(results.read_metrics(directory), 'eval/loss')

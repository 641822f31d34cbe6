"""The sweep's table, plots and progress line from hand-made trial folders, and the
launcher's checks of a sweep folder (no driver runs: those are in test_sweep_runs.py)."""

import csv
import importlib.util
import json
import os
import statistics

import pytest

from seqmodels import sweep as sw
from seqmodels.sweep import launcher, plots, records, results

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = os.path.join(REPO, 'tests', 'sweep_configs', 'tiny.py')


def make_trial(workdir, index, overrides, losses, status='done', accuracy=None, **fields):
    """A trial folder whose metrics.jsonl logs eval/loss `losses` at steps 10, 20, ..."""
    trial = records.Trial(
        index,
        records.trial_name(index, overrides),
        os.path.join(workdir, records.trial_name(index, overrides)),
        overrides,
        config={'num_train_steps': 10 * max(len(losses), 1)},
    )
    trial.save()
    with open(os.path.join(trial.directory, 'metrics.jsonl'), 'w') as f:
        for i, loss in enumerate(losses):
            record = {'step': 10 * (i + 1), 'train/loss': loss + 0.1, 'eval/loss': loss}
            if accuracy is not None:
                record['eval/accuracy'] = accuracy[i]
            f.write(json.dumps(record) + '\n')
        f.write('{"step": 99, "eval/lo')  # a line cut by a writer that is still running
    trial.update_status(status=status, **fields)
    return trial


@pytest.fixture
def sweep_dir(tmp_path):
    """Two learning rates x two seeds, one diverged and one failed trial."""
    workdir = str(tmp_path)
    manifest = {
        'config': '/r/configs/char_lm.py',
        'variant': 'lstm',
        'sweep': 'lr',
        'search': 'grid',
        'objective': 'eval/loss',
        'direction': 'min',
    }
    records.write_json(os.path.join(workdir, records.MANIFEST), manifest)
    make_trial(
        workdir,
        0,
        {'learning_rate': 1e-3, 'seed': 0},
        [3.0, 2.0],
        accuracy=[0.2, 0.4],
        wall_time_s=100.0,
    )
    make_trial(
        workdir,
        1,
        {'learning_rate': 1e-3, 'seed': 1},
        [3.0, 2.5, 2.2],
        accuracy=[0.1, 0.5, 0.3],
        wall_time_s=140.0,
    )
    make_trial(
        workdir,
        2,
        {'learning_rate': 1e-2, 'seed': 0},
        [2.5, 1.5],
        accuracy=[0.3, 0.6],
        wall_time_s=120.0,
    )
    make_trial(
        workdir, 3, {'learning_rate': 1e-2, 'seed': 1}, [2.0], status='diverged', diverged_step=14
    )
    make_trial(
        workdir,
        4,
        {'learning_rate': 1e-1, 'seed': 0},
        [],
        status='error',
        error='error: config.model.cell=...',
    )
    return workdir


def test_rows_are_sorted_by_the_final_objective(sweep_dir):
    rows = launcher.report(sweep_dir, plots=False)
    assert [r['index'] for r in rows] == [2, 0, 1, 3, 4]
    by_index = {r['index']: r for r in rows}
    # Final is the last logged value, best the minimum (loss) or maximum (accuracy).
    assert by_index[1]['metrics']['eval/loss'] == (2.2, 2.2)
    assert by_index[1]['metrics']['eval/accuracy'] == (0.3, 0.5)
    assert by_index[0]['metrics']['eval/loss'] == (2.0, 2.0)
    # A diverged trial has no objective (its last finite loss is not its outcome).
    assert by_index[3]['diverged_at'] == 14 and by_index[3]['objective'] is None
    assert by_index[3]['metrics']['eval/loss'] == (2.0, 2.0)
    assert by_index[4]['error'] == 'error: config.model.cell=...'
    assert by_index[1]['steps'] == 30
    # Maximising the objective reverses the finished trials only.
    rows = launcher.report(sweep_dir, 'eval/accuracy', 'max', plots=False)
    assert [r['index'] for r in rows][:3] == [2, 0, 1]


def test_csv_and_markdown(sweep_dir):
    launcher.report(sweep_dir, plots=False)
    with open(os.path.join(sweep_dir, 'results.csv')) as f:
        table = list(csv.DictReader(f))
    assert [row['trial'] for row in table][:2] == [
        '002_learning_rate=0.01,seed=0',
        '000_learning_rate=0.001,seed=0',
    ]
    assert float(table[0]['final eval/loss']) == 1.5
    assert float(table[0]['best eval/accuracy']) == 0.6
    assert table[3]['status'] == 'diverged' and table[3]['diverged_at'] == '14'
    assert table[4]['error'].startswith('error: config.model.cell')
    markdown = open(os.path.join(sweep_dir, 'results.md')).read()
    assert (
        '| 002_learning_rate=0.01,seed=0 | 0.01 | 0 | done | 20/20 | 2m00s | 1.5 | 1.5 |'
        in markdown
    )
    assert 'diverged at step 14' in markdown
    assert '- `004_learning_rate=0.1,seed=0`: error: config.model.cell=...' in markdown


def test_seeds_are_aggregated_per_setting(sweep_dir):
    launcher.report(sweep_dir, plots=False)
    with open(os.path.join(sweep_dir, 'results_mean.csv')) as f:
        table = list(csv.DictReader(f))
    # lr 1e-2: only seed 0 finished (seed 1 diverged); lr 1e-3: seeds 0 and 1.
    assert [row['learning_rate'] for row in table] == ['0.01', '0.001', '0.1']
    assert [row['n'] for row in table] == ['1', '2', '0']
    assert float(table[1]['mean eval/loss']) == pytest.approx((2.0 + 2.2) / 2)
    assert float(table[1]['std eval/loss']) == pytest.approx(statistics.stdev([2.0, 2.2]))
    assert table[0]['std eval/loss'] == ''
    markdown = open(os.path.join(sweep_dir, 'results.md')).read()
    assert 'Mean ± standard deviation over seed' in markdown
    assert '| 0.001 | 2 | 2 done | 2.1 ± 0.14 |' in markdown


def test_plots_are_written(sweep_dir):
    launcher.report(sweep_dir)
    for name in ('objective_vs_learning_rate.png', 'objective_vs_seed.png', 'curves.png'):
        with open(os.path.join(sweep_dir, 'plots', name), 'rb') as f:
            assert f.read(8) == b'\x89PNG\r\n\x1a\n', name
    assert plots.log_axis([1e-4, 1e-3, 1e-2])
    assert not plots.log_axis([0.0, 0.1, 0.5]) and not plots.log_axis([0.1, 0.5])
    assert not plots.log_axis(['lstm', 'gru'])
    assert plots.log_axis([1e-3, 2e-3, 4e-3], 'learning_rate')  # rates: always by factors
    assert not plots.log_axis([1e-3, 2e-3, 4e-3], 'model.dropout')


def test_progress_line_and_eta():
    row = lambda status, wall=0.0, steps=0: {
        'status': status,
        'wall_time_s': wall,
        'steps': steps,
        'num_train_steps': 100,
    }
    rows = [
        row('done', 100.0),
        row('done', 140.0),
        row('running', 30.0, 25),
        row('error'),
        row('pending'),
        row('pending'),
        row('diverged', 5.0),
    ]
    # A trial takes 120 s (the finished ones' mean): 90 s left of the running one, then
    # 2 x 120 s pending, on 2 slots.
    assert results.eta_seconds(rows, parallel=2) == pytest.approx((90 + 240) / 2)
    assert results.progress_line(rows, 2) == (
        '2/7 done, 1 running, 1 diverged, 1 failed, 2 to go; ETA 2m45s'
    )
    # Before any trial finished: extrapolated from the running one's steps (30 s for 25%).
    assert results.eta_seconds([row('running', 30.0, 25), row('pending')], 1) == 90 + 120
    # A Bayesian search's trials not proposed yet count as to go.
    assert results.progress_line(rows, 2, total=9) == (
        '2/9 done, 1 running, 1 diverged, 1 failed, 4 to go; ETA 4m45s'
    )


def test_report_of_a_folder_without_a_sweep(tmp_path):
    with pytest.raises(sw.SweepError, match='holds no sweep'):
        launcher.report(str(tmp_path))


# --------------------------------------------------------------------------- #
# The launcher's checks of a sweep folder, before any trial runs.


def tiny_config():
    spec = importlib.util.spec_from_file_location('tiny_sweep_config', TINY)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


def request(workdir, **changes):
    base = dict(
        workdir=str(workdir),
        config_path=TINY,
        variant=None,
        driver='experiments.char_lm',
        sweep='four',
        base_config=tiny_config(),
        base_overrides={'data_dir': '/tmp/x'},
    )
    base.update(changes)
    return launcher.Request(**base)


def test_a_sweep_folder_records_its_trials_and_refuses_other_settings(tmp_path):
    sweep, plan = launcher.open_sweep(request(tmp_path))
    assert [t.name for t in sweep.trials][:2] == [
        '000_model.cell=lstm,learning_rate=0.003',
        '001_model.cell=gru,learning_rate=0.003,num_train_steps=800,checkpoint_every_steps=50',
    ]
    trial = sweep.trials[1]
    assert trial.config['model']['cell'] == 'gru' and trial.config['data_dir'] == '/tmp/x'
    assert trial.command[1:3] == ['-m', 'experiments.char_lm']
    assert f'--workdir={trial.directory}' in trial.command
    assert trial.command[5:8] == [
        '--config.data_dir=/tmp/x',
        '--config.model.cell=gru',
        '--config.learning_rate=0.003',
    ]
    assert [t.index for t in iter(plan.next_trial, None)] == [0, 1, 2, 3]
    manifest = records.read_json(os.path.join(tmp_path, records.MANIFEST))
    assert manifest['base_overrides'] == {'data_dir': '/tmp/x'}
    assert manifest['trials'][2]['model.cell'] == 'bogus'

    with pytest.raises(
        sw.SweepError,
        match=r"base_overrides: data_dir: '/tmp/x' recorded, "
        r"'/tmp/y' now",
    ):
        launcher.open_sweep(request(tmp_path, base_overrides={'data_dir': '/tmp/y'}))
    with pytest.raises(sw.SweepError, match=r"sweep: 'four' recorded, 'space' now"):
        launcher.open_sweep(request(tmp_path, sweep='space', search='random', num_trials=2))
    # A config file that changed under the sweep shows in the resolved configs.
    changed = tiny_config()
    changed.model.hidden_size = 32
    with pytest.raises(sw.SweepError, match=r'model.hidden_size: 16 recorded, 32 now'):
        launcher.open_sweep(request(tmp_path, base_config=changed))
    # Finished trials are skipped by a rerun; failed ones are retried.
    sweep.trials[0].update_status(status=records.DONE)
    sweep.trials[3].update_status(status=records.DIVERGED)
    sweep.trials[2].update_status(status=records.ERROR)
    _, plan = launcher.open_sweep(request(tmp_path))
    assert [t.index for t in iter(plan.next_trial, None)] == [1, 2]


def test_unresolvable_trials_fail_without_starting(tmp_path):
    sweep, plan = launcher.open_sweep(
        request(tmp_path, sweep='space', search='random', num_trials=2)
    )
    assert len(sweep.trials) == 2
    with pytest.raises(sw.SweepError, match='swept by'):
        launcher.open_sweep(request(tmp_path / 'b', base_overrides={'learning_rate': 0.1}))


def test_random_search_is_reproducible_from_its_seed(tmp_path):
    def drawn(folder, seed):
        sweep, _ = launcher.open_sweep(
            request(
                tmp_path / folder, sweep='space', search='random', num_trials=4, search_seed=seed
            )
        )
        return [(t.name, t.overrides) for t in sweep.trials]

    first = drawn('a', 7)
    assert first == drawn('b', 7)
    assert first != drawn('c', 8)
    rates = [o['learning_rate'] for _, o in first]
    assert all(1e-3 <= r < 1e-2 for r in rates) and len(set(rates)) == 4
    # A rerun may ask for more trials: the first four stay.
    sweep, _ = launcher.open_sweep(
        request(tmp_path / 'a', sweep='space', search='random', num_trials=6, search_seed=7)
    )
    assert [(t.name, t.overrides) for t in sweep.trials][:4] == first
    assert len(sweep.trials) == 6


def test_a_trial_with_a_bad_key_is_recorded_as_failed(tmp_path):
    config_file = tmp_path / 'cfg.py'
    config_file.write_text(
        open(TINY).read() + '\n\ndef get_sweep(name):\n'
        "    return [{'model.cell': 'gru'}, {'model.cel': 'gru'}]\n"
    )
    sweep, plan = launcher.open_sweep(
        request(tmp_path / 'sweep', config_path=str(config_file), sweep='typo')
    )
    status = sweep.trials[1].status()
    assert status['status'] == 'error'
    assert status['error'] == 'config.model.cel: no such key (did you mean model.cell?)'
    assert [t.index for t in iter(plan.next_trial, None)] == [0]
    # The table says so too, with the trials that did not run yet.
    rows = launcher.report(str(tmp_path / 'sweep'), plots=False)
    assert [r['status'] for r in rows] == ['pending', 'error']

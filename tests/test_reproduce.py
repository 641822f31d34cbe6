"""experiments.reproduce: the checks, reading runs, RESULTS.md, the registry, and the
`ci` scale of real claims end to end (driver processes through the sweep launcher)."""

import dataclasses
import json
import math
import os
import subprocess
import sys

import pytest

from experiments import reproduce
from seqmodels.reproduce import (
    Above,
    Band,
    Below,
    Claim,
    Lower,
    Results,
    Run,
    RunDir,
    Within,
    steps_to_reach,
)
from seqmodels.reproduce import report
from seqmodels.reproduce import runner as claim_runner
from seqmodels.reproduce.claim import ResultError, check_registry
from seqmodels.sweep import records
from seqmodels.sweep.launcher import config_module
from seqmodels.sweep.overrides import apply_overrides

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLAIMS = reproduce.load_claims(os.path.join(REPO, 'configs', 'claims.py'))
# The ci-scale claims the suite runs: each trains and checks in well under a minute.
# All three run offline (generated data and the embedded corpus).
CI_CLAIMS = ('adding_problem', 'gradient_flow', 'interpretable_cells')


# --------------------------------------------------------------------------- #
# Checks.


def test_band_and_thresholds():
    assert Band('x', 1.85, 1.91)({'x': 1.89}).passed
    assert not Band('x', 1.85, 1.91)({'x': 1.92}).passed
    assert not Band('x', 1.85, 1.91)({'x': 1.84}).passed
    assert Above('x', 0.5)({'x': 0.51}).passed and not Above('x', 0.5)({'x': 0.5}).passed
    assert Below('x', 0.5)({'x': 0.49}).passed and not Below('x', 0.5)({'x': 0.5}).passed
    result = Band('x', 1.0, 2.0)({'x': 1.5})
    assert '1.5' in result.text and '1 <= x <= 2' in result.text


def test_missing_or_nan_numbers_fail_and_say_so():
    for check in (
        Band('x', 0, 1),
        Above('x', 0),
        Below('x', 1),
        Lower('x', 'y'),
        Within('x', 'y', 1),
    ):
        for measured in ({}, {'x': math.nan, 'y': 0.5}):
            result = check(measured)
            assert not result.passed
            assert 'not measured' in result.text


def test_direction_with_margin():
    assert Lower('a', 'b', 0.1)({'a': 1.0, 'b': 1.2}).passed
    assert not Lower('a', 'b', 0.1)({'a': 1.15, 'b': 1.2}).passed
    assert not Lower('a', 'b', 0.0)({'a': 1.3, 'b': 1.2}).passed
    # A diverged run's loss counts as infinitely bad: the other side wins by any margin.
    assert Lower('a', 'b', 5.0)({'a': 4.0, 'b': math.inf}).passed
    # ... but two diverged runs show no direction.
    assert not Lower('a', 'b', 0.1)({'a': math.inf, 'b': math.inf}).passed
    assert Within('a', 'b', 0.5)({'a': 1.0, 'b': 1.4}).passed
    assert not Within('a', 'b', 0.5)({'a': 1.0, 'b': 1.6}).passed


def test_steps_to_reach():
    assert steps_to_reach([100, 200, 300], [2.0, 1.5, 1.2], 1.5) == 200
    assert steps_to_reach([100, 200], [2.0, 1.9], 1.5) == math.inf


# --------------------------------------------------------------------------- #
# Reading runs.


def _trial(folder, index, overrides, metrics, status=records.DONE):
    trial = records.Trial(index, f'{index:03d}', os.path.join(folder, f'{index:03d}'), overrides)
    trial.save()
    trial.update_status(status=status, wall_time_s=10.0 * (index + 1))
    with open(os.path.join(trial.directory, 'metrics.jsonl'), 'w') as f:
        for record in metrics:
            f.write(json.dumps(record) + '\n')
    return trial


def test_results_read_finals_curves_and_divergence(tmp_path):
    folder = str(tmp_path / 'cells')
    _trial(
        folder,
        0,
        {'model.cell': 'lstm'},
        [{'step': 50, 'eval/loss': 2.0}, {'step': 100, 'eval/loss': 1.5}],
    )
    _trial(folder, 1, {'model.cell': 'gru'}, [{'step': 50, 'eval/loss': 1.8}])
    _trial(folder, 2, {'model.cell': 'rnn'}, [{'step': 50, 'train/loss': 9.0}], records.DIVERGED)
    res = Results.read('full', {'cells': folder})
    assert res.final('cells', 'eval/loss', {'model.cell': 'lstm'}) == 1.5
    assert res.curve('cells', 'eval/loss', {'model.cell': 'lstm'}) == ([50, 100], [2.0, 1.5])
    assert math.isnan(res.final('cells', 'eval/loss', {'model.cell': 'rnn'}))
    assert res.diverged('cells', {'model.cell': 'rnn'})
    with pytest.raises(ResultError, match='3 trials match'):
        res.final('cells', 'eval/loss')
    with pytest.raises(ResultError, match='0 trials match'):
        res.final('cells', 'eval/loss', {'model.cell': 'lnlstm'})
    with pytest.raises(ResultError, match='no eval/accuracy'):
        res.final('cells', 'eval/accuracy', {'model.cell': 'gru'})
    with pytest.raises(ResultError, match="no run 'other'"):
        res.trials('other')


def test_run_dir_names_the_single_trial_of_an_earlier_run(tmp_path):
    folder = str(tmp_path / 'pretrain')
    trial = _trial(folder, 0, {}, [])
    assert claim_runner._resolve(RunDir('pretrain'), {'pretrain': folder}) == trial.directory
    assert claim_runner._resolve(0.5, {}) == 0.5
    with pytest.raises(ValueError, match='no earlier run'):
        claim_runner._resolve(RunDir('later'), {'pretrain': folder})
    _trial(folder, 1, {'seed': 1}, [])
    with pytest.raises(ValueError, match='2 trials, not one'):
        claim_runner._resolve(RunDir('pretrain'), {'pretrain': folder})


# --------------------------------------------------------------------------- #
# RESULTS.md.

_TOY = [
    Claim(
        'alpha', 'Alpha holds', 'A et al. 2001', 'x = 1.0', (), lambda r: {}, (Band('x', 0.9, 1.1),)
    ),
    Claim(
        'beta', 'Beta holds', 'B et al. 2002', 'y < z', (), lambda r: {}, (Lower('y', 'z', 0.1),)
    ),
    Claim('gamma', 'Gamma holds', 'C et al. 2003', 'w', (), lambda r: {}, (Above('w', 0),)),
]


def _outcome(claim, scale, verdict, measured, checks):
    return {
        'claim': claim,
        'scale': scale,
        'verdict': verdict,
        'measured': measured,
        'checks': checks,
        'errors': [],
        'command': f'python -m experiments.reproduce --claim={claim} --scale={scale}',
        'runs': [{'trial': 't', 'status': 'done', 'wall_time_s': 61.0, 'command': 'python -m x'}],
        'wall_time_s': 61.0,
        'machine': {'cpu': 'Test CPU', 'cores': 2, 'accelerator': None, 'jax': '0.0'},
        'code': 'abc1234',
        'date': '2026-12-06 10:00 UTC',
    }


def test_results_md_from_every_stored_outcome(tmp_path):
    results_dir = tmp_path / 'results'
    results_dir.mkdir()
    passed = {'text': '0.9 <= x <= 1.1 (measured 1.02)', 'passed': True}
    failed = {'text': 'y <= z - 0.1 (measured 1 vs 1.05: difference 0.05)', 'passed': False}
    records.write_json(
        str(results_dir / 'alpha.full.json'),
        _outcome('alpha', 'full', 'PASS', {'x': 1.02}, [passed]),
    )
    records.write_json(
        str(results_dir / 'beta.ci.json'),
        _outcome('beta', 'ci', 'FAIL', {'y': 1.0, 'z': 1.05, 'y_600': 2, 'y_1200': 3}, [failed]),
    )
    path = str(tmp_path / 'out' / 'RESULTS.md')
    text = report.write_results_md(path, _TOY, str(results_dir))
    assert open(path).read() == text
    rows = [line for line in text.splitlines() if line.startswith('| ') and 'holds' in line]
    assert len(rows) == 3
    assert 'PASS (2026-12-06)' in rows[0] and 'not run' in rows[0]
    assert 'FAIL (2026-12-06)' in rows[1]
    assert rows[2].count('not run') == 2
    assert '- FAIL: y <= z - 0.1' in text and '- pass: 0.9 <= x <= 1.1' in text
    assert 'Test CPU, 2 cores' in text and '1m01s' in text
    # Numbers inside names sort by value, not as text.
    assert 'Ours: y = 1, y_600 = 2, y_1200 = 3, z = 1.05.' in text
    # Another claim's outcome joins without dropping the others.
    records.write_json(
        str(results_dir / 'gamma.full.json'), _outcome('gamma', 'full', 'PASS', {'w': 1.0}, [])
    )
    text = report.write_results_md(path, _TOY, str(results_dir))
    assert 'PASS (2026-12-06)' in text.split('Gamma holds')[1].splitlines()[0]
    assert '- FAIL: y <= z - 0.1' in text
    # The totals per scale: alpha and gamma name the same run, which counts once.
    assert '- **full**: 2 of 3 claims run (2 PASS, 0 FAIL, 0 ERROR); their 1 distinct runs' in text
    assert 'took 1m01s' in text.split('- **full**')[1].splitlines()[0]
    assert '- **ci**: 1 of 3 claims run (0 PASS, 1 FAIL, 0 ERROR)' in text


# --------------------------------------------------------------------------- #
# The registry.


def test_registry_names_are_unique_and_every_run_resolves():
    assert len({c.name for c in CLAIMS}) == len(CLAIMS)
    for claim in CLAIMS:
        assert claim.checks, claim.name
        earlier = set()
        for run in claim.runs:
            path, _, variant = run.config.partition(':')
            module = config_module(os.path.join(REPO, path))
            base = module.get_config(variant) if variant else module.get_config()
            for scale in ('ci', 'full'):
                overrides = run.scale_overrides(scale)
                for value in overrides.values():
                    if isinstance(value, RunDir):
                        assert value.run in earlier, (claim.name, run.name, value.run)
                for trial in run.trials:
                    plain = {
                        k: v for k, v in {**overrides, **trial}.items() if not isinstance(v, RunDir)
                    }
                    apply_overrides(base, plain)  # raises on a key the config lacks
            earlier.add(run.name)


def test_registry_refuses_reused_names_and_shared_runs_declared_twice():
    run = Run('a', 'configs/char_lm.py', ci={'num_train_steps': 5}, shared='one')

    def claim(name, *runs):
        return Claim(name, 'title', 'citation', 'paper', runs, lambda res: {}, ())

    check_registry([claim('x', run), claim('y', dataclasses.replace(run, name='b'))], 'reg')
    with pytest.raises(ValueError, match='reg: claim names used twice: x'):
        check_registry([claim('x', run), claim('x', run)], 'reg')
    with pytest.raises(ValueError, match="'shared' is the folder of shared runs"):
        check_registry([claim('shared', run)], 'reg')
    other = dataclasses.replace(run, ci={'num_train_steps': 6}, evaluate=())
    with pytest.raises(
        ValueError,
        match=r"'one' is declared differently by claims 'x' and 'y' "
        r'\(they differ in ci, evaluate\)',
    ):
        check_registry([claim('x', run), claim('y', other)], 'reg')


def test_list_and_bad_claim():
    listed = subprocess.run(
        [sys.executable, '-m', 'experiments.reproduce', '--list'],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert listed.returncode == 0, listed.stderr
    assert [line.split()[0] for line in listed.stdout.splitlines()] == [c.name for c in CLAIMS]
    bad = subprocess.run(
        [sys.executable, '-m', 'experiments.reproduce', '--claim=no_such_claim'],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2
    assert 'no claim no_such_claim' in bad.stderr


# --------------------------------------------------------------------------- #
# The ci scale, end to end.


def test_ci_scale_of_three_claims(tmp_path):
    committed = os.path.join(REPO, 'RESULTS.md')
    before = open(committed).read() if os.path.exists(committed) else None
    results_dir, results_md = tmp_path / 'results', tmp_path / 'RESULTS.md'
    command = [
        sys.executable,
        '-m',
        'experiments.reproduce',
        f'--claim={",".join(CI_CLAIMS)}',
        '--scale=ci',
        f'--workdir={tmp_path / "runs"}',
        f'--results_dir={results_dir}',
        f'--results_md={results_md}',
        '--parallel=2',
    ]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    for name in CI_CLAIMS:
        outcome = json.load(open(results_dir / f'{name}.ci.json'))
        assert outcome['verdict'] == 'PASS', outcome
        assert outcome['checks'] and all(c['passed'] for c in outcome['checks'])
        assert outcome['runs'] and all(
            r['status'] in ('done', 'evaluated') for r in outcome['runs']
        )
        assert all(r['command'].startswith('python -m experiments.') for r in outcome['runs'])
    # adding_problem and gradient_flow share their runs: trained once, read by both.
    shared = {
        name: sorted(r['trial'] for r in json.load(open(results_dir / f'{name}.ci.json'))['runs'])
        for name in ('adding_problem', 'gradient_flow')
    }
    assert shared['adding_problem'] == shared['gradient_flow']
    assert all(
        t.startswith(os.path.join('shared', 'ci', 'adding_t100')) for t in shared['gradient_flow']
    )
    assert '2 trials already finished' in done.stdout + done.stderr
    text = results_md.read_text()
    for claim in CLAIMS:
        assert claim.title in text
    assert text.count('PASS (') == len(CI_CLAIMS)
    assert (open(committed).read() if os.path.exists(committed) else None) == before

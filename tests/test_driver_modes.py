"""What every driver shares (experiments/common.py), tried as a user would: --step in the
modes that read a checkpoint, a damaged checkpoint, out-of-range flags, a workdir that is
a file. The char-LM driver stands in for all three: they run through the same code."""

import json
import logging
import os
import pathlib
import subprocess
import sys

import pytest
from absl import flags
from absl.testing import flagsaver

from experiments import char_lm, common
from seqmodels import decoding, training
from tests.test_char_lm import tiny_config

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope='module')
def run(tmp_path_factory):
    """A tiny char-LM run with checkpoints at steps 3 and 6, and its eval records."""
    root = tmp_path_factory.mktemp('char_lm')
    config = tiny_config(root)
    workdir = str(root / 'run')
    char_lm.validate(config)
    _, _, task = char_lm.build(config, workdir)
    training.train_and_evaluate(config, workdir, task)
    records = {r['step']: r for r in map(json.loads, open(os.path.join(workdir, 'metrics.jsonl')))}
    return workdir, records


@pytest.fixture
def parsed_flags():
    """The drivers' absl flags as a fresh command line gives them; restored afterwards."""
    with flagsaver.flagsaver():
        flags.FLAGS.mark_as_parsed()
        yield


def evaluate_json(workdir, capsys):
    char_lm.evaluate(workdir)
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_step_picks_the_checkpoint_that_modes_read(run, capsys, parsed_flags):
    workdir, records = run
    for step in (3, 6):
        with flagsaver.flagsaver(step=step):
            got = evaluate_json(workdir, capsys)
        assert got['eval/loss'] == pytest.approx(records[step]['eval/loss'], rel=1e-6)
    with flagsaver.flagsaver(step=4), pytest.raises(FileNotFoundError, match='saved steps: 3, 6'):
        char_lm.evaluate(workdir)


def test_a_damaged_latest_checkpoint_falls_back_with_a_warning(
    run, tmp_path, capsys, parsed_flags, caplog
):
    workdir, records = run
    copy = tmp_path / 'run'
    subprocess.run(['cp', '-r', workdir, str(copy)], check=True)
    # Truncate every data file of step 6's parameters, as a full disk or a kill would.
    for path in (copy / 'checkpoints' / '6' / 'params').rglob('*'):
        if path.is_file() and path.stat().st_size > 0 and 'metadata' not in path.name:
            path.write_bytes(path.read_bytes()[:1])
    with caplog.at_level(logging.WARNING):
        got = evaluate_json(str(copy), capsys)
    assert got['eval/loss'] == pytest.approx(records[3]['eval/loss'], rel=1e-6)
    assert any('6' in r.getMessage() and 'damaged' in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    'flag, value, message',
    [
        ('top_p', 1.5, r'--top_p must lie in \(0, 1\]'),
        ('top_p', 0.0, r'--top_p must lie in \(0, 1\]'),
        ('top_k', 0, '--top_k must be an integer >= 1'),
        ('temperature', -0.5, '--temperature must be >= 0'),
    ],
)
def test_sampling_flags_out_of_range_name_the_valid_range(run, parsed_flags, flag, value, message):
    with flagsaver.flagsaver(**{flag: value}), pytest.raises(common.UsageError, match=message):
        char_lm.sample(run[0])


def test_check_sampling_options_accepts_the_edges():
    decoding.check_sampling_options(0.0, 1, 1.0)  # greedy, one token, the whole nucleus
    decoding.check_sampling_options(2.0, None, None)
    with pytest.raises(ValueError, match='temperature'):
        decoding.check_sampling_options(float('nan'))


def test_a_prompt_outside_the_vocabulary_is_named(run, capsys, parsed_flags, caplog):
    with (
        flagsaver.flagsaver(prompt='line 日本', num_chars=5, temperature=0.0),
        caplog.at_level(logging.WARNING),
    ):
        char_lm.sample(run[0])
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "'日'" in warnings[0] and "'本'" in warnings[0]
    assert "'l'" not in warnings[0]  # characters the run knows are not named
    out = capsys.readouterr().out
    assert out.startswith('line 日本') and len(out.rstrip('\n')) == len('line 日本') + 5


def run_cli(*args):
    return subprocess.run(
        [sys.executable, '-m', 'experiments.char_lm', *args],
        cwd=REPO_ROOT,
        env=dict(os.environ, JAX_PLATFORMS='cpu'),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_bad_command_lines_end_in_one_line_and_write_nothing(run, tmp_path):
    a_file = tmp_path / 'notes.txt'
    a_file.write_text('keep me\n')
    result = run_cli('--config=configs/char_lm.py', f'--workdir={a_file}')
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        f'error: --workdir={a_file} is an existing file, not a directory; choose another path'
    )
    assert 'Traceback' not in result.stderr
    assert a_file.read_text() == 'keep me\n' and sorted(os.listdir(tmp_path)) == ['notes.txt']

    result = run_cli('--mode=sample', f'--workdir={run[0]}', '--top_p=1.5')
    assert result.returncode == 2 and 'Traceback' not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == 'error: --top_p must lie in (0, 1], got 1.5'


def test_every_driver_reads_the_one_step_flag_of_common():
    from experiments import translation, vit  # noqa: F401  (importing defines their flags)

    assert flags.FLAGS.find_module_defining_flag('step') == common.__name__

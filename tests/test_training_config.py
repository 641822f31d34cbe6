"""Config validation: one clear error, naming the key, before anything compiles."""

import pathlib

import pytest
from absl import flags
from ml_collections import config_flags

from seqmodels import training
from seqmodels.training import ConfigError


def _config(**overrides):
    config = training.default_config()
    config.batch_size, config.num_train_steps = 16, 10
    config.model.d_model = 32
    config.model.dropout_rate = 0.1
    for key, value in overrides.items():
        node = config
        *parents, leaf = key.split('.')
        for parent in parents:
            node = node[parent]
        node[leaf] = value
    return config


def test_valid_config_resolves_missing_engine_keys():
    config = training.validate_config({'batch_size': 8, 'num_train_steps': 3}, num_devices=8)
    assert config.optimizer == 'adam' and config.keep_checkpoints == 3
    assert config.grad_accum_steps == 1 and config.grad_clip_norm == 0.0


@pytest.mark.parametrize(
    'key, value, fragment',
    [
        ('batch_size', 0, 'positive'),
        ('batch_size', -4, 'positive'),
        ('num_train_steps', 0, 'positive'),
        ('learning_rate', -0.1, 'non-negative'),
        ('warmup_steps', -1, 'non-negative'),
        ('grad_clip_norm', -1.0, 'non-negative'),
        ('weight_decay', -0.1, 'non-negative'),
        ('model.dropout_rate', -0.1, '[0, 1)'),
        ('model.dropout_rate', 1.0, '[0, 1)'),
        ('optimizer', 'adagrad', 'valid: sgd, rmsprop, adam, adamw'),
        ('schedule', 'linear', 'valid: constant, warmup_cosine, warmup_linear, rsqrt'),
        ('grad_accum_steps', 0, 'positive'),
        ('log_every_steps', -1, 'non-negative'),
        ('keep_checkpoints', 0, 'positive'),
        ('adam_b2', 1.0, '[0, 1)'),
    ],
)
def test_impossible_values_name_the_key(key, value, fragment):
    with pytest.raises(ConfigError) as error:
        training.validate_config(_config(**{key: value}))
    message = str(error.value)
    assert message.startswith(f'config.{key}={value!r}:'), message
    assert fragment in message


def test_weight_decay_needs_adamw():
    with pytest.raises(ConfigError, match=r'config.weight_decay=0.1: is only used by optimizer'):
        training.validate_config(_config(weight_decay=0.1, optimizer='adam'))
    training.validate_config(_config(weight_decay=0.1, optimizer='adamw'))


def test_rsqrt_needs_d_model_and_warmup():
    config = _config(schedule='rsqrt', warmup_steps=0)
    with pytest.raises(ConfigError, match='config.warmup_steps'):
        training.validate_config(config)
    del config.model['d_model']
    config.warmup_steps = 10
    with pytest.raises(ConfigError, match='config.model.d_model'):
        training.validate_config(config)


def test_batch_size_divisible_by_devices_times_accumulation():
    with pytest.raises(ConfigError, match=r'config.batch_size=12: .*devices \(8\)'):
        training.validate_config(_config(batch_size=12), num_devices=8)
    with pytest.raises(ConfigError, match=r'grad_accum_steps \(4\) = 32'):
        training.validate_config(_config(batch_size=16, grad_accum_steps=4), num_devices=8)
    training.validate_config(_config(batch_size=32, grad_accum_steps=4), num_devices=8)


def test_require_for_experiment_keys():
    training.require(True, 'model.num_heads', 'unused')
    with pytest.raises(ConfigError, match=r'^config.model.num_heads=3: must divide d_model$'):
        training.require(32 % 3 == 0, 'model.num_heads', 'must divide d_model', 3)


def test_train_and_evaluate_rejects_before_touching_the_workdir(tmp_path):
    class Unused:
        def __getattr__(self, name):
            raise AssertionError(f'task.{name} used before validation')

    workdir = tmp_path / 'run'
    with pytest.raises(ConfigError, match='config.learning_rate'):
        training.train_and_evaluate(_config(learning_rate=-1.0), str(workdir), Unused())
    assert not workdir.exists()


# --- command line: unknown keys and bad types through absl config_flags ---


@pytest.fixture
def config_file(tmp_path):
    path = tmp_path / 'toy_config.py'
    path.write_text(
        'import ml_collections\n'
        'def get_config():\n'
        '  return ml_collections.ConfigDict('
        "{'batch_size': 8, 'model': {'d_model': 4}})\n"
    )
    return str(path)


def _parse(argv, monkeypatch):
    # config_flags reads the overrides from sys.argv, not from the parser's argv.
    monkeypatch.setattr('sys.argv', ['prog'] + argv)
    flag_values = flags.FlagValues()
    config_flags.DEFINE_config_file('config', flag_values=flag_values)
    training.parse_flags(['prog'] + argv, flag_values)
    return flag_values


def test_parse_flags_accepts_known_keys(config_file, monkeypatch):
    flag_values = _parse([f'--config={config_file}', '--config.model.d_model=16'], monkeypatch)
    assert flag_values.config.model.d_model == 16


@pytest.mark.parametrize(
    'override, expected',
    [
        (
            '--config.batch_sizee=3',
            'unknown config key --config.batch_sizee (did you mean batch_size?)',
        ),
        (
            '--config.model.d_modl=3',
            'unknown config key --config.model.d_modl (did you mean d_model?)',
        ),
        ('--config.batch_size=abc', '--config.batch_size=abc'),
    ],
)
def test_parse_flags_one_line_errors(config_file, capsys, monkeypatch, override, expected):
    with pytest.raises(SystemExit) as exit_info:
        _parse([f'--config={config_file}', override], monkeypatch)
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    first = err.splitlines()[0]
    assert first.startswith('FATAL Flags parsing error: ') and expected in first, err
    assert 'Traceback' not in err


# --- command line: choosing a config file and variant -------------------------

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    'argv, expected',
    [
        (
            ['--config=configs/char_lm.py:nosuch'],
            "unknown variant 'nosuch' of configs/char_lm.py; choose one of: rnn, elman, lstm, "
            'lnlstm, gru, gpt, shakespeare_gpt, bench_lstm, bench_gpt',
        ),
        (
            ['--config=configs/nope.py'],
            '--config=configs/nope.py: config file configs/nope.py does not exist; the config '
            'files in configs/ are: bert.py, char_lm.py, gpt.py, synthetic.py, translation.py, '
            'vit.py',
        ),
        # With an override config_flags fails while parsing instead of on first use.
        (
            ['--config=configs/nope.py:small', '--config.batch_size=3'],
            '--config=configs/nope.py:small: config file configs/nope.py does not exist',
        ),
        (
            ['--config', 'nowhere/x.py'],
            f'--config=nowhere/x.py: config file nowhere/x.py does not exist; paths are relative '
            f'to the working directory {REPO_ROOT}',
        ),
        (['--config=configs'], '--config=configs: config file configs is a directory'),
    ],
)
def test_parse_flags_bad_config_selection_is_one_line(argv, expected, capsys, monkeypatch):
    monkeypatch.chdir(REPO_ROOT)
    with pytest.raises(SystemExit) as exit_info:
        _parse(argv, monkeypatch)
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert err.count('\n') == 1 and 'Traceback' not in err, err
    assert err.startswith(f'FATAL Flags parsing error: {expected}'), err


def test_parse_flags_loads_a_variant(monkeypatch):
    monkeypatch.chdir(REPO_ROOT)
    flag_values = _parse(['--config=configs/char_lm.py:gru', '--config.batch_size=3'], monkeypatch)
    assert (flag_values.config.model.cell, flag_values.config.batch_size) == ('gru', 3)

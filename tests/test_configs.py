"""The config files: every variant builds and validates; variant tables and overrides."""

import importlib
import pathlib

import jax
import ml_collections
import pytest
from absl import flags
from ml_collections import config_flags

from seqmodels import models, training
from seqmodels.nn.recurrent import CELLS
from seqmodels.training import ConfigError
from seqmodels.training.config import ENGINE_DEFAULTS, apply_overrides, select_variant

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
CONFIG_FILES = ('char_lm', 'translation', 'vit', 'gpt', 'bert')


def _module(name):
    return importlib.import_module(f'configs.{name}')


def _every_variant():
    for name in CONFIG_FILES:
        for variant in _module(name).VARIANTS:
            yield name, variant
    # ViT's published sizes are a family (size + patch size), not table rows.
    for size in _module('vit').SIZES:
        for patch_size in (14, 16, 32):
            yield 'vit', f'{size}{patch_size}'


EVERY_VARIANT = list(_every_variant())


@pytest.mark.parametrize('name, variant', EVERY_VARIANT, ids=[f'{n}:{v}' for n, v in EVERY_VARIANT])
def test_every_variant_builds_resolves_and_validates(name, variant):
    config = _module(name).get_config(variant)
    assert isinstance(config, ml_collections.ConfigDict)
    resolved = training.resolve_config(config)
    assert set(ENGINE_DEFAULTS) <= set(resolved.keys())
    training.validate_config(config)
    assert isinstance(config.dataset, str) and config.model.name


@pytest.mark.parametrize('name', CONFIG_FILES)
def test_no_variant_is_the_default_variant(name):
    module = _module(name)
    default = module.get_config(module.DEFAULT_VARIANT).to_dict()
    # config_flags calls get_config() for `file.py` and get_config('') for `file.py:`.
    assert module.get_config().to_dict() == default
    assert module.get_config('').to_dict() == default


def test_variants_differ_from_the_base_only_where_their_table_says():
    module = _module('char_lm')
    base, gru = module.get_config().to_dict(), module.get_config('gru').to_dict()
    assert base['model'].pop('cell') == 'lstm' and gru['model'].pop('cell') == 'gru'
    assert gru == base


def test_a_returned_config_shares_nothing_with_the_variant_table():
    module = _module('char_lm')
    config = module.get_config('gpt')
    config.model.d_model = 7
    assert module.get_config('gpt').model.d_model == 128


def test_char_lm_has_one_variant_per_recurrent_cell():
    module = _module('char_lm')
    assert set(CELLS) <= set(module.VARIANTS)
    shapes = {}
    for cell in CELLS:
        config = module.get_config(cell).model
        assert (config.name, config.cell) == ('rnn_lm', cell)
        config.update(vocab_size=5, embed_dim=3, hidden_size=4)
        model = models.build_model(config)
        params = jax.eval_shape(
            model.init, jax.random.key(0), *models.example_inputs(config, model)
        )['params']
        shapes[cell] = jax.tree.map(lambda x: x.shape, params)
    # `elman` is another name of the `rnn` cell; the LSTMs have 4 gates, the GRU 3.
    assert shapes['elman'] == shapes['rnn']
    assert len({str(tree) for tree in shapes.values()}) == len(CELLS) - 1


@pytest.mark.parametrize('name', CONFIG_FILES)
def test_unknown_variant_names_the_file_and_the_choices(name):
    module = _module(name)
    with pytest.raises(ConfigError) as error:
        module.get_config('nosuch')
    message = str(error.value)
    assert message.startswith("unknown variant 'nosuch' of ")
    assert f'configs/{name}.py; choose one of: ' in message
    listed = message.split('choose one of: ')[1]
    assert listed.startswith(', '.join(module.VARIANTS))


def test_vit_unknown_variant_also_describes_the_published_sizes():
    with pytest.raises(ConfigError, match=r'digits, small, or a size ti/s/b/l/h followed by'):
        _module('vit').get_config('x16')
    with pytest.raises(ConfigError, match='patch size 17 does not divide the 224-pixel'):
        _module('vit').get_config('b17')


def test_select_variant_returns_the_table_row():
    table = {'a': {}, 'b': {'x': 1}}
    assert select_variant(table, 'b', 'configs/toy.py') == {'x': 1}
    with pytest.raises(
        ConfigError,
        match=r"^unknown variant 'c' of configs/toy.py; "
        r'choose one of: a, b$',
    ):
        select_variant(table, 'c', 'configs/toy.py')


# --- apply_overrides ---------------------------------------------------------


def _base():
    return ml_collections.ConfigDict(
        {
            'learning_rate': 1e-3,
            'batch_size': 32,
            'schedule': 'constant',
            'boundaries': (16, 32),
            'layers': [64, 64],
            'model': {'name': 'rnn_lm', 'cell': 'lstm', 'hidden_size': 256},
        }
    )


def test_dotted_keys_set_nested_fields_of_a_copy():
    base = _base()
    config = apply_overrides(base, {'model.cell': 'gru', 'batch_size': 8})
    assert (config.model.cell, config.batch_size) == ('gru', 8)
    assert (base.model.cell, base.batch_size) == ('lstm', 32)  # the input is untouched
    assert config.model.hidden_size == 256 and config.learning_rate == 1e-3


def test_a_whole_sub_config_replaces_the_old_one_and_later_keys_refine_it():
    gpt = {'name': 'gpt', 'd_model': 128, 'scan_layers': True}
    config = apply_overrides(_base(), {'model': gpt, 'model.scan_layers': False})
    assert isinstance(config.model, ml_collections.ConfigDict)
    assert config.model.to_dict() == {'name': 'gpt', 'd_model': 128, 'scan_layers': False}
    assert gpt['scan_layers'] is True  # the table's value is copied, not shared


def test_a_config_dict_value_is_copied():
    table_model = ml_collections.ConfigDict({'name': 'gpt', 'd_model': 128})
    config = apply_overrides(_base(), {'model': table_model})
    config.model.d_model = 256
    assert table_model.d_model == 128


def test_values_take_the_type_of_their_field():
    config = apply_overrides(
        _base(),
        {
            'learning_rate': 3,
            'boundaries': [8, 24, 48],
            'layers': (128,),
            'schedule': 'warmup_cosine',
        },
    )
    assert type(config.learning_rate) is float and config.learning_rate == 3.0
    assert config.boundaries == (8, 24, 48)
    assert config.layers == [128]
    assert config.schedule == 'warmup_cosine'


@pytest.mark.parametrize(
    'key, value, pattern',
    [
        (
            'learning_rat',
            0.1,
            r'^config.learning_rat: no such key \(did you mean learning_rate\?\)$',
        ),
        ('model.cel', 'gru', r'^config.model.cel: no such key \(did you mean model.cell\?\)$'),
        ('optim.lr', 0.1, r'^config.optim: no such sub-config \(overriding optim.lr\)$'),
        ('batch_size.x', 1, r'^config.batch_size=32: is not a sub-config, so batch_size.x cannot'),
        (
            'learning_rate',
            'fast',
            r"^config.learning_rate='fast': this float field cannot hold a str$",
        ),
        ('batch_size', 0.5, r'^config.batch_size=0.5: this int field cannot hold a float$'),
        ('model', 3, r'^config.model=3: this ConfigDict field cannot hold a int$'),
    ],
)
def test_bad_overrides_name_the_key(key, value, pattern):
    with pytest.raises(ConfigError, match=pattern):
        apply_overrides(_base(), {key: value})


def test_new_keys_only_where_the_config_file_names_them():
    config = apply_overrides(
        _base(),
        {'corpus_sizes': {'train': 4}, 'model.tied': True},
        new_keys=('corpus_sizes', 'model.tied'),
    )
    assert config.corpus_sizes.train == 4 and config.model.tied is True
    with pytest.raises(ConfigError, match='config.corpus: no such key'):
        apply_overrides(_base(), {'corpus': 1}, new_keys=('corpus_sizes',))


def test_locked_configs_and_plain_dicts():
    # config_flags hands drivers a locked ConfigDict; a sweep trial overrides it.
    locked = _base()
    locked.lock()
    config = apply_overrides(locked, {'model.hidden_size': 512})
    assert config.model.hidden_size == 512 and config.is_locked
    assert apply_overrides({'a': {'b': 1}}, {'a.b': 2}).a.b == 2


# --- the published recipes of gpt.py and bert.py ------------------------------


def _lr(config, counts):
    schedule = training.make_schedule(training.validate_config(config))
    return [float(schedule(count)) for count in counts]


def test_gpt1_schedule_is_the_papers():
    # §4.1: max lr 2.5e-4 after 2000 linear warmup updates, cosine annealing to 0.
    config = _module('gpt').get_config('gpt1')
    assert (config.optimizer, config.weight_decay) == ('adamw', 0.01)
    total = config.num_train_steps
    middle = 2000 + (total - 2000) // 2
    got = _lr(config, [0, 999, 1999, middle, total])
    assert got == pytest.approx(
        [2.5e-4 / 2000, 2.5e-4 / 2, 2.5e-4, 1.25e-4, 0.0], rel=1e-5, abs=1e-12
    )


def test_gpt2_small_schedule():
    config = _module('gpt').get_config('gpt2_small')
    assert _lr(config, [1999, config.num_train_steps]) == pytest.approx([6e-4, 6e-5], rel=1e-5)


def test_bert_schedule_is_the_papers():
    # Appendix A.2: lr 1e-4, warmup over the first 10,000 steps, linear decay.
    for variant in ('base', 'large'):
        config = _module('bert').get_config(variant)
        assert (
            config.optimizer,
            config.weight_decay,
            config.adam_b1,
            config.adam_b2,
            config.batch_size,
            config.num_train_steps,
        ) == ('adamw', 0.01, 0.9, 0.999, 256, 1_000_000)
        got = _lr(config, [4_999, 9_999, 505_000, 1_000_000])
        assert got == pytest.approx([5e-5, 1e-4, 5e-5, 0.0], rel=1e-4, abs=1e-12)


@pytest.mark.parametrize('path', ['configs/gpt.py:gpt1', 'configs/bert.py:large'])
def test_engine_keys_of_gpt_and_bert_override_from_the_command_line(path, monkeypatch):
    argv = [
        'prog',
        f'--config={path}',
        '--config.schedule=constant',
        '--config.optimizer=sgd',
        '--config.momentum=0.9',
        '--config.weight_decay=0.0',
    ]
    monkeypatch.setattr('sys.argv', argv)  # config_flags reads overrides from sys.argv
    monkeypatch.chdir(REPO_ROOT)
    flag_values = flags.FlagValues()
    config_flags.DEFINE_config_file('config', flag_values=flag_values)
    training.parse_flags(argv, flag_values)
    config = flag_values.config
    assert (config.schedule, config.optimizer, config.momentum) == ('constant', 'sgd', 0.9)
    training.validate_config(config)

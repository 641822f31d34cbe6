"""`models.check_config`: every model check lives there once and names the key."""

import pytest

from seqmodels import models
from seqmodels.errors import ConfigError
from seqmodels.nn.recurrent import CELLS


def gpt(**overrides):
    return {
        'name': 'gpt',
        'vocab_size': 65,
        'max_len': 16,
        'd_model': 16,
        'num_heads': 2,
        'd_ff': 32,
        'num_layers': 1,
        **overrides,
    }


def rnn_lm(**overrides):
    return {
        'name': 'rnn_lm',
        'vocab_size': 65,
        'embed_dim': 8,
        'hidden_size': 16,
        'num_layers': 1,
        'cell': 'lstm',
        **overrides,
    }


def vit(**overrides):
    return {
        'name': 'vit',
        'image_size': 8,
        'patch_size': 2,
        'num_classes': 10,
        'd_model': 16,
        'num_heads': 2,
        'd_ff': 32,
        'num_layers': 1,
        **overrides,
    }


@pytest.mark.parametrize(
    'config', [gpt(), rnn_lm(), vit(), vit(position_embedding='sincos2d', pool='gap')]
)
def test_sound_configs_pass_and_build(config):
    models.check_config(config)
    assert (
        type(models.build_model(config)).__name__
        == {'gpt': 'GPT', 'rnn_lm': 'RNNLM', 'vit': 'ViT'}[config['name']]
    )


@pytest.mark.parametrize('cell', sorted(CELLS))
def test_every_registered_cell_is_accepted(cell):
    models.check_config(rnn_lm(cell=cell))


@pytest.mark.parametrize(
    'config, key',
    [
        (gpt(num_heads=3), r'config\.model\.d_model=16: must be divisible by model\.num_heads=3'),
        (vit(num_heads=5), r'config\.model\.d_model=16: must be divisible by model\.num_heads=5'),
        (rnn_lm(cell='lsmt'), r"config\.model\.cell='lsmt': must be one of rnn, elman, lstm"),
        (rnn_lm(dropout_kind='spatial'), r'config\.model\.dropout_kind'),
        (rnn_lm(hidden_size=0), r'config\.model\.hidden_size=0: must be a positive integer'),
        (gpt(norm='sandwich'), r"config\.model\.norm='sandwich': must be one of post, pre"),
        (gpt(remat='all'), r"config\.model\.remat='all': must be one of none, block, dots"),
        (gpt(dtype='bfloat16'), r'config\.model\.dtype: is set by config\.precision'),
        (vit(pool='max'), r"config\.model\.pool='max'"),
        (
            vit(d_model=18, num_heads=2, position_embedding='sincos2d'),
            r'config\.model\.d_model=18: must be divisible by 4',
        ),
        (gpt(hidden=3), r'model\.hidden is not a field of GPT'),
        ({'name': 'lstm_lm'}, r"config\.model\.name='lstm_lm': is not a model family"),
    ],
)
def test_each_bad_value_names_its_key(config, key):
    with pytest.raises(ConfigError, match=key):
        models.check_config(config)

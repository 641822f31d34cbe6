"""The sweeps declared in configs/: every trial resolves against the variant it is meant
for, and each sweep holds what it claims (one parameter budget for the cells, Table 3's
constant computation for the heads rows, valid patch sizes). No trial runs here."""

import jax
import numpy as np
import pytest

from configs import char_lm, translation, vit
from seqmodels import models
from seqmodels.sweep import SweepError
from seqmodels.sweep.overrides import apply_overrides

DECLARED = [
    (char_lm, 'lstm', 'cells'),
    (char_lm, 'lstm', 'dropout'),
    (char_lm, 'shakespeare_gpt', 'lr'),
    (translation, 'multi30k_small', 'table3'),
    (translation, 'tiny', 'table3'),
    (vit, 'digits', 'patch_depth'),
    (vit, 'small', 'patch_depth_28'),
]


def resolved(module, variant, name):
    base = module.get_config(variant)
    return [apply_overrides(base, trial) for trial in module.get_sweep(name)]


@pytest.mark.parametrize(
    'module, variant, name',
    DECLARED,
    ids=[f'{m.__name__.split(".")[-1]}:{v}:{n}' for m, v, n in DECLARED],
)
def test_every_declared_trial_resolves(module, variant, name):
    configs = resolved(module, variant, name)
    assert len(configs) == len(module.get_sweep(name)) >= 4
    for config in configs:
        models.check_config(config.model)


def test_unknown_sweeps_are_named():
    for module in (char_lm, translation, vit):
        with pytest.raises(ValueError, match='unknown .* sweep'):
            module.get_sweep('nope')


def num_params(model_config):
    model = models.build_model(model_config)
    shapes = jax.eval_shape(lambda: models.init_params(model_config, model, jax.random.key(0)))
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(shapes))


def test_the_cells_share_one_parameter_budget():
    counts = {}
    for config in resolved(char_lm, 'lstm', 'cells'):
        config.model.vocab_size = 90  # the embedded corpus's characters, roughly
        counts[config.model.cell] = num_params(config.model)
    assert sorted(counts) == ['gru', 'lnlstm', 'lstm', 'rnn']
    for cell, count in counts.items():
        assert abs(count / counts['lstm'] - 1) < 0.02, (cell, counts)


def test_the_learning_rates_span_three_decades_evenly():
    rates = [t['learning_rate'] for t in char_lm.get_sweep('lr')]
    assert rates == [1e-4, 3.16e-4, 1e-3, 3.16e-3, 1e-2, 3.16e-2, 1e-1]


def test_table3_rows():
    rows = translation.get_sweep('table3')
    assert rows == [
        {},  # the base
        *({'model.num_heads': h} for h in (1, 4, 16, 32)),  # (A)
        {'model.key_size': 16},  # (B)
        {'model.key_size': 8},
        {'model.dropout': 0.0},  # (D)
        {'model.dropout': 0.2},
        {'label_smoothing': 0.0},
        {'label_smoothing': 0.2},
        {'model.position_embedding': 'learned'},  # (E)
    ]
    model = translation.base_config().model
    assert model.key_size == 0 and model.position_embedding == 'sinusoidal'
    # Rows (A) keep the computation constant: h x d_k = d_model, so the same parameters.
    configs = resolved(translation, 'multi30k_small', 'table3')
    base = num_params(configs[0].model)
    for config in configs[1:5]:
        assert config.model.d_model % config.model.num_heads == 0
        assert num_params(config.model) == base
    # Rows (B) shrink every attention sublayer (one per encoder layer, two per decoder
    # layer) from d_k = d_model / h = 32: 4 d_model h d_k weights and 3 h d_k + d_model
    # biases each.
    d, h = model.d_model, model.num_heads
    sublayers = model.num_encoder_layers + 2 * model.num_decoder_layers
    for config in configs[5:7]:
        d_k = config.model.key_size
        fewer = sublayers * (4 * d * h + 3 * h) * (d // h - d_k)
        assert num_params(config.model) == base - fewer
    # Row (E) adds a source and a target table of max_len x d_model.
    assert num_params(configs[-1].model) == base + 2 * model.max_len * d


def test_patch_sizes_tile_the_images():
    for variant, name, tokens in (
        ('digits', 'patch_depth', {64, 16, 4}),
        ('small', 'patch_depth_28', {49, 16, 4}),
    ):
        configs = resolved(vit, variant, name)
        seen = set()
        for config in configs:
            side, patch = config.model.image_size, config.model.patch_size
            assert side % patch == 0
            seen.add((side // patch) ** 2)
        assert seen == tokens
        assert {c.model.num_layers for c in configs} == {2, 4, 8}


def test_a_sweep_cannot_set_what_the_command_line_cannot_carry():
    with pytest.raises(SweepError, match='cannot be passed'):
        apply_overrides(char_lm.get_config('lstm'), {'model': char_lm.gpt_model()})

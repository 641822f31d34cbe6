"""seqmodels.summary: its parameter counts against `model.init` and the LSTM LM formula.

Reference: an LSTM layer of width H on inputs of width I holds W_x [I, 4H], b [4H] and
W_h [H, 4H] (no second bias), 4H(I + H) + 4H numbers; the LM adds the embedding V*E
and the softmax layer H*V + V (or only the bias V when tied to the embedding).
"""

import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import ml_collections
import pytest

from seqmodels import models, summary

ROOT = pathlib.Path(__file__).resolve().parents[1]


def lstm_layer(inputs, hidden):
    return 4 * hidden * (inputs + hidden) + 4 * hidden


def lstm_lm_config(vocab, embed, hidden, layers, tied=False):
    return ml_collections.ConfigDict(
        dict(
            name='rnn_lm',
            vocab_size=vocab,
            embed_dim=embed,
            hidden_size=hidden,
            num_layers=layers,
            cell='lstm',
            tie_embeddings=tied,
        )
    )


@pytest.mark.parametrize(
    'vocab, embed, hidden, layers, tied',
    [
        (11, 3, 5, 1, False),
        (11, 4, 4, 2, True),
    ],
)
def test_table_matches_the_formula(vocab, embed, hidden, layers, tied):
    expected = {'embed/embedding': vocab * embed, 'rnn/layers_0': lstm_layer(embed, hidden)}
    for layer in range(1, layers):
        expected[f'rnn/layers_{layer}'] = lstm_layer(hidden, hidden)
    if tied:
        expected['output_bias'] = vocab
    else:
        expected.update({'output/kernel': hidden * vocab, 'output/bias': vocab})
    total = sum(expected.values())
    if not tied:
        assert total == 279  # 11*3 + 4*5*(3+5) + 4*5 + 5*11 + 11, by hand

    lines = summary.summary_lines(lstm_lm_config(vocab, embed, hidden, layers, tied), depth=2)
    assert lines[-1] == f'total_params={total}'
    assert lines[-2] == 'model=rnn_lm dtype=float32'
    body = [line.split() for line in lines[1:-3]]
    assert {row[0]: int(row[2].replace(',', '')) for row in body} == expected
    assert {row[0]: int(row[1]) for row in body if row[0].startswith('rnn/')} == {
        f'rnn/layers_{layer}': 3 for layer in range(layers)
    }  # W_x, b, W_h
    assert sum(float(row[3].rstrip('%')) for row in body) == pytest.approx(100, abs=0.5)


def test_total_matches_model_init():
    # The real parameters, not the traced shapes the summary reads (one model: an eager
    # init compiles every initializer, seconds on CPU).
    config = lstm_lm_config(11, 4, 4, 2, tied=True)
    model = models.build_model(config)
    params = model.init(jax.random.key(0), jnp.zeros((1, 2), jnp.int32))['params']
    leaves = jax.tree.leaves(params)
    lines = summary.summary_lines(config)
    assert lines[-1] == f'total_params={sum(x.size for x in leaves)}'
    # depth 0: one row per array, each with its array's size.
    rows = summary.param_table(summary.param_shapes(config), 0)
    assert sorted(c for _, _, c in rows) == sorted(x.size for x in leaves)


def test_size_left_for_the_driver_is_named():
    with pytest.raises(ValueError, match=r'^config key model.vocab_size=0: .*--config.model.vo'):
        summary.param_shapes(lstm_lm_config(0, 3, 5, 1))


def test_command_line_on_an_experiment_config():
    command = [
        sys.executable,
        '-m',
        'seqmodels.summary',
        '--config=configs/char_lm.py:lstm',
        '--config.model.vocab_size=11',
        '--config.model.embed_dim=3',
        '--config.model.hidden_size=5',
        '--config.model.num_layers=1',
        '--depth=1',
    ]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=True)
    lines = result.stdout.strip().splitlines()
    assert lines[-1] == f'total_params={11 * 3 + lstm_layer(3, 5) + 5 * 11 + 11}'
    assert [line.split()[0] for line in lines[1:-3]] == ['embed', 'output', 'rnn']

"""seqmodels.cells (Karpathy, Johnson & Fei-Fei 2015) and the char-LM driver's cells mode:
the states it extracts are the model's own, the indicators follow hand-worked examples,
the finder recovers cells planted in a constructed LSTM."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl import flags
from absl.testing import flagsaver

from configs import char_lm as char_lm_config
from experiments import char_lm, common
from seqmodels import cells, models
from seqmodels.data import CharVocab
from tests.test_analysis import random_params, write_run


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def random_lm(cell, layers):
    model = models.RNNLM(vocab_size=11, embed_dim=6, hidden_size=8, num_layers=layers, cell=cell)
    return model, random_params(model, jnp.zeros((1, 2), jnp.int32))


@pytest.mark.parametrize('cell, layers', [('lstm', 2), ('gru', 1)])
def test_states_are_those_of_the_models_own_forward_pass(cell, layers):
    model, params = random_lm(cell, layers)
    tokens = np.random.default_rng(0).integers(0, 11, 40)
    states = cells.recurrent_states(model, params, tokens)
    variables = {'params': params}

    if cell == 'lstm':
        # The full-sequence forward pass (the fused LSTM kernel, not the step the states
        # come from) gives the same logits, top-layer outputs and final states.
        logits, (top, finals) = jax.jit(
            lambda t: (
                model.apply(variables, t),
                model.apply(variables, t, method=lambda m, t: m.rnn(m.embed(t))),
            )
        )(tokens[None])
        np.testing.assert_allclose(states.logits, logits[0], atol=1e-5)
        np.testing.assert_allclose(states.hidden[-1], top[0], atol=1e-5)
        for layer, (_, h) in enumerate(finals):
            np.testing.assert_allclose(states.hidden[layer, -1], h[0], atol=1e-5)

    # Layer 0 from the papers' equations in NumPy, on the embeddings.
    p = jax.tree.map(np.asarray, params)
    x = p['embed']['embedding'][tokens]
    cell_params = p['rnn']['layers_0']['cell']
    h_prev = np.vstack([np.zeros((1, 8)), states.hidden[0, :-1]])
    xp = x @ cell_params['input']['kernel'] + cell_params['input']['bias']
    if cell == 'lstm':
        pre = xp + h_prev @ cell_params['recurrent']['kernel']
        i, f, o, g = np.split(pre, 4, axis=-1)
        for name, value in (('i', i), ('f', f), ('o', o)):
            np.testing.assert_allclose(states.gates[name][0], sigmoid(value), atol=1e-5)
        c_prev = np.vstack([np.zeros((1, 8)), states.memory[0, :-1]])
        c = sigmoid(f) * c_prev + sigmoid(i) * np.tanh(g)
        np.testing.assert_allclose(states.memory[0], c, atol=1e-5)
        # h_t = o_t * tanh(c_t), and the activation shown is tanh(c_t).
        np.testing.assert_allclose(
            states.hidden, states.gates['o'] * np.tanh(states.memory), atol=1e-5
        )
        np.testing.assert_allclose(states.activations, np.tanh(states.memory))
    else:
        pre = xp[:, :16] + h_prev @ cell_params['recurrent_gates']['kernel']
        r, z = np.split(sigmoid(pre), 2, axis=-1)
        np.testing.assert_allclose(states.gates['r'][0], r, atol=1e-5)
        np.testing.assert_allclose(states.gates['z'][0], z, atol=1e-5)
        # Cho et al. 2014: n = tanh(W x + U (r * h) + b), h_t = z h_{t-1} + (1 - z) n.
        n = np.tanh(xp[:, 16:] + (r * h_prev) @ cell_params['recurrent_candidate']['kernel'])
        np.testing.assert_allclose(states.hidden[0], z * h_prev + (1 - z) * n, atol=1e-5)
        out = p['output']
        np.testing.assert_allclose(
            states.logits, states.hidden[0] @ out['kernel'] + out['bias'], atol=1e-5
        )
        assert states.memory is None
        np.testing.assert_array_equal(states.activations, states.hidden)


def test_indicators_of_a_hand_worked_line():
    text = "if f(\"a(\", [1,\n    2]):  # x(\n  s = '''q\n'''\n"
    got = cells.python_indicators(text)
    at = {name: dict(zip(range(len(text)), values.tolist())) for name, values in got.items()}
    # quotes: the opening quote and the string's inside, not its closing quote.
    inside = [i for i, v in at['quotes'].items() if v]
    assert ''.join(text[i] for i in inside) == "\"a('''q\n"
    # brackets: f( and [ open; the '(' inside the string and the comment do not count.
    assert at['brackets'][text.index('[')] == 2
    assert at['brackets'][text.index('2')] == 2
    assert at['brackets'][text.index(':')] == 0
    assert at['brackets'][text.index('# x(') + 3] == 0
    # comment: from '#' to the end of its line.
    assert ''.join(c for c, v in zip(text, got['comment']) if v) == '# x('
    # indent: the leading whitespace read so far on the line; line_position: the column.
    second = text.index('\n') + 1
    assert [at['indent'][second + k] for k in range(6)] == [1, 2, 3, 4, 4, 4]
    assert at['indent'][text.index('s =')] == 2
    assert at['line_position'][second - 1] == 0  # just read a newline
    assert at['line_position'][second + 4] == 5


def test_correlate_is_numpys_pearson_and_zero_for_a_constant():
    rng = np.random.default_rng(1)
    a, x = rng.normal(size=(50, 3)), rng.normal(size=50)
    a[:, 1] += 2 * x
    want = [np.corrcoef(a[:, k], x)[0, 1] for k in range(3)]
    np.testing.assert_allclose(cells.correlate(a, x), want, rtol=1e-10)
    assert cells.correlate(np.ones((5, 1)), np.arange(5.0))[0] == 0.0


def planted_lm(chars):
    """A 1-layer LSTM over one-hot embeddings with two cells planted: unit 3 counts
    open minus closed brackets, unit 5 counts the characters since the last newline; the
    other units have random weights."""
    vocab = CharVocab(chars)
    v, hidden = vocab.vocab_size, 8
    model = models.RNNLM(vocab_size=v, embed_dim=v, hidden_size=hidden, cell='lstm')
    params = jax.tree.map(np.array, random_params(model, jnp.zeros((1, 2), jnp.int32)))
    params['embed']['embedding'] = np.eye(v, dtype=np.float32)
    cell = params['rnn']['layers_0']['cell']
    kernel, bias = cell['input']['kernel'], cell['input']['bias']
    recurrent = cell['recurrent']['kernel']

    def column(gate, unit):  # fused gate order (i, f, o, g)
        return 'ifog'.index(gate) * hidden + unit

    for unit in (3, 5):
        for gate in 'ifog':
            kernel[:, column(gate, unit)] = 0.0
            recurrent[:, column(gate, unit)] = 0.0
        bias[column('i', unit)] = bias[column('f', unit)] = 30.0  # always write, never forget
        bias[column('g', unit)] = 0.0
    for ch in '([{':
        kernel[vocab.encode(ch)[0], column('g', 3)] = 0.05
    for ch in ')]}':
        kernel[vocab.encode(ch)[0], column('g', 3)] = -0.05
    bias[column('g', 5)] = 0.005
    kernel[vocab.encode('\n')[0], column('f', 5)] = -60.0  # forget at each newline
    return model, params, vocab


SOURCE = '''def area(shape, scale=1):
    """Area of a shape."""
    if shape.kind in ['square', 'disc']:
        return scale * (shape.side ** 2 + {0: 1}[0])
    values = [abs(x) for x in (shape.a, shape.b)]
    return sum(values)  # the total
'''


def test_the_finder_recovers_planted_cells():
    model, params, vocab = planted_lm(sorted(set(SOURCE)))
    text = SOURCE * 3
    states = cells.recurrent_states(model, params, vocab.encode(text))
    found = {
        f.indicator: f for f in cells.find_cells(states.activations, cells.python_indicators(text))
    }
    assert (found['brackets'].layer, found['brackets'].unit) == (0, 3)
    assert found['brackets'].r > 0.99
    assert (found['line_position'].layer, found['line_position'].unit) == (0, 5)
    assert found['line_position'].r > 0.99


def test_the_lively_window_is_where_the_indicators_change():
    text = 'x = 1\n' * 40 + 'f(a, [b], "c")\n' * 3 + 'y = 2\n' * 40
    window = cells.lively_window(text, cells.python_indicators(text).values(), 30)
    assert window.stop - window.start == 30
    assert text[window.start - 1] == '\n' and 'f(a' in text[window]


def test_gate_saturation_counts_the_steps_beyond_the_thresholds():
    gates = np.array([[[0.05, 0.5], [0.95, 0.5], [0.02, 0.91], [0.5, 0.99]]])  # [1, 4, 2]
    left, right = cells.gate_saturation(gates)
    np.testing.assert_allclose(left, [[0.5, 0.0]])
    np.testing.assert_allclose(right, [[0.25, 0.5]])


def test_the_page_is_self_contained_and_escapes_the_text():
    text = 'a<b>&\n"c"'
    shown = [cells.Shown('unit 0', np.linspace(-1, 1, len(text)), {'quotes': 0.5})]
    page = cells.cells_html(text, shown)
    assert '&lt;' in page and '&amp;' in page and '<b>' not in page
    assert page.count('<span ') == len(text) - 1  # every character but the newline
    assert 'http' not in page and 'src=' not in page
    assert 'quotes r = +0.50' in page
    # Karpathy et al.'s colours: -1 red, +1 blue.
    assert page.index('rgba(214,39,40,1.00)') < page.index('rgba(31,119,180,1.00)')


@pytest.mark.parametrize(
    'spec, message',
    [
        ('3,x', "'x' is not a unit"),
        ('2:1', 'outside the model'),
        ('8', 'outside the model'),
        (' , ', 'names no unit'),
    ],
)
def test_bad_unit_lists_are_named(spec, message):
    with pytest.raises(ValueError, match=message):
        cells.parse_units(spec, num_layers=2, hidden_size=8)


def test_unit_lists_name_layers_and_units():
    assert cells.parse_units('3, 0:7,1:0', 2, 8) == [(1, 3), (0, 7), (1, 0)]


# --------------------------------------------------------------------------- #
# The driver's mode.


@pytest.fixture
def parsed_flags():
    with flagsaver.flagsaver():
        flags.FLAGS.mark_as_parsed()
        yield


@pytest.fixture(scope='module')
def planted_run(tmp_path_factory):
    """The planted LSTM as a char-LM run's workdir, and a Python file for it to read."""
    tmp_path = tmp_path_factory.mktemp('cells')
    model, params, vocab = planted_lm(sorted(set(SOURCE)))
    config = char_lm_config.get_config('lstm')
    config.model.update(
        vocab_size=vocab.vocab_size, embed_dim=vocab.vocab_size, hidden_size=8, num_layers=1
    )
    text = tmp_path / 'text.py'
    text.write_text(SOURCE * 3)
    return write_run(str(tmp_path / 'run'), config, params, vocab=vocab), str(text)


def test_cells_mode_finds_the_planted_cells_and_shows_the_chosen_ones(
    planted_run, capsys, parsed_flags
):
    workdir, text = planted_run
    with flagsaver.flagsaver(
        cells='0:2,5', find=['quotes', 'brackets', 'line_position'], cells_text=text, num_chars=100
    ):
        char_lm.cells_mode(workdir)
    lines = capsys.readouterr().out.strip().splitlines()
    numbers = json.loads(lines.pop())  # cells.measures, for experiments.reproduce
    assert numbers['cells/best_abs_r/brackets'] == pytest.approx(1.0, abs=1e-4)
    assert numbers['cells/best_abs_r/line_position'] == pytest.approx(1.0, abs=1e-3)
    assert 0 <= numbers['cells/f_right_saturated'] <= 1
    assert lines[-1] == os.path.join(workdir, 'cells.html')
    assert lines[0].startswith('layer 0, unit 2: tanh(c) quotes=')
    assert lines[1].startswith('layer 0, unit 5: tanh(c) quotes=')  # one layer: 5 is layer 0's
    assert 'tracks quotes' in lines[2]
    assert lines[3].startswith('layer 0, unit 3: tanh(c) (tracks brackets, r = +1.00)')
    assert lines[4].startswith('layer 0, unit 5: tanh(c) (tracks line_position, r = +1.00)')
    page = open(lines[-1], encoding='utf-8').read()
    assert page.count('<pre>') == 5
    assert page.count('<span ') == 5 * sum(ch != '\n' for ch in SOURCE[:100])


@pytest.mark.parametrize(
    'flag, message',
    [
        ({'find': ['quote']}, '--find: quote is not an indicator'),
        ({'cells': '1:0'}, "--cells: '1:0' is outside the model: layers 0..0, units 0..7"),
        ({'num_chars': 0}, '--num_chars must be > 0'),
    ],
)
def test_bad_cells_flags_are_named(planted_run, parsed_flags, flag, message):
    with flagsaver.flagsaver(**flag), pytest.raises(common.UsageError, match=message):
        char_lm.cells_mode(planted_run[0])


def test_cells_mode_says_it_needs_a_recurrent_model(tmp_path, parsed_flags):
    (tmp_path / 'config.json').write_text(json.dumps({'model': {'name': 'gpt'}}))
    with pytest.raises(common.UsageError, match='applies to recurrent models'):
        char_lm.cells_mode(str(tmp_path))

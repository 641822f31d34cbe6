"""Looking inside recurrent language models: Karpathy, Johnson & Fei-Fei 2015,
"Visualizing and Understanding Recurrent Networks".

    states = cells.recurrent_states(model, params, vocab.encode(text))   # an RNNLM
    found = cells.find_cells(states.activations, cells.python_indicators(text))
    html = cells.cells_html(text, [cells.Shown.of(states, layer, unit, indicators)])

`recurrent_states` runs the model's own one-step function (`RNNLM.step`, the one the
sampler uses) over a text and records every layer's state and gates; `activations` is
what the paper colours text by: tanh(c) of an LSTM's cell state, the hidden state h
of a GRU or an Elman RNN. `python_indicators` says what a reader of Python source
keeps track of at each character; `find_cells` names the unit whose activation
correlates best with each. `gate_saturation` gives the paper's Figure 3 numbers.
"""

from __future__ import annotations

import dataclasses
import functools
import html
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from seqmodels import models
from seqmodels.data.errors import DataError
from seqmodels.nn.recurrent import LSTM_GATES

# Which gates each cell has (activations in (0, 1), the ones Figure 3 plots), and the
# submodule whose output is the recurrent term of the gate pre-activations.
GATES = {
    'lstm': ('i', 'f', 'o'),
    'lnlstm': ('i', 'f', 'o'),
    'gru': ('r', 'z'),
    'rnn': (),
    'elman': (),
}
_RECURRENT_TERM = {'lstm': 'recurrent', 'lnlstm': 'ln_recurrent'}


@dataclasses.dataclass
class RecurrentStates:
    """What each layer held after reading each character of one text.

    hidden [L, T, H]: h_t. memory [L, T, H]: the LSTM cell state c_t (None for cells
    without one). gates: name -> [L, T, H], i/f/o for LSTMs, r/z for the GRU (none for
    the Elman RNN). logits [T, V]: the prediction of the character after t.
    """

    cell: str
    hidden: np.ndarray
    memory: np.ndarray | None
    gates: dict[str, np.ndarray]
    logits: np.ndarray

    @property
    def activations(self) -> np.ndarray:
        """[L, T, H]: tanh(c_t) for LSTMs, h_t otherwise (in [-1, 1] either way)."""
        return np.tanh(self.memory) if self.memory is not None else self.hidden

    @property
    def num_layers(self) -> int:
        return self.hidden.shape[0]

    @property
    def hidden_size(self) -> int:
        return self.hidden.shape[2]


def _captures(module, method_name: str) -> bool:
    # The cell's projected input and its recurrent term: the two summands of the gate
    # pre-activations, as the cell's own step computed them.
    if method_name == 'project_inputs':
        return True
    return method_name == '__call__' and module.name in (
        'recurrent',
        'ln_recurrent',
        'recurrent_gates',
    )


def _gates(cell: str, captured: dict, hidden_size: int) -> dict:
    x = captured['project_inputs'][0]
    if cell in _RECURRENT_TERM:
        pre = x + captured[_RECURRENT_TERM[cell]]['__call__'][0]
        split = dict(zip(LSTM_GATES, jnp.split(pre, 4, axis=-1)))
        return {name: jax.nn.sigmoid(split[name]) for name in GATES[cell]}
    if cell == 'gru':
        # reset_after=False keeps (r, z) in their own matmul; True fuses all three.
        term = captured['recurrent_gates' if 'recurrent_gates' in captured else 'recurrent']
        pre = x[..., : 2 * hidden_size] + term['__call__'][0][..., : 2 * hidden_size]
        r, z = jnp.split(jax.nn.sigmoid(pre), 2, axis=-1)
        return {'r': r, 'z': z}
    return {}


@functools.partial(jax.jit, static_argnums=0)
def _run(model: models.RNNLM, params, tokens):
    variables = {'params': params}
    carry = model.apply(variables, 1, method=models.RNNLM.initial_carry)

    def step(carry, token):
        (logits, carry), state = model.apply(
            variables,
            carry,
            token[None],
            method=models.RNNLM.step,
            capture_intermediates=_captures,
            mutable=['intermediates'],
        )
        rnn = state['intermediates']['rnn']
        gates = [
            _gates(model.cell, rnn[f'layers_{i}']['cell'], model.hidden_size)
            for i in range(model.num_layers)
        ]
        return carry, (logits[0], carry, gates)

    _, (logits, carries, gates) = jax.lax.scan(step, carry, tokens)
    return logits, carries, gates


def recurrent_states(model: models.RNNLM, params, tokens) -> RecurrentStates:
    """Runs `model` (an RNNLM) over tokens [T] from its zero state, one `RNNLM.step` per
    token, and returns every layer's state and gates after each token."""
    if not isinstance(model, models.RNNLM):
        raise TypeError(f'recurrent_states needs an RNNLM, got {type(model).__name__}')
    tokens = jnp.asarray(tokens, jnp.int32).reshape(-1)
    # float32 on the host whatever the model computed in (a bf16 run's states too).
    logits, carries, gates = jax.tree.map(
        lambda x: np.asarray(x, np.float32), jax.device_get(_run(model, params, tokens))
    )
    # A layer's carry is (c, h) for the LSTMs, h otherwise; each leaf is [T, 1, H].
    has_memory = isinstance(carries[0], tuple)
    hidden = np.stack([(c[1] if has_memory else c)[:, 0] for c in carries])
    memory = np.stack([c[0][:, 0] for c in carries]) if has_memory else None
    gates = {name: np.stack([layer[name][:, 0] for layer in gates]) for name in GATES[model.cell]}
    return RecurrentStates(model.cell, hidden, memory, gates, np.asarray(logits))


# --------------------------------------------------------------------------- #
# What a reader of Python source tracks.

INDICATORS = ('quotes', 'comment', 'indent', 'line_position', 'brackets')
_OPEN, _CLOSE = '([{', ')]}'


def python_indicators(text: str) -> dict[str, np.ndarray]:
    """Per character of `text`, float32 [T] each, the state after reading it:

    quotes         1 inside a string literal (its opening quotes included, its closing
                   quotes not), else 0; ', ", triple quotes and backslash escapes
    comment        1 from a '#' outside strings to the end of its line
    indent         the leading whitespace read so far on the current line (it grows
                   through the indentation and then stays for the rest of the line)
    line_position  characters read since the last newline (0 right after one)
    brackets       the nesting depth of (, [ and { outside strings and comments

    The text is assumed to start outside any string, comment or bracket.
    """
    n = len(text)
    out = {name: np.zeros(n, np.float32) for name in INDICATORS}
    quote = None  # the closing delimiter of the string we are in: ', ", ''' or """
    comment = False
    depth = column = indent = 0
    in_indent = True
    i = 0
    while i < n:
        c = text[i]
        width = 1
        if quote is not None:
            if c == '\\' and i + 1 < n:
                width = 2  # the escaped character (a newline too) cannot close it
                out['quotes'][i : i + 2] = 1.0
            elif text.startswith(quote, i):
                width, quote = len(quote), None  # closing quotes count as outside
            elif c == '\n' and len(quote) == 1:
                quote = None  # an unterminated one-line string ends with its line
            else:
                out['quotes'][i] = 1.0
        elif comment:
            comment = c != '\n'
        elif c in '\'"':
            quote = c * 3 if text.startswith(c * 3, i) else c
            width = len(quote)
            out['quotes'][i : i + width] = 1.0
        elif c == '#':
            comment = True
        elif c in _OPEN:
            depth += 1
        elif c in _CLOSE:
            depth = max(depth - 1, 0)
        for j in range(i, min(i + width, n)):
            ch = text[j]
            if ch == '\n':
                column = indent = 0
                in_indent = True
            else:
                column += 1
                if in_indent and ch in ' \t':
                    indent += 1
                else:
                    in_indent = False
            out['comment'][j] = float(comment)
            out['indent'][j] = indent
            out['line_position'][j] = column
            out['brackets'][j] = depth
        i += width
    return out


# --------------------------------------------------------------------------- #
# Finding the units that track an indicator.


def correlate(activations, indicator) -> np.ndarray:
    """Pearson correlation of each column of activations [T, N] with indicator [T];
    0 where either is constant."""
    a = np.asarray(activations, np.float64)
    x = np.asarray(indicator, np.float64)
    a = a - a.mean(axis=0)
    x = x - x.mean()
    denominator = np.sqrt((a * a).sum(axis=0) * (x * x).sum())
    numerator = x @ a
    return np.where(denominator > 0, numerator / np.where(denominator > 0, denominator, 1), 0.0)


@dataclasses.dataclass(frozen=True)
class Found:
    """The unit (layer, unit) whose activation correlates best (r, of either sign) with
    an indicator."""

    indicator: str
    layer: int
    unit: int
    r: float


def find_cells(activations, indicators: dict[str, np.ndarray]) -> list[Found]:
    """For each indicator, the unit of activations [L, T, H] with the largest |r|."""
    activations = np.asarray(activations)
    num_layers, length, hidden = activations.shape
    flat = activations.transpose(1, 0, 2).reshape(length, num_layers * hidden)
    found = []
    for name, indicator in indicators.items():
        r = correlate(flat, indicator)
        best = int(np.argmax(np.abs(r)))
        found.append(Found(name, best // hidden, best % hidden, float(r[best])))
    return found


def parse_units(spec: str, num_layers: int, hidden_size: int) -> list[tuple[int, int]]:
    """'3,17' (units of the top layer) or '0:3,1:17' (layer:unit) -> [(layer, unit)].
    Raises ValueError naming the bad entry and the valid ranges."""
    units = []
    for item in (s.strip() for s in spec.split(',')):
        if not item:
            continue
        layer_text, _, unit_text = item.rpartition(':')
        try:
            layer = int(layer_text) if layer_text else num_layers - 1
            unit = int(unit_text)
        except ValueError:
            raise ValueError(f'{item!r} is not a unit: write UNIT or LAYER:UNIT') from None
        if not 0 <= layer < num_layers or not 0 <= unit < hidden_size:
            raise ValueError(
                f'{item!r} is outside the model: layers 0..{num_layers - 1}, '
                f'units 0..{hidden_size - 1}'
            )
        units.append((layer, unit))
    if not units:
        raise ValueError(f'{spec!r} names no unit')
    return units


def lively_window(text: str, series: Sequence[np.ndarray], length: int) -> slice:
    """The `length` characters of `text`, starting at a line start, over which the
    `series` (e.g. the values of the units to show, or indicators; each [len(text)])
    vary most: the sum of their standard deviations over the window, each relative to
    its standard deviation over the whole text."""
    starts = [0] + [
        i + 1 for i, ch in enumerate(text) if ch == '\n' and i + 1 + length <= len(text)
    ]
    series = [np.asarray(x, np.float64) for x in series]
    scales = [max(float(x.std()), 1e-12) for x in series]

    def liveliness(start):
        return sum(
            float(x[start : start + length].std()) / scale for x, scale in zip(series, scales)
        )

    best = max(starts, key=liveliness)
    return slice(best, best + length)


# --------------------------------------------------------------------------- #
# Gate saturation (Figure 3).


def gate_saturation(
    gates: np.ndarray, low: float = 0.1, high: float = 0.9
) -> tuple[np.ndarray, np.ndarray]:
    """gates [L, T, H] in (0, 1) -> (left, right), each [L, H]: the fraction of steps
    at which each unit's gate is below `low` (left-saturated) or above `high`
    (right-saturated), the thresholds of the paper."""
    gates = np.asarray(gates)
    return (gates < low).mean(axis=1), (gates > high).mean(axis=1)


# --------------------------------------------------------------------------- #
# Text coloured by units.


@dataclasses.dataclass
class Shown:
    """One unit to colour a text by: its values [T] in [-1, 1] and a caption."""

    title: str
    values: np.ndarray
    correlations: dict[str, float]

    @classmethod
    def of(
        cls,
        states: RecurrentStates,
        layer: int,
        unit: int,
        indicators: dict[str, np.ndarray] | None = None,
        note: str = '',
    ) -> Shown:
        values = states.activations[layer, :, unit]
        quantity = 'tanh(c)' if states.memory is not None else 'h'
        correlations = {
            name: float(correlate(values[:, None], x[: len(values)])[0])
            for name, x in (indicators or {}).items()
        }
        title = f'layer {layer}, unit {unit}: {quantity}' + (f' ({note})' if note else '')
        return cls(title, values, correlations)


def _colour(value: float) -> str:
    # The colours of Karpathy et al.'s Figure 2: -1 red, +1 blue, white at 0.
    v = float(np.clip(value, -1.0, 1.0))
    rgb = (31, 119, 180) if v > 0 else (214, 39, 40)
    return f'rgba({rgb[0]},{rgb[1]},{rgb[2]},{abs(v):.2f})'


def cells_html(text: str, shown: list[Shown], title: str = 'LSTM cells') -> str:
    """A self-contained HTML page: `text` once per entry of `shown`, each character on
    a background coloured by that unit's value at it, with the unit's correlations."""
    blocks = []
    for entry in shown:
        spans = ''.join(
            f'<span style="background:{_colour(v)}" title="{v:+.3f}">{html.escape(ch)}</span>'
            if ch != '\n'
            else '\u21b5\n'
            for ch, v in zip(text, entry.values)
        )
        rs = ', '.join(f'{name} r = {r:+.2f}' for name, r in entry.correlations.items())
        blocks.append(
            f'<h2>{html.escape(entry.title)}</h2>\n'
            + (f'<p class="r">{html.escape(rs)}</p>\n' if rs else '')
            + f'<pre>{spans}</pre>'
        )
    return _PAGE.format(title=html.escape(title), blocks='\n'.join(blocks))


def check_request(
    model: models.RNNLM, units: str | None = None, find: Sequence[str] | None = None
) -> list[tuple[int, int]]:
    """The (layer, unit) pairs `units` names (see `parse_units`), after checking them
    and the indicator names in `find`; ValueError ('cells: ...' or 'find: ...')
    otherwise."""
    unknown = [name for name in (find or ()) if name not in INDICATORS]
    if unknown:
        raise ValueError(
            f'find: {", ".join(unknown)} is not an indicator; choose from {", ".join(INDICATORS)}'
        )
    try:
        return parse_units(units, model.num_layers, model.hidden_size) if units else []
    except ValueError as e:
        raise ValueError(f'cells: {e}') from None


# Enough text for stable correlations; a scan over it takes a second or two on a CPU.
ANALYSED_CHARS = 20_000


def report(
    model: models.RNNLM,
    params,
    vocab,
    text: str,
    units: str | None = None,
    find: Sequence[str] | None = None,
    shown_chars: int = 500,
) -> tuple[str, list[Shown]]:
    """The cells page of a character RNN: (HTML, the units shown, `measures` of the
    analysed text).

    The model reads the first `ANALYSED_CHARS` characters of `text`; the page shows the
    first `shown_chars`, coloured by the units named in `units` ('3,17' or '0:3', see
    `parse_units`) and by the unit that tracks each indicator named in `find` best;
    with neither, by the best unit of every indicator in `INDICATORS`. Each unit's
    correlation with every indicator is listed. Bad `units` or `find` raise ValueError
    ('cells: ...' or 'find: ...'), a text shorter than 2 characters DataError.
    """
    chosen = check_request(model, units, find)
    if len(text) < 2:
        raise DataError(f'the text has {len(text)} character(s); the cells need at least 2')
    text = text[:ANALYSED_CHARS]
    states = recurrent_states(model, params, vocab.encode(text))
    indicators = python_indicators(text)
    shown = [Shown.of(states, layer, unit, indicators) for layer, unit in chosen]
    if find or not units:
        names = find or INDICATORS
        for f in find_cells(states.activations, {n: indicators[n] for n in names}):
            shown.append(
                Shown.of(
                    states, f.layer, f.unit, indicators, f'tracks {f.indicator}, r = {f.r:+.2f}'
                )
            )
    title = f'Cells of a {model.num_layers}-layer {model.cell} character model'
    return cells_html(text[:shown_chars], shown, title), shown, measures(states, indicators)


def measures(states: RecurrentStates, indicators: dict[str, np.ndarray]) -> dict[str, float]:
    """The paper's numbers for one text: the largest |r| of any unit with each indicator
    (`best_abs_r/<indicator>`) and, per gate, the mean over units of the fraction of
    steps it is left- and right-saturated (`<gate>_left_saturated`, Figure 3)."""
    out = {
        f'best_abs_r/{f.indicator}': abs(f.r) for f in find_cells(states.activations, indicators)
    }
    for gate, values in states.gates.items():
        left, right = gate_saturation(values)
        out[f'{gate}_left_saturated'] = float(left.mean())
        out[f'{gate}_right_saturated'] = float(right.mean())
    return out


_PAGE = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: sans-serif; max-width: 60em; margin: 1em auto; }}
pre {{ font-family: monospace; font-size: 13px; line-height: 1.35; white-space: pre-wrap;
       border: 1px solid #ddd; padding: 0.5em; }}
.r {{ color: #555; font-size: 90%; }}
</style></head><body>
<h1>{title}</h1>
<p>Each character is coloured by the unit's value after reading it: blue +1, white 0,
red &minus;1 (hover for the number); &#8629; marks a newline. r: the Pearson
correlation of the unit with each indicator over the analysed text.</p>
{blocks}
</body></html>
"""

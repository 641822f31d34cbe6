"""Numbers that claims read from finished runs beyond a final metric: the step at which
a curve first reaches a value, a language model's interpretable cells and gate
saturation (Karpathy, Johnson & Fei-Fei 2015)."""

from __future__ import annotations

import math
from collections.abc import Sequence


def steps_to_reach(steps: Sequence[int], values: Sequence[float], target: float) -> float:
    """The first logged step whose value is at or below `target` (inf if none is)."""
    for step, value in zip(steps, values, strict=True):
        if value <= target:
            return float(step)
    return math.inf


def lstm_cells(workdir: str, max_chars: int = 20_000) -> dict[str, float]:
    """For the char-LM run in `workdir` read over up to `max_chars` of its validation
    text: the highest |correlation| of any unit's activation (tanh(c)) with each Python
    indicator of seqmodels.cells (quotes, comment, indent, line_position, brackets), and
    the paper's Figure 3 quantities for the forget gate: the mean over units of the
    fraction of steps it is right-saturated (> 0.9) and left-saturated (< 0.1)."""
    from seqmodels import cells, runs

    run = runs.restore(workdir)
    text = runs.validation_text(run, max_chars)
    states = cells.recurrent_states(run.model, run.params, run.vocab.encode(text))
    found = cells.find_cells(states.activations, cells.python_indicators(text))
    out = {f'best_corr_{f.indicator}': abs(f.r) for f in found}
    if 'f' in states.gates:
        left, right = cells.gate_saturation(states.gates['f'])
        out['forget_right_saturated'] = float(right.mean())
        out['forget_left_saturated'] = float(left.mean())
    return out

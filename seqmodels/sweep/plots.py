"""The sweep's plots (PNG, matplotlib's Agg backend: no display needed).

WORKDIR/plots/objective_vs_<key>.png   the final objective of every trial against
                                       each swept key; a log axis for a key whose
                                       values are positive and span 20x or more
                                       (learning rates); diverged trials marked x
                                       along the top
WORKDIR/plots/curves.png               train/loss and the objective against step,
                                       every trial overlaid
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping, Sequence

from seqmodels.sweep import records
from seqmodels.sweep.results import read_metrics, swept_keys

_MAX_LEGEND = 16


def _pyplot():
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    return plt


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def log_axis(values: Sequence, key: str = '') -> bool:
    """Positive numbers read better on a log axis when they span at least a factor of 20,
    or when they are learning rates (searched by factors, whatever the span)."""
    nums = [v for v in values if _is_number(v)]
    if not (len(nums) == len(values) and len(nums) > 1 and min(nums) > 0):
        return False
    return max(nums) / min(nums) >= 20 or key.split('.')[-1] in ('learning_rate', 'lr')


def plot_objective(rows: Sequence[Mapping], key: str, objective: str, path: str) -> None:
    plt = _pyplot()
    values = [row['overrides'].get(key) for row in rows]
    numeric = all(_is_number(v) for v in values)
    ordered = list(dict.fromkeys(map(str, values)))  # categories, in declared order
    x_of = lambda v: v if numeric else ordered.index(str(v))
    fig, ax = plt.subplots(figsize=(6, 4))
    finite = [
        (x_of(row['overrides'].get(key)), row['objective'])
        for row in rows
        if row['objective'] is not None and math.isfinite(row['objective'])
    ]
    if finite:
        ax.scatter(*zip(*finite), color='tab:blue', label='final ' + objective, zorder=3)
    diverged = [
        x_of(row['overrides'].get(key)) for row in rows if row['status'] == records.DIVERGED
    ]
    if diverged:
        top = max((y for _, y in finite), default=1.0)
        ax.scatter(
            diverged, [top] * len(diverged), marker='x', color='tab:red', label='diverged', zorder=3
        )
    if numeric and log_axis(values, key):
        ax.set_xscale('log')
    if not numeric:
        ax.set_xticks(range(len(ordered)))
        ax.set_xticklabels(ordered, rotation=30 if len(ordered) > 4 else 0)
    ax.set_xlabel(key)
    ax.set_ylabel(objective)
    ax.grid(True, alpha=0.3)
    if finite or diverged:
        ax.legend(fontsize='small')
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_curves(trials: Sequence[records.Trial], objective: str, path: str) -> None:
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for trial in trials:
        metrics = read_metrics(trial.directory)
        for ax, name in zip(axes, ('train/loss', objective)):
            points = [
                (r['step'], r[name])
                for r in metrics
                if _is_number(r.get(name)) and math.isfinite(r[name])
            ]
            if points:
                ax.plot(*zip(*points), marker='.' if len(points) < 20 else None, label=trial.name)
    for ax, name in zip(axes, ('train/loss', objective)):
        ax.set_xlabel('step')
        ax.set_ylabel(name)
        ax.grid(True, alpha=0.3)
    if 0 < len(trials) <= _MAX_LEGEND:
        axes[1].legend(fontsize='x-small', loc='best')
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_plots(
    workdir: str, trials: Sequence[records.Trial], rows: Sequence[Mapping], objective: str
) -> list[str]:
    """Writes every plot; returns their paths."""
    folder = os.path.join(workdir, 'plots')
    os.makedirs(folder, exist_ok=True)
    written = []
    for key in swept_keys(rows):
        path = os.path.join(folder, f'objective_vs_{re.sub(r"[^A-Za-z0-9._-]", "_", key)}.png')
        plot_objective(rows, key, objective, path)
        written.append(path)
    path = os.path.join(folder, 'curves.png')
    plot_curves(trials, objective, path)
    written.append(path)
    return written

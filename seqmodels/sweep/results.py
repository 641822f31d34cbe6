"""The sweep's table: one row per trial from its metrics.jsonl and status.json.

    WORKDIR/results.csv   every column, full precision
    WORKDIR/results.md    the same rows for reading, and, when a swept key such as
                          `seed` is aggregated over, mean ± standard deviation per
                          setting of the other keys

Rows are sorted by the objective (the final logged value of one metric, e.g.
`eval/loss`, minimised or maximised); trials without it (pending, diverged, failed)
come last. "best" of a metric is its minimum over the logged evaluations, or its
maximum for metrics named like accuracy, BLEU or F1.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import statistics
import time
from collections.abc import Mapping, Sequence
from typing import Any

from seqmodels.sweep import records

_HIGHER_IS_BETTER = ('accuracy', 'acc', 'bleu', 'f1', 'precision', 'recall', 'top1', 'top5')


def read_metrics(directory: str) -> list[dict]:
    """The records of a run's metrics.jsonl; a line cut by a running writer is skipped."""
    path = os.path.join(directory, 'metrics.jsonl')
    out = []
    try:
        with open(path) as f:
            for line in f:
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue
                out.append({k: _number(v) for k, v in record.items()})
    except FileNotFoundError:
        pass
    return out


def _number(value):
    if isinstance(value, str):  # the writer spells non-finite values as strings
        try:
            return float(value)
        except ValueError:
            return value
    return value


def final_value(metrics: Sequence[Mapping], key: str) -> float | None:
    for record in reversed(metrics):
        if isinstance(record.get(key), (int, float)):
            return float(record[key])
    return None


def higher_is_better(metric: str) -> bool:
    name = metric.split('/')[-1].lower()
    return any(part in _HIGHER_IS_BETTER for part in name.replace('-', '_').split('_'))


def best_value(metrics: Sequence[Mapping], key: str, maximize: bool) -> float | None:
    values = [
        float(r[key])
        for r in metrics
        if isinstance(r.get(key), (int, float)) and math.isfinite(r[key])
    ]
    if not values:
        return None
    return max(values) if maximize else min(values)


def latest_checkpoint(directory: str) -> int | None:
    try:
        steps = [int(n) for n in os.listdir(os.path.join(directory, 'checkpoints')) if n.isdigit()]
    except FileNotFoundError:
        return None
    return max(steps, default=None)


def steps_done(directory: str, metrics: Sequence[Mapping] | None = None) -> int:
    metrics = read_metrics(directory) if metrics is None else metrics
    logged = max((int(r['step']) for r in metrics if 'step' in r), default=0)
    return max(logged, latest_checkpoint(directory) or 0)


# --------------------------------------------------------------------------- #
# Rows.


def trial_row(trial: records.Trial, objective: str, direction: str) -> dict[str, Any]:
    """Everything the table says about one trial."""
    status = trial.status()
    metrics = read_metrics(trial.directory)
    state = records.shown_status(status)
    wall = status.get('wall_time_s') or 0.0
    if state == records.RUNNING and status.get('started'):
        wall += max(time.time() - status['started'], 0.0)
    row = {
        'trial': trial.name,
        'index': trial.index,
        'overrides': trial.overrides,
        'status': state,
        'steps': steps_done(trial.directory, metrics),
        'num_train_steps': (trial.config or {}).get('num_train_steps'),
        'wall_time_s': wall,
        'diverged_at': status.get('diverged_step'),
        'error': status.get('error') if state == records.ERROR else None,
        'objective': None if state == records.DIVERGED else final_value(metrics, objective),
        'metrics': {},
    }
    names = sorted({k for r in metrics for k in r if k.startswith('eval/')})
    for name in names:
        maximize = (direction == 'max') if name == objective else higher_is_better(name)
        row['metrics'][name] = (final_value(metrics, name), best_value(metrics, name, maximize))
    return row


def sort_rows(rows: list[dict], direction: str) -> list[dict]:
    """Finished trials by objective; then unfinished ones (those with a value so far
    first, by value); then diverged, then failed trials, by index."""
    sign = -1.0 if direction == 'max' else 1.0

    def key(row):
        value = row['objective']
        usable = value is not None and math.isfinite(value)
        group = {records.DIVERGED: 3, records.ERROR: 4}.get(
            row['status'], (0 if row['status'] == records.DONE else 1) if usable else 2
        )
        return (group, sign * value if usable else 0.0, row['index'])

    return sorted(rows, key=key)


def swept_keys(rows: Sequence[Mapping]) -> list[str]:
    """The keys the trials set, in the order the sweep declared them."""
    keys: list[str] = []
    for row in sorted(rows, key=lambda r: r.get('index', 0)):
        keys.extend(k for k in row['overrides'] if k not in keys)
    return keys


def metric_names(rows: Sequence[Mapping], objective: str) -> list[str]:
    names = sorted({name for row in rows for name in row['metrics']})
    return sorted(names, key=lambda n: n != objective)  # the objective first


# --------------------------------------------------------------------------- #
# CSV and Markdown.


def _columns(rows, objective):
    keys = swept_keys(rows)
    metrics = metric_names(rows, objective)
    metric_cols = [f'{kind} {name}' for name in metrics for kind in ('final', 'best')]
    return (
        keys,
        metrics,
        (['trial', *keys, 'status', 'steps', 'wall_time_s', *metric_cols, 'diverged_at', 'error']),
    )


def _flat(row, keys, metrics):
    out = {
        'trial': row['trial'],
        'status': row['status'],
        'steps': row['steps'],
        'wall_time_s': round(row['wall_time_s'], 1),
        'diverged_at': row['diverged_at'],
        'error': row['error'],
    }
    out.update({k: row['overrides'].get(k) for k in keys})
    for name in metrics:
        final, best = row['metrics'].get(name, (None, None))
        out[f'final {name}'], out[f'best {name}'] = final, best
    return out


def to_csv(rows: Sequence[Mapping], objective: str) -> str:
    keys, metrics, columns = _columns(rows, objective)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, columns, lineterminator='\n')
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ('' if v is None else v) for k, v in _flat(row, keys, metrics).items()})
    return buffer.getvalue()


def fmt(value: Any) -> str:
    if value is None:
        return ''
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        return f'{value:.4g}'
    return str(value)


def duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return '?'
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f'{hours}h{minutes:02d}m' if hours else f'{minutes}m{secs:02d}s'


def _md_table(header: Sequence[str], lines: Sequence[Sequence[str]]) -> str:
    escape = lambda s: str(s).replace('|', '\\|').replace('\n', ' ')
    out = ['| ' + ' | '.join(map(escape, header)) + ' |', '|' + '---|' * len(header)]
    out += ['| ' + ' | '.join(map(escape, line)) + ' |' for line in lines]
    return '\n'.join(out)


def to_markdown(
    rows: Sequence[Mapping],
    manifest: Mapping,
    objective: str,
    direction: str,
    aggregate: Sequence[str] = (),
) -> str:
    keys, metrics, _ = _columns(rows, objective)
    config = manifest.get('config', '?') + (
        f':{manifest["variant"]}' if manifest.get('variant') else ''
    )
    counts = count_states(rows)
    parts = [
        f'# Sweep `{manifest.get("sweep")}` of `{config}`',
        '',
        f'{manifest.get("search", "grid")} search, {len(rows)} trials '
        f'({", ".join(f"{n} {s}" for s, n in counts.items())}); objective: final '
        f'`{objective}` ({"maximised" if direction == "max" else "minimised"}).',
        '',
    ]
    header = [
        'trial',
        *keys,
        'status',
        'steps',
        'wall time',
        *[f'{kind} {name}' for name in metrics for kind in ('final', 'best')],
    ]
    lines = []
    for row in rows:
        status = row['status']
        if row['diverged_at'] is not None:
            status = f'diverged at step {row["diverged_at"]}'
        steps = (
            f'{row["steps"]}/{row["num_train_steps"]}'
            if row['num_train_steps']
            else str(row['steps'])
        )
        line = [
            row['trial'],
            *[fmt(row['overrides'].get(k)) for k in keys],
            status,
            steps,
            duration(row['wall_time_s']),
        ]
        for name in metrics:
            line += [fmt(v) for v in row['metrics'].get(name, (None, None))]
        lines.append(line)
    parts.append(_md_table(header, lines))
    errors = [row for row in rows if row['error']]
    if errors:
        parts += ['', 'Errors:', '']
        parts += [f'- `{row["trial"]}`: {row["error"]}' for row in errors]
    over = [k for k in aggregate if k in keys]
    if over and len(keys) > len(over):
        parts += [
            '',
            f'Mean ± standard deviation over {", ".join(over)} (n = trials with a value):',
            '',
            aggregate_markdown(rows, over, objective, direction),
        ]
    return '\n'.join(parts) + '\n'


def aggregate_rows(
    rows: Sequence[Mapping], over: Sequence[str], objective: str, direction: str
) -> list[dict]:
    """One row per setting of the swept keys other than `over`: the per-metric lists of
    final values of its trials, sorted by mean objective."""
    keys = [k for k in swept_keys(rows) if k not in over]
    groups: dict[str, dict] = {}
    for row in rows:
        setting = {k: row['overrides'].get(k) for k in keys}
        group = groups.setdefault(
            json.dumps(setting, sort_keys=True, default=str),
            {'setting': setting, 'rows': [], 'values': {}},
        )
        group['rows'].append(row)
        for name, (final, _) in row['metrics'].items():
            if final is not None and math.isfinite(final) and row['status'] == records.DONE:
                group['values'].setdefault(name, []).append(final)
    sign = -1.0 if direction == 'max' else 1.0

    def key(group):
        values = group['values'].get(objective)
        return (0, sign * statistics.fmean(values)) if values else (1, 0.0)

    return sorted(groups.values(), key=key)


def _mean_spread(values: Sequence[float]) -> str:
    if not values:
        return ''
    if len(values) == 1:
        return f'{values[0]:.4g}'
    return f'{statistics.fmean(values):.4g} ± {statistics.stdev(values):.2g}'


def aggregate_markdown(rows, over, objective, direction) -> str:
    groups = aggregate_rows(rows, over, objective, direction)
    keys = [k for k in swept_keys(rows) if k not in over]
    metrics = metric_names(rows, objective)
    header = [*keys, 'n', 'status', *[f'final {m}' for m in metrics]]
    lines = []
    for group in groups:
        counts = count_states(group['rows'])
        n = len(group['values'].get(objective, []))
        lines.append(
            [
                *[fmt(group['setting'][k]) for k in keys],
                str(n),
                ', '.join(f'{c} {s}' for s, c in counts.items()),
                *[_mean_spread(group['values'].get(m, [])) for m in metrics],
            ]
        )
    return _md_table(header, lines)


def aggregate_csv(rows, over, objective, direction) -> str:
    groups = aggregate_rows(rows, over, objective, direction)
    keys = [k for k in swept_keys(rows) if k not in over]
    metrics = metric_names(rows, objective)
    columns = [*keys, 'n'] + [f'{stat} {m}' for m in metrics for stat in ('mean', 'std')]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, columns, lineterminator='\n')
    writer.writeheader()
    for group in groups:
        line = {k: group['setting'][k] for k in keys}
        line['n'] = len(group['values'].get(objective, []))
        for m in metrics:
            values = group['values'].get(m, [])
            line[f'mean {m}'] = statistics.fmean(values) if values else ''
            line[f'std {m}'] = statistics.stdev(values) if len(values) > 1 else ''
        writer.writerow(line)
    return buffer.getvalue()


def count_states(rows: Sequence[Mapping]) -> dict[str, int]:
    order = ['done', 'running', 'submitted', 'diverged', 'error', 'preempted', 'stopped', 'pending']
    counts: dict[str, int] = {}
    for row in rows:
        counts[row['status']] = counts.get(row['status'], 0) + 1
    return {
        s: counts[s]
        for s in sorted(counts, key=lambda s: order.index(s) if s in order else len(order))
    }


def write_tables(
    workdir: str,
    rows: list[dict],
    manifest: Mapping,
    objective: str,
    direction: str,
    aggregate: Sequence[str] = (),
) -> list[str]:
    """Writes results.csv, results.md (and results_mean.csv when aggregating); returns
    the paths written. Each file is replaced atomically."""
    written = []

    def put(name, text):
        path = os.path.join(workdir, name)
        tmp = f'{path}.tmp{os.getpid()}'
        with open(tmp, 'w') as f:
            f.write(text)
        os.replace(tmp, path)
        written.append(path)

    put('results.csv', to_csv(rows, objective))
    put('results.md', to_markdown(rows, manifest, objective, direction, aggregate))
    keys = swept_keys(rows)
    over = [k for k in aggregate if k in keys]
    if over and len(keys) > len(over):
        put('results_mean.csv', aggregate_csv(rows, over, objective, direction))
    return written


# --------------------------------------------------------------------------- #
# The sweep's progress line.


def progress_line(rows: Sequence[Mapping], parallel: int, total: int | None = None) -> str:
    """'3/8 done, 2 running, 1 diverged, 1 failed, 1 to go; ETA 4m10s'. `total` counts
    trials not made yet (a Bayesian search's)."""
    counts = count_states(rows)
    total = max(len(rows), total or 0)
    done = counts.get('done', 0)
    failed = counts.get('error', 0)
    running = counts.get('running', 0)
    diverged = counts.get('diverged', 0)
    to_go = total - done - failed - running - diverged
    parts = [f'{done}/{total} done', f'{running} running']
    if diverged:
        parts.append(f'{diverged} diverged')
    parts.append(f'{failed} failed')
    parts.append(f'{to_go} to go')
    eta = eta_seconds(rows, parallel, unmade=total - len(rows))
    return ', '.join(parts) + f'; ETA {duration(eta)}'


def eta_seconds(rows: Sequence[Mapping], parallel: int, unmade: int = 0) -> float | None:
    """Time left: a trial lasts as long as the finished ones did on average (or, before
    any finished, as long as the running ones extrapolate to from their steps)."""
    finished = [r['wall_time_s'] for r in rows if r['status'] == 'done' and r['wall_time_s']]
    running = [r for r in rows if r['status'] == 'running']
    if finished:
        per_trial = statistics.fmean(finished)
    else:
        guesses = [
            r['wall_time_s'] * r['num_train_steps'] / r['steps']
            for r in running
            if r['steps'] and r['num_train_steps']
        ]
        if not guesses:
            waiting = unmade or any(r['status'] == 'pending' for r in rows)
            return None if running or waiting else 0.0
        per_trial = statistics.fmean(guesses)
    waiting = unmade + sum(
        r['status'] in ('pending', 'preempted', 'stopped', 'submitted') for r in rows
    )
    left = sum(max(per_trial - r['wall_time_s'], 0.0) for r in running)
    return (left + waiting * per_trial) / max(parallel, 1)

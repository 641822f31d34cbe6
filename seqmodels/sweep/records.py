"""The sweep folder: what it was made with, its trials, and each trial's state.

    WORKDIR/sweep.json             the settings: config, variant, driver, sweep name,
                                   search, base overrides, the declared trials or space
    WORKDIR/<NNN>_<key=value,...>/ one ordinary driver run per trial, plus
        trial.json                 its index, overrides, resolved config, command
        status.json                its state (below), attempts, wall time, error
        stdout.log, stderr.log     the driver's output, appended over attempts

Every JSON file is written to a temporary name and renamed into place, so a launcher
killed at any moment leaves each file either old or new, never cut.

Trial states: pending (not started, or to be resumed), submitted (waiting in a
cluster queue), running, preempted (stopped after saving a checkpoint: resumes),
done, diverged (a non-finite loss: an outcome, not retried), error (retried by a
rerun of the sweep).
"""

from __future__ import annotations

import dataclasses
import glob
import json
import os
import re
import socket
import time
from collections.abc import Mapping
from typing import Any

MANIFEST = 'sweep.json'
TRIAL_FILE = 'trial.json'
STATUS_FILE = 'status.json'
STDOUT_FILE = 'stdout.log'
STDERR_FILE = 'stderr.log'

PENDING, SUBMITTED, RUNNING, PREEMPTED = 'pending', 'submitted', 'running', 'preempted'
DONE, DIVERGED, ERROR = 'done', 'diverged', 'error'
FINISHED = (DONE, DIVERGED)  # a rerun skips these; everything else runs (again)

# The settings that decide what every trial computes; a rerun must repeat them.
RESULT_SETTINGS = (
    'config',
    'variant',
    'driver',
    'sweep',
    'search',
    'search_seed',
    'base_overrides',
    'space',
)


def plain(value: Any) -> Any:
    """`value` as it reads back from JSON (tuples become lists, unknown types strings)."""
    return json.loads(json.dumps(value, default=str))


def write_json(path: str, obj: Any) -> None:
    """Writes `obj` to `path` atomically: a temporary file, fsync, then rename."""
    tmp = f'{path}.tmp{os.getpid()}'
    with open(tmp, 'w') as f:
        json.dump(obj, f, indent=2, sort_keys=True, default=str)
        f.write('\n')
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_json(path: str, default: Any = None) -> Any:
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        return default


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f'{value:.3g}'
    return str(value)


def trial_name(index: int, overrides: Mapping[str, Any], width: int = 3) -> str:
    """`007_model.cell=gru,learning_rate=0.001`: the index keeps it unique, the rest
    makes it readable (in `ls` and as a TensorBoard run name). Characters a shell or a
    path would trip on become '-'."""
    desc = ','.join(f'{k}={_short(v)}' for k, v in overrides.items())
    desc = re.sub(r'[^A-Za-z0-9._=,+-]', '-', desc)[:80]
    return f'{index:0{width}d}_{desc}' if desc else f'{index:0{width}d}'


@dataclasses.dataclass
class Trial:
    """One trial: a driver run in `directory` with `overrides` on top of the base."""

    index: int
    name: str
    directory: str
    overrides: dict
    config: dict | None = None  # the resolved config (launcher side), JSON form
    command: list | None = None  # the driver command line, for running it by hand
    optuna_number: int | None = None

    @property
    def status_path(self) -> str:
        return os.path.join(self.directory, STATUS_FILE)

    def status(self) -> dict:
        return read_json(self.status_path, None) or {'status': PENDING, 'attempts': 0}

    def update_status(self, **fields) -> dict:
        """Merges `fields` into status.json (atomically) and returns the new record."""
        record = self.status()
        record.update(fields)
        record['updated'] = time.time()
        write_json(self.status_path, record)
        return record

    def save(self) -> None:
        os.makedirs(self.directory, exist_ok=True)
        write_json(
            os.path.join(self.directory, TRIAL_FILE),
            {
                'index': self.index,
                'name': self.name,
                'overrides': self.overrides,
                'config': self.config,
                'command': self.command,
                'optuna_number': self.optuna_number,
            },
        )
        if not os.path.exists(self.status_path):
            self.update_status(status=PENDING, attempts=0, wall_time_s=0.0)

    @classmethod
    def load(cls, directory: str) -> Trial:
        record = read_json(os.path.join(directory, TRIAL_FILE))
        return cls(
            index=record['index'],
            name=record['name'],
            directory=directory,
            overrides=record['overrides'],
            config=record.get('config'),
            command=record.get('command'),
            optuna_number=record.get('optuna_number'),
        )


def load_trials(workdir: str) -> list[Trial]:
    """Every trial folder of the sweep, by index."""
    paths = glob.glob(os.path.join(glob.escape(workdir), '*', TRIAL_FILE))
    trials = []
    for path in paths:
        try:
            trials.append(Trial.load(os.path.dirname(path)))
        except (json.JSONDecodeError, KeyError, TypeError):
            continue  # not a trial folder of ours
    return sorted(trials, key=lambda t: t.index)


def host_alive(pid: int | None, host: str | None) -> bool | None:
    """Whether process `pid` on `host` still runs; None when it ran on another host."""
    if not pid or host != socket.gethostname():
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (exited, not yet reaped by an adopting init) is gone too
        with open(f'/proc/{pid}/stat') as f:
            return f.read().rsplit(')', 1)[1].split()[0] != 'Z'
    except (OSError, IndexError):
        return True


def shown_status(status: Mapping[str, Any]) -> str:
    """The state to show: a 'running' trial whose process is gone shows 'stopped'
    (its launcher was killed; a rerun resumes it)."""
    state = status.get('status', PENDING)
    if state == RUNNING and host_alive(status.get('pid'), status.get('host')) is False:
        return 'stopped'
    return state


# --------------------------------------------------------------------------- #
# What differs between the recorded sweep and the one asked for now.


def _flatten(tree: Any, prefix: str = '') -> dict[str, Any]:
    if isinstance(tree, Mapping):
        out = {}
        for key, value in tree.items():
            out.update(_flatten(value, f'{prefix}{key}.'))
        return out
    return {prefix[:-1]: tree}


def dict_differences(old: Mapping, new: Mapping, limit: int = 4) -> list[str]:
    """'key: A recorded, B now' for the first `limit` keys that differ (nested keys
    dotted)."""
    old_flat, new_flat = _flatten(plain(old)), _flatten(plain(new))
    missing = object()
    out = []
    for key in sorted(set(old_flat) | set(new_flat)):
        a, b = old_flat.get(key, missing), new_flat.get(key, missing)
        if a != b:
            shown = lambda v: 'absent' if v is missing else repr(v)
            out.append(f'{key}: {shown(a)} recorded, {shown(b)} now')
    if len(out) > limit:
        out = out[:limit] + [f'... and {len(out) - limit} more']
    return out


def manifest_differences(old: Mapping, new: Mapping) -> list[str]:
    """Why a sweep folder made with `old` settings cannot be continued with `new`."""
    out = []
    for key in RESULT_SETTINGS:
        a, b = plain(old.get(key)), plain(new.get(key))
        if a == b:
            continue
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            out.extend(f'{key}: {d}' for d in dict_differences(a, b))
        else:
            out.append(f'{key}: {a!r} recorded, {b!r} now')
    if new.get('search') == 'bayes':
        for key in ('objective', 'direction'):  # they steer which trials are proposed
            if old.get(key) != new.get(key):
                out.append(f'{key}: {old.get(key)!r} recorded, {new.get(key)!r} now')
    old_trials, new_trials = plain(old.get('trials') or []), plain(new.get('trials') or [])
    if new.get('search') == 'grid' and old_trials != new_trials:
        out.extend(_trial_list_differences(old_trials, new_trials))
    elif new.get('search') in ('random', 'bayes'):
        before, now = old.get('num_trials') or 0, new.get('num_trials') or 0
        if now < before:
            out.append(f'num_trials: {before} recorded, {now} now (a sweep can grow, not shrink)')
        elif old_trials != new_trials[: len(old_trials)]:
            out.extend(_trial_list_differences(old_trials, new_trials[: len(old_trials)]))
    return out


def _trial_list_differences(old: list, new: list) -> list[str]:
    if len(old) != len(new):
        return [f'trials: {len(old)} recorded, {len(new)} now']
    for i, (a, b) in enumerate(zip(old, new)):
        if a != b:
            return [f'trial {i}: {d}' for d in dict_differences(a, b)]
    return []

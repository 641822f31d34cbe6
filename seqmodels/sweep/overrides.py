"""Dotted config overrides: applied to a ConfigDict here, passed to a driver as flags.

A trial's overrides reach its driver as `--config.KEY=VALUE` (the drivers' own flags),
so `format_value` writes each value the way `ml_collections.config_flags` reads it
back for a field of that type. `apply_overrides` makes the same change to a config in
the launcher, which catches unknown keys and wrong types before any process starts.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from typing import Any

import ml_collections

from seqmodels.sweep.declare import SweepError


def format_value(key: str, value: Any) -> str:
    """The command-line text of `value` for `--config.<key>=...`."""
    if isinstance(value, bool):
        return 'true' if value else 'false'
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else str(value)
    if isinstance(value, (int, str)):
        return str(value)
    if isinstance(value, (tuple, list)):
        return repr(tuple(value))
    raise SweepError(f'config.{key}={value!r}: a {type(value).__name__} cannot be passed as '
                     '--config.KEY=VALUE; use a bool, number, string or tuple')


def override_flags(overrides: Mapping[str, Any]) -> list[str]:
    return [f'--config.{key}={format_value(key, value)}' for key, value in overrides.items()]


def apply_overrides(config: ml_collections.ConfigDict,
                    overrides: Mapping[str, Any]) -> ml_collections.ConfigDict:
    """A copy of `config` with each dotted key set; SweepError names a bad key or value."""
    config = copy.deepcopy(config)
    for key, value in overrides.items():
        *parents, leaf = key.split('.')
        node = config
        for i, part in enumerate(parents + [leaf]):
            if not isinstance(node, ml_collections.ConfigDict) or part not in node:
                missing = '.'.join((parents + [leaf])[:i + 1])
                raise SweepError(f'config.{key}: no such config key (config.{missing} is '
                                 'missing)')
            if i < len(parents):
                node = node[part]
        format_value(key, value)  # the value must also survive the command line
        current = node[leaf]
        if current is None:
            raise SweepError(f'config.{key} is None in the config, and a driver cannot take a '
                             'None field from the command line; give it a typed default')
        try:
            setattr(node, leaf, value)
        except TypeError:
            raise SweepError(f'config.{key}={value!r}: expected a {type(current).__name__}, '
                             f'like the config\'s {current!r}') from None
    return config

"""Dotted config overrides: applied to a ConfigDict here, passed to a driver as flags.

A trial's overrides reach its driver as `--config.KEY=VALUE` (the drivers' own flags),
so `format_value` writes each value the way `ml_collections.config_flags` reads it
back for a field of that type. `apply_overrides` makes the same change to a config in
the launcher, which catches unknown keys and wrong types before any process starts.
"""

from __future__ import annotations

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
    raise SweepError(
        f'config.{key}={value!r}: a {type(value).__name__} cannot be passed as '
        '--config.KEY=VALUE; use a bool, number, string or tuple'
    )


def override_flags(overrides: Mapping[str, Any]) -> list[str]:
    return [f'--config.{key}={format_value(key, value)}' for key, value in overrides.items()]


def apply_overrides(
    config: ml_collections.ConfigDict, overrides: Mapping[str, Any]
) -> ml_collections.ConfigDict:
    """A copy of `config` with each dotted key set (`training.apply_overrides`), checked
    also for what the command line can carry; SweepError names a bad key or value."""
    from seqmodels.training.config import ConfigError
    from seqmodels.training.config import apply_overrides as apply

    for key, value in overrides.items():
        format_value(key, value)  # a value the command line cannot carry
        *parents, leaf = key.split('.')
        node = config
        for part in parents:
            node = node.get(part) if isinstance(node, ml_collections.ConfigDict) else None
        if (
            isinstance(node, ml_collections.ConfigDict)
            and leaf in node
            and node[leaf] is None
            and node.get_type(leaf) is type(None)
        ):
            raise SweepError(
                f'config.{key} is None in the config, and a driver cannot take '
                'an untyped None field from the command line; give it a typed '
                'default (or ml_collections.config_dict.placeholder(TYPE))'
            )
    try:
        return apply(config, overrides)
    except ConfigError as e:
        raise SweepError(str(e)) from None

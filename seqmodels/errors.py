"""The error a user fixes in the config, and the one-line check that raises it.

It lives below every floor of the library (models, data, training) so that each check
can sit next to the code whose assumption it guards and still name the config key.
"""

from __future__ import annotations

from typing import Any


class ConfigError(ValueError):
    """An impossible config value; the message names the key."""


def require(condition: Any, key: str, message: str, value: Any = None) -> None:
    """Raises ConfigError(`config.<key>...: <message>`) unless `condition`."""
    if not condition:
        shown = '' if value is None else f'={value!r}'
        raise ConfigError(f'config.{key}{shown}: {message}')

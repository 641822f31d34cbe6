"""Fine-tuning from a pre-trained run: its parameters copied into a model with a new head.

    pretrained, pretrained_config = warm_start.restore_pretrained(init_from)
    warm_start.check_compatible(config.model, pretrained_config.model, init_from)
    params = warm_start.load_pretrained(fresh_params, pretrained, new=('classifier',))

`load_pretrained` is pure and traceable (a Task's `init_params` may call it under jit:
the pre-trained arrays become constants of the init computation). Paths in messages are
'/'-joined parameter names, e.g. ``decoder/layers_0/attention/query/kernel``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from seqmodels.errors import ConfigError
from seqmodels.training.checkpoints import restore_params
from seqmodels.training.metrics import read_run_config

# Model keys a fine-tuning run may set differently from its pre-trained run: they change
# no pre-trained parameter's shape or meaning.
MAY_DIFFER = ('num_classes', 'dropout', 'attention_dropout', 'scan_layers')


def _path_name(path) -> str:
    return '/'.join(str(getattr(k, 'key', getattr(k, 'name', getattr(k, 'idx', k)))) for k in path)


def _flatten(tree) -> dict[str, Any]:
    return {_path_name(path): leaf for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}


def _under(path: str, prefixes: Iterable[str]) -> bool:
    return any(path == p or path.startswith(p.rstrip('/') + '/') for p in prefixes)


def load_pretrained(
    fresh_params, pretrained_params, *, new: Sequence[str] = ('head',), unused: Sequence[str] = ()
):
    """`fresh_params` with every pre-trained leaf copied in exactly.

    new: path prefixes of the parameters only the fine-tuning model has (its head);
      they keep their fresh initialisation. A fresh leaf outside them that the
      pre-trained tree lacks is a ConfigError (the two models differ).
    unused: path prefixes of pre-trained parameters the fine-tuning model drops (BERT's
      pre-training heads); they are listed in one log line. Any other pre-trained leaf
      must exist in the fresh tree with the same shape and dtype (ConfigError naming
      the path otherwise).
    """
    fresh, pretrained = _flatten(fresh_params), _flatten(pretrained_params)
    missing = sorted(p for p in fresh if p not in pretrained and not _under(p, new))
    if missing:
        raise ConfigError(
            f'the pre-trained model has no parameter {missing[0]}'
            + (f' (nor {len(missing) - 1} more)' if len(missing) > 1 else '')
            + f'; only parameters under {list(new)} may be new in the fine-tuned model'
        )
    dropped = sorted(p for p in pretrained if p not in fresh)
    extra = [p for p in dropped if not _under(p, unused)]
    if extra:
        raise ConfigError(
            f'the pre-trained parameter {extra[0]} has no place in the fine-tuned model'
            + (f' (nor {len(extra) - 1} more)' if len(extra) > 1 else '')
            + f'; only parameters under {list(unused)} may be left out'
        )
    for path, leaf in pretrained.items():
        if path in fresh:
            want = fresh[path]
            if tuple(np.shape(leaf)) != tuple(want.shape) or jnp.dtype(leaf.dtype) != want.dtype:
                raise ConfigError(
                    f'pre-trained parameter {path} is {leaf.dtype}{list(np.shape(leaf))} but '
                    f'the fine-tuned model has {want.dtype}{list(want.shape)}'
                )
    if dropped:
        logging.info(
            'warm start: %d pre-trained parameter arrays are not used: %s',
            len(dropped),
            ', '.join(dropped),
        )
    leaves, treedef = jax.tree_util.tree_flatten_with_path(fresh_params)
    return jax.tree_util.tree_unflatten(
        treedef,
        [
            jnp.asarray(pretrained[_path_name(path)]) if _path_name(path) in pretrained else leaf
            for path, leaf in leaves
        ],
    )


def restore_pretrained(workdir: str, step: int | None = None):
    """(params as numpy, resolved config) of the latest (or `step`) checkpoint of a run."""
    workdir = os.path.abspath(os.path.expanduser(workdir))
    config = read_run_config(workdir, 'a finished training run')
    return restore_params(workdir, step), config


def check_compatible(
    model_config: Mapping,
    pretrained_model_config: Mapping,
    source: str,
    may_differ: Sequence[str] = MAY_DIFFER,
) -> None:
    """ConfigError naming the first model key (outside `may_differ`) whose value differs
    from the pre-trained run's (`source`: where that config came from, for the message)."""
    mine, theirs = dict(model_config), dict(pretrained_model_config)
    for key in sorted(set(mine) | set(theirs)):
        if key in may_differ:
            continue
        if mine.get(key) != theirs.get(key):
            raise ConfigError(
                f'config.model.{key}={mine.get(key)!r} differs from the pre-trained model '
                f'({theirs.get(key)!r} in {source}); fine-tuning keeps the pre-trained '
                f'architecture, so set --config.model.{key}={theirs.get(key)!r}'
            )

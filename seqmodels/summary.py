"""Prints a model's parameter table without allocating its parameters.

    python -m seqmodels.summary --config=configs/gpt.py:gpt2_small

The parameters are traced with `jax.eval_shape(model.init, ...)`, so even a
300M-parameter model costs no memory. The last line is `total_params=<N>`.
"""

import math
import sys

import jax
import jax.numpy as jnp
from absl import app, flags
from ml_collections import config_flags

from seqmodels import models


# Model sizes that configs leave at 0 for the driver to take from the data.
_DATA_SIZED = ('vocab_size', 'src_vocab_size', 'tgt_vocab_size', 'image_size')


def param_shapes(model_config):
    """The parameter pytree of `model_config` as ShapeDtypeStructs.

    Raises ValueError naming a key of `_DATA_SIZED` that is still 0.
    """
    for key in _DATA_SIZED:
        if key in model_config and model_config[key] <= 0:
            raise ValueError(
                f'config key model.{key}={model_config[key]}: experiment configs '
                f'leave it for the driver to take from the data; set it '
                f'(--config.model.{key}=N) to summarise the model'
            )
    model = models.build_model(model_config)
    inputs = models.example_inputs(model_config, model)
    rngs = {'params': jax.random.key(0), 'dropout': jax.random.key(1)}
    variables = jax.eval_shape(model.init, rngs, *inputs)
    return variables['params']


def param_table(params, depth: int) -> list[tuple[str, int, int]]:
    """Rows (module path, number of arrays, number of parameters), in tree order."""
    rows: dict[str, list[int]] = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
        keys = [str(getattr(k, 'key', k)) for k in path]
        group = '/'.join(keys[:depth] if depth > 0 else keys)
        arrays_and_count = rows.setdefault(group, [0, 0])
        arrays_and_count[0] += 1
        arrays_and_count[1] += math.prod(leaf.shape)
    return [(name, n, c) for name, (n, c) in rows.items()]


def summary_lines(model_config, depth: int = 2) -> list[str]:
    """The printed summary: the table of `param_table`, its total, `total_params=<N>`."""
    rows = param_table(param_shapes(model_config), depth)
    total = sum(c for _, _, c in rows)
    width = max([len('module')] + [len(r[0]) for r in rows])
    lines = [f'{"module":<{width}}  {"arrays":>6}  {"params":>14}  {"share":>6}']
    lines += [
        f'{name:<{width}}  {n:>6}  {c:>14,}  {100 * c / max(total, 1):>5.1f}%'
        for name, n, c in rows
    ]
    lines += [
        f'{"total":<{width}}  {"":>6}  {total:>14,}',
        f'model={model_config["name"]} dtype={jnp.dtype(jnp.float32).name}',
        f'total_params={total}',
    ]
    return lines


def _run():
    # Flags are defined here, not on import, so that a program that defines its own
    # --config (every experiment driver) can still import the functions above.
    config_flag = config_flags.DEFINE_config_file(
        'config', None, 'Experiment config file[:variant].'
    )
    depth_flag = flags.DEFINE_integer(
        'depth',
        2,
        'Group parameters by this many levels of the module tree (0: one row per array).',
    )

    def main(argv):
        if len(argv) > 1:
            raise app.UsageError(f'unexpected arguments: {argv[1:]}')
        if config_flag.value is None:
            raise app.UsageError('--config is required, e.g. --config=configs/gpt.py:gpt1')
        try:
            lines = summary_lines(config_flag.value.model, depth_flag.value)
        except ValueError as e:  # a model config that build_model or init rejects
            sys.stderr.write(f'error: {e}\n')
            sys.exit(1)
        print('\n'.join(lines))

    app.run(main)


if __name__ == '__main__':
    _run()

"""Prints a model's parameter table without allocating its parameters.

    python -m seqmodels.summary --config=configs/gpt.py:gpt2_small

The parameters are traced with `jax.eval_shape(model.init, ...)`, so even a
300M-parameter model costs no memory. The last line is `total_params=<N>`.
"""

import math

import jax
import jax.numpy as jnp
from absl import app, flags
from ml_collections import config_flags

from seqmodels import models

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file[:variant].")
_DEPTH = flags.DEFINE_integer(
    "depth", 2, "Group parameters by this many levels of the module tree (0: one row per array)."
)


def param_shapes(model_config):
    """The parameter pytree of `model_config` as ShapeDtypeStructs."""
    model = models.build_model(model_config)
    inputs = models.example_inputs(model_config, model)
    rngs = {"params": jax.random.key(0), "dropout": jax.random.key(1)}
    variables = jax.eval_shape(model.init, rngs, *inputs)
    return variables["params"]


def param_table(params, depth: int) -> list[tuple[str, int, int]]:
    """Rows (module path, number of arrays, number of parameters), in tree order."""
    rows: dict[str, list[int]] = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
        keys = [str(getattr(k, "key", k)) for k in path]
        group = "/".join(keys[:depth] if depth > 0 else keys)
        arrays_and_count = rows.setdefault(group, [0, 0])
        arrays_and_count[0] += 1
        arrays_and_count[1] += math.prod(leaf.shape)
    return [(name, n, c) for name, (n, c) in rows.items()]


def main(argv):
    del argv
    config = _CONFIG.value
    if config is None:
        raise app.UsageError("--config is required, e.g. --config=configs/gpt.py:gpt1")
    params = param_shapes(config.model)
    rows = param_table(params, _DEPTH.value)
    total = sum(c for _, _, c in rows)
    width = max([len("module")] + [len(r[0]) for r in rows])
    print(f"{'module':<{width}}  {'arrays':>6}  {'params':>14}  {'share':>6}")
    for name, n, c in rows:
        print(f"{name:<{width}}  {n:>6}  {c:>14,}  {100 * c / total:>5.1f}%")
    print(f"{'total':<{width}}  {'':>6}  {total:>14,}")
    print(f"model={config.model.name} dtype={jnp.dtype(jnp.float32).name}")
    print(f"total_params={total}")


if __name__ == "__main__":
    app.run(main)

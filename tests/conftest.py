"""Shared test fixtures.

Tests run on the CPU with one XLA device; the tests that need 8 devices or several
processes start subprocesses that set `XLA_FLAGS` before importing jax.
"""

import json
import os
import pathlib

import pytest

os.environ.setdefault('JAX_PLATFORMS', 'cpu')

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / 'shared' / 'data'


def shared_file(relative: str) -> pathlib.Path:
    """A file of ../shared/data, or a skip naming it when this checkout has none."""
    path = SHARED_DATA / relative
    if not path.exists():
        pytest.skip(f'reference data {path} is absent (it lives in ../shared/data beside the repo)')
    return path


@pytest.fixture
def tiny_shakespeare() -> pathlib.Path:
    return shared_file('tinyshakespeare/input.txt')


@pytest.fixture(scope='module')
def jax_cache_dir(tmp_path_factory):
    """A persistent JAX compilation cache for the engine tests, in one directory for the
    whole session (test_training_distributed.py's subprocesses use it too): the toy
    programs are the same everywhere, so each compiles once. Yields the directory."""
    import jax
    from jax.experimental.compilation_cache import compilation_cache as cc

    names = ('jax_compilation_cache_dir', 'jax_persistent_cache_min_compile_time_secs')
    previous = {name: getattr(jax.config, name) for name in names}
    directory = tmp_path_factory.getbasetemp() / 'seqmodels_training_jax_cache'
    directory.mkdir(exist_ok=True)
    cc.reset_cache()
    jax.config.update('jax_compilation_cache_dir', str(directory))
    jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.0)
    yield directory
    for name, value in previous.items():
        jax.config.update(name, value)
    cc.reset_cache()


def read_metrics(workdir) -> list[dict]:
    """The records of WORKDIR/metrics.jsonl."""
    with open(os.path.join(workdir, 'metrics.jsonl')) as f:
        return [json.loads(line) for line in f]


def assert_params_equal(a, b):
    """Bitwise equality of two parameter trees (the same structure, the same arrays)."""
    import jax
    import numpy as np

    a, b = jax.tree.map(np.asarray, a), jax.tree.map(np.asarray, b)
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(x, y)

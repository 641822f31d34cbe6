"""Shared test fixtures.

Tests run on the CPU with one XLA device; the tests that need 8 devices or several
processes start subprocesses that set `XLA_FLAGS` before importing jax.
"""

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

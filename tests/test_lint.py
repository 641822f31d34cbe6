"""The repository passes its own lint and format configuration (pyproject.toml,
[tool.ruff])."""

import pathlib
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def ruff():
    path = shutil.which('ruff', path=str(pathlib.Path(sys.executable).parent)) or shutil.which(
        'ruff'
    )
    if path is None:
        pytest.skip('ruff is not installed (it comes with the test extra: pip install -e .[test])')
    return path


def test_ruff_check_passes():
    result = subprocess.run(
        [ruff(), 'check', '--output-format=concise', '.'], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format_leaves_every_file_as_it_is():
    result = subprocess.run(
        [ruff(), 'format', '--check', '.'], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr

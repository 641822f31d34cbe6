"""The repository passes its own lint configuration (pyproject.toml, [tool.ruff])."""

import pathlib
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_ruff_check_passes():
    ruff = shutil.which('ruff', path=str(pathlib.Path(sys.executable).parent)) or shutil.which(
        'ruff')
    if ruff is None:
        pytest.skip('ruff is not installed (it comes with the test extra: pip install -e .[test])')
    result = subprocess.run([ruff, 'check', '--output-format=concise', '.'], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr

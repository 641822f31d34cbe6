"""Every notebook in notebooks/ runs top to bottom.

The code cells are executed in one namespace in this process (no Jupyter kernel is
needed, so the `test` extra stays small); a cell that raises or whose asserts fail
fails the test and names the cell.
"""

import json
import pathlib

import pytest

NOTEBOOKS = sorted((pathlib.Path(__file__).resolve().parents[1] / 'notebooks').glob('*.ipynb'))


def test_there_are_notebooks():
    assert NOTEBOOKS, 'notebooks/ holds no .ipynb file'


@pytest.mark.parametrize('path', NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs(path):
    cells = json.loads(path.read_text())['cells']
    namespace = {'__name__': '__notebook__'}
    for index, cell in enumerate(cells):
        if cell['cell_type'] != 'code':
            continue
        source = ''.join(cell['source'])
        try:
            exec(compile(source, f'{path.name}[cell {index}]', 'exec'), namespace)
        except Exception as e:
            raise AssertionError(f'{path.name}, cell {index} failed: {e!r}\n{source}') from e

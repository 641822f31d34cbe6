"""Every notebook in notebooks/ runs top to bottom, in its smoke mode, and is committed
without outputs.

The code cells are executed in one namespace in this process (no Jupyter kernel is
needed, so the `test` extra stays small); a cell that raises or whose asserts fail
fails the test and names the cell. Smoke mode (SEQMODELS_NOTEBOOK_SMOKE=1) makes a
notebook whose WORKDIR is None train its tiny model for seconds, under the temporary
directory, which here is one folder for the whole session: notebooks that use the same
tiny model (lstm_cells and sampling) train it once.
"""

import json
import pathlib
import tempfile

import pytest

NOTEBOOKS = sorted((pathlib.Path(__file__).resolve().parents[1] / 'notebooks').glob('*.ipynb'))
IDS = [p.name for p in NOTEBOOKS]


def test_there_are_notebooks():
    assert NOTEBOOKS, 'notebooks/ holds no .ipynb file'


@pytest.mark.parametrize('path', NOTEBOOKS, ids=IDS)
def test_notebook_is_committed_without_outputs(path):
    notebook = json.loads(path.read_text())
    for index, cell in enumerate(notebook['cells']):
        if cell['cell_type'] == 'code':
            assert cell['outputs'] == [], f'{path.name}, cell {index} has outputs'
            assert cell['execution_count'] is None, f'{path.name}, cell {index} was run'
    assert 'widgets' not in notebook['metadata']


@pytest.fixture(scope='module')
def scratch(tmp_path_factory):
    return str(tmp_path_factory.mktemp('notebooks'))


@pytest.mark.parametrize('path', NOTEBOOKS, ids=IDS)
def test_notebook_runs(path, scratch, monkeypatch):
    monkeypatch.setenv('SEQMODELS_NOTEBOOK_SMOKE', '1')
    monkeypatch.setattr(tempfile, 'tempdir', scratch)
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

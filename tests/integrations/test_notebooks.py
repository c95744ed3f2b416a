"""Every notebook in examples/notebooks runs top to bottom, and its plot cells draw images."""

from __future__ import annotations

from pathlib import Path

import pytest

from .helpers import EXAMPLES

pytestmark = pytest.mark.notebooks

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOKS = sorted((EXAMPLES / "notebooks").glob("*.ipynb"))


def test_the_notebooks_are_there():
    assert {p.name for p in NOTEBOOKS} >= {"getting_started.ipynb", "energy_analysis.ipynb"}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_stored_without_outputs(path: Path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{path.name}: clear outputs before committing"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_top_to_bottom_and_its_plots_produce_images(path: Path, monkeypatch):
    monkeypatch.delenv("MONGODB_URL", raising=False)  # the embedded backend
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(nb, kernel_name="python3", timeout=120,
                                     resources={"metadata": {"path": str(path.parent)}})
    client.execute()  # raises CellExecutionError naming the cell on any error

    plot_cells = [c for c in nb.cells if c.cell_type == "code" and "plt.show()" in c.source]
    assert plot_cells, f"{path.name} has no plot cells"
    for cell in plot_cells:
        images = [o for o in cell.outputs if "image/png" in o.get("data", {})]
        assert images, f"{path.name}: a plot cell produced no image:\n{cell.source[:200]}"
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert errors == []
    # the notebook chose the embedded backend on purpose: no EmbeddedDatabaseWarning in any cell
    streams = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs
                      if o.output_type == "stream")
    assert "EmbeddedDatabaseWarning" not in streams


def test_the_notebooks_extra_installs_what_running_a_notebook_headless_needs():
    import configparser

    parser = configparser.ConfigParser()
    parser.read(Path(__file__).resolve().parents[2] / "setup.cfg")
    extra = {line.split(">")[0].split("=")[0].strip().lower()
             for line in parser["options.extras_require"]["notebooks"].splitlines() if line.strip()}
    assert {"nbconvert", "nbclient", "nbformat", "ipykernel", "matplotlib"} <= extra


def test_a_notebook_executes_with_jupyter_nbconvert(tmp_path: Path):
    """The way a user runs a notebook headless: ``jupyter nbconvert --execute`` (the notebooks extra)."""
    import os
    import subprocess
    import sys

    pytest.importorskip("nbconvert")
    path = EXAMPLES / "notebooks" / "getting_started.ipynb"
    env = {k: v for k, v in os.environ.items() if k != "MONGODB_URL"} | {"MPLBACKEND": "Agg"}
    done = subprocess.run([sys.executable, "-m", "nbconvert", "--to", "notebook", "--execute",
                           "--output-dir", str(tmp_path), str(path)],
                          cwd=path.parent, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    executed = nbformat.read(tmp_path / path.name, as_version=4)
    assert all(c.execution_count for c in executed.cells if c.cell_type == "code")

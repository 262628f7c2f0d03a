"""notebooks/quickstart.ipynb, run top to bottom with nbclient on tiny fake data: no cell
fails and every figure is drawn; and it is kept in git without outputs."""

import glob
import json
import os
import pathlib

import pytest

from tests.cifar_files import fake_cifar10, write_folder

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

NOTEBOOK = pathlib.Path(__file__).parent.parent / "notebooks" / "quickstart.ipynb"
# Set after the notebook's "parameters" cell, as papermill injects parameters: a network of
# 1/16 the channels, one epoch of 100 images in batches of 16, XLA off (compiling takes
# ~25 s a run on two CPU cores; the plain kernels train these steps in a second).
TINY = """
WIDTH = 0.0625
EPOCHS = 1
TRAIN_LIMIT = None
TEST_LIMIT = None
BATCH_SIZE = 16
JIT = False
"""
FIGURES = 4  # curves, confusion matrix, the two recipes, the classified image
CELL_TIMEOUT_S = 300  # a tiny run takes ~10 s; a cell stuck past this fails the test


def test_the_notebook_is_kept_without_outputs():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, cell.source[:60]
    tagged = [cell for cell in notebook.cells if "parameters" in cell.metadata.get("tags", [])]
    assert len(tagged) == 1 and "WIDTH = " in tagged[0].source


@pytest.mark.slow  # trains two runs in a kernel
def test_the_notebook_runs_on_tiny_data_and_draws_its_figures(tmp_path, monkeypatch):
    data_dir = write_folder(tmp_path / "data", fake_cifar10(train_per_batch=20, test=20))
    monkeypatch.setenv("TF_RESNET9_DATA", data_dir)  # the kernel inherits the environment
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    (at,) = [i for i, c in enumerate(notebook.cells) if "parameters" in c.metadata.get("tags", [])]
    notebook.cells.insert(at + 1, nbformat.v4.new_code_cell(TINY.strip()))
    client = nbclient.NotebookClient(
        notebook,
        timeout=CELL_TIMEOUT_S,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},  # the kernel's working directory
    )
    client.execute()  # raises CellExecutionError, with the cell and traceback, on a failure
    outputs = [out for cell in notebook.cells if cell.cell_type == "code" for out in cell.outputs]
    assert not [out for out in outputs if out.output_type == "error"]
    figures = [out for out in outputs if "image/png" in out.get("data", {})]
    assert len(figures) == FIGURES
    (workdir,) = glob.glob(str(tmp_path / "runs" / "quickstart-*"))
    for recipe, model in (("page24", "resnet9"), ("he2016", "resnet20")):
        results = json.loads(pathlib.Path(workdir, recipe, "results.json").read_text())
        assert results["config"]["model"] == model and results["config"]["width"] == 0.0625
    assert os.path.exists(os.path.join(workdir, "page24", "inference.keras"))
    printed = "".join(out.get("text", "") for out in outputs if out.output_type == "stream")
    assert "he2016" in printed and "resnet20" in printed  # the comparison's table

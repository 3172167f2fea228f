"""examples/seed_notebook.ipynb (issue 18): stored without outputs, and executed in a real Jupyter
kernel (nbclient, a fresh python3 ipykernel) at small sizes with every warning an error; any error
fails, and every figure it shows must come out as an image."""

from __future__ import annotations

import base64
import io
import os
import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "examples" / "seed_notebook.ipynb"
FIGURE_TEXT = re.compile(r"^<Figure size ([\d.]+)x([\d.]+) with \d+ Axes>$")  # pixels, maybe fractional
# Replaces the values of the notebook's parameters cell (the same names, small sizes).
SMALL = {
    "N_DATA": 512, "ITERS": 40, "EVAL_EVERY": 10, "SEEDS": 2, "STUDY_ITERS": 40, "DIAG_ITERS": 40, "TUNE_TRIALS": 3,
    "TUNE_ITERS": 40,
}  # fmt: skip
WARNINGS_AS_ERRORS = "import warnings\nwarnings.simplefilter('error')"
# Last: the kernel's own shutdown warns (ipykernel's do_shutdown deprecation), not the notebook.
WARNINGS_BACK = "warnings.resetwarnings()"


def read() -> nbformat.NotebookNode:
    return nbformat.read(NOTEBOOK, as_version=4)


def parameters_cell(nb) -> int:
    (index,) = [i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", [])]
    return index


def test_stored_without_outputs_and_valid():
    nb = read()
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(c.outputs == [] and c.execution_count is None for c in code)


def test_small_sizes_name_exactly_the_parameters():
    nb = read()
    names = re.findall(r"^(\w+) = ", nb.cells[parameters_cell(nb)].source, re.M)
    assert sorted(names) == sorted(SMALL)


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    nb = read()
    i = parameters_cell(nb)
    small = "\n".join(f"{k} = {v!r}" for k, v in SMALL.items())
    nb.cells[i + 1 : i + 1] = [nbformat.v4.new_code_cell(small)]
    nb.cells.insert(0, nbformat.v4.new_code_cell(WARNINGS_AS_ERRORS))
    nb.cells.append(nbformat.v4.new_code_cell(WARNINGS_BACK))
    cwd = tmp_path_factory.mktemp("example")
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    with pytest.MonkeyPatch.context() as mp:
        # A fresh kernel as a user has it: its own matplotlib backend, JAX free to use every core
        # (the suite's one-device XLA_FLAGS would make the study warn, and warnings are errors).
        mp.delenv("MPLBACKEND", raising=False)
        mp.delenv("XLA_FLAGS", raising=False)
        mp.setenv("PYTHONPATH", path)
        client = NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(cwd)}})
        client.execute()  # raises CellExecutionError on any error (a warning included)
    return nb


def test_runs_without_errors_or_warnings(executed):
    for cell in executed.cells:
        for out in cell.get("outputs", []):
            assert out.output_type != "error"
            text = out.get("text", "") if out.output_type == "stream" else ""
            assert "Warning" not in text, text


def test_every_figure_shows_as_an_image(executed):
    figures = 0
    for cell in executed.cells:
        for out in cell.get("outputs", []):
            size = FIGURE_TEXT.match(out.get("data", {}).get("text/plain", ""))
            if size:
                assert "image/png" in out.data, f"a figure without an image, by the cell:\n{cell.source}"
                png = Image.open(io.BytesIO(base64.b64decode(out.data["image/png"])))
                assert png.size == tuple(int(float(v)) for v in size.groups())  # Agg truncates
                figures += 1
    assert figures == 7  # the data, curves, snapshots, the study's curves, sharpness, steps, tuning budget
    gifs = [out for c in executed.cells for out in c.get("outputs", []) if "image/gif" in out.get("data", {})]
    assert len(gifs) == 1


def test_progress_shows_as_a_widget(executed):
    # ipywidgets is installed (the notebook extra): each of the four bars' cells shows a tqdm widget.
    widget = "application/vnd.jupyter.widget-view+json"
    bars = [c for c in executed.cells if any(widget in out.get("data", {}) for out in c.get("outputs", []))]
    assert len(bars) == 4 and all("ProgressBar(" in c.source for c in bars)

"""The README's "From a notebook" section in a real Jupyter kernel (issue 18): its python blocks, up
to the last one that displays something (the rest registers an optimizer: tests/test_readme.py
runs it), run in order as the cells of a fresh ipykernel (nbclient; no ``%matplotlib inline``, no pyplot, the
kernel's own matplotlib backend), and every cell whose value is a Figure shows it as a PNG of the
figure's size; the GIF cell shows the animation. Also: with an inline backend active a figure shows
once, and the displaying Figure still pickles and copies like a matplotlib Figure."""

from __future__ import annotations

import base64
import copy
import io
import os
import pickle
import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)
SECTION = "## From a notebook"
FIGURE_TEXT = re.compile(r"^<Figure size ([\d.]+)x([\d.]+) with \d+ Axes>$")  # pixels, maybe fractional
# After the README's cells: the same figure once an inline backend is active.
INLINE = "%matplotlib inline\nfigures.plot_mse_curves(one)"


def section_blocks() -> list[str]:
    """The ```python blocks of the README's "From a notebook" section, in order."""
    start = README.index(SECTION)
    end = README.index("\n## ", start + len(SECTION))
    return [m.group(2) for m in FENCE.finditer(README[start:end]) if m.group(1) == "python"]


def run_cells(sources: list[str], cwd: Path, timeout: int = 600) -> list:
    """Executes ``sources`` as the code cells of a new notebook in a fresh python3 kernel."""
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(src) for src in sources])
    NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}).execute()
    return nb.cells


def results(cell) -> list[dict]:
    return [out for out in cell.outputs if out.output_type == "execute_result"]


def png_size(data: str) -> tuple[int, int]:
    return Image.open(io.BytesIO(base64.b64decode(data))).size


@pytest.fixture(scope="module")
def cells(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("kernel")
    env = {"PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)}
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("MPLBACKEND", raising=False)  # the kernel chooses its backend, as for a user
        for key, value in env.items():
            mp.setenv(key, value)
        blocks = section_blocks()
        last = max(i for i, b in enumerate(blocks) if b.rstrip().splitlines()[-1].startswith(("figures.plot_", "gif")))
        *executed, inline = run_cells([*blocks[: last + 1], INLINE], cwd)
        return blocks[: last + 1], executed, inline


def test_the_section_has_figure_and_gif_cells():
    blocks = section_blocks()
    assert any(b.rstrip().splitlines()[-1].startswith("figures.plot_") for b in blocks)
    assert any(b.rstrip().splitlines()[-1].startswith("gif") for b in blocks)


def test_every_figure_value_shows_as_a_png_of_its_size(cells):
    blocks, executed, _ = cells
    shown = 0
    for block, cell in zip(blocks, executed):
        for out in results(cell):
            size = FIGURE_TEXT.match(out.data.get("text/plain", ""))
            if size:
                assert "image/png" in out.data, f"a Figure shown as text only, by the cell:\n{block}"
                assert png_size(out.data["image/png"]) == tuple(int(float(v)) for v in size.groups())  # Agg truncates
                shown += 1
    assert shown == 2  # the section's two figure cells: plot_mse_curves(one) and the composed fig


def test_the_gif_shows_as_the_animation(cells):
    blocks, executed, _ = cells
    (cell,) = [c for b, c in zip(blocks, executed) if b.rstrip().splitlines()[-1].startswith("gif")]
    (out,) = results(cell)
    gif = Image.open(io.BytesIO(base64.b64decode(out.data["image/gif"])))
    assert gif.n_frames == 6  # one frame per evaluation of iters=500, eval_every=100
    assert out.data["text/html"] == f'<img src="data:image/gif;base64,{out.data["image/gif"]}"/>'
    assert re.fullmatch(r"<GIF \d+x\d+, [\d,]+ bytes>", out.data["text/plain"])


def test_with_an_inline_backend_a_figure_shows_once(cells):
    *_, inline = cells
    images = [out for out in inline.outputs if "image/png" in out.get("data", {})]
    assert len(images) == 1


def test_the_displaying_figure_is_still_a_matplotlib_figure():
    from matplotlib.figure import Figure as MplFigure

    from jaxopt_cmp import figures

    fig = figures.Figure(figsize=(2, 1), dpi=50)
    fig.subplots().plot([0, 1])
    assert isinstance(fig, MplFigure)
    assert png_size(base64.b64encode(fig._repr_png_())) == (100, 50)
    for twin in (pickle.loads(pickle.dumps(fig)), copy.deepcopy(fig)):
        assert type(twin) is figures.Figure and len(twin.axes) == 1
        assert twin._repr_png_() == fig._repr_png_()
    buf = io.BytesIO()
    fig.savefig(buf, format="svg")
    assert buf.getvalue().lstrip().startswith(b"<?xml")


def test_progress_bar_follows_absolute_steps_and_closes_at_the_total():
    from jaxopt_cmp.progress import ProgressBar

    out = io.StringIO()
    bar = ProgressBar(10, "t", notebook=False, file=out)
    for step in (4, 4, 7):
        bar(step)
        assert bar.bar.n == step
    assert not bar.bar.disable
    bar(10)
    assert bar.bar.n == 10 and bar.bar.disable  # tqdm's closed state
    assert "10/10" in out.getvalue()

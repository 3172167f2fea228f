"""Figures to bytes and files: Agg with unhinted text, PNGs at a fast zlib level, atomic writes;
and the one home of how they display in a notebook (:class:`Figure`).

:func:`save_figures` and :func:`figure_bytes` are also reachable as ``jaxopt_cmp.figures.*``.
"""

from __future__ import annotations

import base64
import io
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from matplotlib import figure

from jaxopt_cmp.io import atomic_write_bytes

# Settings while figures are rendered to files. Matplotlib 3.11 sets the font size before every
# glyph it draws, which reruns the font's hinting program each time: unhinted, text (most of the
# time spent rendering these figures) draws ~40% faster, and at these sizes looks the same.
RENDER_RC = {"text.hinting": "no_hinting"}


class Figure(figure.Figure):
    """A :class:`matplotlib.figure.Figure` that displays itself as the last expression of a notebook
    cell with no setup (no ``%matplotlib inline``, no pyplot), through the IPython display protocol:
    a PNG at the figure's size and dpi, rendered by :func:`figure_bytes`. Everything else is the
    matplotlib Figure's (``savefig``, axes, pickling); the user's backend is never touched. Where an
    inline backend is active, its own formatter for Figures takes precedence (one image, not two).
    """

    def _repr_png_(self) -> bytes:
        return figure_bytes(self)


class Gif(bytes):
    """The bytes of an animated GIF (written as they are, e.g. by :func:`save_figures`) that display
    as the animation in a notebook cell: ``image/gif``, and an ``<img>`` for front ends that
    render HTML but not that type. Its repr is one short line, not the bytes."""

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict:
        data = base64.b64encode(self).decode("ascii")
        return {"image/gif": data, "text/html": f'<img src="data:image/gif;base64,{data}"/>'}

    def __repr__(self) -> str:
        width, height = struct.unpack("<HH", self[6:10])  # the GIF's logical screen size
        return f"<GIF {width}x{height}, {len(self):,} bytes>"


@contextmanager
def agg_canvas(fig: figure.Figure) -> Iterator:
    """An Agg canvas of ``fig`` to draw on in the block, under :data:`RENDER_RC`; the figure gets
    its own canvas back after."""
    from matplotlib import rc_context
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    base = fig.canvas
    try:
        with rc_context(RENDER_RC):
            yield FigureCanvasAgg(fig)
    finally:
        fig.set_canvas(base)


def figure_bytes(fig: figure.Figure, fmt: str = "png") -> bytes:
    """The figure rendered in memory at its own dpi: a PNG drawn by Agg as the figure is (its
    facecolor; no ``savefig.*`` settings) and written by :func:`png_bytes`; other formats by
    ``savefig``."""
    if fmt != "png":
        buf = io.BytesIO()
        fig.savefig(buf, format=fmt, dpi=fig.dpi)
        return buf.getvalue()
    with agg_canvas(fig) as canvas:
        canvas.draw()
        rgba = np.asarray(canvas.buffer_rgba())
    return png_bytes(rgba if (rgba[..., 3] != 255).any() else rgba[..., :3], fig.dpi)


def png_bytes(pixels: np.ndarray, dpi: float) -> bytes:
    """A PNG of 8-bit RGB or RGBA ``pixels`` (rows, columns, 3 or 4) by Pillow at zlib level 1:
    on figures (flat colours) within ~10% of the default level's size, in 2/3 of its time."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels)).save(buf, format="PNG", compress_level=1, dpi=(dpi, dpi))
    return buf.getvalue()


def save_figures(figures: dict[str, figure.Figure | bytes], out: str | Path) -> list[Path]:
    """Writes each ``{file name: Figure or bytes}`` into ``out`` atomically (format from the
    suffix); returns the paths."""
    paths = []
    for name, fig in figures.items():
        path = Path(out) / name
        payload = fig if isinstance(fig, bytes) else figure_bytes(fig, path.suffix.lstrip(".") or "png")
        atomic_write_bytes(path, payload)
        paths.append(path)
    return paths

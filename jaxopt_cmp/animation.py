"""The fits over training as an animated GIF (``fits.gif``): one frame per evaluation, drawn with
:mod:`jaxopt_cmp.figures`' fit panel on one Agg canvas (the still parts drawn once), encoded by
Pillow with one palette."""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np

from jaxopt_cmp.figures import LEGEND_PT, _fit_figure, _fixed_layout, _ticks
from jaxopt_cmp.render import Gif, agg_canvas
from jaxopt_cmp.report import settings_text
from jaxopt_cmp.results import StudyResult

UNCHANGED = 255  # the palette index of "as in the previous frame" (GIF transparency)
# At most this many frames (evenly spaced evaluations, the first and last included): each frame is
# ~0.6 MB of RGB while the GIF is built, so --eval-every 1 over 10,000 steps would need ~6 GB.
MAX_FRAMES = 200


def frame_evals(n_evals: int, max_frames: int = MAX_FRAMES) -> np.ndarray:
    """Indices of the evaluations the animation shows: all of them up to ``max_frames``, else
    ``max_frames`` evenly spaced ones, the first and the last included."""
    return np.unique(np.round(np.linspace(0, n_evals - 1, min(n_evals, max_frames))).astype(int))


def fits_gif(result: StudyResult, h: dict[str, int] | None = None, fps: float = 4.0) -> Gif:
    """An animated GIF of seed 0's fits over training, one frame per evaluation (at most
    :data:`MAX_FRAMES`, :func:`frame_evals`), with the MSEs beside the legend:
    :class:`~jaxopt_cmp.render.Gif` bytes, which display in a notebook."""
    margins = dict(left=0.75, bottom=0.5, top=0.55)
    fig, ax, fit, lines = _fit_figure(result, h, (8, 3.8), 80, 800)
    ax.set(xticks=_ticks(fit.xlim, 8), yticks=_ticks(fit.ylim, 6))
    fig.suptitle(f"Seed 0's fits during training: {settings_text(result, h)}", fontsize=9)
    longest = [f"{n} MSE 0.000000" for n in fit.names]  # the widest ".3g" MSE text
    _fixed_layout(fig, fit.legend(ax, lines, longest), **margins)
    entries = len(fit.names) + 1
    rows = -(-entries // -(-entries // 12))  # of the legend, 0.19 inch each: the MSEs go below it
    top = 1 - (0.19 * rows + 0.1) * fig.dpi / ax.bbox.height
    kw = dict(transform=ax.transAxes, fontsize=LEGEND_PT, va="top")
    texts = [ax.text(1.01, top - 0.08 * k, "", **kw) for k in range(min(3, len(fit.names)))]
    moving = [*lines.values(), ax.title, *texts]

    def frame(e: int) -> None:
        ax.set_title(f"[{int(result.eval_steps[e])}/{result.config.train.iters}]", y=1.0)
        for n, line in lines.items():
            line.set_ydata(fit.pred(n, e))
        for text, (label, colour) in zip(texts, fit.mse_labels(e, len(texts), named=True)):
            text.set(text=label, color=colour)

    shown = frame_evals(len(result.eval_steps))
    return Gif(gif_bytes(_frames(fig, lambda k: frame(int(shown[k])), len(shown), moving), fps))


def _frames(fig, update: Callable[[int], None], n: int, moving: list) -> list[np.ndarray]:
    """The ``n`` frames (RGB arrays) of ``fig`` after ``update(k)``, k < n. Blitting: the figure
    without the ``moving`` artists is drawn once; each frame restores it and draws only those."""
    with agg_canvas(fig) as canvas:
        for artist in moving:
            artist.set_visible(False)
        canvas.draw()
        still = canvas.copy_from_bbox(fig.bbox)
        for artist in moving:
            artist.set_visible(True)
        renderer, frames = canvas.get_renderer(), []
        for k in range(n):
            update(k)
            canvas.restore_region(still)
            for artist in moving:
                artist.draw(renderer)
            frames.append(np.asarray(canvas.buffer_rgba())[..., :3].copy())
        return frames


def gif_bytes(frames: list[np.ndarray], fps: float) -> bytes:
    """An animated GIF of RGB ``frames`` (equal shapes), looping. One palette for all, from the
    last frame (no flicker between frames); from the second frame on, pixels equal to the previous
    frame's are transparent (``UNCHANGED``), so they cost next to nothing to encode or store."""
    from PIL import Image

    palette = Image.fromarray(frames[-1]).quantize(UNCHANGED, method=Image.Quantize.FASTOCTREE)
    index = [np.asarray(Image.fromarray(f).quantize(palette=palette, dither=Image.Dither.NONE)) for f in frames]
    images = [index[0]] + [np.where(now == before, np.uint8(UNCHANGED), now) for before, now in zip(index, index[1:])]
    images = [Image.fromarray(im, "P") for im in images]
    for im in images:
        im.putpalette(palette.getpalette())
    buf = io.BytesIO()
    kw = dict(duration=round(1000 / fps), loop=0, optimize=False, transparency=UNCHANGED, disposal=1)
    images[0].save(buf, format="GIF", save_all=True, append_images=images[1:], **kw)
    return buf.getvalue()

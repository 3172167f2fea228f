"""The fits over training as an animated GIF (``fits.gif``): one frame per evaluation, drawn with
:mod:`jaxopt_cmp.figures`' fit panel, written by a fast Pillow writer."""

from __future__ import annotations

import io

from jaxopt_cmp.figures import LEGEND_PT, _fit_figure, _fixed_layout, _ticks
from jaxopt_cmp.report import settings_text
from jaxopt_cmp.results import StudyResult


def fits_gif(result: StudyResult, h: dict[str, int] | None = None, fps: float = 4.0) -> bytes:
    """An animated GIF of seed 0's fits over training, one frame per evaluation, with the MSEs
    beside the legend (``matplotlib.animation.FuncAnimation`` and a Pillow GIF writer)."""
    from matplotlib.animation import FuncAnimation

    margins = dict(left=0.75, bottom=0.5, top=0.55)
    fig, ax, fit, lines = _fit_figure(result, h, (8, 3.8), 80, 800, **margins)
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

    buf = io.BytesIO()
    anim = FuncAnimation(fig, frame, frames=len(result.eval_steps), interval=1000 / fps, repeat=False)
    anim.save(buf, writer=_gif_writer(fps, moving))
    return buf.getvalue()


def _gif_writer(fps: float, moving: list):
    """A Pillow GIF writer for ``matplotlib.animation``: the still parts of the figure are drawn
    once, only the ``moving`` artists per frame (blitting), and every frame gets the last one's
    palette (no flicker): several times faster than :class:`~matplotlib.animation.PillowWriter`."""
    from matplotlib.animation import AbstractMovieWriter
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from PIL import Image

    class GifWriter(AbstractMovieWriter):
        def setup(self, fig, outfile, dpi=None):  # outfile: a binary file object
            self.fig, self.outfile, self.dpi, self.frames, self.still = fig, outfile, fig.dpi, [], None
            base = fig.canvas  # the animation's idle redraws stay no-ops: it keeps the base canvas
            self.canvas = FigureCanvasAgg(fig)
            fig.set_canvas(base)

        def grab_frame(self, **savefig_kwargs):
            if self.still is None:  # draw all but the moving artists once
                for artist in moving:
                    artist.set_visible(False)
                self.canvas.draw()
                self.still = self.canvas.copy_from_bbox(self.fig.bbox)
                for artist in moving:
                    artist.set_visible(True)
            self.canvas.restore_region(self.still)
            renderer = self.canvas.get_renderer()
            for artist in moving:
                artist.draw(renderer)
            rgba = Image.frombuffer("RGBA", self.canvas.get_width_height(), self.canvas.buffer_rgba())
            self.frames.append(rgba.convert("RGB"))

        def finish(self):
            palette = self.frames[-1].quantize(255, method=Image.Quantize.FASTOCTREE)
            frames = [f.quantize(palette=palette, dither=Image.Dither.NONE) for f in self.frames]
            kw = dict(save_all=True, append_images=frames[1:], duration=round(1000 / fps), loop=0)
            frames[0].save(self.outfile, format="GIF", **kw)

    return GifWriter(fps=fps)

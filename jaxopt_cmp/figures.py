"""Matplotlib figures of a :class:`StudyResult`, built without pyplot: every ``plot_*`` returns a
:class:`~matplotlib.figure.Figure` (one-panel ones draw into ``ax=`` when given); nothing here
touches the backend. Diverged runs (+inf MSE) are marked ``x`` with their count in a band at the
top of the MSE axes, a finite position whatever the data; huge finite values are drawn. The data
of fit panels is drawn pixel for pixel (:class:`DataSpots`), layouts are fixed (no layout engine)
and files are written by :mod:`jaxopt_cmp.render` (unhinted text, fast PNGs): fast to render.
"""

from __future__ import annotations

import numpy as np
from matplotlib.artist import Artist
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter

from jaxopt_cmp.render import Figure, figure_bytes, save_figures  # noqa: F401  (the figures' public API)
from jaxopt_cmp.report import run_label, settings_text
from jaxopt_cmp.results import StudyResult

# The seed notebook's colours: SGD green, momentum blue, Adam black; others from a palette
# without red (the data's colour), repeated with dashed then dotted lines past its length.
SEED_COLOURS = {"sgd": "g", "momentum": "b", "adam": "k"}
PALETTE = tuple("tab:orange tab:purple tab:brown tab:pink tab:olive tab:cyan tab:gray #1b9e77 #7570b3 #e6ab02 "
                "navy teal".split())  # fmt: skip
DATA_RGB = (1.0, 0.0, 0.0)
LEGEND_PT = 8
MAX_LOG10 = 150.0  # log axes span at most 1e-150..1e150: limits stay finite for any float64 value


def styles(names) -> dict[str, dict]:
    """``{name: {"color", "ls"}}``: a distinct colour (and dash, past the palette) per optimizer."""
    others = [n for n in names if n not in SEED_COLOURS]
    out = {n: {"color": c, "ls": "-"} for n, c in SEED_COLOURS.items() if n in names}
    for k, n in enumerate(others):
        out[n] = {"color": PALETTE[k % len(PALETTE)], "ls": ("-", "--", ":")[k // len(PALETTE) % 3]}
    return {n: out[n] for n in names}


def _new_axes(ax, figsize: tuple[float, float]):
    """``(figure, axes, owned)``: a new one-panel Figure unless the caller passed ``ax``."""
    if ax is not None:
        return ax.figure, ax, False
    fig = Figure(figsize=figsize, dpi=100)
    return fig, fig.add_subplot(), True


def _outside_legend(ax, handles, longest: list[str] = ()) -> float:
    """Legend right of the axes (never over the data), columns of at most 12 entries; returns its
    width in inches, measured from the font (no drawing) with the ``longest`` labels it will show."""
    from matplotlib.font_manager import FontProperties
    from matplotlib.textpath import TextToPath

    ncols = max(-(-len(handles) // 12), 1)
    kw = dict(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0, frameon=False)
    ax.legend(handles=handles, fontsize=LEGEND_PT, ncols=ncols, **kw)
    labels = sorted([h.get_label() for h in handles] + list(longest), key=len)[-5:]
    font, measure = FontProperties(size=LEGEND_PT), TextToPath().get_text_width_height_descent
    text_pt = max((measure(t, font, ismath=False)[0] for t in labels), default=0.0)
    # per column: handle (2 em), pad (0.8 em), text; 2 em between columns; 0.4 em borders
    width_pt = ncols * (text_pt + 2.8 * LEGEND_PT) + (ncols - 1) * 2 * LEGEND_PT + 0.8 * LEGEND_PT
    return width_pt / 72 + 0.2


def _fixed_layout(fig, legend_in: float, left: float = 0.85, bottom: float = 0.55, top: float = 0.6) -> None:
    """Margins in inches (no layout engine: fast and predictable); the figure widens when the
    legend would leave the axes less than 4 inches."""
    w, h = fig.get_size_inches()
    if w - left - legend_in < 4:
        w = left + legend_in + 4
        fig.set_size_inches(w, h)
    fig.subplots_adjust(left=left / w, right=1 - legend_in / w, bottom=bottom / h, top=1 - top / h)


def _median_band(values: np.ndarray):
    """Median and 2.5/97.5 percentiles along the last axis over the finite values (nan if none)."""
    v = np.asarray(values, np.float64)
    v = np.where(np.isfinite(v), v, np.nan)
    ok = ~np.all(np.isnan(v), axis=-1)
    med, lo, hi = (np.full(v.shape[:-1], np.nan) for _ in range(3))
    if ok.any():
        med[ok] = np.nanmedian(v[ok], axis=-1)
        lo[ok], hi[ok] = np.nanpercentile(v[ok], [2.5, 97.5], axis=-1)
    return med, lo, hi


def _log_limits(ax, values: np.ndarray, band: float) -> None:
    """Log y limits from the finite positive values, the top fraction ``band`` left for markers."""
    v = values[np.isfinite(values) & (values > 0)]
    lo, hi = np.clip(np.log10([v.min(), v.max()]) if v.size else [-3.0, 0.0], -MAX_LOG10, MAX_LOG10)
    pad = max(0.05 * (hi - lo), 0.25)
    lo, hi = lo - pad, hi + pad
    ax.set_ylim(10**lo, 10 ** (lo + (hi - lo) / (1 - band)))


def _log_axis(ax, which: str) -> None:
    """Log scale with plain tick labels ("0.001", "1e+30": no mathtext) and minor ticks at 2 and 5
    only, labelled nowhere (fewer tick objects: log axes cost most of an MSE figure's drawing)."""
    getattr(ax, f"set_{which}scale")("log")
    axis = getattr(ax, f"{which}axis")
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_locator(LogLocator(subs=(2.0, 5.0)))
    axis.set_minor_formatter(NullFormatter())


def _x_limits(ax, x: np.ndarray) -> None:
    """The x range of every series, padded by 3% (in log space on a log axis)."""
    log = ax.get_xscale() == "log"
    x = np.log10(x[x > 0]) if log else x
    lo, hi = float(x.min()), float(x.max())
    pad = 0.03 * (hi - lo) or 0.5
    ax.set_xlim(*(10 ** np.array([lo - pad, hi + pad]) if log else (lo - pad, hi + pad)))


def _mse_axes(ax, owned: bool, series: dict, xlabel: str, title: str, ylabel: str = "full-data MSE", **line_kw) -> None:
    """Draws ``series[name] = (x_P, mse_PS, label, x_D, count_D)``: the median over seeds (a line),
    the 95% band when there are seeds to spread (translucent and outlined, under every line, so
    overlapping bands stay readable), and an ``x`` with the count of diverged seeds at each
    ``x_D``, one row per optimizer in a band at the top (axes coordinates: always finite)."""
    sty = styles(list(series))
    bad = [n for n, s in series.items() if len(s[3])]
    band = min(0.3, 0.07 * len(bad))
    plotted = []
    for n, (x_P, mse_PS, label, x_D, count_D) in series.items():
        med, lo, hi = _median_band(mse_PS)
        colour = sty[n]["color"]
        if mse_PS.shape[-1] > 1:
            ax.fill_between(x_P, lo, hi, color=colour, alpha=0.12, lw=0, zorder=1)
            ax.plot(x_P, np.stack([lo, hi], axis=1), color=colour, lw=0.6, alpha=0.5, ls=sty[n]["ls"], zorder=1)
        ax.plot(x_P, med, zorder=3, label=label, **sty[n], **line_kw)
        plotted += [med, lo, hi]
        if n in bad:
            y = 1 - band * (bad.index(n) + 0.5) / len(bad)
            at = ax.get_xaxis_transform()  # x in data, y in axes coordinates
            ax.plot(x_D, np.full(len(x_D), y), "x", color=colour, ms=7, mew=1.5, transform=at, gid=f"diverged:{n}")
            for x, c in zip(x_D, count_D):
                ax.annotate(
                    f"{c}", (x, y), xycoords=at, xytext=(5, -3), textcoords="offset points", fontsize=7, color=colour
                )
    handles = ax.get_legend_handles_labels()[0]
    if bad:
        ax.axhline(1 - band, color="0.7", lw=0.8, ls=":")
        handles.append(Line2D([], [], ls="", marker="x", color="0.3", label="diverged runs (count)"))
    plotted = np.concatenate(plotted)
    if not np.isfinite(plotted).any():
        ax.text(0.5, 0.4, "every run diverged", transform=ax.transAxes, ha="center", color="0.3")
    _x_limits(ax, np.concatenate([s[0] for s in series.values()]))  # also when no line has a point
    _log_axis(ax, "y")
    _log_limits(ax, plotted, band)
    ax.set(xlabel=xlabel, ylabel=ylabel)
    ax.set_title(title, fontsize=10, y=1.0)  # y given: no search for ticks above the axes
    ax.grid(alpha=0.3)
    legend_in = _outside_legend(ax, handles)
    if owned:
        _fixed_layout(ax.figure, legend_in)


def plot_mse_curves(result: StudyResult, best: dict[str, int] | None = None, ax=None) -> Figure:
    """Full-data MSE vs iteration (log y) at grid point ``best[name]`` (default 0): median and
    95% band over seeds; ``x`` where runs became non-finite, with the number of seeds."""
    fig, ax, owned = _new_axes(ax, (8, 4.5))
    steps = np.asarray(result.eval_steps)
    series = {}
    for n in result.config.optimizer_names:
        mse_ES = np.asarray(result.mse_EHS[n][:, (best or {}).get(n, 0)], np.float64)
        bad_ES = ~np.isfinite(mse_ES)
        x_D, count_D = np.unique(steps[np.argmax(bad_ES, axis=0)[bad_ES.any(axis=0)]], return_counts=True)
        series[n] = (steps, mse_ES, run_label(result, n, best), x_D, count_D)
    what = "median and 95% band over seeds" if result.config.seeds > 1 else "one seed"
    picked = f", at the lr selected by {result.selected_by}" if best is not None else ""
    title = f"Full-data (training) MSE during training ({what}{picked})\n{settings_text(result, best)}"
    _mse_axes(ax, owned, series, "iteration", title, "full-data (training) MSE", lw=1.6)
    return fig


METRICS = {"train": "full-data (training) MSE", "val": "validation MSE", "test": "test MSE"}


def plot_lr_sensitivity(result: StudyResult, sweep: str = "lr", ax=None, metric: str | None = None) -> Figure:
    """Final MSE vs the swept value (log-log): median and 95% band over seeds; grid points with
    non-finite (diverged) runs get an ``x`` with their count. ``metric`` ("train", "val" or
    "test"; default: the one that selects best grid points, :attr:`StudyResult.selected_by`)."""
    metric = metric or ("val" if result.selected_by == "validation MSE" else "train")
    fig, ax, owned = _new_axes(ax, (8, 4.5))
    series = {}
    for n in result.config.optimizer_names:
        x_H = np.asarray(result.grid[n][sweep], np.float64)
        final_HS = np.asarray((result.mse_EHS[n] if metric == "train" else result.heldout(metric, n))[-1], np.float64)
        bad_H = (~np.isfinite(final_HS)).sum(axis=1)
        series[n] = (x_H, final_HS, n, x_H[bad_H > 0], bad_H[bad_H > 0])
    _log_axis(ax, "x")
    title = f"Final {METRICS[metric]} vs {sweep} (median and 95% band over seeds)\n{settings_text(result)}"
    _mse_axes(ax, owned, series, sweep, title, METRICS[metric], marker="o", ms=4)
    return fig


class _FitPanel:
    """What the fit panels of one figure share: limits, the data, curve points, MSE texts."""

    def __init__(self, result: StudyResult, h: dict[str, int] | None, points: int):
        if result.config.model.xdim != 1:
            raise ValueError(
                f"fits over x are drawn for 1-D inputs; this study's have xdim {result.config.model.xdim} "
                "(its fit figure: jaxopt_cmp.figures.fit_figures)"
            )
        self.result, self.h = result, h or {}
        self.names = [n for n in result.config.optimizer_names if n in result.pred_EHN]
        self.styles = styles(self.names)
        self.x_N, self.y_N = (np.ravel(a).astype(np.float64) for a in (result.x_N, result.y_N))
        self.xlim = (float(self.x_N.min()), float(self.x_N.max()) + 1e-12)
        self.ylim = self._fit_range(float(self.y_N.min()), float(self.y_N.max()))
        order = np.argsort(self.x_N, kind="stable")  # curves drawn through <= ``points`` sorted x
        self.idx = order[np.linspace(0, len(order) - 1, min(len(order), points)).round().astype(int)]

    def _fit_range(self, lo: float, hi: float) -> tuple[float, float]:
        """The data's range, widened to the shown finite predictions by at most one data span each way."""
        pad = 0.08 * max(hi - lo, 1e-6)
        lo, hi, span = lo - pad, hi + pad, hi - lo + 2 * pad
        pred = np.concatenate([np.ravel(self.result.pred_EHN[n][:, self.h.get(n, 0)]) for n in self.names] or [[]])
        pred = pred[np.isfinite(pred)]
        if pred.size:
            lo, hi = max(min(lo, pred.min()), lo - span), min(max(hi, pred.max()), hi + span)
        return float(lo), float(hi)

    def pred(self, name: str, e: int) -> np.ndarray:
        return np.asarray(self.result.pred_EHN[name][e, self.h.get(name, 0)])[self.idx]

    def mse(self, name: str, e: int) -> float:
        return float(self.result.mse_EHS[name][e, self.h.get(name, 0), 0])

    def mse_text(self, name: str, e: int, prefix: str = "MSE ") -> str:
        return f"{prefix}{self.mse(name, e):.3g}" if np.isfinite(self.mse(name, e)) else "diverged"

    def mse_labels(self, e: int, k: int, named: bool = False) -> list[tuple[str, str]]:
        """``(text, colour)`` of the fits' MSEs at evaluation ``e``: every optimizer's (named, or
        only coloured) when there are at most ``k``, else the ``k`` lowest, named."""
        shown = self.names
        if len(shown) > k:
            shown, named = sorted(shown, key=lambda n: float(np.nan_to_num(self.mse(n, e), nan=np.inf)))[:k], True
        text = lambda n: f"{n} {self.mse_text(n, e)}" if named else self.mse_text(n, e, "")
        return [(text(n), self.styles[n]["color"]) for n in shown]

    def spots(self, boxes) -> DataSpots:
        """The data drawn into each of ``boxes`` (data coordinates of the Axes it is added to)."""
        return DataSpots(self.x_N, self.y_N, self.xlim, self.ylim, boxes)

    def draw(self, ax, e: int) -> dict:
        """Data and fits at evaluation ``e`` in one Axes; returns the fits' lines."""
        ax.add_artist(self.spots([(*self.xlim, *self.ylim)]))
        ax.set(xlim=self.xlim, ylim=self.ylim, xlabel="x", ylabel="y")
        x = self.x_N[self.idx]
        label = lambda n: run_label(self.result, n, self.h or None)
        lines = {n: ax.plot(x, self.pred(n, e), lw=1.4, label=label(n), **self.styles[n])[0] for n in self.names}
        return lines

    def legend(self, ax, lines: dict, longest: list[str] = ()) -> float:
        data = Line2D([], [], ls="", marker="s", color=DATA_RGB, label="data")
        return _outside_legend(ax, [data, *lines.values()], longest)


class DataSpots(Artist):
    """Data points as red 2x2-pixel squares (like 2-point markers) in each of ``boxes``, given as
    ``(x0, x1, y0, y1)`` in the Axes' data coordinates, onto which ``xlim`` x ``ylim`` maps.

    Rasterized when drawn, at the renderer's resolution, and drawn pixel for pixel: one small image
    per box, where N markers or an ``imshow`` (which resamples its whole image in float) would cost
    many times more. Points outside the limits are not drawn."""

    def __init__(self, x_N, y_N, xlim, ylim, boxes):
        super().__init__()
        self.x_N, self.y_N = np.asarray(x_N, np.float64), np.asarray(y_N, np.float64)
        self.xlim, self.ylim, self.boxes = xlim, ylim, np.asarray(boxes, np.float64).reshape(-1, 4)
        self.set_zorder(0)

    def tile(self, rows: int, cols: int) -> np.ndarray:
        """The RGBA image of one box, ``rows`` x ``cols`` pixels, the first row at the bottom (as
        renderers' ``draw_image`` takes it)."""
        fx = (self.x_N - self.xlim[0]) / (self.xlim[1] - self.xlim[0])
        fy = (self.y_N - self.ylim[0]) / (self.ylim[1] - self.ylim[0])
        inside = (fx >= 0) & (fx <= 1) & (fy >= 0) & (fy <= 1)
        r = np.minimum(fy[inside] * rows, rows - 1).astype(int)
        c = np.minimum(fx[inside] * cols, cols - 1).astype(int)
        spot = np.zeros((rows + 1, cols + 1), bool)  # a spare row and column: squares grow up and right
        for dr, dc in ((0, 0), (0, 1), (1, 0), (1, 1)):
            spot[r + dr, c + dc] = True
        rgba = np.zeros((rows, cols, 4), np.uint8)
        rgba[..., :3] = np.round(np.array(DATA_RGB) * 255)
        rgba[..., 3] = spot[:-1, :-1] * np.uint8(255)
        return rgba

    def draw(self, renderer) -> None:
        if not self.get_visible() or not len(self.boxes):
            return
        corner = self.get_transform().transform(self.boxes[:, [0, 2, 1, 3]].reshape(-1, 2)).reshape(-1, 4)
        x0, y0 = np.round(corner[:, 0]), np.round(corner[:, 1])
        per_unit = renderer.get_image_magnification()  # image pixels per unit: 1 on Agg, dpi/72 on vector
        cols, rows = (int(round((corner[0, k + 2] - corner[0, k]) * per_unit)) for k in (0, 1))
        if rows < 1 or cols < 1:
            return
        tile = self.tile(rows, cols)  # every box has the first one's size
        gc = renderer.new_gc()
        self._set_gc_clip(gc)
        for x, y in zip(x0, y0):
            renderer.draw_image(gc, x, y, tile)
        gc.restore()
        self.stale = False


def _ticks(lims, n: int) -> np.ndarray:
    t = MaxNLocator(n).tick_values(*lims)
    return t[(t >= lims[0]) & (t <= lims[1])]


PANEL_IN, GAP_IN = (3.0, 1.75), (0.12, 0.36)  # a snapshot panel, the gaps between panels (inches)


def plot_snapshots(result: StudyResult, h: dict[str, int] | None = None, cols: int = 4) -> Figure:
    """The seed-style grid: seed 0's fits over the data (red) at every evaluation, at grid point
    ``h[name]`` (default 0; the lr is then in the legend), each panel giving the fits' MSEs.

    One Axes in inch coordinates holds every panel (all have the same limits): the data of all
    panels is one artist, each optimizer's fits one line (NaN between panels), frames and ticks
    one line each; only the texts are per panel. 21 panels draw in a fraction of 21 Axes' time."""
    fit = _FitPanel(result, h, points=600)
    n = len(result.eval_steps)
    cols = min(cols, n)
    rows = -(-n // cols)
    (pw, ph), (gx, gy) = PANEL_IN, GAP_IN
    legend_cols = min(len(fit.names) + 1, 6)
    head, left, bottom = 1.05 + 0.2 * -(-(len(fit.names) + 1) // legend_cols), 0.55, 0.5
    grid_w, grid_h = cols * pw + (cols - 1) * gx, rows * ph + (rows - 1) * gy
    width, height = left + grid_w + 0.1, bottom + grid_h + head
    fig = Figure(figsize=(width, height), dpi=80)
    ax = fig.add_axes((left / width, bottom / height, grid_w / width, grid_h / height))
    ax.set_axis_off()
    ax.set(xlim=(0, grid_w), ylim=(0, grid_h))
    corner = [((e % cols) * (pw + gx), (rows - 1 - e // cols) * (ph + gy)) for e in range(n)]
    ax.add_artist(fit.spots([(x0, x0 + pw, y0, y0 + ph) for x0, y0 in corner]))
    to_x = lambda v: (np.asarray(v, np.float64) - fit.xlim[0]) * pw / (fit.xlim[1] - fit.xlim[0])
    to_y = lambda v: (np.asarray(v, np.float64) - fit.ylim[0]) * ph / (fit.ylim[1] - fit.ylim[0])
    lines = _grid_lines(ax, fit, corner, to_x, to_y)
    _grid_ticks(ax, fit, corner, cols, to_x, to_y)
    for e, (x0, y0) in enumerate(corner):
        step = f"[{int(result.eval_steps[e])}/{result.config.train.iters}]"
        ax.text(x0 + pw / 2, y0 + ph + 0.05, step, ha="center", va="bottom", fontsize=9, gid=f"panel:{e}")
        for k, (text, colour) in enumerate(fit.mse_labels(e, 3)):
            at = (x0 + 0.06, y0 + ph - 0.06 - 0.15 * k)
            ax.text(*at, text, color=colour, fontsize=7, va="top", gid=f"panel:{e}")
    data = Line2D([], [], ls="", marker="s", color=DATA_RGB, label="data")
    kw = dict(loc="upper center", bbox_to_anchor=(0.5, 1 - 0.5 / height), ncols=legend_cols, frameon=False)
    fig.legend(handles=[data, *lines], fontsize=LEGEND_PT, **kw)
    which = "each optimizer at its best lr (legend)" if h else "every optimizer"
    title = f"Seed 0's fits every {result.config.train.eval_every} iterations, {which} (numbers: each fit's MSE)"
    fig.suptitle(f"{title}\n{settings_text(result, h)}", fontsize=10, y=1 - 0.06 / height, va="top")
    return fig


def _grid_lines(ax, fit: _FitPanel, corner, to_x, to_y) -> list:
    """Each optimizer's fits in every panel as one line (NaN between panels, and where a fit
    leaves its panel: no line crosses into a neighbour), then the panel frames as one line."""
    (pw, ph), x_P, gap, lines = PANEL_IN, to_x(fit.x_N[fit.idx]), [np.nan], []
    for name in fit.names:
        y_EP = [
            np.where((y >= 0) & (y <= ph), y, np.nan) for y in (to_y(fit.pred(name, e)) for e in range(len(corner)))
        ]
        xs = np.concatenate([np.r_[x0 + x_P, gap] for x0, _ in corner])
        ys = np.concatenate([np.r_[y0 + y_P, gap] for (_, y0), y_P in zip(corner, y_EP)])
        lines += ax.plot(xs, ys, lw=1.2, label=run_label(fit.result, name, fit.h or None), **fit.styles[name])
    frame = [np.array([0, pw, pw, 0, 0, np.nan]), np.array([0, 0, ph, ph, 0, np.nan])]
    ax.plot(*(np.concatenate([f + c[i] for c in corner]) for i, f in enumerate(frame)), "k", lw=0.8)
    return lines


def _grid_ticks(ax, fit: _FitPanel, corner, cols: int, to_x, to_y) -> None:
    """Ticks and labels on the outer panels: x below the bottom one of each column, y left of
    the first of each row; all tick marks one line."""
    n, (pw, ph), tick = len(corner), PANEL_IN, 0.05
    xt, yt = _ticks(fit.xlim, 5), _ticks(fit.ylim, 4)
    segments = []
    for e, (x0, y0) in enumerate(corner):
        if e + cols >= n:
            segments += [(x, x, np.nan, y0, y0 - tick, np.nan) for x in x0 + to_x(xt)]
            for x, v in zip(x0 + to_x(xt), xt):
                ax.text(x, y0 - 0.08, f"{v:g}", ha="center", va="top", fontsize=7)
            ax.text(x0 + pw / 2, y0 - 0.25, "x", ha="center", va="top", fontsize=8)
        if e % cols == 0:
            segments += [(x0, x0 - tick, np.nan, y, y, np.nan) for y in y0 + to_y(yt)]
            for y, v in zip(y0 + to_y(yt), yt):
                ax.text(x0 - 0.08, y, f"{v:g}", ha="right", va="center", fontsize=7)
            ax.text(x0 - 0.42, y0 + ph / 2, "y", ha="center", va="center", rotation=90, fontsize=8)
    if segments:
        seg = np.array(segments)
        ax.plot(seg[:, :3].ravel(), seg[:, 3:].ravel(), "k", lw=0.8, clip_on=False)


def _fit_figure(result: StudyResult, h, size: tuple[float, float], dpi: int, points: int):
    """A one-panel fit figure, ``(fig, ax, fit, lines)``, to lay out once its legend is made."""
    fig = Figure(figsize=size, dpi=dpi)
    ax = fig.add_subplot()
    fit = _FitPanel(result, h, points)
    lines = fit.draw(ax, len(result.eval_steps) - 1)
    return fig, ax, fit, lines


def plot_final_fit(result: StudyResult, h: dict[str, int] | None = None, ax=None) -> Figure:
    """Seed 0's final fits over the data, the legend giving each fit's full-data MSE."""
    e, owned = len(result.eval_steps) - 1, ax is None
    if owned:
        fig, ax, fit, lines = _fit_figure(result, h, (8, 4), 100, 2000)
    else:
        fig, fit = ax.figure, _FitPanel(result, h, points=2000)
        lines = fit.draw(ax, e)
    for n, line in lines.items():
        line.set_label(f"{line.get_label()}: {fit.mse_text(n, e)}")
    ax.set_title(f"Final fits (seed 0)\n{settings_text(result, h)}", fontsize=10, y=1.0)
    legend_in = fit.legend(ax, lines)
    if owned:
        _fixed_layout(fig, legend_in, left=0.75)
    return fig


def compare_figures(result: StudyResult, data=None) -> dict[str, Figure]:
    """``{file name: Figure}`` of a compare run: MSE curves and the fits (:func:`fit_figures`)."""
    figures = {"mse_curves.png": plot_mse_curves(result)}
    return figures | fit_figures(result, {}, data, snapshots="snapshots.png", final="final_fit.png")


def study_figures(result: StudyResult, best: dict[str, int], data=None) -> dict[str, Figure]:
    """``{file name: Figure}`` of a study: lr sensitivity; curves and fits (:func:`fit_figures`) at
    each best grid point."""
    figures = {"lr_sensitivity.png": plot_lr_sensitivity(result), "best_curves.png": plot_mse_curves(result, best)}
    return figures | fit_figures(result, best, data, snapshots="snapshots_best.png")


def fit_figures(result: StudyResult, best: dict[str, int], data=None, snapshots: str = "", final: str = ""):
    """The fits at grid points ``best``: for 1-D inputs the snapshot grid (as ``snapshots``) and
    the final fit (as ``final``), when predictions were recorded; for other inputs the figure that
    suits them (:func:`jaxopt_cmp.suite_figures.fit_figures`; ``data``: the user's data, if any)."""
    if result.config.model.xdim != 1:
        from jaxopt_cmp import suite_figures

        return suite_figures.fit_figures(result, best, data)
    if not result.pred_EHN:
        return {}
    h = best or None
    drawn = {snapshots: lambda: plot_snapshots(result, h), final: lambda: plot_final_fit(result, h)}
    return {name: draw() for name, draw in drawn.items() if name}

"""Tables and figures on hand-made results: notebook-safe (backend untouched, Figures returned,
``ax=`` honoured) and robust (an optimizer, a grid point or a whole study diverged; finite but
huge MSEs; 20 optimizers) with diverged runs marked where a reader can see them.

Each test guards one plausible bug: ``matplotlib.use("Agg")`` or pyplot in the library, markers
for diverged runs drawn at y=+inf (invisible), a legend cut off by the figure edge or drawn over
the data, snapshot panels without their MSE, the train time repeated on every table row.
"""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

from jaxopt_cmp import animation, figures, report, stats
from jaxopt_cmp.config import seed_study
from jaxopt_cmp.optimizers import OPTIMIZERS
from jaxopt_cmp.results import StudyResult

SEED_NAMES = ("sgd", "momentum", "adam")


def make_result(names=SEED_NAMES, lrs=(1e-3, 1e-2, 1e-1), seeds=3, evals=5, n_data=300, seed=0) -> StudyResult:
    """A finished-looking study: MSEs falling from ~0.1, fits approaching a noisy target."""
    cfg = seed_study(optimizers=names, lr=list(lrs), seeds=seeds, iters=10 * (evals - 1), eval_every=10, n_data=n_data)
    rng = np.random.default_rng(seed)
    steps = np.asarray(cfg.train.eval_steps)
    e_, h_ = len(steps), len(lrs)
    x_N = rng.uniform(-3, 3, n_data).astype(np.float32)
    clean_N = np.exp(-(x_N**2)) * np.cos(10 * x_N)
    y_N = (clean_N + 0.03 * rng.normal(size=n_data)).astype(np.float32)
    decay_E = np.exp(-np.linspace(0, 3, e_))
    mse, pred = {}, {}
    for name in names:
        mse[name] = (0.1 * decay_E[:, None, None] * rng.uniform(0.5, 1.5, (1, h_, seeds))).astype(np.float32)
        pred[name] = ((1 - decay_E)[:, None, None] * clean_N * rng.uniform(0.8, 1.0, (1, h_, 1))).astype(np.float32)
    return StudyResult(
        config=cfg,
        eval_steps=steps,
        grid={o.name: {k: np.asarray(v, np.float64) for k, v in o.grid().items()} for o in cfg.optimizers},
        mse_EHS=mse,
        diverged_at_HS={n: np.full((h_, seeds), -1, np.int32) for n in names},
        params_HS={},
        pred_EHN=pred,
        x_N=x_N,
        y_N=y_N,
        timing={"compile_s": 1.25, "train_s": 3.75},
    )


def diverge(result: StudyResult, name: str, h=slice(None), s=slice(None), from_e: int = 1) -> None:
    """Runs ``(name, h, s)`` become +inf from evaluation ``from_e`` on, as the engine records them."""
    result.mse_EHS[name][from_e:, h, s] = np.inf
    result.diverged_at_HS[name][h, s] = max(int(result.eval_steps[from_e]) - 1, 0)
    if 0 in np.arange(result.config.seeds)[s]:  # predictions are seed 0's
        result.pred_EHN[name][from_e:, h] = np.nan


def case_optimizer():
    r = make_result()
    diverge(r, "sgd")  # every grid point and seed
    return r


def case_grid_point():
    r = make_result()
    diverge(r, "momentum", h=2)
    diverge(r, "adam", h=1, s=slice(1, 2), from_e=3)
    return r


def case_study():
    r = make_result()
    for name in SEED_NAMES:
        diverge(r, name, from_e=0)
    return r


def case_huge():
    r = make_result()
    r.mse_EHS["adam"][-1, 2] = 1e30
    r.mse_EHS["momentum"][-1, 0, 1] = 3e38  # near float32's maximum
    r.pred_EHN["adam"][-1, 2] = 1e30
    diverge(r, "sgd", h=2, from_e=2)
    return r


def case_twenty():
    names = tuple(OPTIMIZERS)
    assert len(names) >= 20
    r = make_result(names=names)
    for name in names[::4]:
        diverge(r, name, h=2, from_e=2)
    return r


CASES = {f.__name__[5:]: f for f in (case_optimizer, case_grid_point, case_study, case_huge, case_twenty)}


def drawn(fig: Figure):
    """Draws ``fig`` with Agg (as saving does) and returns the renderer."""
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return canvas.get_renderer()


def diverged_marks(ax) -> set[tuple[str, float]]:
    """``(optimizer, x)`` of every diverged marker; asserts each lies inside the axes (visible)."""
    marks = set()
    for line in ax.lines:
        if (line.get_gid() or "").startswith("diverged:"):
            xy = line.get_transform().transform(line.get_xydata())
            frac = ax.transAxes.inverted().transform(xy)
            assert np.isfinite(xy).all() and ((frac >= 0) & (frac <= 1)).all(), (line.get_gid(), xy)
            marks |= {(line.get_gid()[9:], float(x)) for x in line.get_xdata()}
    return marks


def expected_curve_marks(result, best=None) -> set[tuple[str, float]]:
    out = set()
    for n, m in result.mse_EHS.items():
        bad_ES = ~np.isfinite(m[:, (best or {}).get(n, 0)])
        out |= {(n, float(result.eval_steps[np.argmax(b)])) for b in bad_ES.T if b.any()}
    return out


def expected_lr_marks(result) -> set[tuple[str, float]]:
    return {
        (n, float(result.grid[n]["lr"][h]))
        for n, m in result.mse_EHS.items()
        for h in range(m.shape[1])
        if not np.isfinite(m[-1, h]).all()
    }


def all_figures(result):
    best = {s.name: s.best for s in stats.summarize(result, 1e-3)}
    return best, {**figures.compare_figures(result), **figures.study_figures(result, best)}


@pytest.mark.parametrize("case", list(CASES))
def test_every_figure_and_table_handles_divergence_and_huge_values(case):
    result = CASES[case]()
    best, figs = all_figures(result)
    assert set(figs) == {n + ".png" for n in ("mse_curves", "snapshots", "final_fit")} | {
        n + ".png" for n in ("lr_sensitivity", "best_curves", "snapshots_best")
    }
    for fig in figs.values():
        assert isinstance(fig, Figure)
        assert figures.figure_bytes(fig).startswith(b"\x89PNG")
    assert diverged_marks(figs["mse_curves.png"].axes[0]) == expected_curve_marks(result)
    assert diverged_marks(figs["best_curves.png"].axes[0]) == expected_curve_marks(result, best)
    assert diverged_marks(figs["lr_sensitivity.png"].axes[0]) == expected_lr_marks(result)
    summaries = stats.summarize(result, 1e-3)
    tables = [
        report.final_table(result),
        report.study_table(summaries, 1e-3),
        report.paired_table(stats.paired_comparisons(result, summaries)),
    ]
    for table in tables:
        assert not re.search(r"\b(nan|inf)\b", table), table


@pytest.mark.parametrize("case", ["twenty", "optimizer"])
def test_legends_stay_inside_the_figure_and_off_the_data(case):
    _, figs = all_figures(CASES[case]())
    for name, fig in figs.items():
        renderer = drawn(fig)
        box = fig.bbox
        legends = fig.legends + [ax.get_legend() for ax in fig.axes if ax.get_legend()]
        assert len(legends) == 1, name
        legend = legends[0].get_window_extent(renderer)
        inside = legend.x0 >= box.x0 - 1 and legend.x1 <= box.x1 + 1 and legend.y0 >= box.y0 - 1
        assert inside and legend.y1 <= box.y1 + 1, (name, legend, box)
        for ax in fig.axes:
            assert not legend.overlaps(ax.get_window_extent(renderer)), name


def test_plot_functions_draw_into_the_given_axes():
    result = case_grid_point()
    fig = Figure(figsize=(15, 4))
    axes = fig.subplots(1, 3)
    before = fig.subplotpars.left, fig.subplotpars.right
    plots = (figures.plot_mse_curves, figures.plot_lr_sensitivity, figures.plot_final_fit)
    for plot, ax in zip(plots, axes):
        assert plot(result, ax=ax) is fig
        assert ax.lines
    assert fig.axes == list(axes) and (fig.subplotpars.left, fig.subplotpars.right) == before
    assert isinstance(figures.plot_snapshots(result), Figure)


def test_snapshot_panels_give_step_and_mse_and_snapshots_best_its_lr():
    result = case_grid_point()
    best = {"sgd": 2, "momentum": 2, "adam": 1}
    colour = figures.styles(SEED_NAMES)
    for h, fig in ((None, figures.plot_snapshots(result)), (best, figures.plot_snapshots(result, best))):
        (ax,) = fig.axes  # every panel in one Axes
        for e, step in enumerate(result.eval_steps):
            texts = {(t.get_text(), t.get_color()) for t in ax.texts if t.get_gid() == f"panel:{e}"}
            assert (f"[{step}/{result.config.train.iters}]", "black") in texts
            for n in SEED_NAMES:
                mse = result.mse_EHS[n][e, (h or {}).get(n, 0), 0]
                assert (f"{mse:.3g}" if np.isfinite(mse) else "diverged", colour[n]["color"]) in texts
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels[1:] == [f"{n} (lr {result.grid[n]['lr'][best[n]]:.3g})" for n in SEED_NAMES]
    assert "best lr" in fig.get_suptitle()


def test_fit_figures_are_labelled_and_titled_with_the_settings():
    result = case_optimizer()
    cfg = result.config
    fig = figures.plot_final_fit(result)
    ax = fig.axes[0]
    assert ax.get_xlabel() and ax.get_ylabel()
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels[0] == "data" and labels[1] == "sgd (lr 0.001): diverged"
    assert f"adam (lr 0.001): MSE {result.mse_EHS['adam'][-1, 0, 0]:.3g}" in labels
    for fig in (figures.plot_final_fit(result), figures.plot_mse_curves(result), figures.plot_snapshots(result)):
        title = fig.get_suptitle() or fig.axes[0].get_title()
        assert f"{cfg.train.iters:,} iterations" in title and f"{cfg.seeds} seeds" in title


def test_fits_gif_has_one_frame_per_evaluation(tmp_path):
    result = case_grid_point()
    gif = animation.fits_gif(result)
    with Image.open(io.BytesIO(gif)) as im:
        assert im.format == "GIF" and im.n_frames == len(result.eval_steps)
        first = np.asarray(im.convert("RGB"))
        im.seek(im.n_frames - 1)
        moved = (np.asarray(im.convert("RGB")) != first).any(axis=-1).mean()
    assert moved > 0.01  # the fits move: the changing texts alone change ~0.4% of the pixels
    paths = figures.save_figures({"fits.gif": gif, **figures.compare_figures(result)}, tmp_path)
    assert [p.name for p in paths] == ["fits.gif", "mse_curves.png", "snapshots.png", "final_fit.png"]
    assert sorted(os.listdir(tmp_path)) == sorted(p.name for p in paths)  # no temporary files left
    assert paths[0].read_bytes() == gif and all(p.read_bytes().startswith(b"\x89PNG") for p in paths[1:])


BACKEND_CHECK = """
import sys, matplotlib
before = matplotlib.get_backend()
sys.path.insert(0, {tests!r})
from jaxopt_cmp import animation, figures, report, stats
import test_report as t
result = t.case_grid_point()
t.all_figures(result)
animation.fits_gif(result)
print(before, matplotlib.get_backend(), "matplotlib.pyplot" in sys.modules)
"""


def test_the_library_leaves_the_backend_and_pyplot_alone():
    code = BACKEND_CHECK.format(tests=str(Path(__file__).parent))
    env = {**os.environ, "MPLBACKEND": "svg"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["svg", "svg", "False"]


def test_final_table_gives_a_joint_train_time_once_and_per_optimizer_times_per_row():
    result = case_optimizer()
    table = report.final_table(result)
    assert table.count(f"{result.timing['train_s']:.2f}") == 1
    assert re.search(r"^sgd\s+diverged \[diverged, diverged\]\s+n/a\s+n/a\s+3/3$", table, re.M), table
    result.timing["per_optimizer_s"] = {"sgd": 0.5, "momentum": 0.75, "adam": 1.5}
    rows = report.final_table(result).splitlines()[2:]
    assert [r.split()[-1] for r in rows] == ["0.50", "0.75", "1.50"]


def test_study_table_shows_both_intervals_and_the_seed_note():
    result = make_result(seeds=4)
    summaries = stats.summarize(result, 1e-3)
    table = report.study_table(summaries, 1e-3)
    adam = next(s for s in summaries if s.name == "adam")
    assert f"[{adam.t_low:.4g}, {adam.t_high:.4g}]" in table
    assert f"[{adam.ci_low:.4g}, {adam.ci_high:.4g}]" in table
    assert adam.note() and f"note: {adam.note()}" in table


def test_fits_gif_caps_its_frames_at_evenly_spaced_evaluations():
    """Issue 20: --eval-every 1 over 10,000 steps made one ~0.6 MB frame per evaluation (GBs past
    any memory budget). The animation shows at most MAX_FRAMES, first and last included."""
    result = make_result(names=("adam",), lrs=(1e-3,), seeds=1, evals=animation.MAX_FRAMES + 37, n_data=64)
    shown = animation.frame_evals(len(result.eval_steps))
    assert len(shown) == animation.MAX_FRAMES and shown[0] == 0 and shown[-1] == len(result.eval_steps) - 1
    assert np.all(np.diff(shown) >= 1) and np.diff(shown).max() <= 2
    with Image.open(io.BytesIO(animation.fits_gif(result))) as im:
        assert im.n_frames == animation.MAX_FRAMES
    assert list(animation.frame_evals(5)) == [0, 1, 2, 3, 4]

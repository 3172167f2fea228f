"""Tables (plain text) and matplotlib figures (Agg backend) from a :class:`StudyResult`."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from jaxopt_cmp.results import (
    StudyResult,  # noqa: E402
    atomic_write_bytes,  # noqa: E402
)

# The seed notebook's colours: SGD green, momentum blue, Adam black; others from a cycle.
SEED_COLOURS = {"sgd": "g", "momentum": "b", "adam": "k"}
_CYCLE = ["tab:orange", "tab:purple", "tab:brown", "tab:pink", "tab:olive", "tab:cyan", "tab:gray"]


def save_figure(fig, path: Path, dpi: int = 100) -> Path:
    """Renders ``fig`` to PNG in memory and renames it into place (never half-written)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    atomic_write_bytes(Path(path), buf.getvalue())
    return Path(path)


def _save_log_axes(fig, ax, path: Path, xlabel: str, ylabel: str) -> Path:
    """Log y axis, labels, legend, light grid; then saved (the MSE figures' common finish)."""
    ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return save_figure(fig, path)


def colours(names) -> dict[str, str]:
    """Seed colours for the seed's optimizers, a cycle for the rest (in the given order)."""
    others = iter(_CYCLE * 4)
    return {n: SEED_COLOURS.get(n) or next(others) for n in names}


def format_table(header: list[str], rows: list[list]) -> str:
    """A plain fixed-width table."""
    cells = [header] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    line = lambda r: "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip()
    return "\n".join([line(cells[0]), line(["-" * w for w in widths])] + [line(r) for r in cells[1:]])


def param_table(rows, total: int) -> str:
    body = [
        [i, name, shape, np.array2string(np.asarray(vals), precision=3, separator=" ")]
        for i, (name, shape, vals) in enumerate(rows)
    ]
    return format_table(["#", "name", "shape", "first values"], body) + f"\nTotal parameters: {total:,}"


def final_table(result: StudyResult) -> str:
    """Per optimizer (grid point 0): final full-data MSE over seeds, diverged count, time."""
    train_s = result.timing.get("train_s", float("nan"))
    per_opt = result.timing.get("per_optimizer_s", {})
    rows = []
    for name in result.config.optimizer_names:
        final_S = result.mse_EHS[name][-1, 0]
        diverged = int(np.sum(result.diverged_at_HS[name][0] >= 0))
        spread = f" [{final_S.min():.4g}, {final_S.max():.4g}]" if final_S.size > 1 else ""
        time_s = per_opt.get(name)
        rows.append([
            name,
            f"{np.median(final_S):.4g}{spread}",
            f"{diverged}/{final_S.size}",
            f"{time_s:.2f}" if time_s is not None else f"{train_s:.2f} (all together)",
        ])
    header = ["optimizer", "final MSE (median [min, max] over seeds)", "diverged", "train s"]
    return format_table(header, rows)


def _fit_axes(ax, result: StudyResult, e: int, h: dict[str, int] | None = None):
    order = np.argsort(result.x_N)
    ax.plot(result.x_N, result.y_N, "r.", ms=2, label="data")
    for name, colour in colours(n for n in result.config.optimizer_names if n in result.pred_EHN).items():
        ax.plot(result.x_N[order], result.pred_EHN[name][e, (h or {}).get(name, 0)][order], colour, lw=1.5, label=name)
    ax.set_title(f"[{int(result.eval_steps[e])}/{result.config.train.iters}]")


def plot_snapshots(result: StudyResult, path: Path, h: dict[str, int] | None = None) -> Path:
    """A grid of the fits at every evaluation (seed 0, grid point ``h[name]``), data in red."""
    n = len(result.eval_steps)
    cols = min(4, n)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 2.6 * rows), sharex=True, sharey=True)
    for e, ax in enumerate(np.ravel(axes)):
        if e < n:
            _fit_axes(ax, result, e, h)
        else:
            ax.axis("off")
    np.ravel(axes)[0].legend(loc="lower left", fontsize=7)
    fig.tight_layout()
    return save_figure(fig, path, dpi=80)


def plot_final_fit(result: StudyResult, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(8, 4))
    _fit_axes(ax, result, len(result.eval_steps) - 1)
    ax.legend(loc="upper right")
    fig.tight_layout()
    return save_figure(fig, path)


def plot_mse_curves(result: StudyResult, path: Path, best: dict[str, int] | None = None) -> Path:
    """Full-data MSE vs iteration on a log axis at grid point ``best[name]`` (default 0): median
    over seeds and a 95% band (diverged evaluations left out)."""
    fig, ax = plt.subplots(figsize=(7, 4))
    for name, colour in colours(result.config.optimizer_names).items():
        h = (best or {}).get(name, 0)
        m_ES = result.mse_EHS[name][:, h]
        m_ES = np.where(np.isfinite(m_ES), m_ES, np.nan)
        label = f"{name} (lr {result.grid[name]['lr'][h]:.3g})" if best else name
        with warnings.catch_warnings():  # evaluations where every seed diverged stay blank
            warnings.simplefilter("ignore", RuntimeWarning)
            ax.plot(result.eval_steps, np.nanmedian(m_ES, axis=1), colour, label=label)
            if m_ES.shape[1] > 1:
                lo, hi = np.nanpercentile(m_ES, [2.5, 97.5], axis=1)
                ax.fill_between(result.eval_steps, lo, hi, color=colour, alpha=0.2)
    return _save_log_axes(fig, ax, path, "iteration", "full-data MSE")


def compare_figures(result: StudyResult, out: Path) -> list[Path]:
    paths = [plot_mse_curves(result, out / "mse_curves.png")]
    if result.pred_EHN:
        paths += [plot_snapshots(result, out / "snapshots.png"), plot_final_fit(result, out / "final_fit.png")]
    return paths


def study_table(summaries, target: float) -> str:
    """Per optimizer: best hyperparameters, final MSE mean and 95% CI, divergence, time-to-target."""
    rows = []
    for s in summaries:
        hp = ", ".join(f"{k}={v:.3g}" for k, v in s.hparams.items() if k == "lr" or len(s.hparams) <= 2)
        ttt = f"{s.steps_to_target_median:.0f}" if np.isfinite(s.steps_to_target_median) else "not reached"
        rows.append([
            s.name, hp, f"{s.mean:.4g} [{s.ci_low:.4g}, {s.ci_high:.4g}]",
            f"{s.diverged_at_best}/{s.n_seeds} (grid: {s.diverged_total}/{s.runs_total})",
            f"{ttt} ({s.reached}/{s.n_seeds} seeds)",
        ])
    header = ["optimizer", "best", "final MSE mean [95% CI]", "diverged", f"steps to MSE<={target:.3g}"]
    return format_table(header, rows)


def paired_table(pairs) -> str:
    rows = [[f"{a} < {b}", f"{frac:.0%}", f"{p:.2g}"] for a, b, frac, p in pairs]
    return format_table(["paired by seed (best lr each)", "seeds where true", "sign-test p"], rows)


def plot_lr_sensitivity(result: StudyResult, path: Path, sweep: str = "lr") -> Path:
    """Final MSE vs the swept value: median and 95% band over seeds; diverged runs marked x."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    top = max(np.nanmax(np.where(np.isfinite(m[-1]), m[-1], np.nan)) for m in result.mse_EHS.values())
    for k, (name, colour) in enumerate(colours(result.config.optimizer_names).items()):
        final_HS = result.mse_EHS[name][-1]
        lr_H = result.grid[name][sweep]
        finite = np.where(np.isfinite(final_HS), final_HS, np.nan)
        ok = np.isfinite(finite).any(axis=1)
        med = np.full(len(lr_H), np.nan)
        lo, hi = med.copy(), med.copy()
        med[ok] = np.nanmedian(finite[ok], axis=1)
        lo[ok], hi[ok] = np.nanpercentile(finite[ok], [2.5, 97.5], axis=1)
        ax.plot(lr_H, med, "o-", color=colour, label=name)
        ax.fill_between(lr_H, lo, hi, color=colour, alpha=0.2)
        n_div = (result.diverged_at_HS[name] >= 0).sum(axis=1)
        for lr, n in zip(lr_H, n_div):
            if n:  # stacked above the data, one row per optimizer
                y = top * 3 * 2.5**k
                ax.plot(lr, y, "x", color=colour, ms=9)
                ax.annotate(f"{n}", (lr, y), textcoords="offset points", xytext=(5, -3), fontsize=7, color=colour)
    ax.set_xscale("log")
    ax.set_title("median and 95% band over seeds; x: diverged runs")
    return _save_log_axes(fig, ax, path, sweep, "final full-data MSE")


def study_figures(result: StudyResult, best: dict[str, int], out: Path) -> list[Path]:
    paths = [
        plot_lr_sensitivity(result, out / "lr_sensitivity.png"),
        plot_mse_curves(result, out / "best_curves.png", best),
    ]
    if result.pred_EHN:
        paths.append(plot_snapshots(result, out / "snapshots_best.png", best))
    return paths

"""Tables (plain text) and matplotlib figures (Agg backend) from a :class:`StudyResult`."""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from jaxopt_cmp.results import atomic_write_bytes  # noqa: E402
from jaxopt_cmp.study import StudyResult  # noqa: E402

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


def colours(names) -> dict[str, str]:
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
    for name, mse_EHS in result.mse_EHS.items():
        final_S = mse_EHS[-1, 0]
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


def _fit_axes(ax, result: StudyResult, e: int, seed: int = 0):
    order = np.argsort(result.x_N)
    ax.plot(result.x_N, result.y_N, "r.", ms=2, label="data")
    for name, colour in colours(result.pred_EHSN).items():
        ax.plot(result.x_N[order], result.pred_EHSN[name][e, 0, seed][order], colour, lw=1.5, label=name)
    ax.set_title(f"[{int(result.eval_steps[e])}/{result.config.train.iters}]")


def plot_snapshots(result: StudyResult, path: Path) -> Path:
    """A grid of the fits at every evaluation (seed 0), data in red, the seed's colours."""
    n = len(result.eval_steps)
    cols = min(4, n)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 2.6 * rows), sharex=True, sharey=True)
    for e, ax in enumerate(np.ravel(axes)):
        if e < n:
            _fit_axes(ax, result, e)
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


def plot_mse_curves(result: StudyResult, path: Path) -> Path:
    """Full-data MSE vs iteration on a log axis: median over seeds, band from min to max."""
    fig, ax = plt.subplots(figsize=(7, 4))
    for name, colour in colours(result.mse_EHS).items():
        m_ES = result.mse_EHS[name][:, 0]
        ax.plot(result.eval_steps, np.median(m_ES, axis=1), colour, label=name)
        if m_ES.shape[1] > 1:
            ax.fill_between(result.eval_steps, m_ES.min(1), m_ES.max(1), color=colour, alpha=0.2)
    ax.set_yscale("log")
    ax.set_xlabel("iteration")
    ax.set_ylabel("full-data MSE")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return save_figure(fig, path)


def compare_figures(result: StudyResult, out: Path) -> list[Path]:
    paths = [plot_mse_curves(result, out / "mse_curves.png")]
    if result.pred_EHSN:
        paths += [plot_snapshots(result, out / "snapshots.png"), plot_final_fit(result, out / "final_fit.png")]
    return paths

"""The suite's figures: performance profiles, and per problem what suits it (issue 22): the
2-D prediction and error maps of franke, predicted-vs-actual for tabular data. Each returns a
:class:`~matplotlib.figure.Figure`; scripts save them."""

from __future__ import annotations

import math

import jax
import numpy as np

from jaxopt_cmp.figures import styles
from jaxopt_cmp.model import make_model
from jaxopt_cmp.render import Figure
from jaxopt_cmp.results import StudyResult
from jaxopt_cmp.suite import Outcome, Profiles


def plot_performance_profile(p: Profiles) -> Figure:
    """rho(tau) per optimizer, a step curve over tau in [1, 4]."""
    fig = Figure(figsize=(6.4, 4.0), dpi=100)
    ax = fig.add_subplot()
    style = styles(p.names)
    for o, name in enumerate(p.names):
        rank = p.rank[o]
        label = f"{name} (error ratio {rank.estimate:.3g})" if math.isfinite(rank.estimate) else name
        ax.step(p.taus, p.rho_OT[o], where="post", label=label, **style[name])
    ax.set_xlim(p.taus[0], p.taus[-1])
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("tau (steps to target / fastest optimizer's)")
    ax.set_ylabel(f"rho: fraction of the {len(p.problems)} problems")
    ax.set_title("Performance profiles (Dolan and More 2002)")
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig


def predict(result: StudyResult, name: str, h: int, x: np.ndarray, seed: int = 0) -> np.ndarray:
    """Optimizer ``name``'s final model at grid point ``h`` and ``seed`` applied to ``x``, ``(N,)``."""
    params = jax.tree_util.tree_map(lambda a: np.asarray(a)[h, seed], result.params_HS[name])
    model = make_model(result.config.model, np.dtype(result.config.train.dtype))
    return np.asarray(model.apply({"params": params}, np.asarray(x, result.config.train.dtype)))[:, 0]


def plot_surface_maps(result: StudyResult, out: Outcome, x: np.ndarray, y: np.ndarray) -> Figure:
    """A 2-D problem on its ``m x m`` test grid: the target, then per optimizer (best lr, seed 0)
    its prediction and its error (prediction - target)."""
    m = math.isqrt(len(x))
    extent = (x[:, 1].min(), x[:, 1].max(), x[:, 0].min(), x[:, 0].max())
    names = out.names
    fig = Figure(figsize=(2.2 * (len(names) + 1), 4.4), dpi=100)
    axes = fig.subplots(2, len(names) + 1, squeeze=False)
    show = lambda ax, z, **kw: ax.imshow(z.reshape(m, m), origin="lower", extent=extent, aspect="auto", **kw)
    lim = float(np.max(np.abs(y)))
    show(axes[0, 0], y, vmin=-lim, vmax=lim, cmap="viridis")
    axes[0, 0].set_title("target", fontsize=9)
    axes[1, 0].axis("off")
    preds = {n: predict(result, n, int(out.best_O[o]), x) for o, n in enumerate(names)}
    err_lim = max(float(np.max(np.abs(preds[n] - y[:, 0]))) for n in names)
    for o, n in enumerate(names, start=1):
        show(axes[0, o], preds[n], vmin=-lim, vmax=lim, cmap="viridis")
        axes[0, o].set_title(f"{n}: prediction", fontsize=9)
        im = show(axes[1, o], preds[n] - y[:, 0], vmin=-err_lim, vmax=err_lim, cmap="RdBu_r")
        axes[1, o].set_title("error", fontsize=9)
    fig.colorbar(im, ax=axes[1, :].tolist(), shrink=0.8)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    return fig


def plot_predicted_vs_actual(result: StudyResult, out: Outcome, x: np.ndarray, y: np.ndarray) -> Figure:
    """Tabular data: each optimizer's test predictions (best lr, seed 0) against the actual values."""
    names = out.names
    fig = Figure(figsize=(2.4 * len(names), 2.6), dpi=100)
    axes = fig.subplots(1, len(names), squeeze=False)[0]
    lo, hi = float(y.min()), float(y.max())
    for ax, (o, n) in zip(axes, enumerate(names), strict=True):
        pred = predict(result, n, int(out.best_O[o]), x)
        ax.scatter(y[:, 0], pred, s=6, alpha=0.7)
        ax.plot([lo, hi], [lo, hi], color="0.5", lw=0.8)
        mse = float(np.mean((pred - y[:, 0]) ** 2))
        ax.set_title(f"{n}: test MSE {mse:.3g}", fontsize=9)
        ax.set_xlabel("actual")
    axes[0].set_ylabel("predicted")
    fig.tight_layout()
    return fig

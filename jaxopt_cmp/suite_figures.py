"""The suite's figures: performance profiles, and the fit figure that suits a problem whose inputs
are not 1-D (issue 22): the 2-D prediction and error maps of a generated 2-D target (franke),
predicted-vs-actual for user and tabular data. :func:`fit_figures` picks one; compare.py, study.py
and suite.py all draw through it. Each returns a :class:`~matplotlib.figure.Figure`; scripts save
them."""

from __future__ import annotations

import math
from collections.abc import Mapping

import jax
import numpy as np

from jaxopt_cmp.data import Data, make_test, split_user_data
from jaxopt_cmp.figures import styles
from jaxopt_cmp.model import make_model
from jaxopt_cmp.render import Figure
from jaxopt_cmp.report import settings_text
from jaxopt_cmp.results import StudyResult
from jaxopt_cmp.suite import Profiles


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
    ax.set_ylabel(f"rho: fraction of the {int(np.isfinite(p.target_P).sum())} problems with a target")
    ax.set_title("Performance profiles (Dolan and More 2002)")
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig


def predict(result: StudyResult, name: str, h: int, x: np.ndarray, seed: int = 0) -> np.ndarray:
    """Optimizer ``name``'s final model at grid point ``h`` and ``seed`` applied to ``x``, ``(N,)``."""
    params = jax.tree_util.tree_map(lambda a: np.asarray(a)[h, seed], result.params_HS[name])
    model = make_model(result.config.model, np.dtype(result.config.train.dtype))
    return np.asarray(model.apply({"params": params}, np.asarray(x, result.config.train.dtype)))[:, 0]


def fit_figures(result: StudyResult, best: Mapping[str, int], data: Data | None = None) -> dict[str, Figure]:
    """The fit figure that suits a study whose inputs are not 1-D (1-D fits are
    :func:`jaxopt_cmp.figures.plot_final_fit` and the snapshot grid), of each optimizer's final
    model at grid point ``best[name]`` (default 0) and seed 0: a generated 2-D target gets
    :func:`plot_surface_maps`, user or tabular data :func:`plot_predicted_vs_actual`.

    Where: a study just run (its final parameters at hand) is drawn on the 2-D target's test grid,
    or on the test rows split from ``data`` (the user's whole data, split as the study split it);
    a loaded one (parameters are not saved, nor the inputs past the first column) as
    predicted-vs-actual from its saved predictions at seed 0's training rows. Each figure says
    which. ``{}`` when neither parameters nor predictions are there."""
    cfg = result.config
    if cfg.model.xdim == 1:
        raise ValueError("fit_figures draws studies with xdim > 1; 1-D fits: figures.plot_final_fit")
    names, surface = cfg.optimizer_names, not cfg.data.source and cfg.model.xdim == 2
    h = {n: int(best.get(n, 0)) for n in names}
    test = None if data is None or surface else split_user_data(data, cfg.data, cfg.seed)[2]
    if all(n in result.params_HS for n in names):
        if surface:
            x, y = (np.asarray(a) for a in make_test(cfg.data, np.dtype(cfg.train.dtype)))
            where = f"test grid of {len(x):,} points, seed 0's models"
        elif test is not None:
            x, y, where = np.asarray(test.x), np.asarray(test.y), f"{len(test.x):,} test rows, seed 0's models"
        else:
            x, y, where = np.asarray(result.x_N), np.asarray(result.y_N), "training rows of seed 0"
        pred = {n: predict(result, n, h[n], x) for n in names}
    elif all(n in result.pred_EHN for n in names):  # saved: x_N holds the first input column only
        y, where, surface = np.asarray(result.y_N)[:, None], "training rows of seed 0 (saved predictions)", False
        pred = {n: np.asarray(result.pred_EHN[n])[-1, h[n]] for n in names}
    else:
        return {}
    title = f"{where}: {settings_text(result, h)}"
    if surface:
        return {"surface_maps.png": plot_surface_maps(x, y[:, 0], pred, title)}
    return {"predicted_vs_actual.png": plot_predicted_vs_actual(y[:, 0], pred, title)}


def plot_surface_maps(x: np.ndarray, y: np.ndarray, pred: Mapping[str, np.ndarray], title: str) -> Figure:
    """A 2-D function on the ``m x m`` grid ``x`` ``(m * m, 2)`` (first coordinate slowest, as
    :func:`jaxopt_cmp.data.test_inputs`): the target ``y`` ``(m * m,)``, then per optimizer its
    prediction ``pred[name]`` and its error (prediction - target)."""
    names, m = list(pred), math.isqrt(len(x))
    extent = (x[:, 1].min(), x[:, 1].max(), x[:, 0].min(), x[:, 0].max())
    fig = Figure(figsize=(2.2 * (len(names) + 1) + 0.8, 4.8), dpi=100, layout="constrained")
    axes = fig.subplots(2, len(names) + 1, squeeze=False)
    show = lambda ax, z, **kw: ax.imshow(np.reshape(z, (m, m)), origin="lower", extent=extent, **kw)
    lim = float(np.max(np.abs(y)))
    top = show(axes[0, 0], y, vmin=-lim, vmax=lim, cmap="viridis")
    axes[0, 0].set_title("target", fontsize=9)
    axes[1, 0].axis("off")
    err_lim = max(float(np.max(np.abs(pred[n] - y))) for n in names)
    for o, n in enumerate(names, start=1):
        show(axes[0, o], pred[n], vmin=-lim, vmax=lim, cmap="viridis")
        axes[0, o].set_title(f"{n}: prediction", fontsize=9)
        im = show(axes[1, o], pred[n] - y, vmin=-err_lim, vmax=err_lim, cmap="RdBu_r")
        axes[1, o].set_title(f"error, MSE {float(np.mean((pred[n] - y) ** 2)):.3g}", fontsize=9)
    fig.colorbar(top, ax=axes[0, :].tolist(), shrink=0.9)
    fig.colorbar(im, ax=axes[1, :].tolist(), shrink=0.9)
    fig.suptitle(title, fontsize=9)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    return fig


def plot_predicted_vs_actual(y: np.ndarray, pred: Mapping[str, np.ndarray], title: str) -> Figure:
    """Each optimizer's predictions ``pred[name]`` against the actual values ``y`` ``(N,)``."""
    names = list(pred)
    fig = Figure(figsize=(2.4 * len(names), 3.0), dpi=100, layout="constrained")
    axes = fig.subplots(1, len(names), squeeze=False)[0]
    lo, hi = float(y.min()), float(y.max())
    for ax, n in zip(axes, names, strict=True):
        ax.scatter(y, pred[n], s=6, alpha=0.7)
        ax.plot([lo, hi], [lo, hi], color="0.5", lw=0.8)
        ax.set_title(f"{n}: MSE {float(np.mean((pred[n] - y) ** 2)):.3g}", fontsize=9)
        ax.set_xlabel("actual")
    axes[0].set_ylabel("predicted")
    fig.suptitle(title, fontsize=9)
    return fig

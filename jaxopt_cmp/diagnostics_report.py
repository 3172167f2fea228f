"""Figures and the findings text of :mod:`jaxopt_cmp.diagnostics`.

Figures are built as :class:`matplotlib.figure.Figure` (no pyplot, the backend untouched) and
returned as ``{file name: Figure}``; :func:`diagnostics_summary` is what ``diagnostics.json`` holds,
and :func:`jaxopt_cmp.diagnostics_findings.findings_markdown` (imported here too) writes
``diagnostics.md`` from it, every statement computed from its numbers.
"""

from __future__ import annotations

import numpy as np

from jaxopt_cmp import curvature
from jaxopt_cmp.config import to_dict
from jaxopt_cmp.diagnostics import Diagnostics
from jaxopt_cmp.diagnostics_findings import findings_markdown  # noqa: F401  (diagnose.py's import)
from jaxopt_cmp.figures import styles
from jaxopt_cmp.io import json_safe
from jaxopt_cmp.render import Figure


def _nonfinite_ok() -> np.errstate:
    """Diverged runs are summarised, not hidden: their inf/NaN histories give NaN (null) statistics
    and drops, and numpy's floating-point warnings about them would only reach the user's stderr
    (one instance per use: numpy < 2 cannot nest one)."""
    return np.errstate(invalid="ignore", divide="ignore", over="ignore")


@_nonfinite_ok()
def _grid_point(diag: Diagnostics, name: str, h: int) -> dict:
    r, cfg = diag.runs[name], diag.config
    hp = {k: float(v[h]) for k, v in diag.grid[name].items()}
    med = lambda a: np.median(a[:, h], axis=1)  # NaN where a seed is NaN (diverged)
    mse = med(r.mse_EHS)
    threshold = curvature.sharpness_threshold(name, hp)
    lr_eff = curvature.effective_lr(name, hp) or hp.get("lr", 1.0)
    stats = lambda eig_SP, scale: curvature.spectrum_stats(np.median(eig_SP, axis=0), scale, cfg.train.iters)
    spectra = []
    for k, step in enumerate(diag.spectrum_steps):
        top = np.median(r.eig_KHSP[k, h, :, -1])
        spectra.append({
            "step": int(step),
            "hessian": stats(r.eig_KHSP[k, h], lr_eff),
            "hessian_at_lr": stats(r.eig_KHSP[k, h], hp.get("lr", 1.0)),
            "preconditioned": stats(r.precond_eig_KHSP[k, h], 1.0),
            "lanczos_top": np.median(r.lanczos_top_KHS[k, h]),
            "lanczos_rel_err": abs(np.median(r.lanczos_top_KHS[k, h]) - top) / abs(top),
        })  # fmt: skip
    return {
        "hparams": hp,
        "threshold": None if threshold is None else {"kind": threshold[0], "value": threshold[1]},
        "effective_lr": lr_eff,
        "final_mse": mse[-1],
        "history": {
            "mse": mse,
            "drop_per_step": np.concatenate([[np.nan], -np.diff(mse) / np.diff(diag.eval_steps)]),
            "sharpness": med(r.sharpness_EHS),
            "precond_sharpness": med(r.precond_sharpness_EHS),
            "grad_norm": med(r.grad_norm_EHS),
            "batch_grad_norm": med(r.batch_grad_norm_EHS),
            "update_norm": med(r.update_norm_EHS),
            "step_size": med(r.step_size_EHS),
            "loss_drop": med(r.loss_drop_EHS),
            "region_mse": med(r.region_mse_EHSR),
            "band_mse": med(r.band_mse_EHSF),
        },
        "spectra": spectra,
    }


def diagnostics_summary(diag: Diagnostics) -> dict:
    """A JSON-ready dict (NaN as null) of ``diag``: settings, per optimizer and grid point the
    histories (median over seeds), thresholds and spectrum statistics at the spectrum steps."""
    counts = diag.region_count_SR
    return json_safe({
        "schema": "jaxopt_cmp.diagnostics/1",
        "config": to_dict(diag.config),
        "eval_steps": diag.eval_steps,
        "spectrum_steps": diag.spectrum_steps,
        "regions": [{"name": n, "abs_x_from": lo, "abs_x_to": hi} for n, lo, hi in diag.regions],
        "region_fraction": np.median(counts / counts.sum(axis=1, keepdims=True), axis=0),
        "bands": [{"name": n, "cycles_from": lo, "cycles_to": hi} for n, lo, hi in diag.bands],
        "subsample": {"n": diag.subsample, "method": "every N/n-th point in order of x, per seed"},
        "lanczos_iters": diag.lanczos_iters,
        "stuck_step": curvature.stuck_step(diag.config.train.iters),
        "timing": diag.timing,
        "optimizers": {n: [_grid_point(diag, n, h) for h in range(r.mse_EHS.shape[1])] for n, r in diag.runs.items()},
    })  # fmt: skip


def _panels(n: int, width: float = 4.2, height: float = 3.4, **kw):
    fig = Figure(figsize=(width * n, height), dpi=100, layout="constrained")
    axes = fig.subplots(1, n, squeeze=False, **kw)[0]
    return fig, axes


def _med(a_EHS, h):
    """Median over seeds (axis 2) at grid point ``h``; NaN where a seed is NaN (as in the summary)."""
    return np.median(a_EHS[:, h], axis=1)


def sharpness_figure(diag: Diagnostics, h: int = 0) -> Figure:
    """Sharpness (top Hessian eigenvalue, full data) over training per optimizer, with its
    stability threshold; Adam-family panels add the preconditioned sharpness and its threshold."""
    summary = diagnostics_summary(diag)["optimizers"]
    names, style = diag.config.optimizer_names, styles(diag.config.optimizer_names)
    fig, axes = _panels(len(names), sharey=False)
    steps = diag.eval_steps
    for ax, name in zip(axes, names):
        r, point = diag.runs[name], summary[name][h]
        colour = style[name]["color"]
        ax.plot(steps, _med(r.sharpness_EHS, h), color=colour, marker=".", label=r"sharpness $\lambda_{max}(H)$")
        thr = point["threshold"]
        if thr and thr["kind"] == "sharpness":
            ax.axhline(thr["value"], color=colour, ls="--", label=f"stability threshold {thr['value']:.3g}")
        if thr and thr["kind"] == "preconditioned":
            ax.plot(
                steps,
                _med(r.precond_sharpness_EHS, h),
                color="tab:red",
                marker=".",
                label=r"preconditioned $\lambda_{max}(P^{-1}H)$",
            )
            ax.axhline(
                thr["value"], color="tab:red", ls="--", label=f"its threshold (2+2β₁)/(1-β₁) = {thr['value']:.3g}"
            )
        ax.set_yscale("log")
        ax.set_title(f"{name} (lr {point['hparams'].get('lr', float('nan')):g})")
        ax.set_xlabel("iteration")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    axes[0].set_ylabel("top eigenvalue")
    return fig


def spectrum_figure(diag: Diagnostics, h: int = 0, s: int = 0) -> Figure:
    """Exact spectra (subsample) at the spectrum steps: |eigenvalue| against the fraction of
    directions (largest first, log y; negative eigenvalues dotted), with the curvature below which
    the run cannot halve a direction's error in its iterations and its stability threshold."""
    summary = diagnostics_summary(diag)["optimizers"]
    panels = [(n, "hessian") for n in diag.config.optimizer_names]
    panels += [
        (n, "preconditioned") for n in diag.config.optimizer_names if np.any(np.isfinite(diag.runs[n].precond_eig_KHSP))
    ]
    fig, axes = _panels(len(panels))
    shades = np.linspace(0.25, 1.0, len(diag.spectrum_steps))
    for ax, (name, kind) in zip(axes, panels):
        eig_KP = (diag.runs[name].eig_KHSP if kind == "hessian" else diag.runs[name].precond_eig_KHSP)[:, h, s]
        colour = "tab:red" if kind == "preconditioned" else styles([name])[name]["color"]
        for k, step in enumerate(diag.spectrum_steps):
            desc = np.sort(eig_KP[k])[::-1]
            if not np.all(np.isfinite(desc)):
                continue
            frac = (np.arange(desc.size) + 0.5) / desc.size
            kw = dict(color=colour, alpha=shades[k])
            ax.plot(frac[desc > 0], desc[desc > 0], label=f"step {step}", **kw)
            ax.plot(frac[desc < 0], -desc[desc < 0], ls=":", **kw)
        point = summary[name][h]
        spec = point["spectra"][-1][kind]
        if spec:
            ax.axhline(
                spec["stuck_below"],
                color="grey",
                ls="--",
                label=f"above: error halved in {diag.config.train.iters} steps",
            )
        thr = point["threshold"]
        if thr and (thr["kind"] == "sharpness") == (kind == "hessian"):
            ax.axhline(thr["value"], color="grey", ls="-.", label="stability threshold")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(f"{name}: " + ("H" if kind == "hessian" else r"$P^{-1/2} H P^{-1/2}$ (Adam's preconditioner)"))
        ax.set_xlabel("fraction of directions, largest eigenvalue first (log)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower left")
    axes[0].set_ylabel("|eigenvalue| (dotted: negative)")
    return fig


def _heatmaps(diag: Diagnostics, field: str, labels: list[str], title: str, h: int = 0) -> Figure:
    names = diag.config.optimizer_names
    fig, axes = _panels(len(names), width=3.6, height=4.2)
    data = {n: np.log10(np.maximum(_med(getattr(diag.runs[n], field), h), 1e-12)) for n in names}
    finite = np.concatenate([d[np.isfinite(d)] for d in data.values()])
    vmin, vmax = (finite.min(), finite.max()) if finite.size else (-6, 0)
    for ax, name in zip(axes, names):
        im = ax.imshow(data[name], aspect="auto", origin="lower", vmin=vmin, vmax=vmax, cmap="viridis")
        ax.set_xticks(range(len(labels)), labels, rotation=35, ha="right", fontsize=8)
        ticks = np.linspace(0, len(diag.eval_steps) - 1, min(6, len(diag.eval_steps))).round().astype(int)
        ax.set_yticks(ticks, [str(diag.eval_steps[t]) for t in ticks])
        ax.set_title(name)
    axes[0].set_ylabel("iteration")
    fig.colorbar(im, ax=list(axes), label=f"log10 {title}")
    return fig


def region_figure(diag: Diagnostics, h: int = 0) -> Figure:
    labels = [f"{n}\n|x|<{hi:.2f}" if np.isfinite(hi) else f"{n}\n|x|>{lo:.2f}" for n, lo, hi in diag.regions]
    return _heatmaps(diag, "region_mse_EHSR", labels, "MSE in region (vs noisy data)", h)


def band_figure(diag: Diagnostics, h: int = 0) -> Figure:
    labels = [f"{n}\n{lo:.2f}-{hi:.2f}" if np.isfinite(hi) else f"{n}\n>{lo:.2f}" for n, lo, hi in diag.bands]
    return _heatmaps(diag, "band_mse_EHSF", labels, "residual power in band (vs target)", h)


def steps_figure(diag: Diagnostics, h: int = 0) -> Figure:
    """Full-data gradient norm, effective step size (update / minibatch gradient) and the mean
    full-data loss decrease per step between evaluations, per optimizer."""
    summary = diagnostics_summary(diag)["optimizers"]
    names, style = diag.config.optimizer_names, styles(diag.config.optimizer_names)
    fig, axes = _panels(3)
    for name in names:
        hist = summary[name][h]["history"]
        for ax, key in zip(axes, ("grad_norm", "step_size", "drop_per_step")):
            values = np.array([np.nan if v is None else v for v in hist[key]], float)
            ax.plot(diag.eval_steps, np.abs(values), marker=".", label=name, **style[name])
    for ax, title in zip(
        axes,
        (
            "full-data gradient norm",
            "update norm / minibatch gradient norm",
            "|mean MSE change per step| between evaluations",
        ),
    ):
        ax.set_yscale("log")
        ax.set_title(title)
        ax.set_xlabel("iteration")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    return fig


@_nonfinite_ok()
def diagnostics_figures(diag: Diagnostics, h: int = 0) -> dict[str, Figure]:
    """``{file name: Figure}`` for grid point ``h`` (medians over seeds; spectra of seed 0)."""
    figures = {"diag_sharpness.png": sharpness_figure(diag, h), "diag_steps.png": steps_figure(diag, h)}
    if len(diag.spectrum_steps):
        figures["diag_spectra.png"] = spectrum_figure(diag, h)
    figures["diag_error_regions.png"] = region_figure(diag, h)
    if np.any(np.isfinite(diag.runs[diag.config.optimizer_names[0]].band_mse_EHSF)):
        figures["diag_error_bands.png"] = band_figure(diag, h)
    return figures

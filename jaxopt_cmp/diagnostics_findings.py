"""The findings text of :mod:`jaxopt_cmp.diagnostics` (``diagnostics.md``): every statement
computed from the numbers of a :func:`~jaxopt_cmp.diagnostics_report.diagnostics_summary`."""

from __future__ import annotations

import numpy as np

from jaxopt_cmp.io import json_restore


def _pct(x) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def _g(x, digits: int = 3) -> str:
    return "n/a" if x is None else f"{x:.{digits}g}"


def _finite(values) -> np.ndarray:
    """The values as floats, None (NaN in JSON) and inf (a diverged run) as NaN."""
    a = np.array([np.nan if v is None else v for v in values], float)
    return np.where(np.isfinite(a), a, np.nan)


def _argmax(values) -> int | None:
    """Index of the largest finite value; None when there is none (the run diverged)."""
    a = _finite(values)
    return int(np.nanargmax(a)) if np.isfinite(a).any() else None


def _rank(value) -> float:
    """A sort key: None, NaN and inf (diverged) after every finite value."""
    return value if value is not None and np.isfinite(value) else np.inf


def _median(values) -> float | None:
    """Median of the finite values; None when there is none (the run diverged)."""
    a = _finite(values)
    return float(np.nanmedian(a)) if np.isfinite(a).any() else None


def _sharpness_text(name: str, point: dict, steps) -> list[str]:
    hist, thr = point["history"], point["threshold"]
    sharp = hist["sharpness"]
    i = _argmax(sharp)
    top = "no finite value (diverged)" if i is None else f"max {_g(sharp[i])} at step {steps[i]}"
    lines = [
        f"- Sharpness (top Hessian eigenvalue, full data): {_g(sharp[0])} at step 0, {_g(sharp[-1])} at the end, {top}."
    ]
    if thr and thr["kind"] == "sharpness" and i is not None:
        lines.append(
            f"  Stability threshold {_g(thr['value'])}: the largest sharpness is {_pct(sharp[i] / thr['value'])} of it."
        )
    j = _argmax(hist["precond_sharpness"])
    if thr and thr["kind"] == "preconditioned" and j is not None:
        pre = _median(hist["precond_sharpness"])
        lines.append(
            f"  Preconditioned sharpness λ_max(P^-1 H): median {_g(pre)} over the evaluations, "
            f"max {_g(hist['precond_sharpness'][j])} at step {steps[j]}, against the threshold "
            f"(2+2β1)/(1-β1) = {_g(thr['value'])} ({_pct(pre / thr['value'])} of it at the median)."
        )
    return lines


def _spectrum_text(point: dict, iters: int) -> list[str]:
    lines = []
    for spec in point["spectra"]:
        hs, pre = spec["hessian"], spec["preconditioned"]
        if hs is None:
            lines.append(f"- Spectrum at step {spec['step']}: n/a (no finite Hessian: diverged).")
            continue
        line = (
            f"- Spectrum at step {spec['step']}: top {_g(hs['top'])} (Lanczos on the same subsample: "
            f"{_g(spec['lanczos_top'])}), min {_g(hs['min'])}, {_pct(hs['negative_fraction'])} negative; "
            f"{_pct(hs['stuck_fraction'])} of directions have lr_eff·λ < "
            f"{_g(point['effective_lr'] * hs['stuck_below'])} "
            f"(λ < {_g(hs['stuck_below'])}), which {iters} steps cannot halve"
        )
        if pre:
            line += (
                f"; through Adam's preconditioner {_pct(pre['stuck_fraction'])} are (λ(P^-1 H) < "
                f"{_g(pre['stuck_below'])}, top {_g(pre['top'])})"
            )
        lines.append(line + ".")
    return lines


def _error_text(point: dict, regions, bands) -> list[str]:
    reg, band = point["history"]["region_mse"][-1], point["history"]["band_mse"][-1]
    lines = ["- Final MSE by region of x: " + ", ".join(f"{n} {_g(v)}" for (n, *_), v in zip(regions, reg)) + "."]
    if band[0] is not None:
        total = sum(band)
        lines.append(
            "- Final residual power (vs the noise-free target) by band: "
            + ", ".join(f"{n} {_g(v)} ({_pct(v / total)})" for (n, *_), v in zip(bands, band))
            + "."
        )
    return lines


def _stability_text(opts: dict) -> list[str]:
    parts, edge = [], []
    for name, point in opts.items():
        thr = point["threshold"]
        if not thr:
            continue
        key = "sharpness" if thr["kind"] == "sharpness" else "precond_sharpness"
        i = _argmax(point["history"][key])
        if i is None:
            parts.append(f"{name} n/a (no finite value: diverged)")
            continue
        top = point["history"][key][i]
        parts.append(f"{name} {_g(top)} = {_pct(top / thr['value'])} of {_g(thr['value'])}")
        if top >= 0.8 * thr["value"]:
            edge.append(name)
    if not parts:
        return []
    verdict = (
        f"{', '.join(edge)} train(s) at the edge of stability (>= 80% of the threshold)."
        if edge
        else "No optimizer reaches its edge of stability: the top curvature limits none of them at these learning "
        "rates, so it does not explain the ordering."
    )
    return [
        f"- Largest (preconditioned for Adam) sharpness against the stability threshold: {'; '.join(parts)}. {verdict}"
    ]


def _learnable_text(opts: dict, iters: int) -> list[str]:
    rows, counts = [], {}
    for name, point in opts.items():
        if not point["spectra"]:
            return []
        end = point["spectra"][-1]
        kind = "preconditioned" if end["preconditioned"] else "hessian"
        if end[kind] is None:
            counts[name] = None
            rows.append(f"{name} n/a (diverged)")
            continue
        counts[name] = end[kind]["learnable"]
        text = f"{name} {counts[name]}" + (" through its preconditioner" if kind == "preconditioned" else "")
        if kind == "preconditioned":
            text += f" ({end['hessian_at_lr']['learnable']} at its lr without it)"
        rows.append(text)
    by_mse = sorted(opts, key=lambda n: _rank(opts[n]["final_mse"]))
    same = by_mse == sorted(opts, key=lambda n: _rank(None if counts[n] is None else -counts[n]))
    return [
        f"- Directions whose error {iters} steps can at least halve (exact spectrum at the last step): "
        f"{'; '.join(rows)}. Ordered by that count the optimizers {'rank as' if same else 'do not rank as'} "
        f"by final MSE."
    ]


def _region_text(summary: dict) -> list[str]:
    opts = summary["optimizers"]
    names = [r["name"] for r in summary["regions"]]
    final = {n: opts[n][0]["history"]["region_mse"][-1] for n in opts}
    best_total = min(opts, key=lambda n: _rank(opts[n][0]["final_mse"]))
    lines, beaten = [], []
    for i, region in enumerate(names):
        winner = min(opts, key=lambda n: _rank(final[n][i]))
        if winner != best_total:
            beaten.append(f"{region} ({winner} {_g(final[winner][i])} vs {best_total} {_g(final[best_total][i])})")
    share = np.array(summary["region_fraction"])
    for name in opts:
        sq = share * _finite(final[name])
        i = _argmax(sq)
        if i is None:
            lines.append(f"{name}: n/a (no finite error: diverged)")
            continue
        lines.append(
            f"{name}: {_pct(sq[i] / np.nansum(sq))} in the {names[i]} (MSE {_g(final[name][i])}, "
            f"peak {_g(final[name][0])})"
        )
    out = [f"- Where the final squared error lies (largest share per optimizer): {'; '.join(lines)}."]
    if beaten:
        out.append(f"- {best_total} has the lowest total MSE but not in every region: {', '.join(beaten)}.")
    return out


def conclusions(summary: dict) -> list[str]:
    """The cross-optimizer findings, each computed from ``summary``."""
    opts = {n: p[0] for n, p in summary["optimizers"].items()}
    order = sorted(opts, key=lambda n: _rank(opts[n]["final_mse"]))
    out = [
        "## What the measurements say about the seed's conclusion",
        "",
        "- Final full-data MSE: " + " < ".join(f"{n} {_g(opts[n]['final_mse'])}" for n in order) + ".",
    ]
    if {"sgd", "momentum", "adam"} <= set(opts):
        holds = order.index("adam") < order.index("momentum") < order.index("sgd")
        out[-1] += f" The seed's ordering (Adam < momentum < SGD) {'holds' if holds else 'does not hold'} here."
    out += _stability_text(opts)
    out += _learnable_text(opts, summary["config"]["train"]["iters"])
    sizes = {n: _median(p["history"]["step_size"][1:]) for n, p in opts.items()}
    out.append(
        "- Median effective step size (update norm / minibatch gradient norm): "
        + ", ".join(f"{n} {_g(v)}" for n, v in sizes.items())
        + "."
    )
    out += _region_text(summary)
    return out


def findings_markdown(summary: dict) -> str:
    """``diagnostics.md``: per optimizer the measured curvature, steps and error, then what they
    say about the seed's conclusion. Every number comes from ``summary``."""
    summary = json_restore(summary)  # "inf" back to a float (a diverged run); NaN stays None
    cfg, steps = summary["config"], summary["eval_steps"]
    iters = cfg["train"]["iters"]
    regions = [(r["name"], r["abs_x_from"], r["abs_x_to"]) for r in summary["regions"]]
    bands = [(b["name"], b["cycles_from"], b["cycles_to"]) for b in summary["bands"]]
    out = [
        "# Diagnostics",
        "",
        f"{', '.join(summary['optimizers'])}; {iters} iterations, batch {cfg['train']['batch_size']}, "
        f"{cfg['seeds']} seed(s) (medians over seeds), grid point 0 of each optimizer. Sharpness by "
        f"{summary['lanczos_iters']} Lanczos steps on the full data; exact spectra on a "
        f"{summary['subsample']['n']}-point subsample ({summary['subsample']['method']}).",
        "",
    ]
    for name, points in summary["optimizers"].items():
        point = points[0]
        hp = ", ".join(f"{k} {_g(v)}" for k, v in point["hparams"].items())
        hist = point["history"]
        out += [f"## {name} ({hp})", "", f"- Final full-data MSE {_g(point['final_mse'], 4)}."]
        out += _sharpness_text(name, point, steps)
        out += _spectrum_text(point, iters)
        out.append(
            f"- Steps: effective step size (update norm / minibatch gradient norm) median "
            f"{_g(_median(hist['step_size'][1:]))}; full-data gradient norm "
            f"{_g(hist['grad_norm'][0])} at step 0, {_g(hist['grad_norm'][-1])} at the end."
        )
        out += _error_text(point, regions, bands)
        out.append("")
    out += conclusions(summary)
    return "\n".join(out) + "\n"

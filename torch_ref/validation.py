"""Validating JAX against PyTorch: is each registry optimizer the same in both frameworks?

Three checks, each against the tolerance :mod:`torch_ref.parity` states, all under matmul
precision "highest" (``scripts/validate.py`` is the command line):

1. model: forward pass and gradients of the seed MLP at its initial weights, on the seed data;
2. per optimizer: the seed MLP trained ``steps`` steps in both frameworks from the same weights on
   the same batches, on each of ``parity.F32_STREAMS`` batch streams; the largest relative
   parameter and loss deviation over every step must be <= ``F64_TOL`` in float64, and the
   float32 band must pass (gap within ``K_F32`` x the larger of both frameworks' own float32
   drifts, and those drifts within ``K_DRIFT`` of each other);
3. whole runs: ``seeds`` seeds of a short study in each framework (their random streams differ,
   so runs agree in distribution only); a TOST on log final MSE must show the ratio of geometric
   means within ``[1/margin, margin]`` (equivalence, not a mere failure to find a difference).

:func:`validate` returns a JSON-ready report; :func:`markdown` renders it (its first table is
ready for the README).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from jaxopt_cmp.config import OptimizerConfig, StudyConfig, seed_study
from jaxopt_cmp.io import format_table
from jaxopt_cmp.stats import equivalence_test
from torch_ref import parity

SCHEMA = "jaxopt_cmp.validation/2"
QUICK = {"steps": 100, "seeds": 12, "study_iters": 200, "study_n_data": 512}
# 32 seeds: the noisiest entries (rmsprop_momentum, rmsprop*, adadelta) have a seed-to-seed sd of
# log final MSE of 0.13-0.16 at 300 iterations, so the 90% interval is about +-0.07 wide and an
# equal pair fails the [0.8, 1.25] margin with probability ~1e-4 (16 seeds at 500 iterations,
# sd up to 0.23: ~5% each, and three failed in a trial run).
FULL = {"steps": 1_000, "seeds": 32, "study_iters": 300, "study_n_data": 2_000}
# Parameters kept in memory per compiled group of JAX runs (float64 trajectories: 8 bytes each).
GROUP_BUDGET = 12_000_000


def estimate_bytes(names: list[str], steps: int) -> dict[str, int]:
    """Bytes the step-by-step check holds at once: every step's parameters of one compiled group
    of JAX runs (float64 and float32) and of one torch run (both dtypes), grouped as
    :func:`check_optimizers` groups them. They grow with ``steps``; the rest is small."""
    from jaxopt_cmp.budget import n_params

    params = n_params(parity.SEED_MODEL)
    group = min(len(names), max(1, GROUP_BUDGET // (steps * params)))
    per_run = steps * params * (8 + 4)
    return {"jax trajectories": group * per_run, "torch trajectories": per_run}


def study_config(names: list[str], study_iters: int, study_n_data: int, batch_size: int, seeds: int) -> StudyConfig:
    """The whole-run study: every name at :data:`parity.MLP_HPARAMS`, one evaluation at the end."""
    return seed_study(
        optimizers=tuple(OptimizerConfig.make(n, **parity.MLP_HPARAMS.get(n, {})) for n in names),
        n_data=study_n_data,
        iters=study_iters,
        eval_every=study_iters,
        batch_size=batch_size,
        seeds=seeds,
        record_predictions=False,
    )


# ---------------------------------------------------------------------------------------------
# The three checks; each returns JSON-ready rows with a "passed" field.


def check_model(problem: parity.Problem, scale: float) -> list[dict]:
    rows = []
    for dtype, tol in parity.MODEL_TOL.items():
        gaps = parity.model_agreement(problem, dtype)
        worst = max(gaps.values())
        rows.append(
            {
                "dtype": dtype,
                "max_relative": worst,
                "tolerance": tol * scale,
                "gaps": gaps,
                "passed": bool(worst <= tol * scale),
            }
        )
    return rows


def check_optimizers(names: list[str], problems: list[parity.Problem], scale: float, progress) -> list[dict]:
    """Every name: float64 and float32 runs of every problem (batch stream), both frameworks."""
    from jaxopt_cmp.model import count_params
    from jaxopt_cmp.optimizers import OPTIMIZERS
    from torch_ref.optimizers import TORCH_OPTIMIZERS

    steps = len(problems[0].idx_TB)
    group = max(1, GROUP_BUDGET // (steps * count_params(problems[0].params)))
    rows = []
    for n, c in parity.compare_mlp(names, problems, group):
        f64, loss64 = float(c.f64_T.max()), float(c.loss64_T.max())
        f64_ok = max(f64, loss64) <= parity.F64_TOL * scale
        f32_ok = c.f32.passed(scale) and c.f32_loss.passed(scale)
        facts = TORCH_OPTIMIZERS[n]
        rows.append(
            {
                "name": n,
                "parity": facts.parity,
                "torch": facts.counterpart,
                "note": facts.note,
                "hparams": {**OPTIMIZERS[n].defaults, **parity.MLP_HPARAMS.get(n, {})},
                "steps": steps,
                "streams": len(problems),
                "f64_max_deviation": f64,
                "f64_max_loss_gap": loss64,
                "f64_tolerance": parity.F64_TOL * scale,
                "f32_gap": c.f32.gap,
                "f32_floor": c.f32.floor,
                "f32_jax_drift": c.f32.jax_drift,
                "f32_torch_drift": c.f32.torch_drift,
                "f32_drift_ratio": c.f32.drift_ratio,
                "f32_loss_gap": c.f32_loss.gap,
                "f32_loss_floor": c.f32_loss.floor,
                "f32_k": parity.K_F32 * scale,
                "f32_k_drift": parity.K_DRIFT * scale,
                "f64_passed": bool(f64_ok),
                "f32_passed": bool(f32_ok),
                "passed": bool(f64_ok and f32_ok),
            }
        )
        progress(f"{n}: float64 {f64:.2g}, float32 gap {c.f32.gap:.2g} (floor {c.f32.floor:.2g})")
    return rows


def check_study(cfg: StudyConfig, margin: float, alpha: float) -> list[dict]:
    """Final full-data MSE of every seed in each framework; a TOST per optimizer."""
    from jaxopt_cmp.study import run_study as jax_run_study
    from torch_ref.train import run_study as torch_run_study

    final = {"jax": jax_run_study(cfg).final_mse_HS, "torch": torch_run_study(cfg).final_mse_HS}
    geo = lambda v: float(np.exp(np.mean(np.log(v)))) if np.all(np.isfinite(v)) else float("inf")
    rows = []
    for n in cfg.optimizer_names:
        a_S, b_S = final["jax"][n][0], final["torch"][n][0]
        eq = equivalence_test(a_S, b_S, margin, alpha)
        rows.append(
            {
                "name": n,
                "seeds": len(a_S),
                "jax_geo_mean": geo(a_S),
                "torch_geo_mean": geo(b_S),
                "ratio": eq.ratio,
                "ci90": [eq.ci_low, eq.ci_high],
                "p_value": eq.p_value,
                "margin": margin,
                "jax_final_mse": a_S.tolist(),
                "torch_final_mse": b_S.tolist(),
                "passed": bool(eq.equivalent),
            }
        )
    return rows


def validate(names: list[str], s: dict, progress: Callable[[str], None] = lambda line: None) -> dict:
    """Runs the checks with the settings ``s`` (``steps``, ``batch_size``, ``tolerance_scale``,
    ``skip_study``; for the study ``seeds``, ``study_iters``, ``study_n_data``, ``margin``, ``alpha``)
    and returns the report (``passed``: every check passed)."""
    import torch

    from jaxopt_cmp.io import versions
    from torch_ref.train import single_threaded

    scale, start = s["tolerance_scale"], time.perf_counter()
    study_cfg = (
        None
        if s["skip_study"]
        else study_config(names, s["study_iters"], s["study_n_data"], s["batch_size"], s["seeds"])
    )
    with single_threaded():
        problems = [parity.seed_problem(s["steps"], s["batch_size"], seed=k) for k in parity.F32_STREAMS]
        progress("model: forward and gradients")
        model = check_model(problems[0], scale)
        progress(f"optimizers: {s['steps']} steps each, {len(problems)} streams, float64 and float32, both frameworks")
        optimizers = check_optimizers(names, problems, scale, progress)
        study = None
        if study_cfg is not None:
            progress(f"whole runs: {s['seeds']} seeds x {s['study_iters']} iterations per framework")
            study = {k: s[k] for k in ("seeds", "study_iters", "study_n_data", "batch_size", "margin", "alpha")}
            study["rows"] = check_study(study_cfg, s["margin"], s["alpha"])
    checks = [*model, *optimizers, *(study["rows"] if study else [])]
    return {
        "schema": SCHEMA,
        "passed": all(c["passed"] for c in checks),
        "failed": [c.get("name", c.get("dtype")) for c in checks if not c["passed"]],
        "settings": {**s, "optimizers": names, "streams": list(parity.F32_STREAMS)},
        "tolerances": {
            "f64": parity.F64_TOL * scale,
            "k_f32": parity.K_F32 * scale,
            "k_drift": parity.K_DRIFT * scale,
            "model": parity.MODEL_TOL,
            "scale": scale,
        },
        "matmul_precision": parity.MATMUL_PRECISION,
        "versions": {**versions(), "torch": torch.__version__},
        "seconds": time.perf_counter() - start,
        "model": model,
        "optimizers": optimizers,
        "study": study,
    }


# ---------------------------------------------------------------------------------------------
# The report


def ok(passed: bool) -> str:
    return "pass" if passed else "**FAIL**"


def readme_table(optimizers: list[dict]) -> str:
    """Per optimizer: torch counterpart, parity kind, the facts, deviations, pass (README-ready)."""
    rows = [
        [
            f"`{r['name']}`",
            r["torch"],
            r["parity"],
            r["note"],
            f"{r['f32_gap']:.1e} (floor {r['f32_floor']:.1e})",
            f"{r['f64_max_deviation']:.1e}",
            ok(r["passed"]),
        ]
        for r in optimizers
    ]
    header = [
        "optimizer",
        "torch counterpart",
        "parity",
        "what differs between the libraries",
        "max dev. f32 (own f32 drift)",
        "max dev. f64",
        "pass",
    ]
    return format_table(header, rows, markdown=True)


def _study_part(st: dict) -> list[str]:
    rows = [
        [
            f"`{r['name']}`",
            f"{r['jax_geo_mean']:.4g}",
            f"{r['torch_geo_mean']:.4g}",
            f"{r['ratio']:.3f}",
            f"[{r['ci90'][0]:.3f}, {r['ci90'][1]:.3f}]",
            f"{r['p_value']:.2g}",
            ok(r["passed"]),
        ]
        for r in st["rows"]
    ]
    return [
        f"## Whole runs: {st['seeds']} seeds x {st['study_iters']} iterations per framework "
        f"({st['study_n_data']} points), final full-data MSE",
        f"Equivalence (TOST, Welch, alpha {st['alpha']}) on log final MSE: passes when the 90% interval of the "
        f"torch/JAX geometric-mean ratio lies within [{1 / st['margin']:.2f}, {st['margin']:.2f}]. The random "
        "streams differ between frameworks; within one, every optimizer shares the seeds' data and initial "
        "weights, so the rows' ratios move together.",
        format_table(
            ["optimizer", "JAX geo. mean", "torch geo. mean", "ratio", "90% interval", "p", "pass"], rows, markdown=True
        ),
    ]


def markdown(report: dict) -> str:
    s, tol, v = report["settings"], report["tolerances"], report["versions"]
    parts = [
        "# JAX vs PyTorch validation",
        f"{'PASSED' if report['passed'] else 'FAILED'}; matmul precision `{report['matmul_precision']}`; "
        f"jax {v.get('jax')}, optax {v.get('optax')}, torch {v.get('torch')}, device {v.get('device')}.",
        f"## Optimizers: the seed MLP, {s['steps']} steps on {len(s['streams'])} batch streams, every step compared",
        "Max relative parameter deviation over all steps and streams (each array scaled by its largest value "
        f"over the run). float64 passes at <= {tol['f64']:.0e}; float32 when the torch-vs-JAX gap is <= "
        f"{tol['k_f32']:g} x the floor, the larger of both frameworks' own float32-vs-float64 drifts, and those "
        f"drifts lie within {tol['k_drift']:g}x of each other (see `torch_ref/parity.py`). Hyperparameters: "
        "registry defaults (torch's), except rmsprop* lr 1e-3 and adamw lr 2^-10, weight_decay 2^-3.",
        readme_table(report["optimizers"]),
        "## Model: forward pass and gradients at the initial weights (seed data)",
        format_table(
            ["dtype", "max relative gap", "tolerance", "pass"],
            [
                [m["dtype"], f"{m['max_relative']:.1e}", f"{m['tolerance']:.0e}", ok(m["passed"])]
                for m in report["model"]
            ],
            markdown=True,
        ),
    ]
    if report["study"] is not None:
        parts += _study_part(report["study"])
    return "\n\n".join(parts) + "\n"

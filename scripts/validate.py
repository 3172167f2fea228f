"""Validate JAX against PyTorch: is each registry optimizer the same in both frameworks?

    python scripts/validate.py                            # every optimizer: 1,000 steps, 32 seeds
    python scripts/validate.py --optimizers nadam,lion    # some of them
    python scripts/validate.py --quick                    # a fast smoke run (100 steps, 12 seeds)

Three checks, each against a stated tolerance, all under matmul precision "highest":

1. model: forward pass and gradients of the seed MLP at its initial weights, on the seed data;
2. per optimizer: the seed MLP trained ``--steps`` steps in both frameworks from the same weights
   on the same batches; the largest relative parameter deviation over every step must be
   <= 1e-10 in float64, and in float32 within K = 4 times JAX's own float32-vs-float64 drift;
3. whole runs: ``--seeds`` seeds of a short study in each framework (their random streams differ,
   so runs agree in distribution only); a TOST on log final MSE must show the ratio of geometric
   means within ``[1/--margin, --margin]`` (equivalence, not a mere failure to find a difference).

Prints the tables and writes ``validation.json`` and ``validation.md`` (its first table is ready
for the README) into ``--out``. Exit status 0 if everything passed, 1 if anything failed, 2 for
bad flags.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _cli  # noqa: E402

PROG = "validate.py"
SCHEMA = "jaxopt_cmp.validation/1"
MODEL_TOL = {"float64": 1e-12, "float32": 1e-5}  # measured 8.5e-15 and 2.9e-6 (tests/test_parity.py)
QUICK = {"steps": 100, "seeds": 12, "study_iters": 200, "study_n_data": 512}
# 32 seeds: the noisiest entries (rmsprop_momentum, rmsprop*, adadelta) have a seed-to-seed sd of
# log final MSE of 0.13-0.16 at 300 iterations, so the 90% interval is about +-0.07 wide and an
# equal pair fails the [0.8, 1.25] margin with probability ~1e-4 (16 seeds at 500 iterations,
# sd up to 0.23: ~5% each, and three failed in a trial run).
FULL = {"steps": 1_000, "seeds": 32, "study_iters": 300, "study_n_data": 2_000}
# Parameters kept in memory per compiled group of JAX runs (float64 trajectories: 8 bytes each).
GROUP_BUDGET = 12_000_000


def parse_args(argv=None):
    p = _cli.Parser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--optimizers", default="all", help="comma-separated registry names, or all (default)")
    p.add_argument("--steps", type=int, default=None,
                   help=f"MLP steps compared per optimizer (default {FULL['steps']})")
    p.add_argument("--seeds", type=int, default=None,
                   help=f"seeds per framework in the study (default {FULL['seeds']})")
    p.add_argument("--study-iters", type=int, default=None,
                   help=f"iterations of each study run (default {FULL['study_iters']})")
    p.add_argument("--study-n-data", type=int, default=None,
                   help=f"data points of the study (default {FULL['study_n_data']})")
    p.add_argument("--batch-size", type=int, default=64, help="minibatch size (default: %(default)s)")
    p.add_argument("--margin", type=float, default=1.25,
                   help="equivalence margin of the final-MSE ratio: within [1/m, m] (default: %(default)s)")
    p.add_argument("--alpha", type=float, default=0.05, help="TOST significance level (default: %(default)s)")
    p.add_argument("--tolerance-scale", type=float, default=1.0,
                   help="multiplies every parity tolerance (0 makes any deviation fail; default: %(default)s)")
    p.add_argument("--skip-study", action="store_true", help="skip the whole-run comparison")
    p.add_argument("--quick", action="store_true",
                   help="fast defaults: " + ", ".join(f"--{k.replace('_', '-')} {v}" for k, v in QUICK.items()))
    p.add_argument("--out", default=None, help="output directory (default: runs/validate-<time>)")
    p.add_argument("--overwrite", action="store_true", help="allow writing into a non-empty --out")
    args = p.parse_args(argv)
    for key, value in (QUICK if args.quick else FULL).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


def check_args(args) -> list[str]:
    """Validates every flag (ConfigError names the first bad one); returns the optimizer names."""
    from jaxopt_cmp.checks import ConfigError, check_int, check_real
    from jaxopt_cmp.optimizers import OPTIMIZERS, check_hparams

    names = list(OPTIMIZERS) if args.optimizers == "all" else list(_cli.parse_list("optimizer", args.optimizers))
    for name in names:
        check_hparams(name, {})
    if len(set(names)) != len(names):
        raise ConfigError("optimizers", args.optimizers, "expected each optimizer at most once")
    check_int("steps", args.steps)
    check_int("seeds", args.seeds, low=2)
    check_int("study_iters", args.study_iters)
    check_int("study_n_data", args.study_n_data)
    check_int("batch_size", args.batch_size)
    if args.batch_size > min(args.study_n_data, 10_000):
        raise ConfigError("batch_size", args.batch_size, f"expected at most --study-n-data={args.study_n_data}")
    check_real("margin", args.margin, 1.0, 1e6, low_open=True)
    check_real("alpha", args.alpha, 0.0, 0.5, low_open=True)
    check_real("tolerance_scale", args.tolerance_scale, 0.0, 1e6)
    return names


# ---------------------------------------------------------------------------------------------
# The three checks; each returns JSON-ready rows with a "passed" field.


def check_model(problem, scale: float) -> list[dict]:
    from torch_ref import parity

    rows = []
    for dtype, tol in MODEL_TOL.items():
        gaps = parity.model_agreement(problem, dtype)
        worst = max(gaps.values())
        rows.append({"dtype": dtype, "max_relative": worst, "tolerance": tol * scale, "gaps": gaps,
                     "passed": bool(worst <= tol * scale)})
    return rows


def check_optimizers(names: list[str], problem, scale: float, progress) -> list[dict]:
    """Every name: float64 and float32 runs of ``problem`` in both frameworks, every step."""
    from jaxopt_cmp.model import count_params
    from jaxopt_cmp.optimizers import OPTIMIZERS
    from torch_ref import parity

    steps = len(problem.idx_TB)
    size = max(1, GROUP_BUDGET // (steps * count_params(problem.params)))
    rows = []
    for start in range(0, len(names), size):
        group = names[start : start + size]
        hp = {n: parity.MLP_HPARAMS.get(n, {}) for n in group}
        jax_runs = {d: parity.jax_mlp_trajectories(hp, problem, d) for d in ("float64", "float32")}
        for n in group:
            torch_runs = {d: parity.torch_mlp_trajectory(n, problem, d, **hp[n]) for d in jax_runs}
            (j64, j32), (t64, t32) = (jax_runs[d][n] for d in jax_runs), (torch_runs[d] for d in jax_runs)
            f64 = float(parity.deviation_T(t64.params_T, j64.params_T).max())
            loss64 = float((abs(t64.loss_T / j64.loss_T - 1)).max())
            sign = n in parity.SIGN_UPDATES  # floor: the larger of both frameworks' own drifts
            gap, floor = parity.float32_band(j64.params_T, j32.params_T, t32.params_T, t64.params_T if sign else None)
            spec = OPTIMIZERS[n]
            f64_ok = f64 <= parity.F64_TOL * scale and loss64 <= parity.F64_TOL * scale
            f32_ok = gap <= parity.K_F32 * scale * floor
            rows.append({
                "name": n, "parity": spec.parity, "torch": spec.torch, "optax": spec.optax, "note": spec.note,
                "hparams": {**spec.defaults, **hp[n]}, "steps": steps,
                "f64_max_deviation": f64, "f64_max_loss_gap": loss64, "f64_tolerance": parity.F64_TOL * scale,
                "f32_gap": gap, "f32_floor": floor, "f32_k": parity.K_F32 * scale,
                "f32_floor_of": "JAX and torch (sign updates)" if sign else "JAX",
                "f64_passed": bool(f64_ok), "f32_passed": bool(f32_ok), "passed": bool(f64_ok and f32_ok),
            })
            progress(f"{n}: float64 {f64:.2g}, float32 gap {gap:.2g} (floor {floor:.2g})")
    return rows


def study_config(names: list[str], args):
    from jaxopt_cmp.config import DataConfig, OptimizerConfig, StudyConfig, TrainConfig
    from torch_ref.parity import MLP_HPARAMS

    return StudyConfig(
        optimizers=tuple(OptimizerConfig.make(n, **MLP_HPARAMS.get(n, {})) for n in names),
        data=DataConfig(n_data=args.study_n_data),
        train=TrainConfig(iters=args.study_iters, eval_every=args.study_iters, batch_size=args.batch_size),
        seeds=args.seeds,
        record_predictions=False,
    )


def check_study(cfg, margin: float, alpha: float) -> list[dict]:
    """Final full-data MSE of every seed in each framework; a TOST per optimizer."""
    import numpy as np

    from jaxopt_cmp.study import run_study as jax_run_study
    from torch_ref.parity import equivalence_test
    from torch_ref.train import run_study as torch_run_study

    final = {"jax": jax_run_study(cfg).final_mse_HS, "torch": torch_run_study(cfg).final_mse_HS}
    rows = []
    for n in cfg.optimizer_names:
        a_S, b_S = final["jax"][n][0], final["torch"][n][0]
        eq = equivalence_test(a_S, b_S, margin, alpha)
        geo = lambda v: float(np.exp(np.mean(np.log(v)))) if np.all(np.isfinite(v)) else float("inf")
        rows.append({
            "name": n, "seeds": len(a_S), "jax_geo_mean": geo(a_S), "torch_geo_mean": geo(b_S),
            "ratio": eq.ratio, "ci90": [eq.ci_low, eq.ci_high], "p_value": eq.p_value, "margin": margin,
            "jax_final_mse": a_S.tolist(), "torch_final_mse": b_S.tolist(), "passed": bool(eq.equivalent),
        })
    return rows


# ---------------------------------------------------------------------------------------------
# Tables


def _table(header: list[str], rows: list[list[str]]) -> str:
    cell = lambda text: str(text).replace("|", "\\|")  # a literal | (as in |g|) would split the cell
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return "\n".join(lines + ["| " + " | ".join(map(cell, r)) + " |" for r in rows])


def ok(passed: bool) -> str:
    return "pass" if passed else "**FAIL**"


def readme_table(optimizers: list[dict]) -> str:
    """Per optimizer: torch counterpart, parity kind, the facts, deviations, pass (README-ready)."""
    rows = [
        [f"`{r['name']}`", r["torch"], r["parity"], r["note"], f"{r['f32_gap']:.1e} (floor {r['f32_floor']:.1e})",
         f"{r['f64_max_deviation']:.1e}", ok(r["passed"])]
        for r in optimizers
    ]
    header = ["optimizer", "torch counterpart", "parity", "what differs between the libraries",
              "max dev. f32 (JAX's own f32 drift)", "max dev. f64", "pass"]
    return _table(header, rows)


def markdown(report: dict) -> str:
    s = report["settings"]
    parts = [
        "# JAX vs PyTorch validation",
        f"{'PASSED' if report['passed'] else 'FAILED'}; matmul precision `{report['matmul_precision']}`; "
        f"jax {report['versions'].get('jax')}, optax {report['versions'].get('optax')}, "
        f"torch {report['versions'].get('torch')}, device {report['versions'].get('device')}.",
        f"## Optimizers: the seed MLP, {s['steps']} steps, every step compared",
        "Max relative parameter deviation over all steps (each array scaled by its largest value over "
        f"the run). float64 passes at <= {report['tolerances']['f64']:.0e}; float32 when the torch-vs-JAX "
        f"gap is <= {report['tolerances']['k_f32']:g} x JAX's own float32-vs-float64 drift (the floor). "
        "For Lion's sign updates, where one rounding flips a sign and moves a weight by 2 lr, the floor is the "
        "larger of both frameworks' own drifts. Hyperparameters: registry defaults (torch's), except rmsprop* "
        "lr 1e-3 and adamw lr 2^-10, weight_decay 2^-3 (see `torch_ref/parity.py`).",
        readme_table(report["optimizers"]),
        "## Model: forward pass and gradients at the initial weights (seed data)",
        _table(["dtype", "max relative gap", "tolerance", "pass"],
               [[m["dtype"], f"{m['max_relative']:.1e}", f"{m['tolerance']:.0e}", ok(m["passed"])]
                for m in report["model"]]),
    ]
    if report["study"] is not None:
        st = report["study"]
        parts += [
            f"## Whole runs: {st['seeds']} seeds x {st['iters']} iterations per framework "
            f"({st['n_data']} points), final full-data MSE",
            f"Equivalence (TOST, Welch, alpha {st['alpha']}) on log final MSE: passes when the 90% interval of "
            f"torch/JAX geometric-mean ratio lies within [{1 / st['margin']:.2f}, {st['margin']:.2f}]. The random "
            "streams differ between frameworks; within one, every optimizer shares the seeds' data and initial "
            "weights, so the rows' ratios move together.",
            _table(["optimizer", "JAX geo. mean", "torch geo. mean", "ratio", "90% interval", "p", "pass"],
                   [[f"`{r['name']}`", f"{r['jax_geo_mean']:.4g}", f"{r['torch_geo_mean']:.4g}", f"{r['ratio']:.3f}",
                     f"[{r['ci90'][0]:.3f}, {r['ci90'][1]:.3f}]", f"{r['p_value']:.2g}", ok(r["passed"])]
                    for r in st["rows"]]),
        ]
    return "\n\n".join(parts) + "\n"


# ---------------------------------------------------------------------------------------------


def main(argv=None) -> int:
    args = parse_args(argv)
    names = check_args(args)
    study_cfg = None if args.skip_study else study_config(names, args)  # validates before any work
    from jaxopt_cmp.results import atomic_write_bytes, prepare_out_dir

    out = prepare_out_dir(args.out or _cli.default_out("validate"), args.overwrite)
    print(f"output directory: {out}")

    import torch

    from jaxopt_cmp.study import versions
    from torch_ref import parity
    from torch_ref.train import single_threaded

    say = lambda line: print(f"  {line}", flush=True)
    start = time.perf_counter()
    with single_threaded():
        problem = parity.seed_problem(args.steps, args.batch_size)
        print("model: forward and gradients")
        model = check_model(problem, args.tolerance_scale)
        for m in model:
            say(f"{m['dtype']}: max relative gap {m['max_relative']:.2g} ({ok(m['passed'])})")
        print(f"optimizers: {args.steps} steps each, float64 and float32, both frameworks")
        optimizers = check_optimizers(names, problem, args.tolerance_scale, say)
        study = None
        if study_cfg is not None:
            print(f"whole runs: {args.seeds} seeds x {args.study_iters} iterations per framework")
            rows = check_study(study_cfg, args.margin, args.alpha)
            study = {"seeds": args.seeds, "iters": args.study_iters, "n_data": args.study_n_data,
                     "batch_size": args.batch_size, "margin": args.margin, "alpha": args.alpha, "rows": rows}
    checks = [*model, *optimizers, *(study["rows"] if study else [])]
    report = {
        "schema": SCHEMA,
        "passed": all(c["passed"] for c in checks),
        "settings": {k: v for k, v in vars(args).items() if k not in ("out", "overwrite")} | {"optimizers": names},
        "tolerances": {"f64": parity.F64_TOL * args.tolerance_scale, "k_f32": parity.K_F32 * args.tolerance_scale,
                       "model": MODEL_TOL, "scale": args.tolerance_scale},
        "matmul_precision": parity.MATMUL_PRECISION,
        "versions": {**versions(), "torch": torch.__version__},
        "seconds": time.perf_counter() - start,
        "model": model,
        "optimizers": optimizers,
        "study": study,
    }
    text = markdown(report)
    print("\n" + text)
    atomic_write_bytes(out / "validation.md", text.encode())
    atomic_write_bytes(out / "validation.json", json.dumps(report, indent=1, allow_nan=True).encode())
    print(f"wrote {out / 'validation.json'}\nwrote {out / 'validation.md'}")
    failed = [c.get("name", c.get("dtype")) for c in checks if not c["passed"]]
    if failed:
        print(f"{PROG}: FAILED: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    _cli.run_main(PROG, lambda: sys.exit(main()))

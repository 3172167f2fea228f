"""Why Adam wins here: curvature, step and error diagnostics of the seed study, measured inside
the compiled run (sharpness vs stability thresholds, exact Hessian spectra, error by region of x
and by frequency band).

    python scripts/diagnose.py                         # the seed study: sgd, momentum, adam at lr 1e-2
    python scripts/diagnose.py --seeds 4 --lr 3e-3     # medians over 4 seeds
    python scripts/diagnose.py --check-subsample 512,1024,2048   # + full-data spectra (minutes)

Writes diagnostics.json (every number), diagnostics.md (the findings), diagnostics.npz (the arrays,
spectra included), diag_*.png figures and report.html (every file on one offline page) into --out.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

# Eigenvalue problems run one per core, each on a single-threaded BLAS: measured 9.5 s CPU per
# 4,353 x 4,353 syevd single-threaded vs 26-29 s CPU with OpenBLAS's threads on a busy 2-core
# machine (its threads spin). Set before numpy loads; a user's setting wins.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))
import _cli  # noqa: E402

from jaxopt_cmp.diagnostics import LANCZOS_ITERS, SUBSAMPLE  # noqa: E402

PROG = "diagnose.py"
WRITES = ("diagnostics.json", "diagnostics.md", "diagnostics.npz")


def parse_args(argv=None):
    p = _cli.Parser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--optimizers", default="sgd,momentum,adam", help="registry names, comma-separated (default: %(default)s)"
    )
    p.add_argument("--lr", type=float, default=1e-2, help="learning rate of every optimizer (default: %(default)s)")
    p.add_argument("--iters", type=int, default=10_000, help="training iterations (default: %(default)s)")
    p.add_argument("--eval-every", type=int, default=500, help="diagnostics every N iterations (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=64, help="minibatch size (default: %(default)s)")
    p.add_argument("--hidden", default="64,64", help="hidden layer widths (default: %(default)s)")
    p.add_argument("--n-data", type=int, default=10_000, help="number of data points (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="root random seed (default: %(default)s)")
    p.add_argument("--seeds", type=int, default=1, help="seeds, vmapped in the same run (default: %(default)s)")
    p.add_argument("--dtype", default="float32", help="float32 or float64 (default: %(default)s)")
    p.add_argument(
        "--spectrum-at",
        type=int,
        default=3,
        help="evaluation steps with an exact Hessian spectrum, first to last (default: %(default)s)",
    )
    p.add_argument(
        "--subsample",
        type=int,
        default=None,
        help=f"data points of the exact spectrum: every N/n-th in order of x (default: {SUBSAMPLE}, "
        "or --n-data if smaller)",
    )
    lanczos = "Hessian-vector products per sharpness estimate (default: %(default)s)"
    p.add_argument("--lanczos-iters", type=int, default=LANCZOS_ITERS, help=lanczos)
    p.add_argument(
        "--check-subsample",
        default=None,
        metavar="SIZES",
        help="also compare subsample spectra of these sizes with the full-data one at the last step",
    )
    p.add_argument("--out", default=None, help="output directory (default: runs/diagnose-<time>)")
    p.add_argument("--overwrite", action="store_true", help="allow writing into a non-empty --out")
    p.add_argument("--no-plots", action="store_true", help="skip the figures (report.html is still written)")
    _cli.add_process_args(p)
    return p.parse_args(argv)


def build(args):
    """``(config, check sizes)`` from the flags, validated before anything compiles."""
    from jaxopt_cmp.config import seed_study
    from jaxopt_cmp.diagnostics import check_diagnostics_args

    cfg = seed_study(
        optimizers=_cli.parse_list("optimizers", args.optimizers), lr=args.lr, iters=args.iters,
        eval_every=args.eval_every, batch_size=args.batch_size, hidden=_cli.parse_list("hidden", args.hidden, int),
        n_data=args.n_data, seed=args.seed, seeds=args.seeds, dtype=args.dtype, record_predictions=False,
    )  # fmt: skip
    if args.subsample is None:  # the default follows a small --n-data; only a given value is refused
        args.subsample = min(SUBSAMPLE, cfg.data.n_data)
    check_diagnostics_args(cfg, args.spectrum_at, args.subsample, args.lanczos_iters)
    sizes = () if args.check_subsample is None else _cli.parse_list("check_subsample", args.check_subsample, int)
    for n in sizes:
        check_diagnostics_args(cfg, args.spectrum_at, n, args.lanczos_iters)
    if sizes and args.spectrum_at == 0:
        raise _cli.ConfigError("check_subsample", args.check_subsample, "expected --spectrum-at >= 1")
    return cfg, sizes


def main(argv=None) -> None:
    args = parse_args(argv)
    _cli.start_processes(args, PROG)  # every process measures every run; process 0 writes
    cfg, sizes = build(args)
    if args.dtype == "float64":
        import jax

        jax.config.update("jax_enable_x64", True)
    from jaxopt_cmp.diagnostics import run_diagnostics, subsample_check
    from jaxopt_cmp.diagnostics_report import diagnostics_figures, diagnostics_summary, findings_markdown
    from jaxopt_cmp.figures import save_figures
    from jaxopt_cmp.html_report import write_report
    from jaxopt_cmp.io import atomic_write_bytes, atomic_write_npz, dumps
    from jaxopt_cmp.results import OUTPUTS

    with _cli.out_dir(args, "diagnose", OUTPUTS) as out:
        print(f"output directory: {out.path}")
        wall, cpu = time.perf_counter(), time.process_time()
        bar = _cli.Progress(cfg.train.iters, f"diagnostics: {len(cfg.optimizers)} optimizers x {cfg.seeds} seed(s)")
        threads = len(os.sched_getaffinity(0)) if os.environ["OPENBLAS_NUM_THREADS"] == "1" else 1
        try:
            diag = run_diagnostics(
                cfg, spectrum_at=args.spectrum_at, subsample=args.subsample, lanczos_iters=args.lanczos_iters,
                progress=bar, eigh_threads=threads,
            )  # fmt: skip
        finally:
            bar.close()
        summary = diagnostics_summary(diag)
        if sizes:
            summary["subsample"]["check"] = subsample_check(diag, sizes)
        summary["timing"].update(total_s=time.perf_counter() - wall, total_cpu_s=time.process_time() - cpu)
        # The measurements first, each file whole or absent: the findings are derived from them.
        _cli.check_interrupted()
        atomic_write_bytes(out.path / "diagnostics.json", dumps(summary).encode())
        arrays = {f"{n}/{f}": getattr(r, f) for n, r in diag.runs.items() for f in r._fields}
        arrays.update(eval_steps=diag.eval_steps, spectrum_steps=diag.spectrum_steps)
        atomic_write_npz(out.path / "diagnostics.npz", **arrays)
        text = findings_markdown(summary)
        atomic_write_bytes(out.path / "diagnostics.md", text.encode())
        written = [out.path / name for name in WRITES]
        if not args.no_plots:
            written += save_figures(diagnostics_figures(diag), out.path)
        written.append(write_report(out.path))  # last: it shows the files above
        print(text)
        t = summary["timing"]
        print(f"total {t['total_s']:.1f} s wall, {t['total_cpu_s']:.1f} s CPU "
              f"(compile {t['compile_s']:.1f} s, run {t['run_s']:.1f} s, Hessians {t['hessian_s']:.1f} s, "
              f"eigh {t['eigh_s']:.1f} s)")  # fmt: skip
        print("".join(f"wrote {f}\n" for f in written), end="")


if __name__ == "__main__":
    _cli.setup_process()
    _cli.run_main(PROG, main)

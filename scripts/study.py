"""Multi-seed learning-rate study: optimizer x lr grid x seeds in one compiled, vmapped call.

    python scripts/study.py                          # sgd, momentum, adam; 9 lrs 1e-4..1; 16 seeds
    python scripts/study.py --seeds 64 --lrs 1e-3,1e-2,1e-1
    python scripts/study.py --from runs/study-XXXX   # re-render tables and figures, no training

Writes results.json + arrays.npz and figures into the output directory, and prints per optimizer
the best lr, final MSE mean with a 95% bootstrap CI, divergences, steps to reach --target-mse and
paired sign tests across seeds.
"""

from __future__ import annotations

import argparse
import resource
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _cli  # noqa: E402

PROG = "study.py"
DEFAULT_LRS = ",".join(f"{v:.3g}" for v in np.logspace(-4, 0, 9))


def parse_args(argv=None):
    p = _cli.Parser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    _cli.add_common_args(p, optimizers="sgd,momentum,adam")
    p.add_argument("--lrs", default=DEFAULT_LRS,
                   help="comma-separated learning-rate grid (default: 9 log-spaced, 1e-4..1)")
    p.add_argument("--seeds", type=int, default=16, help="seeds per grid point, vmapped (default: %(default)s)")
    p.add_argument("--target-mse", type=float, default=2 * 0.03**2,
                   help="time-to-target threshold on full-data MSE (default: 2 x noise variance = %(default).4g)")
    p.add_argument("--from", dest="from_dir", default=None, help="re-render tables and figures from a saved study")
    return p.parse_args(argv)


def report_study(result, out: Path, target: float, plots: bool) -> None:
    from jaxopt_cmp import report, stats

    summaries = stats.summarize(result, target)
    print(report.study_table(summaries, target))
    print(report.paired_table(stats.paired_comparisons(result, summaries)))
    if plots:
        best = {s.name: s.best for s in summaries}
        for f in report.study_figures(result, best, out):
            print(f"wrote {f}")


def main(argv=None) -> None:
    args = parse_args(argv)
    _cli.enable_dtype(args.dtype)
    from jaxopt_cmp.checks import check_real
    from jaxopt_cmp.results import load_result, prepare_out_dir, save_result
    from jaxopt_cmp.study import progress_total

    check_real("target_mse", args.target_mse, 0.0, float("inf"), low_open=True)
    if args.from_dir:
        result, _ = load_result(args.from_dir)
        report_study(result, Path(args.from_dir), args.target_mse, not args.no_plots)
        return
    lrs = _cli.parse_list("lrs", args.lrs, float)
    names = _cli.parse_list("optimizer", args.optimizers)
    cfg, data = _cli.build_config(args, {n: {"lr": lrs} for n in names}, args.seeds, record_predictions=True)
    out = prepare_out_dir(args.out or _cli.default_out("study"), args.overwrite)
    print(f"output directory: {out}")
    runs = len(names) * len(lrs) * cfg.seeds
    print(f"{len(names)} optimizers x {len(lrs)} lrs x {cfg.seeds} seeds = {runs} runs of {cfg.train.iters} steps")

    from jaxopt_cmp.study import run_study

    bar = _cli.Progress(progress_total(cfg), f"{runs} runs")
    try:
        result = run_study(cfg, progress=bar, data=data)
    finally:
        bar.close()
    result.timing["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t = result.timing
    steps = runs * cfg.train.iters
    print(f"compile {t['compile_s']:.2f} s, train {t['train_s']:.2f} s "
          f"({steps / t['train_s']:,.0f} model-steps/s), peak RSS {t['peak_rss_mb']:.0f} MB")
    print(f"wrote {save_result(result, out)}")
    report_study(result, out, args.target_mse, not args.no_plots)


if __name__ == "__main__":
    _cli.run_main(PROG, main)

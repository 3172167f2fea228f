"""The problem suite: every problem x optimizers x lr grid x seeds, then performance profiles.

    python scripts/suite.py                               # the default suite, minutes on 2 cores
    python scripts/suite.py --problems sin,franke --seeds 2 --iters 300

Writes one study directory per problem (results.json, arrays.npz, runs.csv, history.csv, its
figure, summary.txt, report.html) and, at the top, profiles.csv (rho(tau) per optimizer),
problems.csv (per problem and optimizer: best lr, test MSE, target, steps to it),
performance_profile.png, summary.txt and report.html. README: The problem suite.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _cli  # noqa: E402

PROG = "suite.py"
OUTPUTS = ("profiles.csv", "problems.csv", "performance_profile.png", "summary.txt", "report.html")


def parse_args(argv=None):
    from jaxopt_cmp import suite
    from jaxopt_cmp.problems import PROBLEMS

    p = _cli.Parser(
        prog=PROG,
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        aliases={"problem": "problems", "lr": "lrs"},
    )
    p.add_argument("--problems", default=",".join(PROBLEMS), help="comma-separated (default: all: %(default)s)")
    p.add_argument("--optimizers", default=",".join(suite.DEFAULT_OPTIMIZERS), help="(default: %(default)s)")
    p.add_argument(
        "--lrs", default=",".join(f"{v:g}" for v in suite.DEFAULT_LRS), help="lr grid (default: %(default)s)"
    )
    sizes = suite.DEFAULT_SIZES
    p.add_argument("--iters", type=int, default=sizes["iters"], help="steps per run (default: %(default)s)")
    p.add_argument("--eval-every", type=int, default=sizes["eval_every"], help="(default: %(default)s)")
    p.add_argument("--seeds", type=int, default=sizes["seeds"], help="seeds per grid point (default: %(default)s)")
    p.add_argument(
        "--n-data", type=int, default=suite.GENERATED_SIZES["n_data"], help="generated problems' training points"
    )
    p.add_argument("--hidden", default=None, help="hidden widths for every problem (default: each problem's own)")
    p.add_argument("--activation", default=None, help="activation for every problem (default: tanh)")
    p.add_argument("--max-memory", type=float, default=None, help="refuse a study over this many GB")
    p.add_argument("--out", default=None, help="output directory (default: runs/suite-<time>-<pid>)")
    p.add_argument("--overwrite", action="store_true", help="allow a non-empty --out")
    p.add_argument("--no-plots", action="store_true", help="skip the figures")
    p.add_argument("--no-cache", action="store_true", help="do not use the persistent compilation cache")
    p.add_argument("--cache-dir", default=None, help="JAX's persistent compilation cache directory")
    args = p.parse_args(argv)
    args.dtype = "float32"
    return args


def plan(args):
    """Every study of the suite, checked (one line and exit 2 on bad input, before compiling)."""
    from jaxopt_cmp import suite

    model = {}
    if args.hidden is not None:
        model["hidden"] = _cli.parse_list("hidden", args.hidden, int)
    if args.activation is not None:
        model["activation"] = args.activation
    sizes = {"iters": args.iters, "eval_every": args.eval_every, "seeds": args.seeds}
    generated = {**suite.GENERATED_SIZES, "n_data": args.n_data}
    studies = suite.suite_studies(
        _cli.parse_list("problems", args.problems),
        _cli.parse_list("optimizers", args.optimizers),
        _cli.parse_list("lrs", args.lrs, float),
        sizes,
        None if args.n_data == suite.GENERATED_SIZES["n_data"] else generated,
        **model,
    )
    from jaxopt_cmp.study import check_runnable

    for _, cfg, data in studies:
        check_runnable(cfg, data, _cli.max_bytes(args))
    return studies


def run_problem(name, cfg, data, out: Path, plots: bool):
    """One problem's study, saved into ``out/<name>``; returns its result and outcome."""
    from jaxopt_cmp import suite
    from jaxopt_cmp.io import claim_out_dir
    from jaxopt_cmp.results import OUTPUTS as STUDY_OUTPUTS
    from jaxopt_cmp.results import save_result
    from jaxopt_cmp.study import prepare_study

    runs = sum(o.grid_size for o in cfg.optimizers) * cfg.seeds
    bar = _cli.Progress(cfg.train.iters, f"{name}: {runs} runs")
    try:
        result = prepare_study(cfg, data).run(progress=bar)
    finally:
        bar.close()
    outcome = suite.outcome(name, result)
    with claim_out_dir(out / name, True, STUDY_OUTPUTS) as sub:
        save_result(result, sub.path)
        if plots:
            _problem_figures(data, result, outcome, sub.path)
        t = result.timing
        text = f"{suite.problem_text(outcome)}\ncompile {t['compile_s']:.1f} s, train {t['train_s']:.1f} s"
        _cli.write_pages(sub.path, text)
    return result, outcome


def _problem_figures(data, result, outcome, out: Path) -> None:
    from jaxopt_cmp import figures
    from jaxopt_cmp.render import save_figures

    best = dict(zip(outcome.names, map(int, outcome.best_O), strict=True))
    save_figures(figures.fit_figures(result, best, data, final="final_fit.png"), out)


def main(argv=None) -> None:
    start = time.perf_counter()
    args = parse_args(argv)
    _cli.setup_jax(args)
    studies = plan(args)
    from jaxopt_cmp import suite
    from jaxopt_cmp.io import atomic_write_bytes, claim_out_dir, peak_rss_mb
    from jaxopt_cmp.results import csv_text

    names = [n for n, _, _ in studies]
    with claim_out_dir(args.out or _cli.default_out("suite"), args.overwrite, (*OUTPUTS, *names)) as out:
        print(f"output directory: {out.path}")
        outcomes = [run_problem(n, cfg, data, out.path, not args.no_plots)[1] for n, cfg, data in studies]
        profiles = suite.profiles(outcomes)
        rows = suite.profile_rows(profiles)
        atomic_write_bytes(out.path / "profiles.csv", csv_text(iter(rows), list(rows[0])).encode())
        rows = suite.steps_rows(profiles, outcomes)
        atomic_write_bytes(out.path / "problems.csv", csv_text(iter(rows), list(rows[0])).encode())
        if not args.no_plots:
            from jaxopt_cmp import suite_figures
            from jaxopt_cmp.render import save_figures

            save_figures({"performance_profile.png": suite_figures.plot_performance_profile(profiles)}, out.path)
        wall_s = time.perf_counter() - start
        text = f"{suite.summary_text(profiles, outcomes)}\nwall {wall_s:.0f} s, peak RSS {peak_rss_mb():.0f} MB"
        print(text)
        _cli.write_pages(out.path, text)
        print(f"wrote {out.path}")


if __name__ == "__main__":
    _cli.setup_process()
    _cli.run_main(PROG, main)

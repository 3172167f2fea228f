"""Multi-seed learning-rate study: optimizer x lr grid x seeds in one compiled, vmapped call.

    python scripts/study.py                          # sgd, momentum, adam; 9 lrs 1e-4..1; 16 seeds
    python scripts/study.py --seeds 64 --lrs 1e-3,1e-2,1e-1
    python scripts/study.py --from runs/study-XXXX   # re-render tables and figures, no training
    python scripts/study.py --seeds 64 --shard 0/4 --out runs/s0   # part 0 of 4 (seeds 0..15); --shard auto
    python scripts/study.py --merge runs/s0 runs/s1 runs/s2 runs/s3 --out runs/all   # = one 64-seed run
    python scripts/study.py --seeds 64 --out runs/big --resume   # continue an interrupted study, bit-identical

Writes results.json, arrays.npz, runs.csv, history.csv, figures, summary.txt (the printed tables)
and report.html (every file on one offline page) into the output directory,
and prints per optimizer the best lr, final MSE mean with a 95% bootstrap CI, divergences, steps
to reach --target-mse and paired sign tests across seeds.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _cli  # noqa: E402
import _processes  # noqa: E402  (a study's jobs: shards, checkpoints)
import _search_flags  # noqa: E402
import numpy as np  # noqa: E402  (after _cli: its Ctrl-C handler first)

PROG = "study.py"
DEFAULT_LRS = ",".join(f"{v:.3g}" for v in np.logspace(-4, 0, 9))


def parse_args(argv=None):
    p = _cli.Parser(
        prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter, aliases={"lr": "lrs"}
    )
    _cli.add_common_args(p, optimizers="sgd,momentum,adam")
    _cli.add_process_args(p)
    p.add_argument(
        "--lrs", default=DEFAULT_LRS, help="comma-separated learning-rate grid (default: 9 log-spaced, 1e-4..1)"
    )
    _search_flags.add_search_args(p)
    p.add_argument("--seeds", type=int, default=16, help="seeds per grid point, vmapped (default: %(default)s)")
    p.add_argument(
        "--target-mse",
        type=float,
        default=None,
        help="time-to-target threshold on full-data MSE (default: 2 x noise variance = 0.0018)",
    )
    p.add_argument(
        "--from",
        dest="from_dir",
        default=None,
        help="re-render tables and figures from a saved run (into --out if given, else into it)",
    )
    _processes.add_study_job_args(p)
    args = p.parse_args(argv)
    if args.from_dir and args.merge:
        raise _cli.ConfigError("merge", " ".join(args.merge), "expected either --from or --merge, not both")
    for flag, value in (("from", args.from_dir), ("merge", args.merge and " ".join(args.merge))):
        if not value:
            continue
        given = _cli.training_flags_given(p, args)
        if given:
            what = "re-renders a saved run" if flag == "from" else "joins saved shards"
            raise _cli.ConfigError(flag, value, f"{what}; training flags ({', '.join(given)}) do not apply")
    return args


def report_study(result, out: Path | None, target: float, plots: bool, data=None) -> list[Path]:
    """Prints the tables; saves them (``summary.txt``), the figures and the report page into ``out``;
    returns the paths written. ``data``: the user's data (its test rows go in the fit figure)."""
    from jaxopt_cmp import report, stats

    summaries = stats.summarize(result, target)
    pairs = stats.paired_comparisons(result, summaries)
    text = f"{report.study_table(summaries, target)}\n{report.paired_table(pairs)}"
    print(text)
    paths = []
    if plots:
        from jaxopt_cmp import figures

        paths = figures.save_figures(figures.study_figures(result, {s.name: s.best for s in summaries}, data), out)
    return paths + _cli.write_pages(out, text)


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.merge:
        return merge(args)
    if not args.from_dir:
        _cli.start_processes(args, PROG)
    _cli.setup_jax(args)
    from jaxopt_cmp.checks import check_real
    from jaxopt_cmp.io import claim_out_dir, peak_rss_mb
    from jaxopt_cmp.results import OUTPUTS, default_target, load_result, save_result

    if args.from_dir:
        result, _ = load_result(args.from_dir)
        target = default_target(result.config) if args.target_mse is None else args.target_mse
        check_real("target_mse", target, 0.0, float("inf"), low_open=True)
        # Re-rendering in place removes nothing (the figures are replaced one by one, atomically;
        # with --no-plots they stay); a new --out with --overwrite is cleared like any run's.
        cleared = OUTPUTS if args.out else ()
        with claim_out_dir(args.out or args.from_dir, args.overwrite or not args.out, cleared) as out:
            if args.out:
                _cli.State.results = save_result(result, out.path)
            paths = report_study(result, out.path, target, not args.no_plots)
        print("".join(f"wrote {f}\n" for f in paths), end="")
        return
    lrs = _cli.parse_list("lrs", args.lrs, float)
    names = _cli.parse_list("optimizers", args.optimizers)
    hparams = _search_flags.searched(args, names, args.schedule, "lrs", args.lrs != DEFAULT_LRS)
    cfg, data = _cli.build_config(args, hparams or {n: {"lr": lrs} for n in names}, args.seeds, record_predictions=True)
    _search_flags.check_grid_memory(args, cfg, _cli.max_bytes(args))
    cfg, shard = _processes.study_shard(args, cfg)
    _cli.check_memory(args, cfg)
    target = default_target(cfg) if args.target_mse is None else args.target_mse
    check_real("target_mse", target, 0.0, float("inf"), low_open=True)
    from jaxopt_cmp.study import prepare_study

    saver, outputs = _processes.study_checkpoint(args, cfg, data, OUTPUTS)
    with _cli.out_dir(args, "study", outputs, overwrite=args.overwrite or args.resume) as out:
        print(f"output directory: {out.path}")
        print("".join(f"{line}\n" for line in _processes.study_job_lines(args, saver, cfg, shard)), end="")
        points = sum(o.grid_size for o in cfg.optimizers)
        runs = points * cfg.seeds
        grid = f"{len(lrs)} lrs" if hparams is None else f"{points // len(names)} grid points"
        print(f"{len(names)} optimizers x {grid} x {cfg.seeds} seeds = {runs} runs of {cfg.train.iters} steps")
        prepared = prepare_study(cfg, data, max_bytes=_cli.max_bytes(args))
        if not args.no_plots:
            _cli.import_in_background("jaxopt_cmp.figures")
        bar = _cli.Progress(cfg.train.iters, f"{runs} runs")
        try:
            result = prepared.run(progress=bar, checkpoint=saver)
        finally:
            bar.close()
        t = result.timing
        t["peak_rss_mb"] = peak_rss_mb()
        if saver is not None and saver.saves:
            t["checkpoint_s"] = saver.save_s
        result.shard = shard
        rate = runs * cfg.train.iters / t["train_s"]
        print(
            f"{_cli.timing_line(t)}, train {t['train_s']:.2f} s ({rate:,.0f} model-steps/s), "
            f"peak RSS {t['peak_rss_mb']:.0f} MB"
        )
        _cli.check_interrupted()
        _cli.State.results = save_result(result, out.path, target=target)
        print(f"wrote {_cli.State.results}")
        paths = report_study(result, out.path, target, not args.no_plots, data)
        if saver is not None:  # last: a study killed while writing its results resumes from it
            saver.remove()
        print("".join(f"wrote {f}\n" for f in paths), end="")


def merge(args) -> None:
    """``--merge``: the whole study from its shards' directories, saved and reported like a run."""
    _cli.setup_jax(args)
    from jaxopt_cmp.checks import check_real
    from jaxopt_cmp.results import OUTPUTS, default_target, save_result
    from jaxopt_cmp.shards import merge_shards

    result = merge_shards(args.merge)
    target = default_target(result.config) if args.target_mse is None else args.target_mse
    check_real("target_mse", target, 0.0, float("inf"), low_open=True)
    with _cli.out_dir(args, "study", OUTPUTS) as out:
        print(f"merged {len(args.merge)} shards ({result.config.seeds} seeds) into {out.path}")
        _cli.State.results = save_result(result, out.path, target=target)
        paths = report_study(result, out.path, target, not args.no_plots)
    print("".join(f"wrote {f}\n" for f in [_cli.State.results, *paths]), end="")


if __name__ == "__main__":
    _cli.setup_process()
    _cli.run_main(PROG, main)

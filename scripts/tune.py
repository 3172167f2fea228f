"""Tuning budgets: does the ranking of optimizers survive a schedule and the same tuning budget?

    python scripts/tune.py     # sgd, momentum, nesterov, adam, adamw, rmsprop; constant and cosine;
                               # 64 random trials each from the registry spaces; 4 seeds; 10,000 steps
    python scripts/tune.py --optimizers sgd,momentum,adam --trials 16 --schedule constant,cosine

Per schedule, one study (every optimizer: --trials points of its default search space, or of
--space, then its registry defaults as one more grid point; every point on every seed), written to
a subdirectory named after the schedule with the usual study outputs. At the top: budget.csv
(optimizer, schedule, k, expected_test_mse, lo, hi), tuning_budget.png, tune.json (the answer),
summary.txt (the printed ranking at k = 1, 4, 16, N, where the leader changes, defaults vs tuned)
and report.html. README: Search spaces and tuning budgets.

    python scripts/tune.py --out runs/tune --resume   # continue a killed run: finished schedules are
                                                      # loaded, the one in progress resumes from its checkpoint
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _cli  # noqa: E402
import _processes  # noqa: E402  (checkpoints: --resume)
import _search_flags  # noqa: E402

PROG = "tune.py"
PART = "tune_part.json"  # in a schedule's subdirectory once its study is saved: {"digest": its study_digest}


def parse_args(argv=None):
    from jaxopt_cmp import tune

    p = _cli.Parser(
        prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter, aliases={"lr": "space"}
    )
    _cli.add_common_args(p, optimizers=",".join(tune.DEFAULT_OPTIMIZERS))
    _search_flags.add_search_args(p, trials=tune.DEFAULT_TRIALS, method="random")
    p.add_argument("--seeds", type=int, default=tune.DEFAULT_SEEDS, help="seeds per trial (default: %(default)s)")
    p.add_argument(
        "--from",
        dest="from_dir",
        default=None,
        help="re-analyse a saved tune.py run from its schedule subdirectories, no training (into --out if given)",
    )
    _processes.add_checkpoint_args(p, "tuning run")
    _cli.add_process_args(p)
    p.set_defaults(schedule=",".join(tune.DEFAULT_SCHEDULES))
    return p.parse_args(argv)


def plan(args) -> list:
    """``[(schedule, config, data)]``, every one checked before anything compiles."""
    from jaxopt_cmp import tune
    from jaxopt_cmp.schedules import check_schedule
    from jaxopt_cmp.study import check_runnable

    if args.grid:
        raise _cli.ConfigError("grid", " ".join(args.grid), "tune.py searches; use --space (or study.py --grid)")
    names = _cli.parse_list("optimizers", args.optimizers)
    out = []
    schedules = _cli.parse_list("schedule", args.schedule)
    if len(set(schedules)) < len(schedules):  # one subdirectory per schedule: a second would overwrite the first
        raise _cli.ConfigError("schedule", args.schedule, "expected each schedule at most once")
    for schedule in schedules:
        check_schedule(schedule, {})
        hparams = tune.trial_hparams(names, schedule, args.trials, args.search, args.seed, args.space)
        one = argparse.Namespace(**{**vars(args), "schedule": schedule})
        cfg, data = _cli.build_config(one, hparams, args.seeds, record_predictions=False)
        tune.check_heldout(cfg)
        _search_flags.check_grid_memory(args, cfg, _cli.max_bytes(args))  # over budget: named --trials
        check_runnable(cfg, data, _cli.max_bytes(args))
        out.append((schedule, cfg, data))
    return out


def schedule_job(sub: Path, cfg, data, args):
    """``(finished, checkpoint)`` of one schedule's study in ``sub``: with ``--resume`` its saved
    result if it finished (its :data:`PART` names the same study; another's is refused), else its
    checkpoint (:func:`_processes.checkpoint_in`); ``(None, None)`` when it trains from scratch unsaved."""
    import json

    from jaxopt_cmp.checkpoint import study_digest
    from jaxopt_cmp.results import load_result

    if args.resume and (sub / PART).is_file():
        if json.loads((sub / PART).read_text()).get("digest") != study_digest(cfg, data):
            why = "expected the same flags: its finished study is of another config, data, code or version"
            raise _cli.ConfigError("resume", str(sub), why)
        return load_result(sub)[0], None
    return None, _processes.checkpoint_in(sub, cfg, data, args)


def run_schedule(schedule, cfg, data, out: Path, args, saver):
    """One schedule's study, trained (from ``saver``'s checkpoint, if it has one; checkpointing into
    it), saved and reported into ``out/<schedule>``; then :data:`PART` marks it finished."""
    from study import report_study

    from jaxopt_cmp.checkpoint import NAME, study_digest
    from jaxopt_cmp.io import atomic_write_bytes, claim_out_dir
    from jaxopt_cmp.results import OUTPUTS as STUDY_OUTPUTS
    from jaxopt_cmp.results import default_target, save_result
    from jaxopt_cmp.study import prepare_study

    runs = sum(o.grid_size for o in cfg.optimizers) * cfg.seeds
    outputs = (*STUDY_OUTPUTS, PART) + (() if args.resume else (NAME,))
    with claim_out_dir(out / schedule, True, outputs) as sub:
        if saver is not None and saver.state is not None:
            print(f"{schedule}: resuming at step {cfg.train.eval_steps[saver.state[0]]} from {saver.path}")
        bar = _cli.Progress(cfg.train.iters, f"{schedule}: {runs} runs")
        try:
            result = prepare_study(cfg, data, max_bytes=_cli.max_bytes(args)).run(bar, checkpoint=saver)
        finally:
            bar.close()
        print(f"{schedule}: {_cli.timing_line(result.timing)}, train {result.timing['train_s']:.1f} s")
        _cli.check_interrupted()
        save_result(result, sub.path, target=default_target(cfg))
        report_study(result, sub.path, default_target(cfg), not args.no_plots)
        atomic_write_bytes(sub.path / PART, (json_text({"digest": study_digest(cfg, data)}) + "\n").encode())
        if saver is not None:  # after PART: a run killed before it resumes from the checkpoint
            saver.remove()
    return result


def main(argv=None) -> None:
    start = time.perf_counter()
    args = parse_args(argv)
    if not args.from_dir:
        _cli.start_processes(args, PROG)
    _cli.setup_jax(args)
    if args.from_dir:
        return reanalyse(args)
    _processes.check_checkpoint_args(args, "tuning run")
    plans = plan(args)
    from jaxopt_cmp import tune
    from jaxopt_cmp.io import peak_rss_mb
    from jaxopt_cmp.results import OUTPUTS

    with _cli.out_dir(args, "tune", OUTPUTS, overwrite=args.overwrite or args.resume) as out:
        print(f"output directory: {out.path}")
        # Checkpoints under --out on every process (a worker's out.path is its scratch directory)
        where = Path(args.out) if args.out else out.path
        jobs = {s: schedule_job(where / s, cfg, data, args) for s, cfg, data in plans}  # all refusals first
        results = {}
        for schedule, cfg, data in plans:
            finished, saver = jobs[schedule]
            if finished is None:
                finished = run_schedule(schedule, cfg, data, out.path, args, saver)
            else:
                print(f"{schedule}: finished earlier, loaded from {out.path / schedule}")
            results[schedule] = finished
        fail_mse = tune.mean_predictor_mse(plans[0][1], plans[0][2])
        timing = {"wall_s": time.perf_counter() - start, "peak_rss_mb": peak_rss_mb()}
        timing["loaded"] = [s for s, (finished, _) in jobs.items() if finished is not None]
        write_answer(
            out.path, results, args.trials, fail_mse, not args.no_plots, {"search": args.search, "timing": timing}
        )


def reanalyse(args) -> None:
    """``--from DIR``: the budget curves, figure, answer and summary again from the studies saved in
    DIR's schedule subdirectories (no training; tune.json's timing is kept)."""
    import json

    from jaxopt_cmp import tune
    from jaxopt_cmp.io import claim_out_dir
    from jaxopt_cmp.results import OUTPUTS, load_result

    p = _cli.Parser.last
    given = _cli.training_flags_given(p, args)
    if given:
        raise _cli.ConfigError("from", args.from_dir, f"re-analyses a saved run; {', '.join(given)} do not apply")
    src = Path(args.from_dir)
    subs = sorted(d for d in src.iterdir() if (d / "results.json").is_file()) if src.is_dir() else []
    if not subs:
        raise _cli.ConfigError("from", src, "expected a tune.py output directory (schedule subdirectories)")
    results = {d.name: load_result(d)[0] for d in subs}
    first = next(iter(results.values()))
    if first.config.data.source:
        raise _cli.ConfigError("from", src, "expected generated data (a --data run's test set is not saved)")
    answer = src / "tune.json"
    saved = json.loads(answer.read_text()) if answer.is_file() else {}
    run = {k: saved[k] for k in ("search", "timing") if k in saved}  # how it was drawn and ran: kept
    trials = first.config.optimizers[0].grid_size - 1  # the last grid point is the registry defaults
    with claim_out_dir(args.out or src, args.overwrite or not args.out, OUTPUTS if args.out else ()) as out:
        write_answer(out.path, results, trials, tune.mean_predictor_mse(first.config), not args.no_plots, run)


def write_answer(out: Path, results: dict, trials: int, fail_mse: float, plots: bool, run: dict) -> None:
    """budget.csv, tuning_budget.png, tune.json, summary.txt and report.html into ``out``; prints the
    summary. ``run``: what tune.json keeps of the run (``search``: random or sobol; ``timing``)."""
    from jaxopt_cmp import tune
    from jaxopt_cmp.io import atomic_write_bytes
    from jaxopt_cmp.results import csv_text
    from jaxopt_cmp.tuning import budget_rows

    curves = tune.curves(results, trials, fail_mse)
    rows = budget_rows(curves, range(1, trials + 1))
    atomic_write_bytes(out / "budget.csv", csv_text(iter(rows), list(rows[0])).encode())
    if plots:
        from jaxopt_cmp.render import save_figures
        from jaxopt_cmp.study_figures import tuning_budget_figure

        save_figures({"tuning_budget.png": tuning_budget_figure(rows)}, out)
    seeds = next(iter(results.values())).config.seeds
    ans = {**tune.answer(curves, tune.defaults_vs_tuned(results, trials, fail_mse), trials, seeds, fail_mse)}
    ans.update(run)
    timing = run.get("timing", {})
    atomic_write_bytes(out / "tune.json", (json_text(ans) + "\n").encode())
    text = tune.summary_text(ans)
    if timing:
        text += f"\nwall {timing['wall_s']:.0f} s, peak RSS {timing['peak_rss_mb']:.0f} MB"
        if timing.get("loaded"):
            text += f" (this run; {', '.join(timing['loaded'])} trained by an earlier one and loaded)"
    print(text)
    _cli.write_pages(out, text)
    print(f"wrote {out}")


def json_text(doc) -> str:
    import json

    return json.dumps(doc, indent=1, default=float, allow_nan=True)


if __name__ == "__main__":
    _cli.setup_process()
    _cli.run_main(PROG, main)

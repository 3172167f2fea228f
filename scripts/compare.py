"""Reproduce the seed study: SGD, momentum and Adam fit exp(-x^2) cos(10x) with a 1-64-64-1 MLP.

python scripts/compare.py                       # the seed study, JAX, one seed
python scripts/compare.py --seeds 8             # 8 seeds vmapped in one compiled run
python scripts/compare.py --framework torch     # the same study eagerly through torch_ref
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _cli  # noqa: E402
import _search_flags  # noqa: E402

PROG = "compare.py"


def parse_args(argv=None):
    p = _cli.Parser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    _cli.add_common_args(p, optimizers="sgd,momentum,adam")
    p.add_argument("--lr", type=float, default=1e-2, help="learning rate of every optimizer (default: %(default)s)")
    p.add_argument("--seeds", type=int, default=1, help="number of seeds, vmapped in one run (default: %(default)s)")
    p.add_argument(
        "--framework",
        choices=("jax", "torch"),
        default="jax",
        help="jax: compiled scan + vmap; torch: the eager torch_ref loop (default: %(default)s)",
    )
    _search_flags.add_search_args(p)
    _cli.add_process_args(p)
    return p.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    _cli.start_processes(args, PROG)
    _cli.setup_jax(args)
    from jaxopt_cmp import report
    from jaxopt_cmp.results import OUTPUTS, save_result, update_timing

    names = _cli.parse_list("optimizers", args.optimizers)
    lr_given = args.lr != _cli.Parser.last.get_default("lr")
    hparams = _search_flags.searched(args, names, args.schedule, "lr", lr_given) or {n: {"lr": args.lr} for n in names}
    cfg, data = _cli.build_config(args, hparams, args.seeds, record_predictions=True)
    _search_flags.check_grid_memory(args, cfg, _cli.max_bytes(args))
    _cli.check_memory(args, cfg)
    if data is not None and args.framework == "torch":
        raise _cli.ConfigError("data", args.data, "user data runs with --framework jax only")
    if args.framework == "torch":
        _cli.import_extra("torch", "torch", "--framework torch")
    with _cli.out_dir(args, "compare", OUTPUTS) as out:
        print(f"output directory: {out.path}")
        result = train(cfg, data, args)
        summary = f"{report.final_table(result)}\n{_cli.timing_line(result.timing, args.framework)}"
        print(summary)
        _cli.check_interrupted()
        _cli.State.results = save_result(result, out.path, framework=args.framework)
        written = [_cli.State.results]
        if not args.no_plots:
            written += write_figures(result, out.path, data)
            update_timing(out.path, result.timing)
        written += _cli.write_pages(out.path, summary)
        print("".join(f"wrote {f}\n" for f in written), end="")


def train(cfg, data, args):
    """Prints the parameter table, then trains with a progress bar that starts after compiling."""
    from jaxopt_cmp import report

    desc = f"{args.framework}: {len(cfg.optimizers)} optimizers x {cfg.seeds} seed(s)"
    if args.framework == "torch":
        from torch_ref.model import count_params, param_rows
        from torch_ref.train import initial_model, run_study

        model = initial_model(cfg, seed_index=0)
        print(report.param_table(param_rows(model), count_params(model)))
        bar = _cli.Progress(cfg.train.iters, desc)
        try:
            return run_study(cfg, progress=bar)
        finally:
            bar.close()
    from jaxopt_cmp.model import count_params, param_rows
    from jaxopt_cmp.study import prepare_study

    prepared = prepare_study(cfg, data, max_bytes=_cli.max_bytes(args))
    params = prepared.initial_params()
    print(report.param_table(param_rows(params), count_params(params)))
    if not args.no_plots:
        _cli.import_in_background("jaxopt_cmp.figures", "jaxopt_cmp.animation")
    bar = _cli.Progress(cfg.train.iters, desc)
    try:
        return prepared.run(progress=bar)
    finally:
        bar.close()


def write_figures(result, out: Path, data=None) -> list[Path]:
    """Figures and (1-D inputs) the fits animation, saved; ``timing['figures_s']`` records how long
    they took. ``data``: the user's data, for the test rows of a predicted-vs-actual figure."""
    from jaxopt_cmp import figures

    start = time.perf_counter()
    figs = figures.compare_figures(result, data)
    if result.pred_EHN and result.config.model.xdim == 1:
        from jaxopt_cmp.animation import fits_gif

        figs["fits.gif"] = fits_gif(result)
    paths = figures.save_figures(figs, out)
    result.timing["figures_s"] = time.perf_counter() - start
    return paths


if __name__ == "__main__":
    _cli.setup_process()
    _cli.run_main(PROG, main)

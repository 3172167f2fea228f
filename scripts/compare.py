"""Reproduce the seed study: SGD, momentum and Adam fit exp(-x^2) cos(10x) with a 1-64-64-1 MLP.

    python scripts/compare.py                       # the seed study, JAX, one seed
    python scripts/compare.py --seeds 8             # 8 seeds vmapped in one compiled run
    python scripts/compare.py --framework torch     # the same study eagerly through torch_ref
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _cli  # noqa: E402

PROG = "compare.py"


def parse_args(argv=None):
    p = _cli.Parser(prog=PROG, description=__doc__, formatter_class=__import__("argparse").RawDescriptionHelpFormatter)
    _cli.add_common_args(p, optimizers="sgd,momentum,adam")
    p.add_argument("--lr", type=float, default=1e-2, help="learning rate of every optimizer (default: %(default)s)")
    p.add_argument("--seeds", type=int, default=1, help="number of seeds, vmapped in one run (default: %(default)s)")
    p.add_argument("--framework", choices=("jax", "torch"), default="jax",
                   help="jax: compiled scan + vmap; torch: the eager torch_ref loop (default: %(default)s)")
    return p.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    _cli.enable_dtype(args.dtype)
    from jaxopt_cmp import report
    from jaxopt_cmp.results import prepare_out_dir, save_result
    from jaxopt_cmp.study import progress_total

    names = _cli.parse_list("optimizer", args.optimizers)
    cfg, data = _cli.build_config(args, {n: {"lr": args.lr} for n in names}, args.seeds, record_predictions=True)
    if data is not None and args.framework == "torch":
        raise _cli.ConfigError("data", args.data, "user data runs with --framework jax only")
    out = prepare_out_dir(args.out or _cli.default_out("compare"), args.overwrite)
    print(f"output directory: {out}")
    print(report.param_table(*initial_params(cfg, args.framework)))

    bar = _cli.Progress(progress_total(cfg), f"{args.framework}: {len(names)} optimizers x {cfg.seeds} seed(s)")
    try:
        if args.framework == "jax":
            from jaxopt_cmp.study import run_study

            result = run_study(cfg, progress=bar, data=data)
        else:
            from torch_ref.train import run_study

            result = run_study(cfg, progress=bar)
    finally:
        bar.close()

    print(report.final_table(result))
    print(f"compile {result.timing['compile_s']:.2f} s, train {result.timing['train_s']:.2f} s")
    path = save_result(result, out, framework=args.framework)
    figures = [] if args.no_plots else report.compare_figures(result, out)
    print(f"wrote {path}" + "".join(f"\nwrote {f}" for f in figures))


def initial_params(cfg, framework: str):
    """Rows and total of the parameter table for seed 0 of ``framework``."""
    if framework == "torch":
        from torch_ref.model import count_params, param_rows
        from torch_ref.train import initial_model

        model = initial_model(cfg, seed_index=0)
        return param_rows(model), count_params(model)
    from jaxopt_cmp.model import count_params, param_rows
    from jaxopt_cmp.study import seed_keys
    from jaxopt_cmp.train import seed_inputs

    params = seed_inputs(seed_keys(cfg.seed, 1)[0], cfg).params
    return param_rows(params), count_params(params)


if __name__ == "__main__":
    _cli.run_main(PROG, main)

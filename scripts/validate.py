"""Validate JAX against PyTorch: is each registry optimizer the same in both frameworks?

    python scripts/validate.py                            # every optimizer: 1,000 steps, 32 seeds
    python scripts/validate.py --optimizers nadam,lion    # some of them
    python scripts/validate.py --quick                    # a fast smoke run (100 steps, 12 seeds)

Three checks (torch_ref/validation.py), each against the tolerance torch_ref/parity.py states:
the model's forward pass and gradients; every optimizer on the seed MLP, both frameworks from the
same weights on the same batches, every step, float64 and float32, on several batch streams; and
whole runs of a short study in each framework, equivalent by a TOST on log final MSE.

Prints the tables and writes ``validation.json`` and ``validation.md`` (its first table is ready
for the README) into ``--out``. Exit status 0 if everything passed, 1 if anything failed, 2 for
bad flags.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _cli  # noqa: E402

PROG = "validate.py"
OUTPUTS = ("validation.json", "validation.md")


def parse_args(argv=None):
    _cli.import_extra("torch", "torch", "validating against torch")
    from torch_ref.validation import FULL, QUICK

    p = _cli.Parser(
        prog=PROG,
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        aliases={"optimizer": "optimizers"},
    )
    p.add_argument("--optimizers", default="all", help="comma-separated registry names, or all (default)")
    p.add_argument("--steps", type=int, help=f"MLP steps compared per optimizer (default {FULL['steps']})")
    p.add_argument("--seeds", type=int, help=f"seeds per framework in the study (default {FULL['seeds']})")
    p.add_argument("--study-iters", type=int, help=f"iterations of each study run (default {FULL['study_iters']})")
    p.add_argument("--study-n-data", type=int, help=f"data points of the study (default {FULL['study_n_data']})")
    p.add_argument("--batch-size", type=int, default=64, help="minibatch size (default: %(default)s)")
    p.add_argument(
        "--margin",
        type=float,
        default=1.25,
        help="equivalence margin of the final-MSE ratio: within [1/m, m] (default: %(default)s)",
    )
    p.add_argument("--alpha", type=float, default=0.05, help="TOST significance level (default: %(default)s)")
    p.add_argument(
        "--tolerance-scale",
        type=float,
        default=1.0,
        help="multiplies every parity tolerance (0 makes any deviation fail; default: %(default)s)",
    )
    p.add_argument("--skip-study", action="store_true", help="skip the whole-run comparison")
    quick = ", ".join(f"--{k.replace('_', '-')} {v}" for k, v in QUICK.items())
    p.add_argument("--quick", action="store_true", help=f"fast defaults: {quick}")
    p.add_argument(
        "--max-memory",
        type=float,
        default=None,
        help="refuse settings whose estimated memory exceeds this many GB (default: 80%% of available)",
    )
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

    names = list(OPTIMIZERS) if args.optimizers == "all" else list(_cli.parse_list("optimizers", args.optimizers))
    for name in names:
        check_hparams(name, {})
    if len(set(names)) != len(names):
        raise ConfigError("optimizers", args.optimizers, "expected each optimizer at most once")
    for setting in ("steps", "study_iters", "study_n_data", "batch_size"):
        check_int(setting, getattr(args, setting))
    check_int("seeds", args.seeds, low=2)
    if args.batch_size > min(args.study_n_data, 10_000):
        raise ConfigError("batch_size", args.batch_size, f"expected at most --study-n-data={args.study_n_data}")
    check_real("margin", args.margin, 1.0, 1e6, low_open=True)
    check_real("alpha", args.alpha, 0.0, 0.5, low_open=True)
    check_real("tolerance_scale", args.tolerance_scale, 0.0, 1e6)
    from jaxopt_cmp.budget import check_parts
    from torch_ref.validation import estimate_bytes

    advice = "reduce --steps (the step-by-step check keeps every step's parameters)"
    check_parts(estimate_bytes(names, args.steps), _cli.max_bytes(args), "validation", advice)
    return names


def main(argv=None) -> int:
    args = parse_args(argv)
    names = check_args(args)
    from jaxopt_cmp.io import atomic_write_bytes, claim_out_dir, dumps
    from torch_ref import validation

    settings = {k: v for k, v in vars(args).items() if k not in ("out", "overwrite", "optimizers", "quick")}
    if not args.skip_study:  # validates the study settings before any work
        validation.study_config(names, args.study_iters, args.study_n_data, args.batch_size, args.seeds)
    from jaxopt_cmp.results import OUTPUTS as ALL_OUTPUTS  # every script's: none stale after --overwrite

    with claim_out_dir(args.out or _cli.default_out("validate"), args.overwrite, ALL_OUTPUTS) as out:
        print(f"output directory: {out.path}")
        report = validation.validate(names, settings, lambda line: print(f"  {line}", flush=True))
        _cli.check_interrupted()
        text = validation.markdown(report)
        print("\n" + text)
        atomic_write_bytes(out.path / "validation.md", text.encode())
        atomic_write_bytes(out.path / "validation.json", dumps(report).encode())
        print(f"wrote {out.path / 'validation.json'}\nwrote {out.path / 'validation.md'}")
    if report["failed"]:
        print(f"{PROG}: FAILED: {', '.join(report['failed'])}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    _cli.setup_process()
    _cli.run_main(PROG, lambda: sys.exit(main()))

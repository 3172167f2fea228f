"""Benchmark jaxopt_cmp's compiled, vmapped engine beside the PyTorch ways of doing the same job.

    python scripts/bench.py                  # full: seed study, S = 1..512, S x H = 4 x 64..512 (~30 min, 2 cores)
    python scripts/bench.py --quick          # about a minute: shorter seed study, S = 8, 128
    python scripts/bench.py --torch-compile  # also torch.compile of the stacked step (slow to compile on CPU)
    python scripts/bench.py --checkpoint-cost --quick   # only the checkpoint row (study.py --checkpoint-every)

Implementations, each in its own worker process (so each has its own peak RSS):
  jax            jaxopt_cmp.study.compile_study: one lax.scan, vmapped over seeds, jitted once
  torch-eager    torch_ref's loop: one model and optimizer per run (the seed notebook's way), 1 thread
  torch-batched  all seeds as one stacked model (baddbmm) per optimizer, torch.optim on the stacks
  torch-func     torch.func: vmap(grad) through functional_call, torch.optim on the stacks
  torch-compile  torch.compile of torch-batched's step (only with --torch-compile)

The parent interleaves the implementations' repeats (rotating their order), so every ratio is
jax's rate over another's *in the same repeat*; medians with min-max are reported. Then the whole
compare.py runs as a process, cold (empty compilation cache) and warm. Writes bench.json,
bench.md (tables for the README) and throughput.png into --out. The code: jaxopt_cmp/bench/.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _cli  # noqa: E402

from jaxopt_cmp.bench.settings import PRESETS, SEED, make_settings  # noqa: E402

PROG = "bench.py"
COMPARE = Path(__file__).resolve().parent / "compare.py"


def _preset(key: str) -> str:
    """``(default: X; --quick Y)`` from the presets."""
    show = lambda v: ",".join(map(str, v)) if isinstance(v, tuple) else f"{v:,}" if isinstance(v, int) else f"{v:g}"
    return f"(default: {show(PRESETS['full'][key])}; --quick {show(PRESETS['quick'][key])})"


def parse_args(argv=None):
    p = _cli.Parser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="about a minute: shorter seed study, fewer S and repeats")
    p.add_argument(
        "--iters", type=int, default=None, help=f"seed-study iterations, jax and torch-eager {_preset('iters')}"
    )
    p.add_argument(
        "--eval-every",
        type=int,
        default=None,
        help=f"seed study: full-data MSE every N iterations (default: {SEED.train.eval_every})",
    )
    p.add_argument("--seeds-list", default=None, help=f"seeds per optimizer, throughput runs {_preset('seeds_list')}")
    p.add_argument(
        "--grid-list",
        default=None,
        help=f"lr grid points per optimizer (at 4 seeds: the tuning shape), jax throughput runs {_preset('grid_list')}",
    )
    p.add_argument(
        "--scaling-iters",
        default=None,
        help=f"jax iteration counts (S=1, besides the seed study's) for the linearity and compile checks "
        f"{_preset('scaling_iters')}",
    )
    p.add_argument("--repeats", type=int, default=None, help=f"timed repeats per measurement {_preset('repeats')}")
    p.add_argument("--target-s", type=float, default=None, help=f"seconds per timed torch repeat {_preset('target_s')}")
    p.add_argument(
        "--torch-threads",
        default="auto",
        help="intra-op threads of the stacked torch implementations: auto (fastest of 1 and all cores, "
        "measured per workload) or a number; torch-eager always runs on 1 (default: %(default)s)",
    )
    p.add_argument("--torch-compile", action="store_true", help="also time torch.compile of the stacked step")
    p.add_argument("--no-compare", action="store_true", help="skip timing whole compare.py processes (cold and warm)")
    p.add_argument(
        "--ceiling-size", type=int, default=None, help=f"n of the n^3 float32 matmul ceiling {_preset('ceiling_size')}"
    )
    p.add_argument(
        "--checkpoint-cost",
        action="store_true",
        help="only the checkpoint row: study.py's default grid (432 runs of the seed network) trained without "
        "a checkpoint, at the default 60 s interval and at every boundary (1,000 steps; --quick 100, 2 evaluations)",
    )
    p.add_argument("--out", default=None, help="output directory (default: runs/bench-<time>)")
    p.add_argument("--overwrite", action="store_true", help="allow writing into a non-empty --out")
    return p.parse_args(argv)


def settings_of(args):
    """The benchmark's settings from the flags (``ConfigError`` names the flag's setting)."""
    lists = {k: getattr(args, k) for k in ("seeds_list", "grid_list", "scaling_iters")}
    return make_settings(
        "quick" if args.quick else "full",
        torch_threads=args.torch_threads,
        iters=args.iters,
        eval_every=args.eval_every,
        repeats=args.repeats,
        target_s=args.target_s,
        ceiling_size=args.ceiling_size,
        torch_compile=args.torch_compile,
        compare=not args.no_compare,
        **{k: None if v is None else _cli.parse_list(k, v, int) for k, v in lists.items()},
    )


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.checkpoint_cost:
        return checkpoint_row(args)
    settings = settings_of(args)
    from jaxopt_cmp.bench import report
    from jaxopt_cmp.bench.measure import run_bench
    from jaxopt_cmp.io import atomic_write_bytes, claim_out_dir, dumps

    names = ("bench.json", "bench.md", "throughput.png")
    with claim_out_dir(args.out or _cli.default_out("bench"), args.overwrite, names) as out:
        print(f"output directory: {out.path}", flush=True)
        start = time.perf_counter()
        log = lambda msg: print(f"[{time.perf_counter() - start:4.0f} s] {msg}", flush=True)
        doc = run_bench(settings, log, COMPARE)
        log("writing results")
        text = report.markdown(doc)
        payloads = (dumps(doc) + "\n", text, report.png_bytes(report.throughput_figure(doc)))
        for name, payload in zip(names, payloads):
            atomic_write_bytes(out.path / name, payload.encode() if isinstance(payload, str) else payload)
    print(text)
    print("\n".join(f"wrote {out.path / name}" for name in names))
    print(f"bench took {doc['elapsed_s']:.0f} s")


def checkpoint_row(args) -> None:
    """``--checkpoint-cost``: writes checkpoint.json and checkpoint.md (:mod:`jaxopt_cmp.bench.checkpoint_cost`)."""
    import numpy as np

    from jaxopt_cmp.bench import checkpoint_cost
    from jaxopt_cmp.config import seed_study
    from jaxopt_cmp.io import atomic_write_bytes, claim_out_dir, dumps

    iters = args.iters or (100 if args.quick else 1000)  # each evaluation: 432 runs x 10,000 points
    cfg = seed_study(
        optimizers=("sgd", "momentum", "adam"), lr=[float(f"{v:.3g}") for v in np.logspace(-4, 0, 9)], seeds=16,
        iters=iters, eval_every=args.eval_every or iters // (2 if args.quick else 10), record_predictions=True,
    )  # fmt: skip
    names = ("checkpoint.json", "checkpoint.md")
    with claim_out_dir(args.out or _cli.default_out("bench"), args.overwrite, names) as out:
        print(f"output directory: {out.path}", flush=True)
        doc = checkpoint_cost.measure(cfg, out.path, repeats=args.repeats or (2 if args.quick else 3))
        text = checkpoint_cost.markdown(doc)
        for name, payload in zip(names, (dumps(doc) + "\n", text)):
            atomic_write_bytes(out.path / name, payload.encode())
    print(text, end="")
    print("\n".join(f"wrote {out.path / name}" for name in names))


if __name__ == "__main__":
    _cli.setup_process()
    _cli.run_main(PROG, main)

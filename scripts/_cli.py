"""Shared command-line plumbing for the scripts: flags, config building, errors, progress.

Bad input ends with one line on stderr naming the flag, the value and what is allowed, and exit
status 2, before anything compiles. Ctrl-C ends with a short message and status 130.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path


def _host_devices_default() -> None:
    """One XLA host device per CPU core unless the user set it: studies shard their seed axis
    across devices, and separate host devices are how XLA:CPU runs shards on separate cores.
    Must run before jax is imported; XLA_FLAGS set by the user win."""
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_force_host_platform_device_count" not in flags:
        count = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        os.environ["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={count or 1}".strip()


_host_devices_default()

from jaxopt_cmp.checks import ConfigError  # noqa: E402
from jaxopt_cmp.config import DataConfig, ModelConfig, OptimizerConfig, StudyConfig, TrainConfig  # noqa: E402

EXIT_USAGE, EXIT_INTERRUPTED = 2, 130


class Parser(argparse.ArgumentParser):
    """argparse with a one-line error (no usage dump) and exit status 2."""

    def error(self, message):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def fail(prog: str, message: str) -> None:
    sys.stderr.write(f"{prog}: error: {message}\n")
    raise SystemExit(EXIT_USAGE)


def add_common_args(p: argparse.ArgumentParser, optimizers: str) -> None:
    """Flags shared by compare.py and study.py (defaults: the seed study)."""
    p.add_argument("--optimizers", default=optimizers, help="comma-separated registry names (default: %(default)s)")
    p.add_argument("--iters", type=int, default=10_000, help="training iterations per run (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=64, help="minibatch size (default: %(default)s)")
    p.add_argument("--hidden", default="64,64", help="hidden layer widths, comma-separated (default: %(default)s)")
    p.add_argument("--n-data", type=int, default=10_000, help="number of data points (default: %(default)s)")
    p.add_argument("--target", default="seed", help="target function: seed (exp(-x^2) cos 10x), sin, abs")
    p.add_argument("--data", default=None,
                   help="fit your own data: .npz with arrays x, y or a 2-column .csv/.txt (sets --n-data)")
    p.add_argument("--seed", type=int, default=0, help="root random seed (default: %(default)s)")
    p.add_argument("--eval-every", type=int, default=500,
                   help="full-data MSE every N iterations (default: %(default)s)")
    p.add_argument("--dtype", default="float32", help="float32 or float64 (default: %(default)s)")
    p.add_argument("--out", default=None, help="output directory (default: runs/<script>-<time>)")
    p.add_argument("--overwrite", action="store_true", help="allow writing into a non-empty --out")
    p.add_argument("--no-plots", action="store_true", help="skip the figures")


def flag_of(setting: str) -> str:
    return {"optimizer": "--optimizers"}.get(setting, "--" + setting.replace("_", "-").split()[0])


def config_error(prog: str, err: ConfigError) -> None:
    fail(prog, f"{flag_of(err.setting)}={err.value} is not allowed: {err.allowed}")


def parse_list(flag: str, text: str, kind=str) -> tuple:
    try:
        items = tuple(kind(t.strip()) for t in text.split(","))
    except ValueError:
        raise ConfigError(flag, text, f"expected comma-separated {kind.__name__} values") from None
    if not items or any(t == "" for t in items):
        raise ConfigError(flag, text, "expected a non-empty comma-separated list")
    return items


def build_config(args, optimizer_hparams: dict[str, dict], seeds: int, record_predictions: bool):
    """``(config, data)`` from parsed flags, both validated; ``data`` is None unless ``--data``."""
    from jaxopt_cmp.data import load_data_file

    names = parse_list("optimizer", args.optimizers)
    data = load_data_file(args.data) if args.data else None
    n_data = args.n_data if data is None else len(data.x)
    cfg = StudyConfig(
        optimizers=tuple(OptimizerConfig.make(n, **optimizer_hparams.get(n, {})) for n in names),
        data=DataConfig(target=args.target, n_data=n_data, source=args.data or ""),
        model=ModelConfig(hidden=parse_list("hidden", args.hidden, int)),
        train=TrainConfig(iters=args.iters, batch_size=args.batch_size, eval_every=args.eval_every, dtype=args.dtype),
        seed=args.seed,
        seeds=seeds,
        record_predictions=record_predictions,
    )
    if data is not None and data.x.shape[1] != cfg.model.xdim:
        raise ConfigError("data", args.data, f"expected {cfg.model.xdim} input column(s)")
    return cfg, data


def default_out(script: str) -> Path:
    return Path("runs") / f"{script}-{time.strftime('%Y%m%d-%H%M%S')}"


def enable_dtype(dtype: str) -> None:
    """float64 runs need JAX's x64 mode, switched on before any array is made."""
    if dtype == "float64":
        import jax

        jax.config.update("jax_enable_x64", True)


class Progress:
    """A tqdm bar driven by absolute step counts (safe to call repeatedly with one step)."""

    def __init__(self, total: int, desc: str):
        from tqdm import tqdm

        self.bar = tqdm(total=total, desc=desc, unit="it", file=sys.stderr, dynamic_ncols=True)

    def __call__(self, step) -> None:
        step = int(step)
        if step > self.bar.n:
            self.bar.update(step - self.bar.n)

    def close(self) -> None:
        self.bar.close()


def run_main(prog: str, main) -> None:
    """Runs ``main()``; turns bad settings and Ctrl-C into a one-line message and exit status."""
    from jaxopt_cmp.results import ResultsError

    # A parent that ignores SIGINT (a background job, some CI runners) would make Ctrl-C a no-op.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        main()
    except ConfigError as err:
        config_error(prog, err)
    except ResultsError as err:
        fail(prog, str(err))
    except KeyboardInterrupt:
        # Results are written only after training, each file renamed into place whole, so
        # nothing is half-written; _exit also stops XLA's worker threads mid-run at once.
        sys.stderr.write(f"\n{prog}: interrupted; no new results.json was written\n")
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(EXIT_INTERRUPTED)

"""Benchmark jaxopt_cmp's compiled, vmapped engine beside the PyTorch ways of doing the same job.

    python scripts/bench.py                  # full: seed study + S = 1, 8, 32, 128, 512 (< 10 min on 2 cores)
    python scripts/bench.py --quick          # about a minute: shorter seed study, S = 8, 128
    python scripts/bench.py --torch-compile  # also torch.compile of the stacked step (slow to compile on CPU)

Implementations, each in its own worker process (so each has its own peak RSS):
  jax            jaxopt_cmp.study.compile_study: one lax.scan, vmapped over seeds, jitted once
  torch-eager    torch_ref's loop: one model and optimizer per run (the seed notebook's way), 1 thread
  torch-batched  all seeds as one stacked model (baddbmm) per optimizer, torch.optim on the stacks
  torch-func     torch.func: vmap(grad) through functional_call, torch.optim on the stacks
  torch-compile  torch.compile of torch-batched's step (only with --torch-compile)

The parent interleaves the implementations' repeats (rotating their order), so every ratio is
jax's rate over another's *in the same repeat*; medians with min-max are reported. Writes
bench.json, bench.md (tables for the README) and throughput.png into --out.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import multiprocessing
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _cli  # noqa: E402

from jaxopt_cmp.checks import ConfigError, check_int, check_real  # noqa: E402

PROG = "bench.py"
SCRIPTS = Path(__file__).resolve().parent
SCHEMA = "jaxopt_cmp.bench/1"
OPTIMIZERS = ("sgd", "momentum", "adam")
LR = 1e-2
JAX, EAGER, BATCHED, FUNC, COMPILE = "jax", "torch-eager", "torch-batched", "torch-func", "torch-compile"
MATMUL = "matmul"  # the ceiling, measured in every repeat beside the implementations
DATA_STREAM = 0  # torch_ref.train.seed_generator's purpose id for a seed's data
SEED_STUDY_ITERS, SEED_N_DATA = 10_000, 10_000  # the seed study, as compare.py runs it by default
# Throughput runs fit 1,000 points, not 10,000: a model-step's cost does not depend on n_data, but
# each full-data evaluation inside a compiled jax run does (about 100 model-steps' time per model at
# 10,000 points: 1.3M tanh), and at S=512 two of them would take most of the benchmark's time.
THROUGHPUT_N_DATA = 1_000
# Compile time called flat when it grows like x^k with k <= FLAT (10x the iterations or seeds: <= 26% more);
# run time called linear in iterations when the least-squares line t = a + b I misses no point by more than
# LINEAR of the longest run's time (a holds the fixed costs: data, init, the evaluation at step 0).
FLAT, LINEAR = 0.1, 0.05
THREADS_MARGIN = 1.2  # torch uses more threads only if a step is at least this much faster


@dataclass(frozen=True)
class Settings:
    """Everything the parent and the workers need to know (picklable; built from the flags)."""

    mode: str
    iters: int
    eval_every: int
    fast_seed_iters: int
    seeds_list: tuple[int, ...]
    scaling_iters: tuple[int, ...]
    repeats: int
    target_s: float
    jax_model_steps: int
    jax_min_iters: int
    torch_threads: tuple[int, ...]
    torch_compile: bool
    compare: bool
    ceiling_size: int
    seed: int = 0


# Command line


def parse_args(argv=None):
    p = _cli.Parser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--quick", action="store_true", help="about a minute: seed study of 1,000 iterations, S = 8,128, 2 repeats"
    )
    p.add_argument(
        "--iters",
        type=int,
        default=None,
        help="seed-study iterations for jax and torch-eager (default: 10000; --quick 1000)",
    )
    p.add_argument(
        "--eval-every",
        type=int,
        default=500,
        help="seed study: full-data MSE every N iterations (default: %(default)s)",
    )
    p.add_argument(
        "--seeds-list",
        default=None,
        help="seeds per optimizer for the throughput runs (default: 1,8,32,128,512; --quick 8,128)",
    )
    p.add_argument(
        "--scaling-iters",
        default=None,
        help="jax iteration counts (S=1, besides the seed study's) for the linearity and compile checks "
        "(default: 1000,2000,4000; --quick 4000)",
    )
    p.add_argument("--repeats", type=int, default=None, help="timed repeats per measurement (default: 3; --quick 2)")
    p.add_argument(
        "--target-s",
        type=float,
        default=None,
        help="seconds per timed torch repeat, steps calibrated to it (default: 1.0; --quick 0.3)",
    )
    p.add_argument(
        "--torch-threads",
        default="auto",
        help="intra-op threads of the stacked torch implementations: auto (fastest of 1 and all cores, "
        "measured per workload) or a number; torch-eager always runs on 1 (default: %(default)s)",
    )
    p.add_argument("--torch-compile", action="store_true", help="also time torch.compile of the stacked step")
    p.add_argument("--no-compare", action="store_true", help="skip timing the whole compare.py run")
    p.add_argument(
        "--ceiling-size",
        type=int,
        default=None,
        help="n of the n^3 float32 matmul that measures the ceiling (default: 4096; --quick 2048)",
    )
    p.add_argument("--out", default=None, help="output directory (default: runs/bench-<time>)")
    p.add_argument("--overwrite", action="store_true", help="allow writing into a non-empty --out")
    return p.parse_args(argv)


def make_settings(args) -> Settings:
    """Fills mode defaults and validates every setting (``ConfigError`` names the flag)."""
    quick = args.quick
    pick = lambda value, full, fast: (fast if quick else full) if value is None else value
    iters = pick(args.iters, SEED_STUDY_ITERS, 1000)
    seeds_list = _cli.parse_list("seeds_list", pick(args.seeds_list, "1,8,32,128,512", "8,128"), int)
    scaling = _cli.parse_list("scaling_iters", pick(args.scaling_iters, "1000,2000,4000", "4000"), int)
    threads = args.torch_threads.strip()
    if threads == "auto":
        candidates = tuple(sorted({1, os.cpu_count() or 1}))
    elif threads.isdigit() and int(threads) >= 1:
        candidates = (int(threads),)
    else:
        raise ConfigError("torch_threads", args.torch_threads, "expected auto or an integer >= 1")
    settings = Settings(
        mode="quick" if quick else "full",
        iters=iters,
        eval_every=args.eval_every,
        fast_seed_iters=min(iters, 500 if quick else 1000),
        seeds_list=tuple(sorted(set(seeds_list))),
        scaling_iters=scaling,
        repeats=pick(args.repeats, 3, 2),
        target_s=pick(args.target_s, 1.0, 0.3),
        jax_model_steps=20_000 if quick else 40_000,
        jax_min_iters=128,
        torch_threads=candidates,
        torch_compile=args.torch_compile,
        compare=not args.no_compare,
        ceiling_size=pick(args.ceiling_size, 4096, 2048),
    )
    for name in ("iters", "eval_every", "repeats"):
        check_int(name, getattr(settings, name))
    check_int("ceiling_size", settings.ceiling_size, low=16)
    for name in ("seeds_list", "scaling_iters"):
        for v in getattr(settings, name):
            check_int(name, v)
    check_real("target_s", settings.target_s, 0.0, 3600.0, low_open=True)
    return settings


# What is counted


def flops_per_model_step(model_cfg, batch_size: int) -> int:
    """Forward ``2 B sum(fan_in fan_out)`` over the dense layers plus a backward of twice that."""
    widths = (model_cfg.xdim, *model_cfg.hidden, model_cfg.ydim)
    forward = 2 * batch_size * sum(a * b for a, b in zip(widths[:-1], widths[1:]))
    return 3 * forward


def study_config(seeds: int, iters: int, eval_every: int, n_data: int = SEED_N_DATA, seed: int = 0):
    """The seed study's problem (sgd, momentum, adam at lr 1e-2) with S seeds; no predictions kept."""
    from jaxopt_cmp.config import DataConfig, OptimizerConfig, StudyConfig, TrainConfig

    return StudyConfig(
        optimizers=tuple(OptimizerConfig.make(n, lr=LR) for n in OPTIMIZERS),
        data=DataConfig(n_data=n_data),
        train=TrainConfig(iters=iters, eval_every=eval_every),
        seed=seed,
        seeds=seeds,
        record_predictions=False,
    )


def peak_rss_mb() -> float:
    """This process's peak resident set so far (``ru_maxrss`` is in KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024 if sys.platform == "darwin" else 1024)


def timed(fn, *args) -> tuple[object, dict]:
    """``fn(*args)`` and its wall seconds and the CPU seconds this process spent (all threads)."""
    r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    value = fn(*args)
    wall, r1 = time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF)
    return value, {"wall_s": wall, "cpu_s": (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)}


# Workers (each in its own process)


class JaxWorker:
    """Compiled studies via ``jaxopt_cmp.study.compile_study``; times whole compiled calls."""

    def __init__(self, settings: Settings):
        import jax

        self.jax, self.settings, self.runs = jax, settings, []
        self.baseline_mb = peak_rss_mb()
        # One throwaway compile, so one-time costs (backend start, first tracing) are nobody's compile time.
        self.setup([(1, 2, 2, THROUGHPUT_N_DATA)])
        self.teardown()

    def info(self) -> dict:
        from jaxopt_cmp.study import versions

        return {"versions": versions(), "baseline_rss_mb": self.baseline_mb}

    def setup(self, configs) -> list[dict]:
        """Compiles each ``(seeds, iters, eval_every, n_data)`` study and calls it once (untimed warm-up)."""
        from jaxopt_cmp.study import compile_study

        out = []
        for seeds, iters, eval_every, n_data in configs:
            cfg = study_config(seeds, iters, eval_every, n_data)
            (compiled, keys, grid, compile_s), cost = timed(compile_study, cfg)
            run = lambda c=compiled, k=keys, g=grid: self.jax.block_until_ready(c(k, g))
            _, first = timed(run)
            self.runs.append(run)
            stats = compiled.memory_analysis()
            out.append(
                {
                    "seeds": seeds,
                    "iters": iters,
                    "compile_s": compile_s,
                    "compile_cpu_s": cost["cpu_s"],
                    "first_call_s": first["wall_s"],
                    "xla_temp_mb": stats.temp_size_in_bytes / 2**20 if stats is not None else None,
                }
            )
        return out

    def time(self) -> list[dict]:
        return [timed(run)[1] for run in self.runs]

    def teardown(self) -> float:
        self.runs = []
        gc.collect()
        return peak_rss_mb()


class MatmulWorker:
    """The ceiling: GFLOP/s of one jitted ``n^3`` float32 matmul per call. A process of its own, so
    its arrays count in no implementation's peak RSS; timed in every repeat, so each ratio to it
    compares runs made under the same load."""

    def __init__(self, settings: Settings):
        import jax

        jnp, n = jax.numpy, settings.ceiling_size
        key_a, key_b = jax.random.split(jax.random.key(0))
        self.a, self.b = (jax.random.normal(k, (n, n), jnp.float32) for k in (key_a, key_b))
        matmul = jax.jit(jnp.matmul)
        self.matmul = lambda: jax.block_until_ready(matmul(self.a, self.b))
        self.matmul()
        self.flops = 2 * n**3

    def info(self) -> dict:
        return {"baseline_rss_mb": peak_rss_mb()}

    def time(self) -> dict:
        _, cost = timed(self.matmul)
        return {**cost, "gflops": self.flops / cost["wall_s"] / 1e9}


class TorchRuns:
    """S seeds x the optimizers in one torch implementation: data, weights and batches made up front.

    Seed s's data and initial weights come from ``torch_ref.train``'s seeded generators; batch
    indices (with replacement, as the JAX engine draws them) from this object's own generator.
    """

    def __init__(self, impl: str, seeds: int, n_data: int, seed: int):
        import torch

        from torch_ref import batched
        from torch_ref.data import make_data
        from torch_ref.train import initial_model, seed_generator, train_step

        self.torch, self.batched, self.impl, self.train_step = torch, batched, impl, train_step
        cfg = study_config(seeds, 1, 1, n_data, seed)
        self.n_data, self.batch_size, self.seeds = cfg.data.n_data, cfg.train.batch_size, seeds
        data = [make_data(seed_generator(seed, s, DATA_STREAM), cfg.data) for s in range(seeds)]
        self.x_SN1 = torch.stack([x for x, _ in data])
        self.y_SN1 = torch.stack([y for _, y in data])
        inits = [initial_model(cfg, s) for s in range(seeds)]
        self.generator = torch.Generator().manual_seed(seed)
        self.rows = torch.arange(seeds)[:, None]
        self.set_batches(16)
        if impl == EAGER:
            self._build_eager(inits)
        elif impl == FUNC:
            self.runs = [batched.func_runs(n, inits, lr=LR) for n in OPTIMIZERS]
            self.grad_fn, self.loss_fn = batched.make_func_grad(inits[0]), batched.make_func_loss(inits[0])
        else:
            self.runs = [batched.make_batched(n, batched.stack_models(inits), lr=LR) for n in OPTIMIZERS]
            self.compiled = None
            if impl == COMPILE:
                torch._dynamo.reset()  # a fresh compile per workload, never dynamo's eager fallback
                self.compiled = torch.compile(self._stacked_step, dynamic=False)

    def _build_eager(self, inits) -> None:
        import copy

        from torch_ref.optimizers import make_optimizer

        self.models = []
        for init in inits:
            models = [copy.deepcopy(init) for _ in OPTIMIZERS]
            self.models.append([(m, make_optimizer(n, m.parameters(), lr=LR)) for m, n in zip(models, OPTIMIZERS)])

    def set_batches(self, steps: int) -> None:
        shape = (steps, self.seeds, self.batch_size)
        self.idx_TSB = self.torch.randint(0, self.n_data, shape, generator=self.generator)

    def _stacked_step(self, x_SB1, y_SB1):
        for run in self.runs:
            self.batched.batched_step(run, x_SB1, y_SB1)

    def step(self, t: int) -> None:
        """One update of every run (all optimizers, all seeds) on step t's minibatches."""
        idx_SB = self.idx_TSB[t % len(self.idx_TSB)]
        if self.impl == EAGER:
            for s, runs in enumerate(self.models):
                x, y = self.x_SN1[s, idx_SB[s]], self.y_SN1[s, idx_SB[s]]
                for model, optimizer in runs:
                    self.train_step(model, optimizer, x, y)
            return
        x_SB1, y_SB1 = self.x_SN1[self.rows, idx_SB], self.y_SN1[self.rows, idx_SB]
        if self.impl == FUNC:
            for run in self.runs:
                self.batched.func_step(self.grad_fn, run, x_SB1, y_SB1)
        else:
            (self.compiled or self._stacked_step)(x_SB1, y_SB1)

    def evaluate(self) -> list[float]:
        """Every run's full-data MSE."""
        torch, batched = self.torch, self.batched
        with torch.no_grad():
            if self.impl == EAGER:
                return [
                    torch.mean((m(x) - y) ** 2).item()
                    for runs, x, y in zip(self.models, self.x_SN1, self.y_SN1)
                    for m, _ in runs
                ]
            if self.impl == FUNC:
                losses = [
                    self.loss_fn({k: p.detach() for k, p in run.params.items()}, self.x_SN1, self.y_SN1)
                    for run in self.runs
                ]
            else:
                losses = [batched.batched_mse(run.params, self.x_SN1, self.y_SN1) for run in self.runs]
            return torch.cat(losses).tolist()

    def train(self, steps: int, eval_steps: frozenset[int] = frozenset()) -> None:
        if 0 in eval_steps:
            self.evaluate()
        for t in range(steps):
            self.step(t)
            if t + 1 in eval_steps:
                self.evaluate()


class TorchWorker:
    """One torch implementation: a seed study (``iters`` given) or a throughput run per setup."""

    def __init__(self, impl: str, settings: Settings):
        import torch

        self.torch, self.impl, self.settings = torch, impl, settings
        self.cores = torch.get_num_threads()
        torch.set_num_threads(1)
        self.baseline_mb = peak_rss_mb()
        self.job = None

    def info(self) -> dict:
        return {
            "versions": {"torch": self.torch.__version__},
            "baseline_rss_mb": self.baseline_mb,
            "torch_default_threads": self.cores,
        }

    def setup(
        self, seeds: int, n_data: int, iters: int | None = None, eval_every: int = 1, threads: int | None = None
    ) -> dict:
        """Builds the runs and picks threads and steps. With ``iters``: a study-like run of that many
        steps with full-data evaluations; else as many steps as take about ``target_s``."""
        s = self.settings
        if self.impl == EAGER and iters is not None:  # the reference loop itself, as compare.py runs it
            from torch_ref.train import run_study

            run_study(study_config(seeds, 2, 1, n_data, s.seed))  # warm-up: a process's first torch steps are slow
            self.job = ("study", study_config(seeds, iters, eval_every, n_data, s.seed))
            return {"threads": 1, "steps": iters}
        runs = TorchRuns(self.impl, seeds, n_data, s.seed)
        info: dict = {}
        if self.impl == COMPILE:
            self.torch.set_num_threads(threads or s.torch_threads[-1])
            info["compile_s"] = timed(lambda: [runs.step(t) for t in range(3)])[1]["wall_s"]
        candidates = (1,) if self.impl == EAGER else (threads,) if threads else s.torch_threads
        info["threads"], step_s, info["calibration_s_per_step"] = self._pick_threads(runs, candidates)
        if iters is None:
            steps = max(2, min(100_000, round(s.target_s / step_s)))
            eval_steps = frozenset()
        else:
            steps = iters
            eval_steps = frozenset(study_config(seeds, iters, eval_every, n_data).train.eval_steps)
        runs.set_batches(steps)
        runs.train(1)  # warm the new batch tensor
        self.job = ("runs", runs, steps, eval_steps)
        return {**info, "steps": steps}

    def _pick_threads(self, runs: TorchRuns, candidates) -> tuple[int, float, dict]:
        """The fastest thread count: seconds per step of each, after one warm-up step."""
        per_step = {}
        for threads in candidates:
            self.torch.set_num_threads(threads)
            runs.train(1)
            n, start = 0, time.perf_counter()
            while n < 1 or time.perf_counter() - start < min(0.2, self.settings.target_s / 4):
                runs.step(n)
                n += 1
            per_step[threads] = (time.perf_counter() - start) / n
        # More threads only when clearly faster: on a shared machine OpenMP's barriers can make a
        # multi-threaded step many times slower whenever another process holds a core.
        best = min(candidates)
        for threads in sorted(per_step):
            if per_step[threads] * THREADS_MARGIN < per_step[best]:
                best = threads
        self.torch.set_num_threads(best)
        return best, per_step[best], {str(k): v for k, v in per_step.items()}

    def time(self) -> dict:
        if self.job[0] == "study":
            from torch_ref.train import run_study

            result, cost = timed(run_study, self.job[1])
            return {**cost, "train_s": result.timing["train_s"]}
        _, runs, steps, eval_steps = self.job
        return timed(runs.train, steps, eval_steps)[1]

    def teardown(self) -> float:
        self.job = None
        gc.collect()
        return peak_rss_mb()

    def ceiling(self, size: int, repeats: int) -> dict:
        """GFLOP/s of torch's ``size^3`` float32 matmul on all cores (for reference)."""
        torch = self.torch
        torch.set_num_threads(self.cores)
        g = torch.Generator().manual_seed(0)
        a, b = (torch.randn(size, size, generator=g) for _ in range(2))
        a @ b
        walls = [timed(torch.matmul, a, b)[1]["wall_s"] for _ in range(repeats)]
        return {"size": size, "threads": self.cores, "gflops": [2 * size**3 / w / 1e9 for w in walls]}


def worker_main(impl: str, conn, settings: Settings) -> None:
    """A worker process: build the implementation, then answer ``(command, kwargs)`` until "stop"."""
    try:
        worker = {JAX: JaxWorker, MATMUL: MatmulWorker}.get(impl, TorchWorker)
        worker = worker(settings) if impl in (JAX, MATMUL) else worker(impl, settings)
        conn.send(("ok", worker.info()))
        while True:
            command, kwargs = conn.recv()
            if command == "stop":
                return
            conn.send(("ok", getattr(worker, command)(**kwargs)))
    except (EOFError, KeyboardInterrupt):
        return
    except BaseException:
        conn.send(("error", traceback.format_exc()))


class Pool:
    """One spawned worker process per implementation; calls are synchronous, one at a time."""

    def __init__(self, impls, settings: Settings):
        ctx = multiprocessing.get_context("spawn")
        self.conns, self.procs, self.info = {}, {}, {}
        for impl in impls:
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=worker_main, args=(impl, child, settings), name=f"bench-{impl}", daemon=True)
            proc.start()
            self.conns[impl], self.procs[impl] = parent, proc
        for impl in impls:
            self.info[impl] = self._reply(impl)

    def _reply(self, impl: str):
        try:
            status, value = self.conns[impl].recv()
        except EOFError:
            raise RuntimeError(f"the {impl} worker died (exit code {self.procs[impl].exitcode})") from None
        if status == "error":
            raise RuntimeError(f"the {impl} worker failed:\n{value}")
        return value

    def call(self, impl: str, command: str, **kwargs):
        self.conns[impl].send((command, kwargs))
        return self._reply(impl)

    def close(self) -> None:
        """Asks every worker to stop, then waits for them (they shut down in parallel)."""
        for conn in self.conns.values():
            try:
                conn.send(("stop", {}))
            except OSError:
                pass
        for proc in self.procs.values():
            proc.join(timeout=10)


# Measuring (parent)


def summary(values) -> dict:
    """Median, min and max of the finite values (None when there are none), and the values."""
    finite = [v for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return {"median": None, "min": None, "max": None, "values": list(values)}
    return {"median": statistics.median(finite), "min": min(finite), "max": max(finite), "values": list(values)}


def rotated(items, r: int) -> list:
    k = r % len(items)
    return list(items[k:]) + list(items[:k])


def interleave(pool: Pool, impls, repeats: int, log) -> tuple[dict[str, list], list[float]]:
    """Each repeat times every implementation and the matmul ceiling once, in an order rotated per
    repeat; the timings per implementation and the ceiling's GFLOP/s per repeat."""
    jobs = [*impls, MATMUL]
    times = {job: [] for job in jobs}
    for r in range(repeats):
        for job in rotated(jobs, r):
            times[job].append(pool.call(job, "time"))
        log(f"  repeat {r + 1}/{repeats} done")
    return times, [t["gflops"] for t in times.pop(MATMUL)]


def ratios(rates: dict[str, list[float]], over: list[str]) -> dict[str, dict]:
    """jax's rate over each implementation's, repeat by repeat."""
    div = lambda a, b: a / b if a and b and math.isfinite(a) and math.isfinite(b) else None
    return {impl: summary([div(j, t) for j, t in zip(rates[JAX], rates[impl])]) for impl in over}


def measure_seed_study(pool: Pool, impls, s: Settings, log) -> tuple[dict, list[dict], dict]:
    """The seed study (S=1) for every implementation, plus jax's iteration-scaling points."""
    log(f"seed study: 3 optimizers x 1 seed, {s.iters} iterations, eval every {s.eval_every}")
    scaling = sorted({s.iters, *s.scaling_iters})
    jax_setup = pool.call(JAX, "setup", configs=[(1, i, s.eval_every, SEED_N_DATA) for i in scaling])
    k_seed = scaling.index(s.iters)  # the seed study is one of jax's scaling points
    setups = {JAX: {"compile_s": jax_setup[k_seed]["compile_s"], "steps": s.iters, "threads": None}}
    for impl in impls[1:]:
        iters = s.iters if impl == EAGER else s.fast_seed_iters
        threads = setups[BATCHED]["threads"] if impl == COMPILE else None
        setups[impl] = pool.call(
            impl, "setup", seeds=1, n_data=SEED_N_DATA, iters=iters, eval_every=s.eval_every, threads=threads
        )
    times, gflops = interleave(pool, impls, s.repeats, log)
    memory = {impl: pool.call(impl, "teardown") for impl in impls}
    rates, doc = {}, {"iters": s.iters, "eval_every": s.eval_every, "impls": {}, "ceiling_gflops": summary(gflops)}
    for impl in impls:
        walls = [t[k_seed]["wall_s"] if impl == JAX else t.get("train_s", t["wall_s"]) for t in times[impl]]
        steps = setups[impl]["steps"]
        rates[impl] = [len(OPTIMIZERS) * steps / w for w in walls]
        doc["impls"][impl] = {
            **setups[impl],
            "model_steps": len(OPTIMIZERS) * steps,
            "time_s": summary(walls),
            "rate": summary(rates[impl]),
            "cpu_util": _cpu_util([t[k_seed] for t in times[impl]] if impl == JAX else times[impl]),
        }
    doc["ratio_jax_over"] = ratios(rates, [i for i in impls if i != JAX])
    doc["torch_eager_train_s_10k"] = {  # the reference loop's time for the seed notebook's 10,000 steps
        "value": doc["impls"][EAGER]["time_s"]["median"] * SEED_STUDY_ITERS / s.iters,
        "extrapolated": s.iters != SEED_STUDY_ITERS,
    }
    points = []
    for k, i in enumerate(scaling):
        compile_s = {key: jax_setup[k][key] for key in ("compile_s", "compile_cpu_s")}
        points.append({"iters": i, **compile_s, "time_s": summary([t[k]["wall_s"] for t in times[JAX]])})
    return doc, points, memory


def _cpu_util(times: list[dict]) -> float:
    """CPU seconds per wall second (cores kept busy), median over repeats."""
    return statistics.median(t["cpu_s"] / t["wall_s"] for t in times)


def jax_iters(seeds: int, s: Settings) -> int:
    """Iterations of jax's longer throughput run: about ``jax_model_steps``, a power of two."""
    target = s.jax_model_steps / (len(OPTIMIZERS) * seeds)
    return max(s.jax_min_iters, 2 ** max(0, int(math.log2(max(target, 1)))))


def measure_throughput(pool: Pool, impls, seeds: int, s: Settings, flops: int, log) -> tuple[dict, dict]:
    """Steady-state training rate with S seeds per optimizer, every implementation; jax's share of
    the matmul ceiling measured in the same repeats (``flops`` per model-step)."""
    long = jax_iters(seeds, s)
    short = long // 4
    log(f"S={seeds}: jax {short} and {long} iterations, torch ~{s.target_s:g} s per repeat")
    n = THROUGHPUT_N_DATA
    jax_setup = pool.call(JAX, "setup", configs=[(seeds, short, short, n), (seeds, long, long, n)])
    setups = {
        JAX: {
            "iters": [short, long],
            "threads": None,
            **{key: [c[key] for c in jax_setup] for key in ("compile_s", "compile_cpu_s", "xla_temp_mb")},
        }
    }
    for impl in impls[1:]:
        threads = setups[BATCHED]["threads"] if impl == COMPILE else None
        setups[impl] = pool.call(impl, "setup", seeds=seeds, n_data=n, threads=threads)
    times, gflops = interleave(pool, impls, s.repeats, log)
    memory = {impl: pool.call(impl, "teardown") for impl in impls}
    per_step = len(OPTIMIZERS) * seeds
    rates = {JAX: []}
    for t_short, t_long in times[JAX]:
        diff = t_long["wall_s"] - t_short["wall_s"]
        rates[JAX].append(per_step * (long - short) / diff if diff > 0 else None)
    share = lambda rate, g: rate * flops / (g * 1e9) if rate else None
    doc = {
        "S": seeds,
        "ceiling_gflops": summary(gflops),
        "impls": {
            JAX: {
                **setups[JAX],
                "rate": summary(rates[JAX]),
                "fraction_of_ceiling": summary([share(r, g) for r, g in zip(rates[JAX], gflops)]),
                "end_to_end_rate": summary([per_step * long / t[1]["wall_s"] for t in times[JAX]]),
                "time_s": {
                    "short": summary([t[0]["wall_s"] for t in times[JAX]]),
                    "long": summary([t[1]["wall_s"] for t in times[JAX]]),
                },
                "cpu_util": _cpu_util([t[1] for t in times[JAX]]),
            }
        },
    }
    for impl in impls[1:]:
        rates[impl] = [per_step * setups[impl]["steps"] / t["wall_s"] for t in times[impl]]
        doc["impls"][impl] = {
            **setups[impl],
            "rate": summary(rates[impl]),
            "time_s": summary([t["wall_s"] for t in times[impl]]),
            "cpu_util": _cpu_util(times[impl]),
        }
    torch_impls = [i for i in impls if i != JAX]
    doc["ratio_jax_over"] = ratios(rates, torch_impls)
    best = max(torch_impls, key=lambda i: doc["impls"][i]["rate"]["median"] or 0)
    doc["best_torch"] = best
    doc["ratio_jax_over_best_torch"] = doc["ratio_jax_over"][best]
    return doc, memory


def measure_compare(s: Settings, log) -> dict:
    """Wall time of the whole ``compare.py --no-plots`` (a fresh process: import, compile, train)."""
    runs = []
    with tempfile.TemporaryDirectory(prefix="bench-compare-") as tmp:
        for i in range(1 if s.mode == "quick" else min(s.repeats, 3)):
            cmd = [sys.executable, str(SCRIPTS / "compare.py"), "--no-plots", "--out", str(Path(tmp) / f"run{i}")]
            start = time.perf_counter()
            proc = subprocess.run(cmd, capture_output=True, text=True)
            wall = time.perf_counter() - start
            if proc.returncode != 0:
                raise RuntimeError(f"compare.py failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
            found = re.search(r"compile ([\d.]+) s, train ([\d.]+) s", proc.stdout)
            runs.append(
                {
                    "wall_s": wall,
                    "compile_s": float(found[1]) if found else None,
                    "train_s": float(found[2]) if found else None,
                }
            )
            log(f"  compare.py run {i + 1}: {wall:.1f} s")
    return {
        "command": "python scripts/compare.py --no-plots --out <tmp>",
        "runs": runs,
        "wall_s": summary([r["wall_s"] for r in runs]),
    }


def machine_info() -> dict:
    model = platform.processor() or platform.machine()
    try:
        text = Path("/proc/cpuinfo").read_text()
        found = re.search(r"^model name\s*:\s*(.+)$", text, re.M)
        model = found[1].strip() if found else model
    except OSError:
        pass
    mem_gb = None
    try:
        found = re.search(r"^MemTotal:\s*(\d+) kB", Path("/proc/meminfo").read_text(), re.M)
        mem_gb = round(int(found[1]) / 2**20, 1) if found else None
    except OSError:
        pass
    cores = os.cpu_count()
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else cores
    return {
        "cpu_model": model,
        "cores": cores,
        "usable_cores": usable,
        "memory_gb": mem_gb,
        "os": platform.platform(),
        "python": platform.python_version(),
    }


def run_bench(s: Settings, log) -> dict:
    from jaxopt_cmp.config import ModelConfig, TrainConfig

    impls = [JAX, EAGER, BATCHED, FUNC] + ([COMPILE] if s.torch_compile else [])
    started = time.time()
    doc = {
        "schema": SCHEMA,
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "mode": s.mode,
        "argv": sys.argv[1:],
        "machine": {**machine_info(), "loadavg_start": list(os.getloadavg())},
        "settings": {
            **asdict(s),
            "optimizers": list(OPTIMIZERS),
            "lr": LR,
            "seed_study_n_data": SEED_N_DATA,
            "throughput_n_data": THROUGHPUT_N_DATA,
            "batch_size": TrainConfig().batch_size,
            "model": "1-64-64-1 tanh MLP",
            "flops_per_model_step": flops_per_model_step(ModelConfig(), TrainConfig().batch_size),
        },
    }
    flops = doc["settings"]["flops_per_model_step"]
    log(f"starting {len(impls) + 1} worker processes: {', '.join(impls)} and the {MATMUL} ceiling")
    pool = Pool([*impls, MATMUL], s)
    try:
        versions = {**pool.info[JAX]["versions"], **pool.info[EAGER]["versions"]}
        doc["versions"] = versions
        doc["machine"].update(
            jax_device=versions["device"],
            jax_platform=versions["platform"],
            jax_device_count=int(versions["device_count"]),
        )
        memory = {i: {"after_import": pool.info[i]["baseline_rss_mb"]} for i in impls}
        doc["seed_study"], iter_points, mem = measure_seed_study(pool, impls, s, log)
        for i in impls:
            memory[i]["seed study"] = mem[i]
        doc["throughput"] = []
        for seeds in s.seeds_list:
            point, mem = measure_throughput(pool, impls, seeds, s, flops, log)
            doc["throughput"].append(point)
            for i in impls:
                memory[i][f"S={seeds}"] = mem[i]
        doc["memory"] = memory
        doc["compare_py"] = measure_compare(s, log) if s.compare else None
        log(f"torch's {s.ceiling_size}^3 matmul, for reference")
        torch_ceiling = pool.call(BATCHED, "ceiling", size=s.ceiling_size, repeats=max(3, s.repeats))
    finally:
        pool.close()
    every = [g for w in [doc["seed_study"], *doc["throughput"]] for g in w["ceiling_gflops"]["values"]]
    doc["ceiling"] = {
        "size": s.ceiling_size,
        "by": "jax.jit(jnp.matmul), float32, once per repeat",
        "gflops": summary(every),
        "torch_gflops": {**summary(torch_ceiling["gflops"]), "threads": torch_ceiling["threads"]},
    }
    doc["scaling"] = scaling_doc(iter_points, doc["throughput"])
    doc["machine"]["loadavg_end"] = list(os.getloadavg())
    doc["elapsed_s"] = time.time() - started
    doc["targets"] = targets(doc)
    return doc


# Judging


def scaling_doc(iter_points: list[dict], throughput: list[dict]) -> dict:
    """Linearity of jax time in iterations (least squares t = a + b I) and compile-time flatness."""
    xs = [p["iters"] for p in iter_points]
    ys = [p["time_s"]["median"] for p in iter_points]
    fit = None
    if len(xs) >= 2:
        mx, my = statistics.fmean(xs), statistics.fmean(ys)
        b = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
        a = my - b * mx
        residual = max(abs(y - (a + b * x)) for x, y in zip(xs, ys)) / max(ys)
        fit = {
            "intercept_s": a,
            "s_per_1k_iters": 1000 * b,
            "max_residual_of_longest": residual,
            "linear": residual <= LINEAR,
        }
    by_seeds = [
        {"S": p["S"], **{k: p["impls"][JAX][k] for k in ("iters", "compile_s", "compile_cpu_s")}} for p in throughput
    ]
    seeds_x = [p["S"] for p in by_seeds for _ in p["iters"]]
    return {
        "iters": iter_points,
        "iters_fit": fit,
        "compile_vs_iters": flatness(
            [p["iters"] for p in iter_points],
            [p["compile_s"] for p in iter_points],
            [p["compile_cpu_s"] for p in iter_points],
        ),
        "seeds": by_seeds,
        "compile_vs_seeds": flatness(
            seeds_x, [c for p in by_seeds for c in p["compile_s"]], [c for p in by_seeds for c in p["compile_cpu_s"]]
        ),
    }


def flatness(xs: list[float], wall: list[float], cpu: list[float]) -> dict | None:
    """How compile time grows with x: the log-log least-squares slope k (time ~ x^k) of its CPU seconds,
    which other processes' load inflates far less than wall seconds. None with fewer than two x values."""
    if len(set(xs)) < 2:
        return None
    lx, ly = [math.log(x) for x in xs], [math.log(c) for c in cpu]
    mx, my = statistics.fmean(lx), statistics.fmean(ly)
    k = sum((a - mx) * (b - my) for a, b in zip(lx, ly)) / sum((a - mx) ** 2 for a in lx)
    return {
        "x_min": min(xs),
        "x_max": max(xs),
        "min_s": min(wall),
        "max_s": max(wall),
        "cpu_min_s": min(cpu),
        "cpu_max_s": max(cpu),
        "loglog_slope": k,
        "flat": k <= FLAT,
    }


def targets(doc: dict) -> list[dict]:
    """The issue's targets against what was measured; ``met`` is None where nothing was measured."""
    out = []
    add = lambda name, measured, met: out.append({"target": name, "measured": measured, "met": met})
    seed = doc["seed_study"]["ratio_jax_over"][EAGER]
    add(
        "seed study training >= 25x the torch eager loop (model-steps/s)",
        f"{_x(seed)} ({doc['seed_study']['iters']:,} iterations)",
        _ge(seed["median"], 25),
    )
    torch_s, extrapolated = (doc["seed_study"]["torch_eager_train_s_10k"][k] for k in ("value", "extrapolated"))
    if doc["compare_py"]:
        wall = doc["compare_py"]["wall_s"]["median"]
        note = " (torch time extrapolated from a shorter run)" if extrapolated else ""
        add(
            "whole compare.py wall time < torch eager loop's training time (10,000 iterations)",
            f"{wall:.1f} s vs {torch_s:.1f} s{note}",
            wall < torch_s,
        )
    else:
        add("whole compare.py wall time < torch eager loop's training time", "not measured (--no-compare)", None)
    point = next((p for p in doc["throughput"] if p["S"] == 128), None)
    flops = doc["settings"]["flops_per_model_step"]
    if point:
        best = point["ratio_jax_over_best_torch"]
        add(
            "S=128: jax >= 5x the best torch implementation",
            f"{_x(best)} over {point['best_torch']}",
            _ge(best["median"], 5),
        )
        frac = point["impls"][JAX]["fraction_of_ceiling"]
        add(
            "S=128: jax >= 50% of the measured matmul ceiling",
            f"{_pcts(frac)} ({_gflops(point['impls'][JAX]['rate']['median'], flops)}; ceiling in the same repeats "
            f"{point['ceiling_gflops']['median']:.0f} GFLOP/s)",
            _ge(frac["median"], 0.5),
        )
    else:
        add("S=128 targets (5x best torch, 50% of ceiling)", "not measured (128 not in --seeds-list)", None)
    sc = doc["scaling"]
    for label, key in (("iterations", "compile_vs_iters"), ("seeds", "compile_vs_seeds")):
        c = sc[key]
        add(
            f"compile time flat in {label} (CPU s ~ {label}^k, k <= {FLAT})",
            f"k = {c['loglog_slope']:.3f} over {c['x_min']:,}-{c['x_max']:,} {label}: CPU {c['cpu_min_s']:.2f}-"
            f"{c['cpu_max_s']:.2f} s, wall {c['min_s']:.2f}-{c['max_s']:.2f} s"
            if c
            else "not measured",
            c["flat"] if c else None,
        )
    fit = sc["iters_fit"]
    add(
        f"jax time linear in iterations (t = a + b·I misses no point by more than {LINEAR:.0%} of the longest run)",
        f"b = {fit['s_per_1k_iters']:.3f} s per 1k iterations, a = {fit['intercept_s']:.3f} s; largest miss "
        f"{fit['max_residual_of_longest']:.1%}"
        if fit
        else "not measured",
        fit["linear"] if fit else None,
    )
    return out


def _ge(value, bound):
    return None if value is None else value >= bound


# Reporting


def _x(s: dict) -> str:
    return "n/a" if s["median"] is None else f"{s['median']:.1f}x ({s['min']:.1f}-{s['max']:.1f})"


def _rate(s: dict) -> str:
    return "n/a" if s["median"] is None else f"{s['median']:,.0f} ({s['min']:,.0f}-{s['max']:,.0f})"


def _pcts(s: dict) -> str:
    return "n/a" if s["median"] is None else f"{s['median']:.0%} ({s['min']:.0%}-{s['max']:.0%})"


def _gflops(rate, flops) -> str:
    return "n/a" if not rate else f"{rate * flops / 1e9:.1f} GFLOP/s"


def _mb(v) -> str:
    return f"{v:,.0f}"


def _table(header: list[str], rows: list[list]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return lines + ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]


def machine_line(doc: dict) -> str:
    m, v = doc["machine"], doc["versions"]
    load = lambda key: ", ".join(f"{x:.1f}" for x in m[key])
    return (
        f"{doc['date']} · {m['cpu_model']} · {m['cores']} cores · {m['memory_gb']} GB · "
        f"jax {v['jax']} on {m['jax_platform']} ({m['jax_device']} x{m['jax_device_count']}) · "
        f"torch {v['torch']} · load average {load('loadavg_start')} at start, {load('loadavg_end')} at end"
    )


def markdown(doc: dict) -> str:
    s, ss = doc["settings"], doc["seed_study"]
    impls = list(ss["impls"])
    torch_impls = impls[1:]
    flops, ceiling = s["flops_per_model_step"], doc["ceiling"]["gflops"]
    ceiling_rate = ceiling["median"] * 1e9 / flops
    out = [
        f"## Benchmark: jaxopt_cmp vs PyTorch ({doc['mode']} mode)",
        "",
        machine_line(doc),
        "",
        f"Model {s['model']}, minibatch {s['batch_size']}: **{flops / 1e6:.2f} MFLOP per model-step** "
        "(one optimizer update of one model: forward 2·B·Σ fan_in·fan_out + backward 2x). "
        f"Measured float32 matmul ceiling ({doc['ceiling']['by']}, {doc['ceiling']['size']}³): "
        f"**{ceiling['median']:.0f} GFLOP/s** (min-max {ceiling['min']:.0f}-{ceiling['max']:.0f} over "
        f"{len(ceiling['values'])} repeats) = {ceiling_rate:,.0f} model-steps/s; torch's: "
        f"{doc['ceiling']['torch_gflops']['median']:.0f} GFLOP/s on {doc['ceiling']['torch_gflops']['threads']} "
        "threads. "
        f"Figures are medians (min-max) of {s['repeats']} interleaved repeats.",
        "",
    ]

    out += [f"### Seed study: 3 optimizers x 1 seed, full-data MSE every {ss['eval_every']} iterations", ""]
    rows = []
    for impl in impls:
        m = ss["impls"][impl]
        ratio = "1" if impl == JAX else _x(ss["ratio_jax_over"][impl])
        compile_s = f"{m['compile_s']:.1f}" if m.get("compile_s") is not None else "-"
        rows.append(
            [
                impl,
                f"{m['steps']:,}",
                _rate(m["rate"]),
                ratio,
                compile_s,
                m["threads"] or "XLA",
                _mb(doc["memory"][impl]["seed study"]),
            ]
        )
    out += _table(
        ["implementation", "iterations timed", "model-steps/s", "jax ÷ this", "compile s", "threads", "peak RSS MB"],
        rows,
    )
    t10 = ss["torch_eager_train_s_10k"]
    out += [
        "",
        f"torch-eager training time for 10,000 iterations: {t10['value']:.1f} s"
        + (" (extrapolated)" if t10["extrapolated"] else "")
        + ".",
    ]
    if doc["compare_py"]:
        c = doc["compare_py"]
        parts = [r for r in c["runs"] if r["compile_s"] is not None]
        inside = (
            (
                f" (of which compile {statistics.median(r['compile_s'] for r in parts):.1f} s, "
                f"train {statistics.median(r['train_s'] for r in parts):.1f} s)"
            )
            if parts
            else ""
        )
        out += [
            f"Whole `{c['command']}`: {c['wall_s']['median']:.1f} s wall "
            f"(min-max {c['wall_s']['min']:.1f}-{c['wall_s']['max']:.1f}){inside}."
        ]

    out += [
        "",
        "### Throughput vs seeds: model-steps/s, 3 optimizers x S seeds (steady-state training)",
        "",
        f"The seed problem fitted to {s['throughput_n_data']:,} points (a step's cost does not depend on it).",
        "",
    ]
    header = ["S", *impls, "jax % of ceiling", "ceiling GFLOP/s"]
    rows = [
        [
            p["S"],
            *(_rate(p["impls"][i]["rate"]) for i in impls),
            _pcts(p["impls"][JAX]["fraction_of_ceiling"]),
            f"{p['ceiling_gflops']['median']:.0f}",
        ]
        for p in doc["throughput"]
    ]
    out += _table(header, rows)
    out += ["", "jax ÷ torch, per repeat:", ""]
    rows = [
        [
            p["S"],
            *(_x(p["ratio_jax_over"][i]) for i in torch_impls),
            f"{_x(p['ratio_jax_over_best_torch'])} ({p['best_torch']})",
        ]
        for p in doc["throughput"]
    ]
    out += _table(["S", *(f"jax ÷ {i}" for i in torch_impls), "jax ÷ best torch"], rows)
    threads = [[p["S"], *(p["impls"][i]["threads"] for i in torch_impls)] for p in doc["throughput"]]
    out += ["", "torch threads used (auto: the faster of the candidates, measured per workload):", ""]
    out += _table(["S", *torch_impls], threads)

    out += ["", "### Compile time and scaling (jax)", ""]
    sc = doc["scaling"]
    rows = [
        [
            f"{p['iters']:,}",
            f"{p['compile_s']:.2f}",
            f"{p['compile_cpu_s']:.2f}",
            f"{p['time_s']['median']:.3f}",
            f"{1000 * p['time_s']['median'] / p['iters']:.3f}",
        ]
        for p in sc["iters"]
    ]
    out += _table(
        [f"iterations (S=1, eval every {ss['eval_every']})", "compile s", "compile CPU s", "run s", "run s per 1k it"],
        rows,
    )
    out += [""]
    pair = lambda values, fmt: " / ".join(format(v, fmt) if v is not None else "n/a" for v in values)
    rows = [
        [
            p["S"],
            pair(p["impls"][JAX]["iters"], ","),
            pair(p["impls"][JAX]["compile_s"], ".2f"),
            pair(p["impls"][JAX]["compile_cpu_s"], ".2f"),
            pair(p["impls"][JAX]["xla_temp_mb"], ",.0f"),
        ]
        for p in doc["throughput"]
    ]
    out += _table(["S", "iterations (short / long run)", "compile s", "compile CPU s", "XLA temp MB"], rows)
    if COMPILE in impls:
        rows = [[p["S"], f"{p['impls'][COMPILE]['compile_s']:.1f}"] for p in doc["throughput"]]
        out += ["", "torch.compile warm-up (first 3 steps, compiling):", ""] + _table(["S", "compile s"], rows)

    out += ["", "### Peak memory (RSS MB of each implementation's own worker process)", ""]
    keys = list(doc["memory"][JAX])
    out += _table(["implementation", *keys], [[i, *(_mb(doc["memory"][i][k]) for k in keys)] for i in impls])

    out += ["", "### Targets", ""]
    verdict = lambda met: "not measured" if met is None else ("met" if met else "**missed**")
    out += _table(
        ["target", "measured", "verdict"], [[t["target"], t["measured"], verdict(t["met"])] for t in doc["targets"]]
    )
    out += ["", "### How this was measured", "", *(f"- {line}" for line in method_notes(doc)), ""]
    return "\n".join(out)


def method_notes(doc: dict) -> list[str]:
    s = doc["settings"]
    return [
        "Every implementation runs in its own spawned worker process; the parent runs one repeat of each in turn "
        "(order rotated per repeat), so ratios compare runs made under the same machine conditions, repeat by repeat.",
        "jax: `jaxopt_cmp.study.compile_study` (lax.scan over steps, vmap over seeds, one jit), "
        "timed around `jax.block_until_ready(compiled(keys, grid))` after one untimed call. As in the scripts, "
        "there is one XLA host device per core (`scripts/_cli.py`), and seeds are sharded across them when S "
        f"divides evenly (here {doc['machine']['jax_device_count']} devices; S=1 runs on one).",
        "jax throughput is steady-state: two compiled runs of I/4 and I iterations with the same two full-data "
        "evaluations; rate = 3·S·(3I/4) / (t(I) - t(I/4)), which removes data generation, init and evaluation. "
        "bench.json also has the end-to-end rate of the longer run.",
        "torch throughput: a timed loop over data, initial weights and batch indices made up front (seeded "
        "torch generators), steps calibrated to about "
        f"{s['target_s']:g} s per repeat after warm-up; no evaluations.",
        "Seed study: jax times the whole compiled study (data, init, every step and every evaluation); torch-eager "
        "is `torch_ref.train.run_study`'s `train_s` (the reference loop as `compare.py --framework torch` runs "
        "it: per-step randperm batches and divergence guard); torch-batched/func/compile run the same evaluation "
        f"schedule over {s['fast_seed_iters']:,} iterations.",
        "torch-eager is single threaded (`torch_ref.train.single_threaded`); the stacked implementations use the "
        f"fastest of {list(s['torch_threads'])} threads, measured per workload (more threads only when at least "
        f"{THREADS_MARGIN:g}x faster: on a shared machine OpenMP barriers make multi-threaded steps erratic); "
        "torch-compile uses torch-batched's.",
        "torch-batched and torch-func train each seed exactly as its own eager model does (elementwise optimizers "
        "on stacked tensors; tests/test_bench.py checks every step in float64).",
        "Peak RSS: `ru_maxrss` of the implementation's worker after each workload; workloads run in increasing size, "
        "so each figure is that workload's peak (including the process's own baseline, shown as after_import).",
        f"FLOPs per model-step are counted from the model config ({s['flops_per_model_step']:,}); "
        "% of ceiling = model-steps/s x FLOPs per model-step / the matmul's GFLOP/s, repeat by repeat: the "
        "matmul is timed in every repeat (in its own process), so both see the same load.",
        "Machine load from other processes shows up as spread (min-max); the load average is printed above.",
    ]


def plot(doc: dict, path: Path) -> Path:
    from jaxopt_cmp import report

    plt = report.plt
    fig, ax = plt.subplots(figsize=(7.5, 5))
    impls = list(doc["seed_study"]["impls"])
    for impl in impls:
        pts = [(p["S"], p["impls"][impl]["rate"]) for p in doc["throughput"] if p["impls"][impl]["rate"]["median"]]
        if not pts:
            continue
        xs = [x for x, _ in pts]
        med = [r["median"] for _, r in pts]
        err = [[m - r["min"] for m, (_, r) in zip(med, pts)], [r["max"] - m for m, (_, r) in zip(med, pts)]]
        ax.errorbar(xs, med, yerr=err, marker="o", capsize=3, label=impl)
    ceiling = doc["ceiling"]["gflops"]["median"] * 1e9 / doc["settings"]["flops_per_model_step"]
    ax.axhline(
        ceiling,
        color="grey",
        linestyle="--",
        label=f"matmul ceiling ({doc['ceiling']['gflops']['median']:.0f} GFLOP/s)",
    )
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    seeds = [p["S"] for p in doc["throughput"]]
    ax.set_xticks(seeds, [str(x) for x in seeds])
    ax.minorticks_off()
    ax.set_xlabel("seeds per optimizer S (3 optimizers)")
    ax.set_ylabel("model-steps / s (median, min-max bars)")
    ax.set_title("Training throughput vs seeds: jaxopt_cmp vs PyTorch")
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    m = doc["machine"]
    fig.text(
        0.01,
        0.01,
        f"{m['cpu_model']}, {m['cores']} cores; jax device: {m['jax_platform']} ({m['jax_device']}); {doc['date']}",
        fontsize=7,
        color="dimgrey",
    )
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    return report.save_figure(fig, path)


def jsonable(value):
    """NaN and inf become None (JSON has neither); tuples become lists."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value


def main(argv=None) -> None:
    args = parse_args(argv)
    settings = make_settings(args)
    from jaxopt_cmp.results import atomic_write_bytes, prepare_out_dir

    out = prepare_out_dir(args.out or _cli.default_out("bench"), args.overwrite)
    print(f"output directory: {out}", flush=True)
    start = time.perf_counter()
    log = lambda msg: print(f"[{time.perf_counter() - start:4.0f} s] {msg}", flush=True)
    doc = jsonable(run_bench(settings, log))
    log("writing results")
    atomic_write_bytes(out / "bench.json", (json.dumps(doc, indent=2) + "\n").encode())
    text = markdown(doc)
    atomic_write_bytes(out / "bench.md", text.encode())
    figure = plot(doc, out / "throughput.png")
    print(text)
    print(f"wrote {out / 'bench.json'}\nwrote {out / 'bench.md'}\nwrote {figure}")
    print(f"bench took {doc['elapsed_s']:.0f} s")


if __name__ == "__main__":
    _cli.run_main(PROG, main)

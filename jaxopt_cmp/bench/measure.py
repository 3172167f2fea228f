"""Measuring, in the parent: interleaved repeats over the worker pool, summaries and ratios.

Each repeat times every implementation and the matmul ceiling once, in an order rotated per
repeat, so every ratio is jax's rate over another's *in the same repeat*; medians with min-max
are reported.
"""

from __future__ import annotations

import math
import os
import platform
import re
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

from jaxopt_cmp.bench import judge, process
from jaxopt_cmp.bench.pool import Pool
from jaxopt_cmp.bench.settings import (
    BATCHED,
    COMPILE,
    EAGER,
    FUNC,
    GRID_SEEDS,
    JAX,
    JAX_REF,
    MATMUL,
    OPTIMIZERS,
    SCHEMA,
    SEED,
    THROUGHPUT_N_DATA,
    Settings,
    described,
    workload,
)
from jaxopt_cmp.bench.timing import summary

# The module that makes each implementation's worker, in its own process.
WORKERS = {impl: "jaxopt_cmp.bench.jax_worker" for impl in (JAX, JAX_REF, MATMUL)}
WORKERS.update({impl: "torch_ref.bench_worker" for impl in (EAGER, BATCHED, FUNC, COMPILE)})
Log = Callable[[str], None]


def rotated(items, r: int) -> list:
    """``items`` rotated left by ``r`` (repeat r's order)."""
    k = r % len(items)
    return list(items[k:]) + list(items[:k])


def interleave(pool: Pool, impls, repeats: int, log: Log) -> tuple[dict[str, list], list[float]]:
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


def cpu_util(times: list[dict]) -> float:
    """CPU seconds per wall second (cores kept busy), median over repeats."""
    return statistics.median(t["cpu_s"] / t["wall_s"] for t in times)


def measure_seed_study(pool: Pool, impls, s: Settings, log: Log) -> tuple[dict, list[dict], dict]:
    """The seed study (S=1) for every implementation, plus jax's iteration-scaling points."""
    log(f"seed study: 3 optimizers x 1 seed, {s.iters} iterations, eval every {s.eval_every}")
    n_data, scaling = SEED.data.n_data, sorted({s.iters, *s.scaling_iters})
    jax_setup = pool.call(JAX, "setup", configs=[workload(1, i, s.eval_every, n_data, s.seed) for i in scaling])
    k_seed = scaling.index(s.iters)  # the seed study is one of jax's scaling points
    setups = {JAX: {"compile_s": jax_setup[k_seed]["compile_s"], "steps": s.iters, "threads": None}}
    for impl in impls[1:]:
        cfg = workload(1, s.iters if impl == EAGER else s.fast_seed_iters, s.eval_every, n_data, s.seed)
        threads = setups[BATCHED]["threads"] if impl == COMPILE else None
        setups[impl] = pool.call(impl, "setup", cfg=cfg, study=True, threads=threads)
    times, gflops = interleave(pool, impls, s.repeats, log)
    memory = {impl: pool.call(impl, "teardown") for impl in impls}
    rates, doc = {}, {"iters": s.iters, "eval_every": s.eval_every, "impls": {}, "ceiling_gflops": summary(gflops)}
    for impl in impls:
        mine = [t[k_seed] for t in times[impl]] if impl == JAX else times[impl]
        walls = [t.get("train_s", t["wall_s"]) for t in mine]
        steps = setups[impl]["steps"]
        rates[impl] = [len(OPTIMIZERS) * steps / w for w in walls]
        doc["impls"][impl] = {
            **setups[impl],
            "model_steps": len(OPTIMIZERS) * steps,
            "time_s": summary(walls),
            "rate": summary(rates[impl]),
            "cpu_util": cpu_util(mine),
        }
    doc["ratio_jax_over"] = ratios(rates, [i for i in impls if i != JAX])
    doc["torch_eager_train_s_10k"] = {  # the reference loop's time for the seed notebook's 10,000 steps
        "value": doc["impls"][EAGER]["time_s"]["median"] * SEED.train.iters / s.iters,
        "extrapolated": s.iters != SEED.train.iters,
    }
    points = []
    for k, i in enumerate(scaling):
        compile_s = {key: jax_setup[k][key] for key in ("compile_s", "compile_cpu_s")}
        points.append({"iters": i, **compile_s, "time_s": summary([t[k]["wall_s"] for t in times[JAX]])})
    return doc, points, memory


def jax_iters(seeds: int, s: Settings, grid: int = 1) -> int:
    """Iterations of jax's longer throughput run: about ``jax_model_steps``, a power of two."""
    target = s.jax_model_steps / (len(OPTIMIZERS) * seeds * grid)
    return max(s.jax_min_iters, 2 ** max(0, int(math.log2(max(target, 1)))))


def measure_throughput(pool: Pool, impls, seeds: int, s: Settings, flops: int, log: Log) -> tuple[dict, dict]:
    """Steady-state training rate with S seeds per optimizer, every implementation; jax's share of
    the matmul ceiling measured in the same repeats (``flops`` per model-step)."""
    long = jax_iters(seeds, s)
    short = long // 4
    log(f"S={seeds}: jax {short} and {long} iterations, torch ~{s.target_s:g} s per repeat")
    n = THROUGHPUT_N_DATA
    configs = [workload(seeds, i, i, n, s.seed) for i in (short, long)]
    jax_setup = pool.call(JAX, "setup", configs=configs)
    keys = ("compile_s", "compile_cpu_s", "xla_temp_mb")
    setups = {JAX: {"iters": [short, long], "threads": None, **{k: [c[k] for c in jax_setup] for k in keys}}}
    for impl in impls[1:]:
        threads = setups[BATCHED]["threads"] if impl == COMPILE else None
        setups[impl] = pool.call(impl, "setup", cfg=workload(seeds, 1, 1, n, s.seed), threads=threads)
    times, gflops = interleave(pool, impls, s.repeats, log)
    memory = {impl: pool.call(impl, "teardown") for impl in impls}
    per_step = len(OPTIMIZERS) * seeds
    rates, jax_doc = _jax_throughput(times[JAX], (short, long), per_step, gflops, flops)
    jax_doc = {**setups[JAX], **jax_doc}
    doc = {"S": seeds, "ceiling_gflops": summary(gflops), "impls": {JAX: jax_doc}}
    for impl in impls[1:]:
        rates[impl] = [per_step * setups[impl]["steps"] / t["wall_s"] for t in times[impl]]
        doc["impls"][impl] = {
            **setups[impl],
            "rate": summary(rates[impl]),
            "time_s": summary([t["wall_s"] for t in times[impl]]),
            "cpu_util": cpu_util(times[impl]),
        }
    torch_impls = [i for i in impls if i != JAX]
    doc["ratio_jax_over"] = ratios(rates, torch_impls)
    best = max(torch_impls, key=lambda i: doc["impls"][i]["rate"]["median"] or 0)
    doc["best_torch"] = best
    doc["ratio_jax_over_best_torch"] = doc["ratio_jax_over"][best]
    return doc, memory


def grid_reference(pool: Pool, seeds: int, s: Settings, log: Log) -> tuple[int, int, int]:
    """Compiles jax's run at ``seeds`` seeds (the seeds table's largest S) in the reference worker,
    which :func:`measure_grid` times in every repeat beside each grid row; ``(seeds, short, long)``."""
    long = jax_iters(seeds, s)
    short = long // 4
    log(f"S={seeds} beside every grid row (its own worker): jax {short} and {long} iterations")
    configs = [workload(seeds, i, i, THROUGHPUT_N_DATA, s.seed) for i in (short, long)]
    pool.call(JAX_REF, "setup", configs=configs)
    return seeds, short, long


def measure_grid(
    pool: Pool, grid: int, s: Settings, flops: int, log: Log, ref: tuple[int, int, int]
) -> tuple[dict, float]:
    """jax's steady-state rate with ``GRID_SEEDS`` seeds x ``grid`` lr grid points per optimizer
    (a tuning study's shape), its peak RSS, and its rate over the reference run's (``ref``, from
    :func:`grid_reference`) repeat by repeat; torch is not run (its rate per run does not depend
    on how the runs are named)."""
    seeds = GRID_SEEDS
    long = jax_iters(seeds, s, grid)
    short = long // 4
    log(f"S={seeds} x H={grid}: jax {short} and {long} iterations")
    configs = [workload(seeds, i, i, THROUGHPUT_N_DATA, s.seed, grid) for i in (short, long)]
    setup = pool.call(JAX, "setup", configs=configs)
    times, gflops = interleave(pool, [JAX, JAX_REF], s.repeats, log)
    memory = pool.call(JAX, "teardown")
    rates, jax_doc = _jax_throughput(times[JAX], (short, long), len(OPTIMIZERS) * seeds * grid, gflops, flops)
    ref_seeds, *ref_iters = ref
    per_step = len(OPTIMIZERS) * ref_seeds
    ref_rates, ref_doc = _jax_throughput(times[JAX_REF], tuple(ref_iters), per_step, gflops, flops)
    keys = ("compile_s", "compile_cpu_s", "xla_temp_mb")
    jax_doc = {"iters": [short, long], **{k: [c[k] for c in setup] for k in keys}, **jax_doc}
    point = {"S": seeds, "H": grid, "runs": seeds * grid, "ceiling_gflops": summary(gflops), "impls": {JAX: jax_doc}}
    point["reference"] = {"S": ref_seeds, "iters": list(ref_iters), "rate": ref_doc["rate"]}
    point["ratio_over_reference"] = summary(
        [g / r if g and r else None for g, r in zip(rates[JAX], ref_rates[JAX], strict=True)]
    )
    return point, memory


def _jax_throughput(times: list, iters: tuple[int, int], per_step: int, gflops: list, flops: int):
    """jax's steady-state rates from its (short, long) runs per repeat (``per_step`` model-steps per
    iteration), and how they read in bench.json."""
    (short, long), walls = iters, [(t_short["wall_s"], t_long["wall_s"]) for t_short, t_long in times]
    rates = {JAX: [per_step * (long - short) / (b - a) if b > a else None for a, b in walls]}
    share = lambda rate, g: rate * flops / (g * 1e9) if rate else None
    return rates, {
        "rate": summary(rates[JAX]),
        "fraction_of_ceiling": summary([share(r, g) for r, g in zip(rates[JAX], gflops)]),
        "end_to_end_rate": summary([per_step * long / b for _, b in walls]),
        "time_s": {"short": summary([a for a, _ in walls]), "long": summary([b for _, b in walls])},
        "cpu_util": cpu_util([t[1] for t in times]),
    }


def machine_info() -> dict:
    """CPU model, cores (all and usable by this process), memory, OS and Python."""
    model = platform.processor() or platform.machine()
    found = re.search(r"^model name\s*:\s*(.+)$", _read("/proc/cpuinfo"), re.M)
    model = found[1].strip() if found else model
    found = re.search(r"^MemTotal:\s*(\d+) kB", _read("/proc/meminfo"), re.M)
    cores = os.cpu_count()
    return {
        "cpu_model": model,
        "cores": cores,
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else cores,
        "memory_gb": round(int(found[1]) / 2**20, 1) if found else None,
        "os": platform.platform(),
        "python": platform.python_version(),
    }


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def run_bench(s: Settings, log: Log, compare_script: Path | None = None) -> dict:
    """Every measurement of ``s`` in one run, judged against the targets: the bench.json document.

    ``compare_script`` is ``scripts/compare.py``, timed as whole processes when ``s.compare``.
    """
    impls = [JAX, EAGER, BATCHED, FUNC] + ([COMPILE] if s.torch_compile else [])
    started = time.time()
    doc = {
        "schema": SCHEMA,
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "mode": s.mode,
        "argv": sys.argv[1:],
        "machine": {**machine_info(), "loadavg_start": list(os.getloadavg())},
        "settings": described(s),
    }
    workers = [*impls, MATMUL] + ([JAX_REF] if s.grid_list else [])
    log(f"starting {len(workers)} worker processes: {', '.join(impls)}, the {MATMUL} ceiling"
        + (f" and {JAX_REF} (beside the grid rows)" if s.grid_list else ""))  # fmt: skip
    with Pool({i: WORKERS[i] for i in workers}, s) as pool:
        _measure(pool, impls, s, log, doc)
        doc["compare_py"] = doc["compare_small"] = None
        if s.compare and compare_script is not None:
            runs = 1 if s.mode == "quick" else min(s.repeats, 3)
            eager_s = doc["seed_study"]["torch_eager_train_s_10k"]["value"]
            doc["compare_py"] = process.measure_compare(compare_script, runs, eager_s, log)
            log("compare.py on a tiny study (its compile is the whole cost)")
            doc["compare_small"] = process.measure_compare(compare_script, runs, None, log, args=process.SMALL_ARGS)
        log(f"torch's {s.ceiling_size}^3 matmul, for reference")
        torch_ceiling = pool.call(BATCHED, "ceiling", size=s.ceiling_size, repeats=max(3, s.repeats))
    every = [g for w in [doc["seed_study"], *doc["throughput"]] for g in w["ceiling_gflops"]["values"]]
    doc["ceiling"] = {
        "size": s.ceiling_size,
        "by": "jax.jit(jnp.matmul), float32, once per repeat",
        "gflops": summary(every),
        "torch_gflops": {**summary(torch_ceiling["gflops"]), "threads": torch_ceiling["threads"]},
    }
    doc["machine"]["loadavg_end"] = list(os.getloadavg())
    doc["elapsed_s"] = time.time() - started
    doc["targets"] = judge.judge(doc)
    return doc


def _measure(pool: Pool, impls: list[str], s: Settings, log: Log, doc: dict) -> None:
    """The seed study, then each S of the throughput runs, into ``doc`` (with peak memory)."""
    versions = {**pool.info[JAX]["versions"], **pool.info[EAGER]["versions"]}
    doc["versions"] = versions
    doc["machine"].update(
        jax_device=versions["device"], jax_platform=versions["platform"], jax_device_count=int(versions["device_count"])
    )
    memory = {i: {"after_import": pool.info[i]["baseline_rss_mb"]} for i in impls}
    doc["seed_study"], iter_points, mem = measure_seed_study(pool, impls, s, log)
    for i in impls:
        memory[i]["seed study"] = mem[i]
    doc["throughput"] = []
    for seeds in s.seeds_list:
        point, mem = measure_throughput(pool, impls, seeds, s, doc["settings"]["flops_per_model_step"], log)
        doc["throughput"].append(point)
        for i in impls:
            memory[i][f"S={seeds}"] = mem[i]
    doc["grid_throughput"] = []
    ref = grid_reference(pool, max(s.seeds_list), s, log) if s.grid_list else None
    for grid in s.grid_list:
        point, memory[JAX][f"S={GRID_SEEDS} x H={grid}"] = measure_grid(
            pool, grid, s, doc["settings"]["flops_per_model_step"], log, ref
        )
        doc["grid_throughput"].append(point)
    if ref is not None:
        pool.call(JAX_REF, "teardown")
    doc["memory"] = memory
    doc["scaling"] = judge.scaling_doc(iter_points, doc["throughput"])

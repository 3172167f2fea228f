"""Judging: least-squares fits of the scaling runs, and the targets as a table of rows.

A target row names a *metric* (a function of the bench.json document returning the measured value
and how it reads), a comparison and a bound. ``met`` is None where nothing was measured. To add a
target: a metric in ``METRICS`` if none fits, then a row in ``TARGETS``.
"""

from __future__ import annotations

import math
import operator
import statistics
from collections.abc import Callable
from typing import NamedTuple

from jaxopt_cmp.bench.fmt import gflops, pct_range, seconds_range, x_range
from jaxopt_cmp.bench.process import CACHE_FLAG
from jaxopt_cmp.bench.settings import EAGER, JAX

# Compile time called flat when it grows like x^k with k <= FLAT (10x the iterations or seeds: <= 26% more);
# run time called linear in iterations when the least-squares line t = a + b I misses no point by more than
# LINEAR of the longest run's time (a holds the fixed costs: data, init, the evaluation at step 0).
FLAT, LINEAR = 0.1, 0.05


def line_fit(xs: list[float], ys: list[float]) -> tuple[float, float]:
    """Least squares ``y = a + b x``: ``(a, b)``. Needs two distinct x values."""
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
    return my - b * mx, b


def iters_fit(points: list[dict]) -> dict | None:
    """jax's run time against iterations, ``t = a + b I``, and its largest miss as a share of the
    longest run's time. None with fewer than two iteration counts."""
    xs, ys = [p["iters"] for p in points], [p["time_s"]["median"] for p in points]
    if len(set(xs)) < 2:
        return None
    a, b = line_fit(xs, ys)
    residual = max(abs(y - (a + b * x)) for x, y in zip(xs, ys)) / max(ys)
    return {
        "intercept_s": a,
        "s_per_1k_iters": 1000 * b,
        "max_residual_of_longest": residual,
        "linear": residual <= LINEAR,
    }


def flatness(xs: list[float], wall: list[float], cpu: list[float]) -> dict | None:
    """How compile time grows with x: the log-log least-squares slope k (time ~ x^k) of its CPU seconds,
    which other processes' load inflates far less than wall seconds. None with fewer than two x values."""
    if len(set(xs)) < 2:
        return None
    _, k = line_fit([math.log(x) for x in xs], [math.log(c) for c in cpu])
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


def scaling_doc(iter_points: list[dict], throughput: list[dict]) -> dict:
    """Linearity of jax time in iterations and compile-time flatness in iterations and in seeds."""
    keys = ("iters", "compile_s", "compile_cpu_s")
    by_seeds = [{"S": p["S"], **{k: p["impls"][JAX][k] for k in keys}} for p in throughput]
    column = lambda points, key: [p[key] for p in points]
    flat = lambda key: [c for p in by_seeds for c in p[key]]
    return {
        "iters": iter_points,
        "iters_fit": iters_fit(iter_points),
        "compile_vs_iters": flatness(*(column(iter_points, k) for k in keys)),
        "seeds": by_seeds,
        "compile_vs_seeds": flatness([p["S"] for p in by_seeds for _ in p["iters"]], *map(flat, keys[1:])),
    }


# Metrics: what a target row measures


class Measured(NamedTuple):
    value: float | None  # None: not measured
    text: str


def _seed_speedup(doc: dict) -> Measured:
    ratio = doc["seed_study"]["ratio_jax_over"][EAGER]
    return Measured(ratio["median"], f"{x_range(ratio)} ({doc['seed_study']['iters']:,} iterations)")


def _at_128(metric: Callable[[dict, dict], Measured]) -> Callable[[dict], Measured]:
    """A metric of the S=128 throughput point (not measured without one)."""

    def at(doc: dict) -> Measured:
        point = next((p for p in doc["throughput"] if p["S"] == 128), None)
        return metric(doc, point) if point else Measured(None, "not measured (128 not in --seeds-list)")

    return at


def _over_best_torch(doc: dict, point: dict) -> Measured:
    best = point["ratio_jax_over_best_torch"]
    return Measured(best["median"], f"{x_range(best)} over {point['best_torch']}")


def _fraction_of_ceiling(doc: dict, point: dict) -> Measured:
    jax = point["impls"][JAX]
    frac, rate = jax["fraction_of_ceiling"], gflops(jax["rate"]["median"], doc["settings"]["flops_per_model_step"])
    text = f"({rate}; ceiling in the same repeats {point['ceiling_gflops']['median']:.0f} GFLOP/s)"
    return Measured(frac["median"], f"{pct_range(frac)} {text}")


def _from_scaling(key: str, value: str, describe: Callable[[dict], str]) -> Callable[[dict], Measured]:
    """A metric read from ``doc["scaling"][key]`` (a fit; not measured where there was none)."""

    def metric(doc: dict) -> Measured:
        found = doc["scaling"][key]
        return Measured(found[value], describe(found)) if found else Measured(None, "not measured")

    return metric


def _slope_text(label: str) -> Callable[[dict], str]:
    return lambda c: (
        f"k = {c['loglog_slope']:.3f} over {c['x_min']:,}-{c['x_max']:,} {label}: CPU {c['cpu_min_s']:.2f}-"
        f"{c['cpu_max_s']:.2f} s, wall {c['min_s']:.2f}-{c['max_s']:.2f} s"
    )


def _fit_text(fit: dict) -> str:
    return (
        f"b = {fit['s_per_1k_iters']:.3f} s per 1k iterations, a = {fit['intercept_s']:.3f} s; largest miss "
        f"{fit['max_residual_of_longest']:.1%}"
    )


def _whole_process(kind: str) -> Callable[[dict], Measured]:
    """compare.py's whole-process wall time of ``kind`` over the eager loop's training time."""

    def ratio(doc: dict) -> Measured:
        found = _compare_kind(doc, kind, "over_eager_train")
        if isinstance(found, Measured):
            return found
        c, wall = doc["compare_py"], doc["compare_py"]["kinds"][kind]["wall_s"]["median"]
        extrapolated = doc["seed_study"]["torch_eager_train_s_10k"]["extrapolated"]
        note = " (torch time extrapolated from a shorter run)" if extrapolated else ""
        text = f"{x_range(found, 2)}: {wall:.1f} s vs {c['eager_train_s']:.1f} s{note}"
        return Measured(found["median"], text)

    return ratio


def _compile(kind: str, study: str = "compare_py") -> Callable[[dict], Measured]:
    """compare.py's own ``compile_s`` (results.json) in its ``kind`` runs (cold: an empty cache), of
    the seed study (``compare_py``) or the tiny one (``compare_small``)."""

    def seconds(doc: dict) -> Measured:
        found = _compare_kind(doc, kind, "compile_s", study)
        if isinstance(found, Measured):
            return found
        return Measured(found["median"], f"{seconds_range(found)} s")

    return seconds


def _compare_kind(doc: dict, kind: str, key: str, study: str = "compare_py") -> dict | Measured:
    """The summary of ``key`` over compare.py's ``kind`` runs of ``study``, or why there is none."""
    c = doc.get(study)
    if not c:
        return Measured(None, "not measured (--no-compare)")
    if kind not in c["kinds"]:
        return Measured(None, f"n/a (compare.py has no {CACHE_FLAG} flag)")
    found = c["kinds"][kind][key]
    if found["median"] is None:
        errors = [r["error"] for r in c["runs"] if r["kind"] == kind and r.get("error")]
        return Measured(None, f"n/a (compare.py failed: {errors[0]})" if errors else f"n/a (no {key} in results.json)")
    return found


def _grid_over_seeds(doc: dict) -> Measured:
    """The lowest grid row's rate over jax's rate at S=512, each row's ratio the median of its
    per-repeat ratios (the S=512 run is timed in every repeat of every grid row)."""
    points = doc.get("grid_throughput") or []
    if not points or points[0]["reference"]["S"] != 512:
        return Measured(None, "not measured (needs --grid-list and 512 in --seeds-list)")
    ratio = lambda p: p["ratio_over_reference"]["median"] or 0.0
    low = min(points, key=ratio)
    rate = lambda m: f"{m['rate']['median'] or 0:,.0f}"
    text = (
        f"lowest at S={low['S']} x H={low['H']}: {x_range(low['ratio_over_reference'], 2)}, median of the "
        f"per-repeat ratios ({rate(low['impls'][JAX])} vs {rate(low['reference'])} model-steps/s at S=512)"
    )
    return Measured(ratio(low) or None, text)


METRICS: dict[str, Callable[[dict], Measured]] = {
    "seed study speedup": _seed_speedup,
    "S=128 over best torch": _at_128(_over_best_torch),
    "S=128 fraction of ceiling": _at_128(_fraction_of_ceiling),
    "compile slope in iterations": _from_scaling("compile_vs_iters", "loglog_slope", _slope_text("iterations")),
    "compile slope in seeds": _from_scaling("compile_vs_seeds", "loglog_slope", _slope_text("seeds")),
    "iteration fit miss": _from_scaling("iters_fit", "max_residual_of_longest", _fit_text),
    "warm whole process over eager": _whole_process("warm"),
    "cold whole process over eager": _whole_process("cold"),
    "warm compile s": _compile("warm"),
    "cold compile s": _compile("cold"),
    "small cold compile s": _compile("cold", "compare_small"),
    "grid rate over S=512": _grid_over_seeds,
}


class Target(NamedTuple):
    metric: str  # a key of METRICS
    op: str  # ">=" or "<="
    bound: float
    text: str  # the row as bench.md shows it; ``{bound}`` is the bound


OPS = {">=": operator.ge, "<=": operator.le}
TARGETS = (
    Target("seed study speedup", ">=", 25, "seed study training >= {bound:g}x the torch eager loop (model-steps/s)"),
    Target("S=128 over best torch", ">=", 5, "S=128: jax >= {bound:g}x the best torch implementation"),
    Target("S=128 fraction of ceiling", ">=", 0.5, "S=128: jax >= {bound:.0%} of the measured matmul ceiling"),
    Target(
        "compile slope in iterations",
        "<=",
        FLAT,
        "compile time flat in iterations (CPU s ~ iterations^k, k <= {bound})",
    ),
    Target("compile slope in seeds", "<=", FLAT, "compile time flat in seeds (CPU s ~ seeds^k, k <= {bound})"),
    Target(
        "iteration fit miss",
        "<=",
        LINEAR,
        "jax time linear in iterations (t = a + b·I misses no point by more than {bound:.0%} of the longest run)",
    ),
    # issue 11: seconds to the first result
    Target(
        "warm whole process over eager",
        "<=",
        0.30,
        "compare.py warm rerun (cache filled), whole process <= {bound:.2f}x the torch eager loop's training time",
    ),
    Target(
        "cold whole process over eager",
        "<=",
        0.50,
        "compare.py cold (empty cache), whole process <= {bound:.2f}x the torch eager loop's training time",
    ),
    Target("warm compile s", "<=", 1.0, "compare.py warm rerun: compile <= {bound:g} s"),
    Target("cold compile s", "<=", 4.0, "the seed study's cold compile (compare.py, empty cache) <= {bound:g} s"),
    Target("small cold compile s", "<=", 2.5, "a tiny study's cold compile (compare.py, empty cache) <= {bound:g} s"),
    Target("seed study speedup", ">=", 20, "seed study training >= {bound:g}x the torch eager loop (issue 11)"),
    Target(
        "grid rate over S=512",
        ">=",
        1.0,
        "S x H = 256..2,048 runs per optimizer: jax model-steps/s >= {bound:g}x its S=512 rate in the same "
        "repeats (issue 19)",
    ),
)


def judge(doc: dict, targets=TARGETS) -> list[dict]:
    """Each target row against what ``doc`` measured: ``{target, measured, value, met}``."""
    out = []
    for t in targets:
        m = METRICS[t.metric](doc)
        met = None if m.value is None else OPS[t.op](m.value, t.bound)
        out.append({"target": t.text.format(bound=t.bound), "measured": m.text, "value": m.value, "met": met})
    return out

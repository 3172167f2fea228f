"""The benchmark's judging, fits, settings and report, on small hand-made bench.json documents.

No worker process and no timing: each test builds the measurements it judges (``bench_doc``).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from jaxopt_cmp.bench import judge, process, report, settings
from jaxopt_cmp.bench.judge import FLAT, LINEAR, TARGETS
from jaxopt_cmp.bench.settings import EAGER, JAX
from jaxopt_cmp.bench.timing import summary
from jaxopt_cmp.checks import ConfigError

IMPLS = (JAX, EAGER, "torch-batched", "torch-func")


def throughput_point(seeds: int, jax_rate: float, torch_rates: dict, frac: float) -> dict:
    jax = {
        "iters": [128, 512],
        "compile_s": [1.5, 1.6],
        "compile_cpu_s": [1.2 * seeds**0.01, 1.3 * seeds**0.01],
        "xla_temp_mb": [1.0, None],
        "threads": None,
        "rate": summary([jax_rate]),
        "fraction_of_ceiling": summary([frac]),
    }
    impls = {JAX: jax, **{i: {"rate": summary([r]), "threads": 1} for i, r in torch_rates.items()}}
    ratios = {i: summary([jax_rate / r]) for i, r in torch_rates.items()}
    best = max(torch_rates, key=torch_rates.get)
    return {
        "S": seeds,
        "ceiling_gflops": summary([100.0]),
        "impls": impls,
        "ratio_jax_over": ratios,
        "best_torch": best,
        "ratio_jax_over_best_torch": ratios[best],
    }


def compare_doc(kinds: dict[str, dict], runs=None) -> dict:
    """compare_py with one run of each kind (or ``runs``), beside 20 s of eager torch training."""
    return process.summarize(runs if runs is not None else [{"kind": k, **v} for k, v in kinds.items()], 20.0)


def bench_doc(seed_ratio=25.0, seeds_list=(8, 128), compare=None, iters=(1000, 2000, 4000), small=None) -> dict:
    """A whole bench.json document with the given measurements (everything else plausible)."""
    s = settings.make_settings("quick", torch_threads="1", iters=1000)
    eager_rate = 3000.0
    seed_impls = {
        JAX: {"compile_s": 2.0, "steps": 1000, "threads": None, "rate": summary([seed_ratio * eager_rate])},
        **{i: {"steps": 1000, "threads": 1, "rate": summary([eager_rate])} for i in IMPLS[1:]},
    }
    throughput = [
        throughput_point(S, 50_000.0 * S / (S + 1), {i: 2000.0 * (k + 1) for k, i in enumerate(IMPLS[1:])}, 0.55)
        for S in seeds_list
    ]
    iter_points = [
        {"iters": i, "compile_s": 2.0, "compile_cpu_s": 1.5, "time_s": summary([0.01 + 1e-4 * i])} for i in iters
    ]
    doc = {
        "date": "2026-01-01 00:00:00 UTC",
        "mode": "quick",
        "machine": {
            "cpu_model": "Test CPU",
            "cores": 2,
            "memory_gb": 8.0,
            "jax_platform": "cpu",
            "jax_device": "cpu",
            "jax_device_count": 2,
            "loadavg_start": [0.5, 0.5, 0.5],
            "loadavg_end": [1.0, 1.0, 1.0],
        },
        "versions": {"jax": "0.10", "torch": "2.13"},
        "settings": settings.described(s),
        "ceiling": {
            "size": 256,
            "by": "jax.jit(jnp.matmul)",
            "gflops": summary([100.0, 110.0]),
            "torch_gflops": {**summary([90.0]), "threads": 2},
        },
        "seed_study": {
            "iters": 1000,
            "eval_every": 500,
            "impls": seed_impls,
            "ratio_jax_over": {i: summary([seed_ratio]) for i in IMPLS[1:]},
            "torch_eager_train_s_10k": {"value": 20.0, "extrapolated": True},
        },
        "throughput": throughput,
        "memory": {i: {"after_import": 200.0, "seed study": 400.0} for i in IMPLS},
        "scaling": judge.scaling_doc(iter_points, throughput),
        "compare_py": compare,
        "compare_small": small,
    }
    doc["targets"] = judge.judge(doc)
    return doc


def verdicts(doc: dict) -> dict[str, bool | None]:
    return {t["target"]: t["met"] for t in doc["targets"]}


def row(doc: dict, start: str) -> dict:
    (found,) = [t for t in doc["targets"] if t["target"].startswith(start)]
    return found


# Judging


@pytest.mark.parametrize("ratio, met_25, met_20", [(25.0, True, True), (24.99, False, True), (19.9, False, False)])
def test_seed_study_speedup_is_judged_at_its_bounds(ratio, met_25, met_20):
    doc = bench_doc(seed_ratio=ratio)
    assert row(doc, "seed study training >= 25x")["met"] is met_25  # >= : the bound itself is met
    assert row(doc, "seed study training >= 20x")["met"] is met_20
    assert row(doc, "seed study training >= 25x")["value"] == pytest.approx(ratio)


def test_every_target_row_has_a_metric_and_a_known_comparison():
    assert {t.metric for t in TARGETS} <= set(judge.METRICS)
    assert {t.op for t in TARGETS} <= set(judge.OPS)
    doc = bench_doc()
    assert [t["target"] for t in doc["targets"]] == [t.text.format(bound=t.bound) for t in TARGETS]


def test_targets_not_measured_are_none_and_say_why():
    doc = bench_doc(seeds_list=(8,), iters=(1000,), compare=None)
    for start in ("S=128", "compare.py"):
        for t in [t for t in doc["targets"] if t["target"].startswith(start)]:
            assert t["met"] is None and t["value"] is None, t
    assert "128 not in --seeds-list" in row(doc, "S=128: jax >= 5x")["measured"]
    assert "--no-compare" in row(doc, "compare.py warm rerun (cache")["measured"]
    assert row(doc, "jax time linear")["met"] is None and row(doc, "compile time flat in iterations")["met"] is None


def test_s128_targets_read_the_s128_point():
    doc = bench_doc(seeds_list=(8, 128))
    point = doc["throughput"][1]
    best = row(doc, "S=128: jax >= 5x")
    assert best["value"] == point["ratio_jax_over_best_torch"]["median"] and point["best_torch"] in best["measured"]
    assert best["met"] is (best["value"] >= 5)
    assert row(doc, "S=128: jax >= 50%")["met"] is True  # 0.55 of the ceiling


@pytest.mark.parametrize("warm, cold, warm_compile", [(5.9, 9.9, 0.9), (6.1, 10.1, 1.1)])
def test_whole_process_targets_compare_with_the_eager_training_time(warm, cold, warm_compile):
    compare = compare_doc({"cold": {"wall_s": cold}, "warm": {"wall_s": warm, "compile_s": warm_compile}})
    doc = bench_doc(compare=compare)  # eager training 20 s: bounds 6 s warm (0.30x), 10 s cold (0.50x)
    assert row(doc, "compare.py warm rerun (cache")["met"] is (warm <= 6.0)
    assert row(doc, "compare.py cold")["met"] is (cold <= 10.0)
    assert row(doc, "compare.py warm rerun: compile")["met"] is (warm_compile <= 1.0)
    assert row(doc, "compare.py cold")["value"] == pytest.approx(cold / 20.0)
    assert f"{cold:.1f} s vs 20.0 s" in row(doc, "compare.py cold")["measured"]


@pytest.mark.parametrize("cold_compile", [2.4, 2.6, 3.9, 4.1])
def test_the_cold_compiles_are_judged_on_the_cold_runs_own_compile_time(cold_compile):
    """A compile-time regression reads "missed": each study's cold run's compile_s, not the warm
    run's, and the tiny study's row reads the tiny study's runs."""
    runs = lambda cold: compare_doc(
        {"cold": {"wall_s": 9.0, "compile_s": cold}, "warm": {"wall_s": 5.0, "compile_s": 0.5}}
    )
    doc = bench_doc(compare=runs(cold_compile), small=runs(cold_compile - 1.5))
    seed, small = row(doc, "the seed study's cold compile"), row(doc, "a tiny study's cold compile")
    assert seed["value"] == cold_compile and seed["met"] is (cold_compile <= 4.0)
    assert small["value"] == cold_compile - 1.5 and small["met"] is (cold_compile - 1.5 <= 2.5)
    assert report.markdown(doc).count("Whole `") == 2  # a table of runs per study
    assert row(bench_doc(compare=runs(3.0)), "a tiny study's cold compile")["met"] is None  # not measured


def test_whole_process_without_cache_flag_or_timing_keys_is_na():
    no_flag = bench_doc(compare=compare_doc({"default": {"wall_s": 9.0, "compile_s": 3.0}}))
    for start in ("compare.py warm", "compare.py cold"):
        t = row(no_flag, start + " rerun (cache" if "warm" in start else start)
        assert t["met"] is None and "has no --cache-dir" in t["measured"]
    no_key = bench_doc(compare=compare_doc({"cold": {"wall_s": 9.0}, "warm": {"wall_s": 5.0}}))
    t = row(no_key, "compare.py warm rerun: compile")
    assert t["met"] is None and "no compile_s in results.json" in t["measured"]
    assert row(no_key, "compare.py warm rerun (cache")["met"] is True


def test_failed_compare_run_is_na_with_its_error():
    runs = [{"kind": "cold", "wall_s": None, "error": "exit status 1: boom"}, {"kind": "warm", "wall_s": 5.0}]
    doc = bench_doc(compare=compare_doc({}, runs=runs))
    t = row(doc, "compare.py cold")
    assert t["met"] is None and "boom" in t["measured"]


# Fits


def test_line_fit_recovers_a_line_and_matches_numpy():
    xs = [1000.0, 2000.0, 4000.0, 7000.0]
    a, b = judge.line_fit(xs, [0.3 + 2e-4 * x for x in xs])
    assert a == pytest.approx(0.3) and b == pytest.approx(2e-4)
    ys = [0.5, 0.2, 1.1, 1.3]
    np.testing.assert_allclose(judge.line_fit(xs, ys)[::-1], np.polyfit(xs, ys, 1))


def test_iters_fit_calls_a_line_linear_and_a_bend_not():
    points = lambda ts: [{"iters": i, "time_s": summary([t])} for i, t in zip((1000, 2000, 4000), ts)]
    straight = judge.iters_fit(points([0.1 + 1e-3 * i for i in (1000, 2000, 4000)]))
    assert straight["linear"] and straight["max_residual_of_longest"] == pytest.approx(0.0, abs=1e-12)
    assert straight["s_per_1k_iters"] == pytest.approx(1.0) and straight["intercept_s"] == pytest.approx(0.1)
    ts = [1.0, 1.2, 4.0]
    bent = judge.iters_fit(points(ts))
    slope, intercept = np.polyfit([1000, 2000, 4000], ts, 1)
    miss = max(abs(t - intercept - slope * i) for i, t in zip((1000, 2000, 4000), ts)) / max(ts)  # of the longest
    assert bent["max_residual_of_longest"] == pytest.approx(miss) and miss > LINEAR and not bent["linear"]
    assert judge.iters_fit(points([1.0])) is None


@pytest.mark.parametrize("k", [0.0, 0.05, 0.5])
def test_flatness_is_the_loglog_slope_of_cpu_seconds(k):
    xs = [1, 8, 32, 128]
    cpu = [2.0 * x**k for x in xs]
    wall = [10.0 / x for x in xs]  # wall time is not what is judged (load inflates it)
    f = judge.flatness(xs, wall, cpu)
    assert f["loglog_slope"] == pytest.approx(k, abs=1e-9) and f["flat"] is (k <= FLAT)
    assert (f["x_min"], f["x_max"], f["min_s"], f["max_s"]) == (1, 128, 10.0 / 128, 10.0)
    assert judge.flatness([4, 4], wall[:2], cpu[:2]) is None


def test_scaling_doc_pairs_each_seed_count_with_its_two_compiles():
    doc = bench_doc(seeds_list=(1, 8, 128))
    sc = doc["scaling"]
    assert [p["S"] for p in sc["seeds"]] == [1, 8, 128]
    c = sc["compile_vs_seeds"]
    assert (c["x_min"], c["x_max"]) == (1, 128) and c["loglog_slope"] == pytest.approx(0.01, abs=2e-3)


def test_summary_ignores_missing_and_non_finite_values():
    s = summary([3.0, None, math.nan, 1.0, math.inf, 2.0])
    assert (s["median"], s["min"], s["max"]) == (2.0, 1.0, 3.0) and len(s["values"]) == 6
    assert summary([None, math.nan])["median"] is None


# Settings


def test_settings_take_the_mode_preset_and_the_given_values():
    quick = settings.make_settings("quick", torch_threads="auto", repeats=None, seeds_list=(128, 8, 8))
    for key, value in settings.PRESETS["quick"].items():
        if key != "seeds_list":
            assert getattr(quick, key) == value, key
    assert quick.seeds_list == (8, 128) and quick.torch_threads[0] == 1
    full = settings.make_settings("full", iters=300, torch_threads=3)
    assert full.iters == 300 and full.fast_seed_iters == 300 and full.torch_threads == (3,)
    assert full.repeats == settings.PRESETS["full"]["repeats"]


@pytest.mark.parametrize(
    "given, setting",
    [
        ({"seeds_list": (0,)}, "seeds_list"),
        ({"repeats": 0}, "repeats"),
        ({"target_s": -1.0}, "target_s"),
        ({"ceiling_size": 8}, "ceiling_size"),
        ({"torch_threads": "none"}, "torch_threads"),
        ({"nonsense": 1}, "setting"),
    ],
)
def test_settings_refuse_bad_values_naming_the_setting(given, setting):
    with pytest.raises(ConfigError) as err:
        settings.make_settings("quick", **given)
    assert err.value.setting == setting


def test_flops_per_model_step_counts_forward_and_twice_that_backward():
    from jaxopt_cmp.config import ModelConfig

    assert settings.flops_per_model_step(ModelConfig(hidden=(3,)), 2) == 3 * 2 * 2 * (1 * 3 + 3 * 1)


# Report


def test_markdown_has_every_section_and_a_row_per_implementation_and_target():
    compare = compare_doc({"cold": {"wall_s": 9.0, "compile_s": 3.0}, "warm": {"wall_s": 5.0, "setup_s": 0.4}})
    doc = bench_doc(compare=compare)
    md = report.markdown(doc)
    for heading in ("## Benchmark", "### Seed study", "### Throughput", "### Compile time", "### Peak memory"):
        assert heading in md
    lines = md.splitlines()
    for impl in IMPLS:
        assert sum(line.startswith(f"| {impl} |") for line in lines) == 2, impl  # seed study and memory tables
    for t in doc["targets"]:
        assert f"| {t['target']} | {t['measured']} |" in md
    cold = next(line for line in lines if line.startswith("| cold |"))
    warm = next(line for line in lines if line.startswith("| warm |"))
    assert "9.00" in cold and "0.45x" in cold and "3.00" in cold  # wall, ÷ 20 s eager, compile
    assert "0.25x" in warm and "0.40" in warm and warm.count("n/a") == 3  # no compile, train, figures


def test_markdown_without_compare_has_no_whole_process_table():
    md = report.markdown(bench_doc(compare=None))
    assert "| cold |" not in md and "Whole `" not in md


def test_throughput_figure_draws_each_implementation_and_the_ceiling():
    doc = bench_doc(seeds_list=(8, 128))
    fig = report.throughput_figure(doc)
    (ax,) = fig.axes
    labels = ax.get_legend_handles_labels()[1]
    ceiling = [label for label in labels if label.startswith("matmul ceiling")]
    assert sorted(labels) == sorted([*IMPLS, *ceiling]) and len(ceiling) == 1
    assert report.png_bytes(fig).startswith(b"\x89PNG")


# Grid throughput (issue 19): a tuning study's shape against the S=512 rate


def grid_doc(grid_rates: dict[int, list[float]], ref_rates: list[float], ref_seeds: int = 512) -> dict:
    """bench_doc plus grid rows at ``{H: jax rate per repeat}``, each timed beside the reference
    (jax at ``ref_seeds`` seeds) at ``ref_rates`` per repeat."""
    doc = bench_doc(seeds_list=(8, ref_seeds))
    jax = lambda rates: {JAX: {**throughput_point(4, 1.0, {EAGER: 1.0}, 0.5)["impls"][JAX], "rate": summary(rates)}}
    doc["grid_throughput"] = [
        {
            "S": 4,
            "H": h,
            "runs": 4 * h,
            "ceiling_gflops": summary([100.0]),
            "impls": jax(rates),
            "reference": {"S": ref_seeds, "iters": [128, 512], "rate": summary(ref_rates)},
            "ratio_over_reference": summary([g / r for g, r in zip(rates, ref_rates, strict=True)]),
        }
        for h, rates in grid_rates.items()
    ]
    doc["targets"] = judge.judge(doc)
    return doc


def test_grid_target_is_the_lowest_grid_rows_median_ratio_to_s512_in_the_same_repeats():
    ref = [40_000.0, 20_000.0, 30_000.0]  # the machine's load changes between repeats
    doc = grid_doc({64: [45_000.0, 23_000.0, 34_000.0], 512: [20_000.0, 21_000.0, 31_500.0]}, ref)
    found = row(doc, "S x H")
    # H=512 per repeat: 0.5, 1.05, 1.05 -> median 1.05 (the ratio of its medians, 21,000 / 30,000, is 0.7)
    assert found["value"] == pytest.approx(1.05) and found["met"] is True
    assert "S=4 x H=512: 1.05x (0.50-1.05)" in found["measured"]
    slow = grid_doc({64: [45_000.0] * 3, 512: [39_000.0] * 3}, [40_000.0] * 3)
    assert row(slow, "S x H")["value"] == pytest.approx(39 / 40) and row(slow, "S x H")["met"] is False
    assert row(grid_doc({64: [40_000.0] * 3}, [40_000.0] * 3), "S x H")["met"] is True  # the bound itself
    missing = row(grid_doc({64: [45_000.0]}, [40_000.0], ref_seeds=128), "S x H")
    assert missing["met"] is None and "512 in --seeds-list" in missing["measured"]


def test_markdown_grid_table_has_a_row_per_grid_size_with_runs_reference_and_ratio():
    doc = grid_doc({64: [45_000.0, 44_000.0], 512: [39_000.0, 38_000.0]}, [40_000.0, 40_000.0])
    lines = report.markdown(doc).splitlines()
    assert any(line.startswith("### Throughput vs grid points") for line in lines)
    row64 = next(line for line in lines if line.startswith("| 4 | 64 |"))
    row512 = next(line for line in lines if line.startswith("| 4 | 512 |"))
    assert "| 768 |" in row64 and row64.rstrip().endswith("| 40,000 (40,000-40,000) | 1.11x (1.10-1.12) |")
    assert "| 6,144 |" in row512 and row512.rstrip().endswith("| 0.96x (0.95-0.97) |")  # 3 x 4 x 512 runs

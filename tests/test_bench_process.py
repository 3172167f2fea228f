"""The benchmark's process plumbing: whole compare.py runs (cold, then warm on the same cache) and
the worker pool's protocol. compare.py is replaced by a fake runner; the pool spawns this module's
small fake workers (no jax program, no torch)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from jaxopt_cmp.bench import process
from jaxopt_cmp.bench.pool import Pool


class FakeCompare:
    """Stands in for ``subprocess.run`` of compare.py: compiles (3 s) unless the cache directory
    already holds a program, then writes results.json with the ``timing`` keys it is given."""

    def __init__(self, has_flag=True, timing_keys=process.TIMING_KEYS, fail_kind=None):
        self.has_flag, self.timing_keys, self.fail_kind = has_flag, timing_keys, fail_kind
        self.calls = []

    def __call__(self, cmd, capture_output, text):
        if "--help" in cmd:
            return SimpleNamespace(returncode=0, stdout="--out OUT" + (" --cache-dir DIR" if self.has_flag else ""))
        out = Path(cmd[cmd.index("--out") + 1])
        cache = Path(cmd[cmd.index("--cache-dir") + 1]) if "--cache-dir" in cmd else None
        warm = cache is not None and any(cache.iterdir())
        self.calls.append({"out": out, "cache": cache, "warm": warm, "args": cmd[2 : cmd.index("--out")]})
        if self.fail_kind and out.name.endswith(self.fail_kind):
            return SimpleNamespace(returncode=1, stdout="", stderr="Traceback...\nboom")
        if cache is not None:
            (cache / "program.bin").write_bytes(b"compiled")
        values = {"setup_s": 0.4, "compile_s": 0.2 if warm else 3.0, "train_s": 1.2, "figures_s": 0.5}
        out.mkdir(parents=True)
        timing = {k: v for k, v in values.items() if k in self.timing_keys}
        (out / "results.json").write_text(json.dumps({"timing": timing}))
        return SimpleNamespace(returncode=0, stdout="", stderr="")


def test_compare_runs_cold_then_warm_on_the_same_fresh_cache():
    fake = FakeCompare()
    doc = process.measure_compare(Path("compare.py"), 2, 20.0, log=lambda msg: None, run=fake)
    assert [c["warm"] for c in fake.calls] == [False, True, False, True]
    caches = [c["cache"] for c in fake.calls]
    assert caches[0] == caches[1] and caches[2] == caches[3] and caches[0] != caches[2]
    assert [r["kind"] for r in doc["runs"]] == ["cold", "warm", "cold", "warm"]
    cold, warm = doc["kinds"]["cold"], doc["kinds"]["warm"]
    assert cold["compile_s"]["median"] == 3.0 and warm["compile_s"]["median"] == 0.2
    assert warm["figures_s"]["median"] == 0.5 and warm["setup_s"]["median"] == 0.4
    walls = [r["wall_s"] for r in doc["runs"] if r["kind"] == "warm"]
    assert warm["over_eager_train"]["values"] == pytest.approx([w / 20.0 for w in walls])
    assert not any(c["cache"].exists() for c in fake.calls)  # the temporary directories are gone


def test_the_tiny_study_runs_compare_with_its_arguments_cold_then_warm():
    fake = FakeCompare()
    doc = process.measure_compare(Path("compare.py"), 1, None, log=lambda msg: None, run=fake, args=process.SMALL_ARGS)
    assert [c["args"] for c in fake.calls] == [list(process.SMALL_ARGS)] * 2 and [c["warm"] for c in fake.calls] == [
        False,
        True,
    ]
    assert doc["command"].startswith("python scripts/compare.py --hidden 8 --iters 40 --n-data 128 --no-plots --out")
    assert doc["kinds"]["cold"]["over_eager_train"]["median"] is None  # no torch time beside it


def test_compare_without_cache_flag_runs_as_is_and_missing_keys_are_none():
    fake = FakeCompare(has_flag=False, timing_keys=("compile_s", "train_s"))
    doc = process.measure_compare(Path("compare.py"), 1, 20.0, log=lambda msg: None, run=fake)
    assert list(doc["kinds"]) == [process.DEFAULT] and fake.calls[0]["cache"] is None
    (run,) = doc["runs"]
    assert run["setup_s"] is None and run["figures_s"] is None and run["compile_s"] == 3.0


def test_a_failing_compare_run_is_recorded_not_raised():
    fake = FakeCompare(fail_kind="cold")
    doc = process.measure_compare(Path("compare.py"), 1, 20.0, log=lambda msg: None, run=fake)
    cold = doc["runs"][0]
    assert cold["wall_s"] is None and "boom" in cold["error"] and "exit status 1" in cold["error"]
    assert doc["kinds"]["cold"]["wall_s"]["median"] is None and doc["kinds"]["warm"]["wall_s"]["median"] > 0


def test_read_timing_takes_numbers_only(tmp_path):
    path = tmp_path / "results.json"
    assert set(process.read_timing(path).values()) == {None}  # no file
    path.write_text(json.dumps({"timing": {"setup_s": 1, "compile_s": "fast", "train_s": True, "figures_s": 0.5}}))
    assert process.read_timing(path) == {"setup_s": 1.0, "compile_s": None, "train_s": None, "figures_s": 0.5}
    path.write_text("[1, 2]")
    assert set(process.read_timing(path).values()) == {None}


# The worker pool, with fake workers spawned from this module


class FakeWorker:
    def __init__(self, impl, settings):
        if impl == "broken":
            raise ValueError("cannot start")
        self.impl, self.settings = impl, settings

    def info(self) -> dict:
        return {"impl": self.impl, "pid": os.getpid()}

    def echo(self, value):
        return {"impl": self.impl, "value": value, "settings": self.settings}

    def fail(self):
        raise ZeroDivisionError("worker-side bug")

    def die(self):
        os._exit(3)


def make_worker(impl, settings):
    return FakeWorker(impl, settings)


def test_pool_runs_each_worker_in_its_own_process_and_reports_errors():
    with Pool({"a": __name__, "b": __name__}, settings=("s", 1)) as pool:
        assert len({pool.info["a"]["pid"], pool.info["b"]["pid"], os.getpid()}) == 3
        assert pool.call("b", "echo", value=[1, 2]) == {"impl": "b", "value": [1, 2], "settings": ("s", 1)}
        with pytest.raises(RuntimeError, match="(?s)the a worker failed.*ZeroDivisionError: worker-side bug"):
            pool.call("a", "fail")
        with pytest.raises(RuntimeError, match=r"the b worker died \(exit code 3\)"):
            pool.call("b", "die")


def test_pool_refuses_a_worker_that_cannot_start():
    with pytest.raises(RuntimeError, match="(?s)the broken worker failed.*cannot start"):
        Pool({"broken": __name__}, settings=None)


# Measuring over a fake pool: the arithmetic of rates, ratios and the ceiling share


class FakePool:
    """Answers like the workers, with fixed times: jax's short/long runs take 1 s / 3 s (the grid
    rows' reference, jax-ref: 1 s / 2 s, then 1 s / 4 s in every other repeat), a torch repeat 2 s
    for 100 steps, the matmul 100 GFLOP/s. Records the order of timed calls."""

    def __init__(self):
        self.order = []

    def call(self, impl, command, **kwargs):
        if command == "time":
            self.order.append(impl)
            if impl == "jax-ref":
                long_s = 4.0 if self.order.count(impl) % 2 == 0 else 2.0
                return [{"wall_s": 1.0, "cpu_s": 1.5}, {"wall_s": long_s, "cpu_s": 1.5 * long_s}]
            return {
                "jax": [{"wall_s": 1.0, "cpu_s": 1.5}, {"wall_s": 3.0, "cpu_s": 4.5}],
                "matmul": {"wall_s": 0.1, "cpu_s": 0.2, "gflops": 100.0},
            }.get(impl, {"wall_s": 2.0, "cpu_s": 2.0})
        if command == "setup" and impl.startswith("jax"):
            return [{"compile_s": 1.0, "compile_cpu_s": 2.0, "xla_temp_mb": 1.0} for _ in kwargs["configs"]]
        return {"threads": 1, "steps": 100} if command == "setup" else 500.0  # teardown: peak RSS


def test_throughput_rates_ratios_and_ceiling_share():
    from jaxopt_cmp.bench import measure, settings

    s = settings.make_settings("quick", repeats=3, torch_threads=1)
    impls = ["jax", "torch-eager", "torch-batched"]
    pool, seeds, flops = FakePool(), 8, 1_000_000
    doc, memory = measure.measure_throughput(pool, impls, seeds, s, flops, log=lambda msg: None)
    long = measure.jax_iters(seeds, s)
    jax_rate = 3 * seeds * (long - long // 4) / (3.0 - 1.0)  # the difference removes fixed costs
    torch_rate = 3 * seeds * 100 / 2.0
    jax = doc["impls"]["jax"]
    assert jax["rate"]["values"] == pytest.approx([jax_rate] * 3)
    assert jax["end_to_end_rate"]["median"] == pytest.approx(3 * seeds * long / 3.0)
    assert jax["fraction_of_ceiling"]["median"] == pytest.approx(jax_rate * flops / 100e9)
    assert doc["impls"]["torch-eager"]["rate"]["median"] == pytest.approx(torch_rate)
    assert doc["ratio_jax_over"]["torch-batched"]["median"] == pytest.approx(jax_rate / torch_rate)
    assert memory == dict.fromkeys(impls, 500.0)
    jobs = [*impls, "matmul"]
    assert pool.order == [job for r in range(3) for job in measure.rotated(jobs, r)]
    assert measure.rotated(jobs, 1) == ["torch-eager", "torch-batched", "matmul", "jax"]


def test_grid_throughput_counts_every_run_and_pairs_each_repeat_with_the_reference():
    from jaxopt_cmp.bench import measure, settings

    s = settings.make_settings("quick", repeats=3, torch_threads=1)
    pool, grid, quiet = FakePool(), 64, lambda msg: None
    ref = measure.grid_reference(pool, 128, s, quiet)
    point, memory = measure.measure_grid(pool, grid, s, 1_000_000, quiet, ref)
    long = measure.jax_iters(settings.GRID_SEEDS, s, grid)
    rate = 3 * settings.GRID_SEEDS * grid * (long - long // 4) / (3.0 - 1.0)
    assert point["impls"]["jax"]["rate"]["values"] == pytest.approx([rate] * 3)
    assert (point["S"], point["H"], point["runs"], memory) == (
        settings.GRID_SEEDS,
        grid,
        settings.GRID_SEEDS * grid,
        500.0,
    )
    ref_long = measure.jax_iters(128, s)
    assert ref == (128, ref_long // 4, ref_long) and point["reference"]["S"] == 128
    ref_rates = [3 * 128 * (ref_long - ref_long // 4) / t for t in (1.0, 3.0, 1.0)]  # its load varies
    assert point["reference"]["rate"]["values"] == pytest.approx(ref_rates)
    # each repeat's grid rate over the reference's in that repeat, not the ratio of the medians
    assert point["ratio_over_reference"]["values"] == pytest.approx([rate / r for r in ref_rates])
    jobs = ["jax", "jax-ref", "matmul"]
    assert pool.order == [job for r in range(3) for job in measure.rotated(jobs, r)]  # no torch


def test_grid_workload_is_the_seed_study_at_log_spaced_lrs():
    from jaxopt_cmp.bench import settings

    cfg = settings.workload(4, 8, 8, 100, grid=5)
    assert cfg.seeds == 4 and [o.grid_size for o in cfg.optimizers] == [5, 5, 5]
    for o, seed in zip(cfg.optimizers, settings.SEED.optimizers, strict=True):
        grid = o.grid()
        np.testing.assert_allclose(grid["lr"], np.geomspace(*settings.GRID_LRS, 5), rtol=1e-15)
        assert {k: set(v) for k, v in grid.items() if k != "lr"} == {
            k: set(v) for k, v in seed.grid().items() if k != "lr"
        }

"""The library from a notebook (issue 12): tidy results, short reprs, every core, and results of
an optimizer that is not registered loading and re-rendering elsewhere."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest

from jaxopt_cmp.config import OptimizerConfig, seed_study
from jaxopt_cmp.results import load_result, save_result
from jaxopt_cmp.study import OneDeviceWarning, run_study

ROOT = Path(__file__).resolve().parents[1]
LRS = [1e-3, 3e-2]


@pytest.fixture(scope="module")
def result():
    cfg = seed_study(
        optimizers=(OptimizerConfig.make("adam", lr=LRS), OptimizerConfig.make("sgd", lr=0.1)),
        iters=40,
        eval_every=20,
        n_data=128,
        batch_size=16,
        hidden=(8,),
        seeds=3,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", OneDeviceWarning)
        return run_study(cfg)


def test_runs_csv_has_one_row_per_run_at_the_users_exact_values(result, tmp_path):
    save_result(result, tmp_path)
    with open(tmp_path / "runs.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == (2 + 1) * 3  # adam 2 grid points + sgd 1, x 3 seeds
    adam = [r for r in rows if r["optimizer"] == "adam"]
    assert sorted({r["lr"] for r in adam}) == ["0.001", "0.03"]  # not 0.0010000000474974513
    assert {r["beta2"] for r in adam} == {"0.999"} and {r["beta2"] for r in rows if r["optimizer"] == "sgd"} == {""}
    for r in rows:
        h, s = int(r["grid_index"]), int(r["seed"])
        assert float(r["final_mse"]) == float(result.mse_EHS[r["optimizer"]][-1, h, s])
    with open(tmp_path / "history.csv") as f:
        history = list(csv.DictReader(f))
    assert len(history) == len(rows) * len(result.eval_steps)


def test_frames_match_the_arrays(result):
    pd = pytest.importorskip("pandas")
    df = result.to_frame()
    assert isinstance(df, pd.DataFrame) and len(df) == 9
    med = df[df.optimizer == "adam"].groupby("lr").final_mse.median()
    np.testing.assert_allclose(med.loc[0.001], np.median(result.mse_EHS["adam"][-1, 0]))
    hist = result.history_frame()
    assert set(hist.columns) == {"optimizer", "grid_index", "seed", "step", "mse", "val_mse", "test_mse"}
    assert hist.step.max() == 40


def test_repr_is_short_and_summary_renders_as_text_and_html(result):
    text = repr(result)
    assert len(text) < 300 and "adam[2]" in text and "3 seed" in text
    table = result.summary()
    assert "adam" in str(table) and "<table>" in table._repr_html_()
    assert len(table.rows) == 2


def test_saved_results_keep_exact_grid_values(result, tmp_path):
    save_result(result, tmp_path)
    loaded, doc = load_result(tmp_path)
    assert doc["grid"]["adam"]["lr"] == LRS
    assert loaded.grid["adam"]["lr"].tolist() == LRS
    assert doc["final_mse"]["sgd"] == result.mse_EHS["sgd"][-1].tolist()  # grid x seeds for every kind of run


def test_results_of_an_unregistered_optimizer_rerender_in_a_fresh_process(tmp_path):
    """Registered here, trained and saved; a new process (where it is not registered) re-renders."""
    import optax

    from jaxopt_cmp.optimizers import OPTIMIZERS, POSITIVE, UNIT, register_optimizer

    (tmp_path / "run").mkdir()
    saved = dict(OPTIMIZERS)
    try:
        register_optimizer(
            "adabelief",
            lambda lr, beta1: optax.adabelief(lr, b1=beta1),
            {"lr": 1e-3, "beta1": 0.9},
            {"lr": POSITIVE, "beta1": UNIT},
        )
        cfg = seed_study(
            optimizers=("adabelief", "sgd"), iters=20, eval_every=10, n_data=128, batch_size=16, hidden=(8,), seeds=2
        )
        save_result(run_study(cfg), tmp_path / "run")
    finally:  # the registry as it was, for the tests that follow
        OPTIMIZERS.clear()
        OPTIMIZERS.update(saved)
    proc = subprocess.run(
        [
            sys.executable,
            "scripts/study.py",
            "--from",
            str(tmp_path / "run"),
            "--out",
            str(tmp_path / "again"),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    assert "adabelief" in proc.stdout and (tmp_path / "again" / "lr_sensitivity.png").exists()
    assert (tmp_path / "again" / "results.json").exists()


def test_from_refuses_training_flags(usage_error, tmp_path):
    sys.path.insert(0, str(ROOT / "scripts"))
    import study

    err = usage_error(study, ["--from", str(tmp_path), "--iters", "5"])
    assert "--iters" in err and "do not apply" in err


def test_use_all_cores_before_jax_starts():
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    code = (
        "import jaxopt_cmp, sys; n = jaxopt_cmp.use_all_cores(3); assert 'jax' not in sys.modules; "
        "import jax; print(n, jax.device_count())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout
    assert out.split() == ["3", "3"]
    late = "import jax; jax.devices(); import jaxopt_cmp; jaxopt_cmp.use_all_cores(3)"
    proc = subprocess.run([sys.executable, "-c", late], capture_output=True, text=True, env=env)
    assert proc.returncode != 0 and "before any JAX computation" in proc.stderr


def test_a_study_that_could_shard_warns_when_it_sees_one_device(monkeypatch):
    import jaxopt_cmp.runtime as runtime

    monkeypatch.setattr(runtime, "cpu_count", lambda: 4)
    small = dict(iters=10, eval_every=10, n_data=64, batch_size=8, hidden=(4,))
    for seeds, names in ((2, ("sgd",)), (1, ("sgd", "adam"))):  # seeds to split, or optimizers in lanes
        with pytest.warns(OneDeviceWarning, match="use_all_cores"):
            run_study(seed_study(**small, seeds=seeds, optimizers=names))
    with warnings.catch_warnings():
        warnings.simplefilter("error", OneDeviceWarning)  # nothing to spread: no advice
        run_study(seed_study(**small, seeds=1, optimizers=("sgd",)))


TINY_NO_PLOTS = "--iters 20 --eval-every 10 --n-data 128 --batch-size 16 --hidden 8 --no-plots".split()


@pytest.fixture(scope="module")
def compare_run(tmp_path_factory):
    """``(cache dir, modules)``: one tiny ``scripts/compare.py --no-plots`` run as a user runs it
    (``__main__``, a fresh process) with its own compilation cache, and the heavy modules it imported."""
    tmp = tmp_path_factory.mktemp("compare")
    cache = tmp / "cache"
    argv = [*TINY_NO_PLOTS, "--cache-dir", str(cache), "--out", str(tmp / "a")]
    code = textwrap.dedent(f"""
        import runpy, sys
        sys.argv = ["scripts/compare.py", *{argv!r}]
        try:
            runpy.run_path("scripts/compare.py", run_name="__main__")
        except SystemExit as exc:
            assert not exc.code, exc.code
        print([m for m in ("matplotlib.pyplot", "torch", "pandas") if m in sys.modules])
    """)
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    return cache, proc.stdout.strip().splitlines()[-1]


def test_compare_without_figures_imports_neither_pyplot_nor_torch(compare_run):
    assert compare_run[1] == "[]"


def test_scripts_fill_the_persistent_compilation_cache(tmp_path, compare_run):
    """The compiled study has no host callback, so JAX's persistent cache stores it; --no-cache
    uses no cache (neither ours nor one JAX_COMPILATION_CACHE_DIR sets); the library's default
    follows $JAXOPT_CMP_CACHE_DIR."""
    cache, _ = compare_run
    assert any(p.name.startswith("jit_chunk") for p in cache.iterdir())  # the training program itself
    argv = [sys.executable, "scripts/compare.py", *TINY_NO_PLOTS, "--out", str(tmp_path / "b"), "--no-cache"]
    env = {**os.environ, "JAXOPT_CMP_CACHE_DIR": str(tmp_path / "c"), "JAX_COMPILATION_CACHE_DIR": str(tmp_path / "j")}
    subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, check=True, env=env)
    assert not (tmp_path / "c").exists() and not (tmp_path / "j").exists()  # not even JAX's own setting
    code = "from jaxopt_cmp.runtime import default_cache_dir; print(default_cache_dir())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == str(tmp_path / "c")

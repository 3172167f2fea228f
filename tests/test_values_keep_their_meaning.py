"""Silent wrong answers: the compile cache's key, results independent of
``jax_enable_x64``, and the tests the suite lacked (memory estimate in seeds, power iteration's sign)."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace

import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxopt_cmp import study as study_mod
from jaxopt_cmp.budget import ONCE, estimate_bytes
from jaxopt_cmp.config import DataConfig, ModelConfig, OptimizerConfig, StudyConfig, TrainConfig
from jaxopt_cmp.curvature import power_iteration
from jaxopt_cmp.data import data_from_arrays
from jaxopt_cmp.optimizers import OPTIMIZERS, POSITIVE, register_optimizer
from jaxopt_cmp.study import run_study

TINY = dict(
    data=DataConfig(n_data=64),
    model=ModelConfig(hidden=(4,)),
    train=TrainConfig(iters=4, batch_size=8, eval_every=2),
    record_predictions=False,
)


def tiny(**kw) -> StudyConfig:
    return StudyConfig(**{**TINY, **kw})


@pytest.fixture
def scratch_optimizer():
    """A registry name of this test's own, removed afterwards."""
    yield "w20_scratch"
    OPTIMIZERS.pop("w20_scratch", None)


def test_replacing_an_optimizer_recompiles_and_changes_the_numbers(scratch_optimizer):
    """Issue 20: re-registering a name with replace=True reused the old program (old numbers, compile_s 0)."""
    name = scratch_optimizer
    study_mod.clear_cache()
    register_optimizer(name, lambda lr: optax.sgd(lr), {"lr": 0.1}, {"lr": POSITIVE})
    cfg = tiny(optimizers=(OptimizerConfig.make(name, lr=[0.1]),))
    first = run_study(cfg)
    assert first.timing["compile_s"] > 0
    assert run_study(cfg).timing["compile_s"] == 0  # identical config: reused
    register_optimizer(name, lambda lr: optax.adam(lr), {"lr": 0.1}, {"lr": POSITIVE}, replace=True)
    again = run_study(cfg)
    assert again.timing["compile_s"] > 0
    assert not np.array_equal(first.mse_EHS[name][-1], again.mse_EHS[name][-1])


def _key(cfg, data=None):
    return study_mod._shape_key(cfg, data, study_mod.plan_lanes(cfg))


def test_each_change_of_the_program_changes_the_cache_key(scratch_optimizer):
    """Every setting and function the traced program depends on is in the cache key (checked on the
    key itself: compiling each variant would cost seconds apiece); an equal config has an equal key."""
    from jaxopt_cmp.targets import TARGETS

    cfg = tiny(optimizers=(OptimizerConfig.make("sgd", lr=[0.1]),))
    rng = np.random.default_rng(0)
    one = data_from_arrays(rng.uniform(size=(64, 1)), rng.uniform(size=(64, 1)))
    two = data_from_arrays(rng.uniform(size=(64, 2)), rng.uniform(size=(64, 1)))
    base = _key(cfg)
    assert _key(tiny(optimizers=(OptimizerConfig.make("sgd", lr=[0.1]),))) == base
    assert _key(replace(cfg, seed=5, optimizers=(OptimizerConfig.make("sgd", lr=[0.3]),))) == base  # values only
    changed = {
        "n_data": _key(replace(cfg, data=DataConfig(n_data=72))),
        "dtype": _key(replace(cfg, train=replace(cfg.train, dtype="float64"))),
        "hidden": _key(replace(cfg, model=ModelConfig(hidden=(5,)))),
        "batch": _key(replace(cfg, train=replace(cfg.train, batch_size=16))),
        "user data": _key(cfg, one),
        "data columns": _key(replace(cfg, model=ModelConfig(xdim=2, hidden=(4,))), two),
    }
    sgd = OPTIMIZERS["sgd"]
    try:  # the same name, another build: the registry row is traced into the program
        register_optimizer("sgd", lambda lr: optax.adam(lr), sgd.defaults, sgd.bounds, replace=True)
        changed["optimizer build"] = _key(cfg)
    finally:
        OPTIMIZERS["sgd"] = sgd
    saved = TARGETS["seed"]
    try:
        TARGETS["seed"] = lambda x, xp=jnp: xp.sin(x)
        changed["target function"] = _key(cfg)
    finally:
        TARGETS["seed"] = saved
    assert _key(cfg) == base
    for what, key in changed.items():
        assert key != base, what
    assert _key(replace(cfg, model=ModelConfig(xdim=2, hidden=(4,))), two) != _key(cfg, one)


X64_SCRIPT = """
import sys, numpy as np
from jaxopt_cmp.config import DataConfig, ModelConfig, OptimizerConfig, StudyConfig, TrainConfig
from jaxopt_cmp.study import run_study
cfg = StudyConfig(data=DataConfig(n_data=64), model=ModelConfig(hidden=(4,)),
                  train=TrainConfig(iters=8, batch_size=8, eval_every=4), record_predictions=False,
                  optimizers=(OptimizerConfig.make("adam", lr=[1e-2]),))
r = run_study(cfg)
np.savez(sys.argv[1], **{k: np.asarray(v) for k, v in r.mse_EHS.items()})
"""


def test_float32_results_do_not_depend_on_jax_enable_x64(tmp_path):
    """Issue 20: under JAX_ENABLE_X64=1 the minibatch indices were drawn as int64, another stream
    (trained MSE off by up to 0.039). Same config and seed: the same float32 numbers, bit for bit."""
    out = {}
    for flag in ("0", "1"):
        env = {**os.environ, "JAX_ENABLE_X64": flag, "PYTHONWARNINGS": "ignore"}
        path = tmp_path / f"x64_{flag}.npz"
        subprocess.run([sys.executable, "-c", X64_SCRIPT, str(path)], env=env, check=True, timeout=300)
        out[flag] = np.load(path)
    assert out["0"]["adam"].dtype == out["1"]["adam"].dtype == np.float32
    np.testing.assert_array_equal(out["0"]["adam"], out["1"]["adam"])


def test_memory_estimate_scales_with_seeds():
    """Every seed holds its own runs, data, activations and MSE history: each part doubles with the
    seed count, except seed 0's recorded predictions (one copy whatever the seed count)."""
    for seeds in (1, 3):
        cfg = tiny(seeds=seeds, optimizers=(OptimizerConfig.make("adam", lr=[1e-3, 1e-2]),))
        one, two = estimate_bytes(cfg), estimate_bytes(replace(cfg, seeds=2 * seeds))
        assert set(one) == set(two)
        # The test set (noise-free target on a fixed grid) is one copy shared by every seed.
        more_test = replace(cfg, data=replace(cfg.data, n_test=2 * cfg.data.n_test))
        shared = {"data": estimate_bytes(more_test)["data"] - one["data"]}
        assert shared["data"] > 0
        for part in set(one) - set(ONCE):  # ONCE: per evaluation and figure, whatever the seeds
            own = one[part] - shared.get(part, 0)
            assert two[part] - shared.get(part, 0) == 2 * own > 0, part
        rec, rec2 = (estimate_bytes(replace(c, record_predictions=True)) for c in (cfg, replace(cfg, seeds=2 * seeds)))
        predictions = rec["history"] - one["history"]
        assert predictions == cfg.train.n_evals * 2 * cfg.data.n_data * 4 > 0  # 2 grid points, float32
        assert rec2["history"] - two["history"] == predictions


def test_power_iteration_keeps_a_negative_dominant_eigenvalue_negative():
    """The eigenvalue of largest magnitude is -5 here: power iteration returns -5, not 5 (a Hessian
    at a saddle has one; its sign is the diagnosis)."""
    A = jnp.diag(jnp.asarray([-5.0, 1.0, 2.0]))
    lam, v = power_iteration(lambda u: A @ u, jnp.ones(3), 60)  # |2/5|^60: converged
    assert float(lam) == pytest.approx(-5.0, rel=1e-6)
    np.testing.assert_allclose(np.asarray(A @ v), float(lam) * np.asarray(v), atol=1e-6)


def test_register_refuses_a_build_that_returns_no_transformation(scratch_optimizer):
    """Issue 20: a build returning None was accepted and failed later, inside tracing."""
    from jaxopt_cmp.checks import ConfigError

    with pytest.raises(ConfigError, match=r"w20_scratch build.*NoneType.*GradientTransformation"):
        register_optimizer(scratch_optimizer, lambda lr: None, {"lr": 0.1}, {"lr": POSITIVE})
    assert scratch_optimizer not in OPTIMIZERS


def test_a_registered_default_is_checked_in_the_run_dtype(scratch_optimizer):
    """Issue 20: a default eps=1e-320 (not swept) ran as 0 in float32; now refused like a swept value."""
    from jaxopt_cmp.checks import ConfigError

    build = lambda lr, eps: optax.adam(lr, eps=eps)  # noqa: E731
    register_optimizer(scratch_optimizer, build, {"lr": 1e-3, "eps": 1e-320}, {"lr": POSITIVE, "eps": POSITIVE})
    with pytest.raises(ConfigError, match=r"w20_scratch default eps.*1e-320.*float32"):
        tiny(optimizers=(OptimizerConfig.make(scratch_optimizer, lr=[1e-3]),))
    tiny(optimizers=(OptimizerConfig.make(scratch_optimizer, lr=[1e-3], eps=[1e-8]),))  # swept: the default is unused


@pytest.mark.parametrize(
    "column", ["seed", "final_mse", "grid_index", "optimizer", "steps_to_target", "val_mse", "schedule", "warmup"]
)
def test_a_hyperparameter_named_like_a_results_column_is_refused(scratch_optimizer, column):
    """Issue 20: a hyperparameter named seed or final_mse overwrote that column in runs.csv / to_frame()."""
    from jaxopt_cmp.checks import ConfigError

    build = eval(f"lambda lr, {column}: optax.sgd(lr)", {"optax": optax})
    with pytest.raises(ConfigError, match=rf"w20_scratch hyperparameter.*{column}.*results columns"):
        register_optimizer(scratch_optimizer, build, {"lr": 0.1, column: 0.5}, {"lr": POSITIVE, column: POSITIVE})
    assert scratch_optimizer not in OPTIMIZERS


def test_load_result_keeps_the_saved_grid_when_registry_defaults_change(tmp_path, scratch_optimizer):
    """Issue 20: load_result took the hyperparameters not given explicitly from today's registry,
    so a result reloaded after a default changed reported values its runs never used."""
    from jaxopt_cmp.results import load_result, save_result

    build = lambda lr, momentum: optax.sgd(lr, momentum=momentum)
    register_optimizer(scratch_optimizer, build, {"lr": 1e-2, "momentum": 0.9}, {"lr": POSITIVE, "momentum": POSITIVE})
    cfg = tiny(optimizers=(OptimizerConfig.make(scratch_optimizer, lr=[1e-2, 3e-2]),))
    save_result(run_study(cfg), tmp_path)
    register_optimizer(
        scratch_optimizer, build, {"lr": 1e-2, "momentum": 0.5}, {"lr": POSITIVE, "momentum": POSITIVE}, replace=True
    )
    loaded, _ = load_result(tmp_path)
    np.testing.assert_array_equal(loaded.grid[scratch_optimizer]["momentum"], [0.9, 0.9])
    np.testing.assert_array_equal(loaded.grid[scratch_optimizer]["lr"], [1e-2, 3e-2])


@pytest.mark.parametrize("dtype", [np.dtype("float32"), np.float64])
def test_a_numpy_dtype_is_refused_in_one_line(dtype):
    """Issue 20: np.dtype("float32") compared equal to "float32", was accepted, and save_result then
    failed with no results.json written. The config takes the dtype's name only."""
    from jaxopt_cmp.checks import ConfigError

    with pytest.raises(ConfigError, match="dtype=.*expected one of float32, float64"):
        TrainConfig(dtype=dtype)

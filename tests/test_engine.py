"""The compiled JAX engine: batching, pairing, recompilation, divergence, sharding."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from dataclasses import replace

import jax
import numpy as np

from jaxopt_cmp import study as study_mod
from jaxopt_cmp.config import DataConfig, OptimizerConfig, StudyConfig, TrainConfig
from jaxopt_cmp.study import compile_study, grid_arrays, run_study, seed_keys
from jaxopt_cmp.train import make_study_fns, seed_inputs

SMALL = dict(data=DataConfig(n_data=512), train=TrainConfig(iters=60, batch_size=16, eval_every=20))


def small_cfg(**kw) -> StudyConfig:
    return StudyConfig(**{**SMALL, "record_predictions": False, **kw})


def test_eval_steps_include_start_interval_and_last():
    assert TrainConfig(iters=10_000, eval_every=500).eval_steps[-3:] == (9000, 9500, 10_000)
    assert TrainConfig(iters=1234, eval_every=500).eval_steps == (0, 500, 1000, 1234)


def test_result_shapes_and_uneven_last_chunk():
    cfg = small_cfg(train=TrainConfig(iters=50, batch_size=16, eval_every=20), seeds=3)
    res = run_study(cfg)
    assert list(res.eval_steps) == [0, 20, 40, 50]
    for name in cfg.optimizer_names:
        assert res.mse_EHS[name].shape == (4, 1, 3)
        assert res.diverged_at_HS[name].shape == (1, 3)
        assert np.all(np.isfinite(res.mse_EHS[name]))
    # All optimizers of a seed start from the same weights on the same data: same MSE at step 0.
    m0 = [res.mse_EHS[n][0] for n in cfg.optimizer_names]
    np.testing.assert_array_equal(m0[0], m0[1])
    np.testing.assert_array_equal(m0[0], m0[2])
    # Different seeds differ.
    assert len(set(m0[0][0].tolist())) == 3


def test_seed_alone_matches_seed_in_batch():
    cfg = small_cfg(seeds=4)
    run, keys, grid, _ = compile_study(cfg)
    batched = run(keys, grid)
    run1, _, _, _ = compile_study(small_cfg(seeds=1))
    for i in (0, 3):
        alone = run1(keys[i : i + 1], grid)
        for n in cfg.optimizer_names:
            # Batch size 1 vs 4 may select a different matmul kernel: agreement to float32
            # rounding (a few ulps over 60 steps), not bit-for-bit.
            np.testing.assert_allclose(alone.mse_EHS[n][:, :, 0], batched.mse_EHS[n][:, :, i], rtol=1e-5)


def test_seed_groups_give_the_same_runs(monkeypatch):
    """Training seeds in groups one after another (lax.map) reorders nothing a user sees."""
    cfg = small_cfg(seeds=8, record_predictions=True)
    at_once = run_study(cfg)
    monkeypatch.setattr(study_mod, "SEEDS_PER_DEVICE_GROUP", 2)
    assert study_mod.seed_groups(8) == 4
    steps = []
    grouped = run_study(cfg, progress=steps.append)
    for n in cfg.optimizer_names:
        # Batch 8 vs 2 per matmul may pick other kernels: float32 rounding, not bit-identity.
        np.testing.assert_allclose(grouped.mse_EHS[n], at_once.mse_EHS[n], rtol=1e-5)
        np.testing.assert_array_equal(grouped.diverged_at_HS[n], at_once.diverged_at_HS[n])
        np.testing.assert_allclose(grouped.pred_EHN[n], at_once.pred_EHN[n], rtol=1e-5, atol=1e-6)
        leaves = zip(jax.tree_util.tree_leaves(grouped.params_HS[n]), jax.tree_util.tree_leaves(at_once.params_HS[n]))
        for a, b in leaves:
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(grouped.x_N, at_once.x_N)
    assert steps == list(cfg.train.eval_steps[1:])  # after each evaluation interval, in order


def test_seed_keys_do_not_depend_on_count():
    a, b = seed_keys(7, 3), seed_keys(7, 5)
    np.testing.assert_array_equal(jax.random.key_data(a), jax.random.key_data(b[:3]))


def test_new_grid_values_seeds_and_iterations_do_not_recompile():
    """The compiled study is kept per shape: new lrs, root seed or iteration count reuse it (a
    notebook calling run_study again waits no compile); a new seed count does not."""
    study_mod.clear_cache()
    cfg = small_cfg(optimizers=(OptimizerConfig.make("adam", lr=[1e-3, 1e-2]),), seeds=2)
    first = run_study(cfg)
    assert first.timing["compile_s"] > 0
    other = replace(
        cfg,
        optimizers=(OptimizerConfig.make("adam", lr=[5e-4, 5e-3]),),
        seed=99,
        train=TrainConfig(iters=70, batch_size=16, eval_every=20),
    )
    again = run_study(other)
    assert again.timing["compile_s"] == 0
    assert list(again.eval_steps) == [0, 20, 40, 60, 70]
    assert not np.allclose(first.mse_EHS["adam"][-1], again.mse_EHS["adam"][-1])
    assert run_study(replace(cfg, seeds=3)).timing["compile_s"] > 0


def test_compiled_study_has_no_host_callback():
    """JAX's persistent compilation cache refuses programs with host callbacks: progress is
    reported between compiled chunks, never from inside them."""
    cfg = small_cfg(seeds=2)
    init, chunk = make_study_fns(cfg)
    keys, grid = seed_keys(0, 2).reshape(1, 2), grid_arrays(cfg)
    carry, _ = jax.eval_shape(init, keys, grid)
    for text in (jax.jit(init).lower(keys, grid).as_text(), jax.jit(chunk).lower(carry, 0, 5).as_text()):
        assert "callback" not in text


def test_divergence_is_recorded_and_contained():
    cfg = small_cfg(
        optimizers=(
            OptimizerConfig.make("sgd", lr=[1e-2, 10.0]),
            OptimizerConfig.make("adam", lr=1e-2),
        ),
        seeds=2,
    )
    res = run_study(cfg)
    div = res.diverged_at_HS["sgd"]
    assert np.all(div[0] == -1) and np.all(div[1] >= 0), div
    assert np.all(res.diverged_at_HS["adam"] == -1)
    steps = res.eval_steps[:, None]
    for n in cfg.optimizer_names:  # frozen at the last finite state: no NaN anywhere
        mse_EHS, div_HS = res.mse_EHS[n], res.diverged_at_HS[n]
        assert not np.any(np.isnan(mse_EHS))
        after = (div_HS[None] >= 0) & (steps[:, :, None] > div_HS[None])
        assert np.all(np.isinf(mse_EHS[after])) and np.all(np.isfinite(mse_EHS[~after]))
        assert all(np.all(np.isfinite(p)) for p in jax.tree_util.tree_leaves(res.params_HS[n]))
    # The stable lr is unaffected by its diverging neighbour: bit-identical to a study of the
    # same shapes whose second grid point stays finite.
    calm = small_cfg(optimizers=(OptimizerConfig.make("sgd", lr=[1e-2, 2e-2]), cfg.optimizers[1]), seeds=2)
    np.testing.assert_array_equal(run_study(calm).mse_EHS["sgd"][:, 0], res.mse_EHS["sgd"][:, 0])


def test_data_matches_seed_recipe():
    cfg = StudyConfig()
    data = seed_inputs(seed_keys(0, 1)[0], cfg).data
    x, y = np.asarray(data.x), np.asarray(data.y)
    assert x.shape == y.shape == (10_000, 1)
    assert -3 <= x.min() < -2.99 and 2.99 < x.max() <= 3
    resid = y - np.exp(-(x**2)) * np.cos(10 * x)
    assert abs(resid.std() - 0.03) < 0.002 and abs(resid.mean()) < 0.002


def test_sharded_equals_single_device(tmp_path):
    """4 simulated CPU devices (seed axis sharded) give the results of one device."""
    code = textwrap.dedent(
        """
        import sys, numpy as np, jax
        from jaxopt_cmp.config import DataConfig, StudyConfig, TrainConfig
        from jaxopt_cmp.study import run_study
        cfg = StudyConfig(data=DataConfig(n_data=512), seeds=4, record_predictions=False,
                          train=TrainConfig(iters=40, batch_size=16, eval_every=20))
        res = run_study(cfg)
        np.savez(sys.argv[1], n=jax.device_count(), **res.mse_EHS)
        """
    )
    outs = {}
    for n in (1, 4):
        env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={n}"}
        path = tmp_path / f"d{n}.npz"
        subprocess.run([sys.executable, "-c", code, str(path)], check=True, env=env)
        outs[n] = dict(np.load(path))
    assert outs[1]["n"] == 1 and outs[4]["n"] == 4
    for name in ("sgd", "momentum", "adam"):
        np.testing.assert_allclose(outs[4][name], outs[1][name], rtol=1e-5)

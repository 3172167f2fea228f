"""The compiled JAX engine: batching, pairing, recompilation, divergence, sharding."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from dataclasses import replace

import jax
import numpy as np

from jaxopt_cmp import study as study_mod
from jaxopt_cmp import train as train_mod
from jaxopt_cmp.config import DataConfig, ModelConfig, OptimizerConfig, StudyConfig, TrainConfig
from jaxopt_cmp.study import compile_study, grid_arrays, run_study, seed_keys
from jaxopt_cmp.train import make_study_fns, seed_inputs

# Structure, not the seed model: one hidden layer compiles in a fraction of the seed MLP's time.
SMALL = dict(
    data=DataConfig(n_data=512),
    model=ModelConfig(hidden=(16,)),
    train=TrainConfig(iters=60, batch_size=16, eval_every=20),
)


def small_cfg(**kw) -> StudyConfig:
    return StudyConfig(**{**SMALL, "record_predictions": False, **kw})


def test_eval_steps_include_start_interval_and_last():
    assert TrainConfig(iters=10_000, eval_every=500).eval_steps[-3:] == (9000, 9500, 10_000)
    assert TrainConfig(iters=1234, eval_every=500).eval_steps == (0, 500, 1000, 1234)


def test_result_shapes_and_uneven_last_chunk():
    cfg = small_cfg(train=TrainConfig(iters=50, batch_size=16, eval_every=20), seeds=4)  # seeds: compiled below too
    res = run_study(cfg)
    assert list(res.eval_steps) == [0, 20, 40, 50]
    for name in cfg.optimizer_names:
        assert res.mse_EHS[name].shape == (4, 1, 4)
        assert res.diverged_at_HS[name].shape == (1, 4)
        assert np.all(np.isfinite(res.mse_EHS[name]))
    # All optimizers of a seed start from the same weights on the same data: same MSE at step 0.
    m0 = [res.mse_EHS[n][0] for n in cfg.optimizer_names]
    np.testing.assert_array_equal(m0[0], m0[1])
    np.testing.assert_array_equal(m0[0], m0[2])
    # Different seeds differ.
    assert len(set(m0[0][0].tolist())) == 4


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


def assert_same_runs(grouped, at_once):
    """The same runs trained in groups and at once. Another batch size per matmul may pick other
    kernels: agreement to float32 rounding, not bit-identity."""
    for n in at_once.mse_EHS:
        np.testing.assert_allclose(grouped.mse_EHS[n], at_once.mse_EHS[n], rtol=1e-5)
        np.testing.assert_allclose(grouped.val_mse_EHS[n], at_once.val_mse_EHS[n], rtol=1e-5)
        np.testing.assert_array_equal(grouped.diverged_at_HS[n], at_once.diverged_at_HS[n])
        np.testing.assert_allclose(grouped.pred_EHN[n], at_once.pred_EHN[n], rtol=1e-5, atol=1e-6)
        leaves = zip(jax.tree_util.tree_leaves(grouped.params_HS[n]), jax.tree_util.tree_leaves(at_once.params_HS[n]))
        for a, b in leaves:
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_seed_groups_give_the_same_runs(monkeypatch):
    """Training seeds in groups one after another (lax.map) reorders nothing a user sees."""
    cfg = small_cfg(seeds=8, record_predictions=True)
    at_once = run_study(cfg)
    monkeypatch.setattr(study_mod, "SEEDS_PER_DEVICE_GROUP", 2)
    assert study_mod.seed_groups(8) == 4
    steps = []
    grouped = run_study(cfg, progress=steps.append)
    assert_same_runs(grouped, at_once)  # batch 8 vs 2 per matmul
    np.testing.assert_array_equal(grouped.x_N, at_once.x_N)
    assert steps == list(cfg.train.eval_steps[1:])  # after each evaluation interval, in order


def test_grid_groups_give_the_same_runs(monkeypatch):
    """Training a large grid a few grid points at a time (lax.map over groups, then a smaller
    last group) reorders nothing a user sees: 5 grid points x 2 seeds in groups of 2 + 1."""
    cfg = small_cfg(
        optimizers=(OptimizerConfig.make("sgd", lr=[0.3, 0.1, 0.03, 0.01, 0.003]),
                    OptimizerConfig.make("adam", lr=[0.03, 0.01, 0.003, 0.001, 3e-4], schedule="cosine", warmup=10)),
        seeds=2, record_predictions=True,
    )  # fmt: skip
    assert train_mod.grid_group_size(5, 2) == 5
    at_once = run_study(cfg)
    monkeypatch.setattr(train_mod, "RUNS_PER_GROUP", 4)
    assert train_mod.grid_group_size(5, 2) == 2
    grouped = run_study(cfg)
    assert_same_runs(grouped, at_once)  # batch 10 vs 4 or 2 runs per matmul


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
    carry = jax.eval_shape(init, keys, grid)
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


def test_sharded_and_laned_equal_single_device(tmp_path):
    """Several simulated CPU devices give the results of one device (training, validation and
    test MSE, predictions, parameters), both ways of using them: 2
    seeds split over 2 devices, and 1 seed with the optimizers in lanes (2 devices: sgd and adam
    on one, momentum on the other; a bigger grid gets a lane of its own; 3 devices: one each)."""
    code = textwrap.dedent(
        """
        import json, numpy as np, jax
        from jaxopt_cmp.config import OptimizerConfig, seed_study
        from jaxopt_cmp.budget import ONCE, estimate_bytes
        from jaxopt_cmp.checks import ConfigError
        from jaxopt_cmp.study import prepare_study
        out = {"n": jax.device_count()}
        wide = ("momentum", "adam", OptimizerConfig.make("sgd", lr=[0.1, 0.2, 0.3]))
        cases = {"S2-H1": (2, None), "S1-H1": (1, None), "S1-H3": (1, wide)}
        for tag in argv[2].split(","):
            seeds, names = cases[tag]
            cfg = seed_study(seeds=seeds, n_data=512, iters=30, batch_size=16, eval_every=10, hidden=(16,),
                             record_predictions=True, optimizers=names)
            prepared = prepare_study(cfg)
            res = prepared.run()
            parts = estimate_bytes(cfg)
            once = sum(v for k, v in parts.items() if k in ONCE)
            try:  # a study in lanes holds one copy of its state per lane: the budget counts them
                prepare_study(cfg, max_bytes=once + 1.5 * (sum(parts.values()) - once))
                out[tag + "-refused"] = False
            except ConfigError as err:
                out[tag + "-refused"] = "copies, one per lane" in str(err)
            out[tag + "-lanes"] = None if prepared.plan is None else [list(l) for l in prepared.plan.lanes]
            out[tag] = {n: {"mse": res.mse_EHS[n].tolist(), "pred": res.pred_EHN[n].tolist(),
                            "val": res.val_mse_EHS[n].tolist(), "test": res.test_mse_EHS[n].tolist(),
                            "params": [np.asarray(p).tolist() for p in jax.tree_util.tree_leaves(res.params_HS[n])]}
                        for n in res.mse_EHS}
        json.dump(out, open(argv[1], "w"))
        """
    )
    outs = {}
    every = "S2-H1,S1-H1,S1-H3"
    for n, tags in ((1, every), (2, every), (3, "S1-H1")):
        path = tmp_path / f"d{n}.json"
        if n == jax.device_count():  # this process's one device (tests/conftest.py): no subprocess
            exec(code, {"argv": ["-c", str(path), tags]})
        else:
            env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={n}"}
            program = "import sys\nargv = sys.argv\n" + code
            subprocess.run([sys.executable, "-c", program, str(path), tags], check=True, env=env)
        outs[n] = json.loads(path.read_text())
    assert [outs[n]["n"] for n in outs] == [1, 2, 3]
    lanes = {n: {k[:-6]: v for k, v in out.items() if k.endswith("-lanes")} for n, out in outs.items()}
    for n, out in outs.items():  # refused under 1.5 copies of the per-lane parts exactly when in lanes
        assert {k[:-8]: v for k, v in out.items() if k.endswith("-refused")} == {
            tag: plan is not None for tag, plan in lanes[n].items()
        }
    assert lanes[1] == {"S2-H1": None, "S1-H1": None, "S1-H3": None}
    assert lanes[2] == {
        "S2-H1": None,  # 2 seeds over 2 devices: the seed axis is split instead
        "S1-H1": [["sgd", "adam"], ["momentum"]],
        "S1-H3": [["sgd"], ["momentum", "adam"]],
    }
    assert lanes[3] == {"S1-H1": [["sgd"], ["momentum"], ["adam"]]}
    for n in (2, 3):
        for tag in lanes[n]:
            for name, want in outs[1][tag].items():
                for what in ("mse", "val", "test", "pred", "params"):
                    got = outs[n][tag][name][what]
                    for g, w in zip(got, want[what]) if what == "params" else [(got, want[what])]:
                        # Another per-device batch may pick other float32 kernels: a few ulps of
                        # O(1) values (measured <= 2e-7 absolute), so atol beside rtol.
                        msg = f"{n} devices {tag} {name} {what}"
                        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6, err_msg=msg)


def test_seed_keys_are_fold_ins_of_the_seeds_own_key():
    """The keys come from one small compiled program taking the seed as uint32: the same keys as
    ``fold_in(key(seed), i)`` with the seed as a Python int, over the whole 32-bit range."""
    for seed in (0, 7, 2**31 + 5, 2**32 - 1):
        want = [jax.random.key_data(jax.random.fold_in(jax.random.key(seed), i)) for i in range(3)]
        np.testing.assert_array_equal(jax.random.key_data(seed_keys(seed, 3)), np.stack(want))


def test_host_unravel_inverts_ravel_pytree_for_any_leading_axes():
    from jax.flatten_util import ravel_pytree

    from jaxopt_cmp.model import init_params
    from jaxopt_cmp.train import unravel_params

    cfg = small_cfg(model=ModelConfig(hidden=(5, 3)))
    trees = [init_params(k, cfg.model) for k in jax.random.split(jax.random.key(1), 6)]
    flat = np.stack([np.asarray(ravel_pytree(t)[0]) for t in trees]).reshape(2, 3, -1)
    unravel = unravel_params(cfg)
    for i, tree in enumerate(trees):
        got = unravel(flat[i // 3, i % 3])
        jax.tree_util.tree_map(np.testing.assert_array_equal, got, jax.tree_util.tree_map(np.asarray, tree))
    batched = unravel(flat)
    assert batched["dense_1"]["kernel"].shape == (2, 3, 5, 3)
    np.testing.assert_array_equal(batched["dense_1"]["kernel"][1, 2], trees[5]["dense_1"]["kernel"])

"""The compiled engine as a whole against ``torch_ref``'s eager loop, step by step, in float64.

``jaxopt_cmp.study.run_study`` (flat parameter vectors, injected hyperparameters, divergence
masks, evaluation chunks, seed groups, user data) and ``torch_ref.train.run_study`` fed the very
same problem: each seed's data, initial weights and every step's batch indices come from the
engine's own functions (``seed_keys`` -> ``seed_inputs`` -> ``batch_indices``). In float64 the two
must agree to rounding: final parameters, every recorded full-data, validation and test MSE, seed
0's predictions and the step at which a run diverged. The index stream itself is shared by both sides, so its
distribution is checked on its own.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import scipy.stats

from jaxopt_cmp import study as jstudy
from jaxopt_cmp import train as jtrain
from jaxopt_cmp.config import DataConfig, ModelConfig, OptimizerConfig, StudyConfig, TrainConfig
from jaxopt_cmp.data import Data, batch_indices, make_test, split_user_data
from jaxopt_cmp.optimizers import OPTIMIZERS
from jaxopt_cmp.train import seed_inputs
from torch_ref.parity import MLP_HPARAMS, host, precision
from torch_ref.train import SeedFeed
from torch_ref.train import run_study as torch_run_study

# Measured (float64, 210 steps): final parameters, recorded MSEs and predictions within 8.5e-14
# of torch's for every registry optimizer (nadam's parameters; most <= 5e-15), and within 2.3e-13
# on the user data below (Adam at lr 0.1). 1e-10 is tests/test_parity.py's float64 bound; a wrong
# batch, step, evaluation or seed moved them by 1e-3 or more in every bug tried.
F64_TOL = 1e-10
N_DATA, BATCH = 256, 16
# 210 steps, evaluated every 50: four full chunks and a short last one of 10 steps.
TRAIN = TrainConfig(iters=210, eval_every=50, batch_size=BATCH, dtype="float64")

# The second grid point moves every hyperparameter off its first value, so a hyperparameter the
# engine failed to inject (a default used instead) shows.
SECOND_POINT = {
    "beta1": 0.8,
    "beta2": 0.99,
    "momentum": 0.8,
    "alpha": 0.9,
    "eps": 1e-6,
    "weight_decay": 0.05,
    "rho": 0.8,
    "lr_decay": 1e-3,
    "initial_accumulator_value": 0.2,
    "momentum_decay": 0.01,
}


def two_point_grid(name: str) -> OptimizerConfig:
    """Grid point 0: the registry defaults (with ``MLP_HPARAMS``' stable settings); point 1: half
    the lr and every other hyperparameter changed (:data:`SECOND_POINT`)."""
    first = {**OPTIMIZERS[name].defaults, **MLP_HPARAMS.get(name, {})}
    second = {k: v / 2 if k == "lr" else SECOND_POINT[k] for k, v in first.items()}
    return OptimizerConfig.make(name, **{k: [first[k], second[k]] for k in first})


def jax_feeds(cfg: StudyConfig, data: Data | None = None) -> list[SeedFeed]:
    """What the engine trains each seed on, from the engine's own functions (call in x64 mode).

    Eager, not jitted: jax.random's internal programs are then compiled once per shape for every
    study of the file (a jitted version cost 3-5 s of compiling per study)."""
    feeds = []
    pair = lambda d: None if d is None else (np.asarray(d.x), np.asarray(d.y))
    if data is None:
        train, val, test = None, None, make_test(cfg.data, jnp.float64)
    else:
        train, val, test = split_user_data(data, cfg.data, cfg.seed)
    for key in jstudy.seed_keys(cfg.seed, cfg.seeds):
        seed = seed_inputs(key, cfg, train, val)
        idx_TB = batch_indices(seed.batch_key, jnp.arange(cfg.train.iters), cfg.data.n_data, cfg.train.batch_size)
        x, y = pair(seed.data)
        feeds.append(SeedFeed(x, y, host(seed.params), np.asarray(idx_TB), pair(seed.val), pair(test)))
    return feeds


def run_both(cfg: StudyConfig, data: Data | None = None):
    """``(engine result, torch result, feeds)`` of ``cfg``, the torch loop fed the engine's inputs."""
    with precision(np.float64):
        engine = jstudy.run_study(cfg, data=data)
        feeds = jax_feeds(cfg, data)
    assert jnp.asarray(1.0).dtype == np.float32  # x64 off again for the tests that follow
    return engine, torch_run_study(cfg, feeds=feeds), feeds


def rel_err(a, ref, axes: int) -> float:
    """Largest ``|a - ref|``, relative to ``max |ref|`` over the trailing ``axes`` axes of each slice."""
    a, ref = np.asarray(a, np.float64), np.asarray(ref, np.float64)
    a, ref = (x.reshape(*x.shape[: x.ndim - axes], -1) for x in (a, ref))
    scale = np.max(np.abs(ref), axis=-1)
    return float(np.max(np.max(np.abs(a - ref), axis=-1) / np.where(scale > 0, scale, 1.0)))


def deviations(engine, torch_result) -> dict[str, dict[str, float]]:
    """Per optimizer: relative gaps of final parameters (per run and array), of every recorded MSE
    (per entry) and of seed 0's predictions (per evaluation and grid point). Asserts first that
    the two agree on which runs diverged, when, and on which evaluations read +inf."""
    out = {}
    for name in engine.config.optimizer_names:
        np.testing.assert_array_equal(engine.diverged_at_HS[name], torch_result.diverged_at_HS[name], err_msg=name)
        mse, ref = engine.mse_EHS[name], torch_result.mse_EHS[name]
        assert mse.dtype == np.float64 and mse.shape == ref.shape
        np.testing.assert_array_equal(np.isposinf(mse), np.isposinf(ref), err_msg=name)
        assert np.all(np.isfinite(mse) | np.isposinf(mse)), name  # never NaN
        finite = np.isfinite(ref)
        params = [
            rel_err(a, r, a.ndim - 2)
            for a, r in zip(
                jax.tree_util.tree_leaves(engine.params_HS[name]),
                jax.tree_util.tree_leaves(torch_result.params_HS[name]),
                strict=True,
            )
        ]
        held = {}
        for kind in ("val", "test"):  # recorded at the same steps; +inf exactly where training's is
            got, want = engine.heldout(kind, name), torch_result.heldout(kind, name)
            assert not np.any(np.isnan(got)) and not np.any(np.isnan(want)), (name, kind)
            np.testing.assert_array_equal(np.isposinf(got), np.isposinf(mse), err_msg=f"{name} {kind}")
            np.testing.assert_array_equal(np.isposinf(want), np.isposinf(mse), err_msg=f"{name} {kind}")
            held[kind] = float(np.max(np.abs(got[finite] / want[finite] - 1), initial=0.0))
        out[name] = {
            "params": max(params),
            "mse": float(np.max(np.abs(mse[finite] / ref[finite] - 1), initial=0.0)),
            **held,
            "pred": rel_err(engine.pred_EHN[name], torch_result.pred_EHN[name], 1) if engine.pred_EHN else 0.0,
        }
    return out


def assert_parity(engine, torch_result, feeds: list[SeedFeed]) -> dict[str, dict[str, float]]:
    gaps = deviations(engine, torch_result)
    bad = {n: g for n, g in gaps.items() if not max(g.values()) <= F64_TOL}
    assert not bad, f"engine vs torch_ref beyond {F64_TOL}: {bad}"
    # The result's data is seed 0's, the problem both sides trained (to rounding: the engine
    # computes the target inside its compiled program, where exp/cos may differ by an ulp).
    assert rel_err(engine.x_N, feeds[0].x[:, 0], 1) <= F64_TOL
    assert rel_err(engine.y_N, feeds[0].y[:, 0], 1) <= F64_TOL
    return gaps


# ---------------------------------------------------------------------------------------------
# Every registry optimizer, two grid points, two seeds


def test_engine_matches_torch_ref_for_every_optimizer():
    cfg = StudyConfig(
        optimizers=tuple(two_point_grid(n) for n in OPTIMIZERS),
        data=DataConfig(n_data=N_DATA, n_val=100, n_test=50),
        model=ModelConfig(hidden=(8,)),
        train=TRAIN,
        seeds=2,
    )
    engine, torch_result, feeds = run_both(cfg)
    assert_parity(engine, torch_result, feeds)
    for name in cfg.optimizer_names:
        assert np.all(engine.diverged_at_HS[name] == -1), name  # settings where runs stay finite
        # Each run went somewhere of its own: the grid points and the seeds differ.
        final = engine.final_mse_HS[name]
        assert len(np.unique(final)) == final.size, (name, final)
        assert np.all(final < engine.mse_EHS[name][0]), name


# ---------------------------------------------------------------------------------------------
# Seed groups, user data, and runs that diverge


def user_data(n: int, offset: float) -> Data:
    """Two input columns; targets far from zero (``offset``), so first gradients are large."""
    rng = np.random.default_rng(7)
    x = rng.uniform(-2, 2, (n, 2))
    y = np.sin(2 * x[:, :1]) * np.cos(x[:, 1:]) + offset + 0.05 * rng.standard_normal((n, 1))
    return Data(x, y)


def test_seed_and_grid_groups_user_data_and_divergence_match_torch_ref(monkeypatch):
    """Six seeds in three groups of two (seed ``s = k * 3 + j``), SGD's grid trained one grid point
    at a time (grid groups, :func:`jaxopt_cmp.train.grid_group_size`), every seed fitting the user's
    data (two input columns, targets near 100), two hidden layers. SGD grid points:

    - lr 1e307: the first update overflows to inf while that step's loss (~1e4) is finite, so
      the run is diverged at step 0 (its initial weights kept) though only its parameters, not
      its loss, went non-finite;
    - lr 1e10: the weights grow geometrically until the loss overflows a few steps in. (At lr
      1.5-3 on generated data the saturated network's last steps before overflow are chaotic and
      the two sides' float64 rounding moved that step by up to 7: no setting to compare at.)
    - lr 1e-3: stays finite, as do both of Adam's grid points.
    """
    monkeypatch.setattr(jstudy, "SEEDS_PER_DEVICE_GROUP", 2)
    monkeypatch.setattr(jtrain, "RUNS_PER_GROUP", 2)  # SGD's 3 grid points x 2 seeds: one point at a time
    # 320 rows: 40 (12.5%) held out for validation and 24 (7.5%) for test leave N_DATA to train.
    data = user_data(320, offset=100.0)
    cfg = StudyConfig(
        optimizers=(OptimizerConfig.make("sgd", lr=[1e307, 1e10, 1e-3]), OptimizerConfig.make("adam", lr=[0.1, 0.03])),
        data=DataConfig(n_data=N_DATA, source="user", val_fraction=0.125, test_fraction=0.075),
        model=ModelConfig(xdim=2, hidden=(8, 8)),
        train=TRAIN,
        seeds=6,
    )
    assert jstudy.seed_groups(cfg.seeds) == 3
    assert jtrain.grid_group_size(3, 2) == 1 and jtrain.grid_group_size(2, 2) == 2
    engine, torch_result, feeds = run_both(cfg, data)
    train = split_user_data(data, cfg.data, cfg.seed)[0]
    assert train.x.shape == (N_DATA, 2) and feeds[0].val[0].shape == (40, 2) and feeds[0].test[0].shape == (24, 2)
    for feed in feeds:
        np.testing.assert_array_equal(feed.x, train.x)
    np.testing.assert_array_equal(engine.x_N, train.x[:, 0])
    np.testing.assert_array_equal(engine.y_N, train.y[:, 0])
    assert_parity(engine, torch_result, feeds)
    diverged = engine.diverged_at_HS["sgd"]
    assert np.all(diverged[0] == 0) and np.all(diverged[1] > 0) and np.all(diverged[2] == -1), diverged
    assert np.all(engine.diverged_at_HS["adam"] == -1)
    assert np.all(engine.final_mse_HS["adam"] < engine.mse_EHS["adam"][0])
    assert_inf_after_divergence(engine)
    for s, feed in enumerate(feeds):  # diverged at step 0: the initial weights, kept (to an ulp:
        for layer, leaves in feed.params.items():  # the engine draws them inside its program)
            for leaf, value in leaves.items():
                assert rel_err(engine.params_HS["sgd"][layer][leaf][0, s], value, value.ndim) <= F64_TOL


def assert_inf_after_divergence(result) -> None:
    """A diverged run reads +inf at every evaluation after its bad step, finite before."""
    for name, at_HS in result.diverged_at_HS.items():
        for (h, s), at in np.ndenumerate(at_HS):
            if at >= 0:
                after = result.eval_steps > at
                assert np.all(np.isposinf(result.mse_EHS[name][after, h, s])), (name, h, s)
                assert np.all(np.isfinite(result.mse_EHS[name][~after, h, s])), (name, h, s)


# ---------------------------------------------------------------------------------------------
# The index stream both sides share


def test_batch_indices_cover_the_data_uniformly_and_change_every_step():
    n_data, batch, steps = 200, 16, 500
    idx_TB = np.asarray(batch_indices(jax.random.key(3), jnp.arange(steps), n_data, batch))
    assert idx_TB.shape == (steps, batch)
    assert idx_TB.min() == 0 and idx_TB.max() == n_data - 1
    # Uniform over all n_data indices: chi-square over 8,000 draws, 40 per index.
    counts = np.bincount(idx_TB.ravel(), minlength=n_data)
    assert scipy.stats.chisquare(counts).pvalue > 1e-3
    # Fresh every step: batches of neighbouring steps share ~1.3 of 16 indices by chance.
    shared = [len(np.intersect1d(a, b)) for a, b in zip(idx_TB, idx_TB[1:])]
    assert np.mean(shared) < 4, np.mean(shared)
    # Step t's batch depends on (key, t) only, not on which other steps are drawn with it.
    some = np.asarray(batch_indices(jax.random.key(3), jnp.arange(230, 260), n_data, batch))
    np.testing.assert_array_equal(some, idx_TB[230:260])

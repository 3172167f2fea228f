"""``torch_ref`` alone: layout, explicit randomness, conversion, optimizer table, study loop."""

from __future__ import annotations

import inspect

import jax
import numpy as np
import pytest
import scipy.stats
import torch

from jaxopt_cmp.checks import ConfigError
from jaxopt_cmp.config import DataConfig, ModelConfig, OptimizerConfig, StudyConfig, TrainConfig
from jaxopt_cmp.optimizers import OPTIMIZERS
from jaxopt_cmp.targets import TARGETS
from torch_ref import convert, data, train
from torch_ref import model as tmodel
from torch_ref import optimizers as topt

MODEL = ModelConfig()


def generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def tiny_study(**changes) -> StudyConfig:
    base = dict(
        data=DataConfig(n_data=256),
        train=TrainConfig(iters=30, eval_every=10, batch_size=16),
        seeds=2,
    )
    return StudyConfig(**{**base, **changes})


# ---------------------------------------------------------------------------------------------
# Model


def test_mlp_layout_follows_the_seed_notebook():
    model = tmodel.make_model(MODEL, generator=generator(0))
    names = [name for name, _ in model.net.named_children()]
    assert names == ["linear_00", "tanh_01", "linear_02", "tanh_03", "linear_04"]
    rows = tmodel.param_rows(model)
    assert [(n, s) for n, s, _ in rows] == [
        ("net.linear_00.weight", (64, 1)),
        ("net.linear_00.bias", (64,)),
        ("net.linear_02.weight", (64, 64)),
        ("net.linear_02.bias", (64,)),
        ("net.linear_04.weight", (1, 64)),
        ("net.linear_04.bias", (1,)),
    ]
    assert all(len(first) == min(5, int(np.prod(s))) for _, s, first in rows)
    assert tmodel.count_params(model) == 4_353


def test_model_honours_dtype_and_other_shapes():
    model = tmodel.MLP(2, (8,), 3, torch.float64, generator(0))  # ydim > 1: the class allows it, configs not
    assert {p.dtype for p in model.parameters()} == {torch.float64}
    assert [n for n, _ in model.net.named_children()] == ["linear_00", "tanh_01", "linear_02"]
    assert model(torch.zeros(5, 2, dtype=torch.float64)).shape == (5, 3)


def test_model_without_generator_has_no_weights_until_given_some():
    """NaN, not torch's default init: that would draw from the global RNG."""
    model = tmodel.make_model(MODEL)
    assert all(torch.isnan(p).all() for p in model.parameters())
    tmodel.init_params(model, generator(0))
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_init_depends_only_on_the_generator():
    def weights(seed):
        model = tmodel.make_model(MODEL, generator=generator(seed))
        return [p.detach().clone() for p in model.parameters()]

    a, b, c = weights(1), weights(1), weights(2)
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert not torch.equal(a[2], c[2])
    assert not any(a[i].any() for i in (1, 3, 5))  # biases start at zero


def test_mse_is_the_seed_notebooks_mse_loss():
    pred = torch.linspace(-1, 1, 7)[:, None]
    target = torch.ones(7, 1)
    assert tmodel.mse(pred, target).item() == pytest.approx(torch.nn.MSELoss()(pred, target).item())
    with pytest.raises(ValueError, match=r"\(7, 1\) != target shape \(7,\)"):
        tmodel.mse(pred, target[:, 0])


def test_nothing_draws_from_the_global_rngs():
    torch_state, numpy_state = torch.random.get_rng_state(), np.random.get_state()[1].copy()
    tmodel.make_model(MODEL)
    tmodel.make_model(MODEL, generator=generator(0))
    data.make_data(generator(0), DataConfig(n_data=100))
    data.batch_indices(generator(0), 100, 10)
    train.run_study(tiny_study(train=TrainConfig(iters=3, eval_every=3, batch_size=16)))
    assert torch.equal(torch_state, torch.random.get_rng_state())
    assert np.array_equal(numpy_state, np.random.get_state()[1])


# ---------------------------------------------------------------------------------------------
# Data


def test_make_data_draws_the_seed_regression_set():
    cfg = DataConfig()
    x, y = data.make_data(generator(3), cfg)
    assert x.shape == y.shape == (10_000, 1) and x.dtype == y.dtype == torch.float32
    assert cfg.x_low <= x.min() and x.max() < cfg.x_high
    assert x.std().item() == pytest.approx(6 / np.sqrt(12), rel=0.02)  # U[-3, 3]
    noise = (y - TARGETS["seed"](x, torch)).std().item()
    assert noise == pytest.approx(cfg.noise_std, rel=0.05)  # s.e. 0.7% at 10,000 points
    again = data.make_data(generator(3), cfg)
    assert torch.equal(x, again[0]) and torch.equal(y, again[1])


def test_make_data_computes_the_jax_target_formula():
    import jax
    import jax.numpy as jnp

    for name, target in TARGETS.items():
        x, y = data.make_data(generator(0), DataConfig(target=name, noise_std=0.0), torch.float64)
        with jax.enable_x64(True):
            expected = np.asarray(target(jnp.asarray(x.numpy()), jnp))
        assert expected.dtype == np.float64
        np.testing.assert_allclose(y.numpy(), expected, rtol=1e-12, atol=1e-14, err_msg=name)


def test_batch_indices_are_distinct_and_reproducible():
    idx = data.batch_indices(generator(5), 1_000, 64)
    assert idx.shape == (64,) and len(set(idx.tolist())) == 64
    assert 0 <= idx.min() and idx.max() < 1_000
    assert torch.equal(idx, data.batch_indices(generator(5), 1_000, 64))


def test_batch_indices_stream_is_fresh_each_draw_and_covers_the_data():
    gen = generator(6)
    idx_TB = np.stack([data.batch_indices(gen, 200, 16).numpy() for _ in range(500)])
    counts = np.bincount(idx_TB.ravel(), minlength=200)
    assert len(counts) == 200 and scipy.stats.chisquare(counts).pvalue > 1e-3  # 40 draws per index
    shared = [len(np.intersect1d(a, b)) for a, b in zip(idx_TB, idx_TB[1:])]
    assert np.mean(shared) < 4, np.mean(shared)  # ~1.3 of 16 by chance


# ---------------------------------------------------------------------------------------------
# Conversion


def test_name_map_is_explicit():
    model = tmodel.make_model(MODEL)
    assert convert.name_map(model) == {
        "dense_0": "net.linear_00",
        "dense_1": "net.linear_02",
        "dense_2": "net.linear_04",
    }


def flax_params(dtype=np.float32, seed=0) -> dict:
    rng = np.random.default_rng(seed)
    widths = (1, 64, 64, 1)
    return {
        f"dense_{i}": {
            "kernel": rng.standard_normal((a, b)).astype(dtype),
            "bias": rng.standard_normal(b).astype(dtype),
        }
        for i, (a, b) in enumerate(zip(widths[:-1], widths[1:], strict=True))
    }


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_params_round_trip_exactly(dtype):
    params = flax_params(dtype)
    model = convert.params_to_torch(params, tmodel.make_model(MODEL, getattr(torch, dtype.__name__)))
    assert torch.equal(model.net.linear_02.weight, torch.from_numpy(params["dense_1"]["kernel"].T))
    back = convert.params_from_torch(model)
    for layer, leaves in params.items():
        for leaf, value in leaves.items():
            assert back[layer][leaf].dtype == value.dtype
            np.testing.assert_array_equal(back[layer][leaf], value)


def test_params_to_torch_refuses_mismatches():
    model = tmodel.make_model(MODEL)
    good = flax_params()
    torch_layout = {**good, "dense_0": {**good["dense_0"], "kernel": good["dense_0"]["kernel"].T}}
    with pytest.raises(ValueError, match=r"dense_0\.kernel -> net\.linear_00\.weight: shape"):
        convert.params_to_torch(torch_layout, model)
    with pytest.raises(ValueError, match="layers"):
        convert.params_to_torch({k: v for k, v in good.items() if k != "dense_2"}, model)
    with pytest.raises(ValueError, match="dtype"):
        convert.params_to_torch(flax_params(np.float64), model)
    with pytest.raises(ValueError, match="leaves"):
        convert.params_to_torch({**good, "dense_1": {"kernel": good["dense_1"]["kernel"]}}, model)


# ---------------------------------------------------------------------------------------------
# Optimizers


def test_every_registry_optimizer_has_a_torch_row():
    """DESIGN contract: each registry entry has a torch counterpart with its mapping written."""
    assert set(OPTIMIZERS) <= set(topt.TORCH_OPTIMIZERS)


@pytest.mark.parametrize("name", sorted(topt.TORCH_OPTIMIZERS))
def test_torch_row_takes_exactly_the_registry_hyperparameters(name):
    assert name in OPTIMIZERS
    takes = list(inspect.signature(topt.TORCH_OPTIMIZERS[name].kwargs).parameters)
    assert sorted(takes) == sorted(OPTIMIZERS[name].defaults)


@pytest.mark.parametrize(
    "name, hparams, expected",
    [
        ("sgd", {}, {"lr": 1e-2, "momentum": 0.0}),
        ("momentum", {"lr": 0.5}, {"lr": 0.5, "momentum": 0.9, "dampening": 0, "nesterov": False}),
        ("adam", {}, {"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0}),
        ("adam", {"beta2": 0.99}, {"lr": 1e-3, "betas": (0.9, 0.99), "eps": 1e-8}),
    ],
)
def test_make_optimizer_maps_names_and_registry_defaults(name, hparams, expected):
    params = [torch.nn.Parameter(torch.zeros(3))]
    group = topt.make_optimizer(name, params, **hparams).param_groups[0]
    assert {k: group[k] for k in expected} == expected


@pytest.mark.parametrize(
    "name, hparams, setting",
    [
        ("no_such_optimizer", {}, "optimizer"),
        ("sgd", {"momentum": 0.9}, "sgd hyperparameter"),
        ("adam", {"lr": 0.0}, "lr"),
        ("momentum", {"momentum": 1.0}, "momentum"),
    ],
)
def test_make_optimizer_refuses_bad_settings(name, hparams, setting):
    with pytest.raises(ConfigError) as err:
        topt.make_optimizer(name, [torch.nn.Parameter(torch.zeros(1))], **hparams)
    assert err.value.setting == setting


def test_a_registry_optimizer_without_a_torch_row_is_named(monkeypatch):
    monkeypatch.delitem(topt.TORCH_OPTIMIZERS, "adam")
    with pytest.raises(ConfigError, match="no torch counterpart"):
        topt.make_optimizer("adam", [torch.nn.Parameter(torch.zeros(1))])


# ---------------------------------------------------------------------------------------------
# Training


def test_train_step_returns_the_pre_update_loss_and_takes_an_sgd_step():
    model = tmodel.make_model(MODEL, generator=generator(0))
    x, y = data.make_data(generator(1), DataConfig(n_data=64))
    before = [p.detach().clone() for p in model.parameters()]
    loss = tmodel.mse(model(x), y)
    grads = torch.autograd.grad(loss, list(model.parameters()))
    optimizer = topt.make_optimizer("sgd", model.parameters(), lr=0.1)
    assert train.train_step(model, optimizer, x, y) == loss.item()
    for p, p0, g in zip(model.parameters(), before, grads, strict=True):
        torch.testing.assert_close(p.detach(), p0 - 0.1 * g, rtol=0, atol=1e-7)


def test_run_study_is_reproducible_paired_and_reports_progress():
    cfg = tiny_study()
    steps = []
    result = train.run_study(cfg, progress=steps.append)
    assert steps == [10, 20, 30]
    again = train.run_study(cfg)
    for name in cfg.optimizer_names:
        np.testing.assert_array_equal(result.mse_EHS[name], again.mse_EHS[name])
    # Paired: every optimizer starts seed s from the same weights on the same data ...
    start = {n: result.mse_EHS[n][0] for n in cfg.optimizer_names}
    assert all(np.array_equal(s, start["sgd"]) for s in start.values())
    # ... which the seeds do not share, and which initial_model gives back.
    assert start["sgd"][0, 0] != start["sgd"][0, 1]
    x = torch.from_numpy(result.x_N[:, None])
    with torch.no_grad():
        pred = train.initial_model(cfg, 0)(x)[:, 0].numpy()
    np.testing.assert_array_equal(result.pred_EHN["adam"][0, 0], pred)
    assert result.final_mse_HS["adam"].shape == (1, 2)


def test_run_study_sweeps_a_grid_in_float64_without_predictions():
    cfg = tiny_study(
        optimizers=(OptimizerConfig.make("adam", lr=[1e-3, 1e-2, 3e-2]),),
        train=TrainConfig(iters=25, eval_every=10, batch_size=16, dtype="float64"),
        record_predictions=False,
    )
    result = train.run_study(cfg)
    assert result.mse_EHS["adam"].shape == (4, 3, 2) and result.mse_EHS["adam"].dtype == np.float64
    np.testing.assert_array_equal(result.eval_steps, [0, 10, 20, 25])
    np.testing.assert_array_equal(result.grid["adam"]["lr"], [1e-3, 1e-2, 3e-2])
    assert result.params_HS["adam"]["dense_1"]["kernel"].shape == (3, 2, 64, 64)
    assert result.pred_EHN == {}
    final = result.mse_EHS["adam"][-1]
    assert len({*final[:, 0]}) == 3  # each grid point trained with its own lr


def test_divergence_is_recorded_and_the_last_finite_weights_kept():
    cfg = tiny_study(
        optimizers=(OptimizerConfig.make("sgd", lr=[1e-2, 10.0]), OptimizerConfig.make("adam")),
        train=TrainConfig(iters=40, eval_every=10, batch_size=16),
    )
    result = train.run_study(cfg)
    diverged = result.diverged_at_HS
    assert np.all(diverged["sgd"][0] == -1) and np.all(diverged["adam"] == -1)
    assert np.all(diverged["sgd"][1] >= 0), diverged  # lr 10 blows up within a few steps
    for layer in result.params_HS["sgd"].values():
        assert all(np.isfinite(a).all() for a in layer.values())
    assert np.all(np.isfinite(result.mse_EHS["sgd"][:, 0]))  # the lr 1e-2 runs went on
    # Frozen: the weights are those after the steps before the bad one, and stay so.
    for s, step in enumerate(diverged["sgd"][1]):
        short = train.run_study(
            tiny_study(
                optimizers=cfg.optimizers,
                train=TrainConfig(iters=int(step), eval_every=10, batch_size=16),
            )
        )
        for layer, leaves in short.params_HS["sgd"].items():
            for leaf, value in leaves.items():
                np.testing.assert_array_equal(result.params_HS["sgd"][layer][leaf][1, s], value[1, s])
    # As in the JAX engine: evaluations after the bad step read +inf, never NaN.
    for s, step in enumerate(diverged["sgd"][1]):
        after = result.eval_steps > step
        assert np.all(np.isposinf(result.mse_EHS["sgd"][after, 1, s]))
        assert np.all(np.isfinite(result.mse_EHS["sgd"][~after, 1, s]))


def own_feeds(cfg: StudyConfig) -> list[train.SeedFeed]:
    """Each seed's data, initial weights and batches drawn from ``run_study``'s own generators."""
    feeds = []
    for i in range(cfg.seeds):
        x, y = data.make_data(train.seed_generator(cfg.seed, i, train.DATA), cfg.data)
        batches = train.seed_generator(cfg.seed, i, train.BATCH)
        idx_TB = [data.batch_indices(batches, cfg.data.n_data, cfg.train.batch_size) for _ in range(cfg.train.iters)]
        params = convert.params_from_torch(train.initial_model(cfg, i))
        feeds.append(train.SeedFeed(x.numpy(), y.numpy(), params, torch.stack(idx_TB).numpy()))
    return feeds


def test_run_study_trains_its_generators_stream_one_batch_per_step():
    """The loop on its own generators is the loop fed those generators' draws, one per step in
    order (so it neither repeats a batch nor skips one), and each seed draws its own."""
    cfg = tiny_study(optimizers=(OptimizerConfig.make("adam", lr=[1e-2, 3e-2]),))
    feeds = own_feeds(cfg)
    assert not np.array_equal(feeds[0].idx_TB, feeds[1].idx_TB)
    drawn, fed = train.run_study(cfg), train.run_study(cfg, feeds=feeds)
    np.testing.assert_array_equal(drawn.mse_EHS["adam"], fed.mse_EHS["adam"])
    np.testing.assert_array_equal(drawn.x_N, feeds[0].x[:, 0])
    for a, b in zip(jax.tree_util.tree_leaves(drawn.params_HS), jax.tree_util.tree_leaves(fed.params_HS), strict=True):
        np.testing.assert_array_equal(a, b)
    # Fed other batches (each step's batch shifted by one step), the runs differ.
    shifted = [f._replace(idx_TB=np.roll(f.idx_TB, 1, axis=0)) for f in feeds]
    other = train.run_study(cfg, feeds=shifted)
    assert not np.any(other.mse_EHS["adam"][1:] == drawn.mse_EHS["adam"][1:])


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda fs: fs[:1], "one per seed"),
        (lambda fs: [f._replace(x=f.x.astype(np.float64)) for f in fs], r"SeedFeed\.x: .* float64"),
        (lambda fs: [f._replace(idx_TB=f.idx_TB[:-1]) for f in fs], r"SeedFeed\.idx_TB: \(29, 16\)"),
        (lambda fs: [f._replace(idx_TB=f.idx_TB + 256) for f in fs], "outside"),
    ],
)
def test_run_study_refuses_feeds_that_do_not_fit(change, message):
    cfg = tiny_study()
    with pytest.raises(ValueError, match=message):
        train.run_study(cfg, feeds=change(own_feeds(cfg)))


# ---------------------------------------------------------------------------------------------
# Whole runs: each framework on its own random streams, the same outcome in distribution

# The sin target, not the seed's: on the seed target plain SGD at lr 1e-2 learns only the mean for
# ~1,000 steps (median MSE 0.96 var(y) at 500), so a comparison there shows nothing about it. On
# sin(3x) with a 1-32-32-1 net, over root seeds 0-7 (8 seeds, 400 steps) the median final MSE /
# var(y) was sgd 0.52-0.64, momentum 0.12-0.23, adam 0.06-0.10 on both sides, and the torch/JAX
# ratio of medians 0.66-1.18 (momentum's spread is widest: log-sd 0.45 per seed).
WHOLE_RUN = StudyConfig(
    data=DataConfig(n_data=1_000, target="sin"),
    model=ModelConfig(hidden=(32, 32)),
    train=TrainConfig(iters=400, eval_every=100, batch_size=32),
    seeds=8,
)
LEARNED = 0.75  # median final MSE below this fraction of var(y): beyond the mean, clearly
MEDIAN_FACTOR = 2.0  # torch/JAX ratio of medians within this factor: gross differences only


def test_whole_runs_learn_and_agree_in_distribution():
    """The step-by-step agreement is tests/test_engine_parity.py's; this checks what it cannot:
    torch_ref's own data, init and batch streams give the engine's outcomes, and every optimizer
    learns beyond the mean on both sides (the seed's ordering, adam < momentum < sgd, holds)."""
    from jaxopt_cmp.study import run_study as jax_run_study

    results = {"jax": jax_run_study(WHOLE_RUN), "torch": train.run_study(WHOLE_RUN)}
    medians = {}
    for framework, r in results.items():
        var_y = float(np.var(r.y_N))
        medians[framework] = {n: float(np.median(r.final_mse_HS[n][0])) / var_y for n in WHOLE_RUN.optimizer_names}
        assert all(np.all(d == -1) for d in r.diverged_at_HS.values()), framework
    for framework, m in medians.items():
        assert max(m.values()) < LEARNED, (framework, medians)
        assert m["adam"] < m["momentum"] < m["sgd"], (framework, medians)
    for name in WHOLE_RUN.optimizer_names:
        ratio = medians["torch"][name] / medians["jax"][name]
        assert 1 / MEDIAN_FACTOR < ratio < MEDIAN_FACTOR, (name, medians)


def test_single_threaded_restores_the_thread_count():
    before = torch.get_num_threads()
    with train.single_threaded():
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before

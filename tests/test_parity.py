"""Cross-framework checks: ``jaxopt_cmp`` (Flax + optax, compiled) against ``torch_ref`` (eager).

Weights are copied from the JAX model and batch indices drawn on the JAX side, so both frameworks
train the very same problem; trajectories are compared at every step, in float64 (where the two
must agree to rounding) and in float32 (where the tolerance is float32's measured rounding noise).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats
import torch

from jaxopt_cmp import model as jmodel
from jaxopt_cmp.config import DataConfig, ModelConfig, StudyConfig, TrainConfig
from jaxopt_cmp.study import run_study as jax_run_study
from torch_ref import model as tmodel
from torch_ref import parity
from torch_ref.convert import name_map, params_from_torch, params_to_torch
from torch_ref.parity import Problem, Trajectory, deviation_T, host, precision, relative
from torch_ref.train import run_study as torch_run_study

SEED_PARAMS = 4_353  # the seed notebook's count for 1-64-64-1
MODEL = ModelConfig()
STEPS, BATCH, LR = 200, 64, 1e-2
# The seed's three optimizers, at the seed's lr. Every registry entry (at its own defaults) is
# compared step by step in tests/test_zoo.py; the float32 tolerance below is calibrated for these.
OPTIMIZER_NAMES = ["adam", "momentum", "sgd"]


@pytest.fixture(scope="module")
def problem() -> Problem:
    return parity.seed_problem(STEPS, BATCH)


def test_x64_switch_is_local():
    with precision(np.float64):
        assert jnp.asarray(1.0).dtype == np.float64
        assert jax.random.normal(jax.random.key(0), (1,), jnp.float64).dtype == np.float64
    with precision(np.float32):
        assert jnp.asarray(1.0).dtype == np.float32
    assert jnp.asarray(1.0).dtype == np.float32  # off again after the block: JAX's default


def test_comparisons_run_at_highest_matmul_precision():
    """On GPUs JAX's default float32 matmul is TF32 (~1e-3 relative): never compare under it."""
    for dtype in (np.float32, np.float64):
        with precision(dtype):
            assert jax.config.jax_default_matmul_precision == "highest"
    assert jax.config.jax_default_matmul_precision is None  # restored after the block


def jax_trajectory(name: str, problem: Problem, dtype) -> Trajectory:
    """The engine's own step (``make_step`` + the registry's inject_hyperparams optimizer)."""
    return parity.jax_mlp_trajectory(name, problem, dtype, lr=LR)


def torch_trajectory(name: str, problem: Problem, dtype) -> Trajectory:
    """``torch_ref``'s eager step on the same weights and the same batches."""
    return parity.torch_mlp_trajectory(name, problem, dtype, lr=LR)


@pytest.fixture(scope="module")
def trajectory(problem):
    """``trajectory(framework, name, dtype)``, each computed once per module."""
    runners = {"jax": jax_trajectory, "torch": torch_trajectory}

    @functools.cache
    def get(framework: str, name: str, dtype: str) -> Trajectory:
        return runners[framework](name, problem, np.dtype(dtype))

    return get


def assert_every_step(err_T: np.ndarray, tol_T, what: str) -> None:
    """All ``STEPS`` steps compared, none (NaN included) above its tolerance."""
    tol_T = np.broadcast_to(tol_T, err_T.shape)
    assert err_T.shape == (STEPS,), f"{what}: compared {err_T.shape} steps, expected {STEPS}"
    bad = np.flatnonzero(~(err_T <= tol_T))
    assert bad.size == 0, (
        f"{what}: {bad.size} steps exceed the tolerance; first at step {bad[0] + 1}: "
        f"{err_T[bad[0]]:.3g} > {tol_T[bad[0]]:.3g} (max {np.nanmax(err_T):.3g})"
    )


# ---------------------------------------------------------------------------------------------
# Model: names, shapes, count, forward, gradients


def test_parameter_names_shapes_and_count_agree(problem):
    model = tmodel.make_model(MODEL)
    to_torch = name_map(model)
    expected = []
    for name, shape, _ in jmodel.param_rows(problem.params):
        layer, leaf = name.split(".")
        torch_leaf = "weight" if leaf == "kernel" else "bias"
        expected.append((f"{to_torch[layer]}.{torch_leaf}", shape[::-1]))  # (in, out) -> (out, in)
    assert [(name, shape) for name, shape, _ in tmodel.param_rows(model)] == expected
    assert expected[0] == ("net.linear_00.weight", (64, 1))  # the seed notebook's printout
    assert jmodel.count_params(problem.params) == tmodel.count_params(model) == SEED_PARAMS


forward_and_grads = parity.torch_forward_and_grads


# Measured on the seed data (10,000 points) at init: float64 forward 5.7e-15, gradients <= 8.5e-15;
# float32 forward 2.9e-6 (both frameworks are ~5e-7 absolute from the float64 result, the output
# is only 0.21 at its largest), gradients <= 7.2e-7.
@pytest.mark.parametrize("dtype, tol", [("float64", 1e-12), ("float32", 1e-5)])
def test_forward_and_gradients_agree_on_the_seed_data(problem, dtype, tol):
    gaps = parity.model_agreement(problem, dtype)  # raises TypeError unless both give `dtype`
    assert len(gaps) == 2 + 2 * (len(MODEL.hidden) + 1)  # forward, loss, kernel+bias per layer
    for name, gap in gaps.items():
        assert gap <= tol, name


def test_forward_check_detects_an_untransposed_square_kernel(problem):
    """Negative control: a 64x64 kernel copied without ``.T`` passes every shape check."""
    model = params_to_torch(problem.params, tmodel.make_model(MODEL))
    with torch.no_grad():
        model.net.linear_02.weight.copy_(torch.tensor(problem.params["dense_1"]["kernel"]))
    pred, _, _ = forward_and_grads(model, problem.x, problem.y)
    jax_pred = np.asarray(jmodel.make_model(MODEL).apply({"params": problem.params}, problem.x))
    assert relative(pred, jax_pred) > 1e-2  # 1e4 x the float32 tolerance of the real test


def test_mse_refuses_shapes_that_would_broadcast():
    """(N, 1) predictions against (N,) targets would broadcast to (N, N) and average garbage."""
    pred, target = np.linspace(0, 1, 5, dtype=np.float32), np.ones(5, np.float32)
    with pytest.raises(ValueError, match="shape"):
        jmodel.mse(jnp.asarray(pred[:, None]), jnp.asarray(target))
    with pytest.raises(ValueError, match="shape"):
        tmodel.mse(torch.from_numpy(pred[:, None]), torch.from_numpy(target))
    same = (pred[:, None], target[:, None])
    jax_value = float(jmodel.mse(*map(jnp.asarray, same)))
    assert tmodel.mse(*map(torch.from_numpy, same)).item() == pytest.approx(jax_value, rel=1e-6)


# ---------------------------------------------------------------------------------------------
# Training trajectories, every step


# float64: measured <= 2e-15 (params and loss, every optimizer) over 200 steps, 5e-15 over 1,000.
# 1e-12 leaves room for other BLAS builds; every mutation tried (Nesterov, dampening 0.1, eps 1e-7,
# eps under the square root, gradients not zeroed) reaches a parameter deviation of 7e-4 or more.
F64_TOL = 1e-12


@pytest.mark.parametrize("name", OPTIMIZER_NAMES)
def test_float64_trajectories_agree_at_every_step(name, trajectory):
    jax_run, torch_run = trajectory("jax", name, "float64"), trajectory("torch", name, "float64")
    assert_every_step(np.abs(torch_run.loss_T / jax_run.loss_T - 1), F64_TOL, f"{name} loss")
    assert_every_step(deviation_T(torch_run.params_T, jax_run.params_T), F64_TOL, f"{name} params")


# float32 rounding noise grows with the number of steps. Measured with deviation_T over these 200
# steps, against the float64 run of the same problem:
#   sgd, momentum: both frameworks <= 1.1e-6 at every step;
#   adam: JAX float32 grows about linearly, 7e-7 at step 2, 6.5e-6 at 100, 1.3e-5 at 200
#   (torch float32 stays <= 1.2e-6: see the loss note below), and the two float32 runs differ by
#   as much (7.6e-7, 5.9e-6, 1.3e-5). Over 1,000 steps the JAX adam drift keeps growing (3e-5).
# The tolerance is that growth with a margin of ~3: 2e-6 + 2e-7 t at step t (4.2e-5 at t = 200).
# Both float32 runs are also held to it against float64, which shows the allowance is rounding
# noise and not a difference between the frameworks. The mutations above fail this test too.
def f32_tolerance_T() -> np.ndarray:
    return 2e-6 + 2e-7 * np.arange(1, STEPS + 1)


# The minibatch loss (relative): float32 vs float32 at most 4e-7 (sgd, momentum) and 1.4e-5 (adam,
# at step 3) over 200 steps; JAX's own float32 adam loss is 1.2e-5 from float64 there, torch's 1e-6
# (likely because torch forms the bias corrections 1 - beta^t in double, optax in float32).
F32_LOSS_TOL = 5e-5


@pytest.mark.parametrize("name", OPTIMIZER_NAMES)
def test_float32_trajectories_agree_within_rounding_noise(name, trajectory):
    runs = {f: trajectory(f, name, "float32") for f in ("jax", "torch")}
    reference = trajectory("jax", name, "float64")
    tol_T = f32_tolerance_T()
    loss_err = lambda run, ref: np.abs(run.loss_T / ref.loss_T - 1)
    assert_every_step(loss_err(runs["torch"], runs["jax"]), F32_LOSS_TOL, f"{name} loss")
    assert_every_step(deviation_T(runs["torch"].params_T, runs["jax"].params_T), tol_T, name)
    for framework, run in runs.items():
        what = f"{name} {framework} float32 vs float64"
        assert_every_step(loss_err(run, reference), F32_LOSS_TOL, f"{what} loss")
        assert_every_step(deviation_T(run.params_T, reference.params_T), tol_T, what)


# ---------------------------------------------------------------------------------------------
# Initialisation: torch's kaiming_normal_ (untruncated) in distribution

INIT_KEYS = 10  # 10 x 4,096 = 40,960 draws of the 64x64 kernel


def kaiming_normal_violations(w: np.ndarray, fan_in: int) -> list[str]:
    """How the sample ``w`` contradicts i.i.d. N(0, 2/fan_in), torch's ``kaiming_normal_``.

    Bounds for ~40,000 draws, ~6 standard errors wide: std (s.e. 0.35%), mean (0.5% of std), the
    fraction beyond 2 std (normal 4.55%, s.e. 0.10%; a 2-std truncated normal rescaled to the same
    std puts 3.3% there) and beyond 3 std (normal 0.27%, s.e. 0.026%; truncated: none).
    """
    z = np.ravel(w) / np.sqrt(2.0 / fan_in)
    tail2, tail3 = np.mean(np.abs(z) > 2), np.mean(np.abs(z) > 3)
    normal2, normal3 = 2 * scipy.stats.norm.sf(2), 2 * scipy.stats.norm.sf(3)
    checks = {
        f"std/expected {z.std():.4f} not within 2% of 1": abs(z.std() - 1) <= 0.02,
        f"mean/std {z.mean():.4f} not within 0.03 of 0": abs(z.mean()) <= 0.03,
        f"tail beyond 2 std {tail2:.4f} not within 0.006 of {normal2:.4f}": abs(tail2 - normal2) <= 0.006,
        f"tail beyond 3 std {tail3:.4f} not within 0.0015 of {normal3:.4f}": abs(tail3 - normal3) <= 0.0015,
    }
    return [message for message, ok in checks.items() if not ok]


@pytest.fixture(scope="module")
def init_samples() -> dict[str, dict]:
    """Flax-layout initial params from ``INIT_KEYS`` fixed keys / generator seeds per framework."""
    keys = jax.random.split(jax.random.key(123), INIT_KEYS)
    jax_params = host(jax.vmap(lambda k: jmodel.init_params(k, MODEL))(keys))
    torch_params = [
        params_from_torch(tmodel.make_model(MODEL, generator=torch.Generator().manual_seed(i)))
        for i in range(INIT_KEYS)
    ]
    stacked = jax.tree_util.tree_map(lambda *a: np.stack(a), *torch_params)
    return {"jax": jax_params, "torch": stacked}


@pytest.mark.parametrize("framework", ["jax", "torch"])
def test_init_of_the_64x64_kernel_is_untruncated_kaiming_normal(init_samples, framework):
    assert kaiming_normal_violations(init_samples[framework]["dense_1"]["kernel"], 64) == []


@pytest.mark.parametrize("framework", ["jax", "torch"])
def test_init_scales_every_layer_by_its_fan_in(init_samples, framework):
    """std sqrt(2/fan_in) per layer (fan_out would be 8x off for the first and last) and b = 0."""
    for i, fan_in in enumerate((MODEL.xdim, *MODEL.hidden)):
        layer = init_samples[framework][f"dense_{i}"]
        # 640 draws for the outer layers: the std's standard error is 2.8%.
        assert layer["kernel"].std() == pytest.approx(np.sqrt(2 / fan_in), rel=0.1)
        assert not np.any(layer["bias"])


def test_init_jax_and_torch_draws_come_from_one_distribution(init_samples):
    jax_w, torch_w = (init_samples[f]["dense_1"]["kernel"].ravel() for f in ("jax", "torch"))
    assert scipy.stats.ks_2samp(jax_w, torch_w).pvalue > 1e-3  # measured 0.98


def test_init_checks_reject_flax_truncated_he_normal(init_samples):
    """Negative control: Flax's ``he_normal``/``kaiming_normal`` (truncated) must not pass."""
    keys = jax.random.split(jax.random.key(123), INIT_KEYS)
    truncated = np.asarray(jax.vmap(lambda k: jax.nn.initializers.he_normal()(k, (64, 64)))(keys))
    found = kaiming_normal_violations(truncated, 64)
    assert any("beyond 2 std" in f for f in found) and any("beyond 3 std" in f for f in found)
    torch_w = init_samples["torch"]["dense_1"]["kernel"].ravel()
    assert scipy.stats.ks_2samp(truncated.ravel(), torch_w).pvalue < 1e-4  # measured 5e-7


# ---------------------------------------------------------------------------------------------
# Whole studies: same schema, same outcome in distribution (the random streams differ)

STUDY = StudyConfig(data=DataConfig(n_data=2_000), train=TrainConfig(iters=300, eval_every=100), seeds=6)


@pytest.fixture(scope="module")
def studies():
    return {"jax": jax_run_study(STUDY), "torch": torch_run_study(STUDY)}


def schema(result) -> dict:
    """Every array field of a ``StudyResult`` as ``{path: (shape, dtype)}``."""
    fields = ("eval_steps", "grid", "mse_EHS", "diverged_at_HS", "params_HS", "pred_EHN", "x_N")
    tree = {f: getattr(result, f) for f in (*fields, "y_N")}
    return {
        jax.tree_util.keystr(path): (np.shape(a), np.asarray(a).dtype)
        for path, a in jax.tree_util.tree_leaves_with_path(tree)
    }


def test_torch_study_has_the_jax_schema(studies):
    jax_result, torch_result = studies["jax"], studies["torch"]
    assert schema(torch_result) == schema(jax_result)
    assert schema(torch_result)["['pred_EHN']['adam']"] == ((4, 1, 2_000), np.float32)
    assert {"compile_s", "train_s"} <= set(torch_result.timing)
    assert {"numpy", "python", "device"} <= set(torch_result.versions)


# Over root seeds 0-3 (6 seeds, 300 steps, 2,000 points) the torch/JAX ratio of median final MSE
# was 0.94-1.11 for every optimizer; the medians were about sgd 0.10, momentum 0.09, adam 0.045.
MEDIAN_FACTOR = 1.3


def test_whole_runs_agree_in_distribution(studies):
    medians = {
        framework: {n: float(np.median(r.final_mse_HS[n][0])) for n in STUDY.optimizer_names}
        for framework, r in studies.items()
    }
    for name in STUDY.optimizer_names:
        ratio = medians["torch"][name] / medians["jax"][name]
        assert 1 / MEDIAN_FACTOR < ratio < MEDIAN_FACTOR, (name, medians)
    for framework, m in medians.items():
        # The seed's finding, already clear after 300 steps (adam at half of momentum's MSE).
        assert m["adam"] < m["momentum"] < m["sgd"], (framework, m)
        assert not np.any(studies[framework].diverged_at_HS["sgd"] >= 0)

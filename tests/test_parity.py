"""Cross-framework checks: ``jaxopt_cmp`` (Flax + optax, compiled) against ``torch_ref`` (eager).

Weights are copied from the JAX model and batch indices drawn on the JAX side, so both frameworks
train the very same problem; trajectories are compared at every step, on several batch streams,
in float64 (where the two must agree to rounding) and in float32 (against both frameworks' own
float32 rounding noise). Every tolerance is ``torch_ref.parity``'s (its last section says why).
"""

from __future__ import annotations

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
from torch_ref.parity import Problem, host, precision, relative
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


@pytest.fixture(scope="module")
def comparisons(problem) -> dict[str, parity.MlpComparison]:
    """The seed's optimizers at its lr on ``parity.F32_STREAMS`` batch streams (the first is
    ``problem``), float64 and float32, both frameworks; one JAX compilation per dtype."""
    problems = [problem] + [parity.seed_problem(STEPS, BATCH, seed=k) for k in parity.F32_STREAMS[1:]]
    return dict(parity.compare_mlp(OPTIMIZER_NAMES, problems, hparams={n: {"lr": LR} for n in OPTIMIZER_NAMES}))


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


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_forward_and_gradients_agree_on_the_seed_data(problem, dtype):
    tol = parity.MODEL_TOL[dtype]  # measured 8.5e-15 and 2.9e-6 (parity.MODEL_TOL says how)
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
# parity.F64_TOL (1e-10, the one float64 tolerance of every parity check) is far above that and far
# below every mapping bug tried (Nesterov, dampening 0.1, eps 1e-7, eps under the square root,
# gradients not zeroed: a parameter deviation of 7e-4 or more).
@pytest.mark.parametrize("name", OPTIMIZER_NAMES)
def test_float64_trajectories_agree_at_every_step(name, comparisons):
    c = comparisons[name]
    assert_every_step(c.loss64_T, parity.F64_TOL, f"{name} loss")
    assert_every_step(c.f64_T, parity.F64_TOL, f"{name} params")
    assert c.moved > 1e-3, f"{name} barely moved: the comparison says little"


# float32: parity's rule (Float32Band) on parameters and minibatch losses over the streams. Measured
# over streams 0-2: gap/floor <= 0.94 (params) and 1.17 (loss); drift ratio 17 for adam (optax's
# float32 bias corrections drift 1.2e-4 by step 200 on stream 1; torch's 7e-6), <= 1.3 for the
# others. The old hand-set schedule (2e-6 + 2e-7 t = 4.2e-5 at step 200) fails adam on stream 1.
@pytest.mark.parametrize("name", OPTIMIZER_NAMES)
def test_float32_trajectories_agree_within_rounding_noise(name, comparisons):
    for what, band in (("params", comparisons[name].f32), ("loss", comparisons[name].f32_loss)):
        assert 0 < band.floor < 1e-3, f"{name} {what}: float32 drift {band} is not rounding noise"
        assert band.passed(), f"{name} {what}: {band} (K_F32 {parity.K_F32}, K_DRIFT {parity.K_DRIFT})"


def test_float32_rule_catches_arithmetic_below_float32(problem, monkeypatch):
    """Negative control: torch's float32 weights rounded to bfloat16 after every step (float64
    untouched). Its own drift grows with it, so the gap stays within K_F32 x the floor; the drift
    ratio is what fails (measured 1.4e4)."""
    make = parity.torch_optimizer

    def lossy(name, params, **hparams):
        params = list(params)
        optimizer = make(name, params, **hparams)
        step = optimizer.step

        def rounded(*args, **kwargs):
            out = step(*args, **kwargs)
            with torch.no_grad():
                for p in params:
                    if p.dtype == torch.float32:
                        p.copy_(p.to(torch.bfloat16).float())
            return out

        optimizer.step = rounded
        return optimizer

    monkeypatch.setattr(parity, "torch_optimizer", lossy)
    ((_, c),) = parity.compare_mlp(["adam"], [problem], hparams={"adam": {"lr": LR}})
    assert c.f64_T.max() <= parity.F64_TOL  # float64 parity cannot see it
    assert c.f32.gap <= parity.K_F32 * c.f32.floor  # nor the gap against both drifts
    assert c.f32.drift_ratio > parity.K_DRIFT and not c.f32.passed()


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
# Whole studies: the torch loop writes the engine's schema. (That both learn the same in
# distribution on their own random streams: tests/test_torch_ref.py, long enough that every
# optimizer learns beyond the mean; step by step on the same batches: tests/test_engine_parity.py.)

STUDY = StudyConfig(data=DataConfig(n_data=256), train=TrainConfig(iters=20, eval_every=10), seeds=2)


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
    assert schema(torch_result)["['pred_EHN']['adam']"] == ((3, 1, 256), np.float32)
    assert {"compile_s", "train_s"} <= set(torch_result.timing)
    assert {"numpy", "python", "device"} <= set(torch_result.versions)

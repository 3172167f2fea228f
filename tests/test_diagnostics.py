"""Curvature and error diagnostics against cases with known answers (quadratics, a linear model,
pure sinusoids, eigh), and the compiled run against itself (seed alone vs in a study)."""

from __future__ import annotations

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxopt_cmp import curvature, diagnostics, diagnostics_report
from jaxopt_cmp.checks import ConfigError
from jaxopt_cmp.config import seed_study
from jaxopt_cmp.optimizers import make_optimizer
from jaxopt_cmp.study import seed_keys
from jaxopt_cmp.targets import TARGETS


@pytest.fixture(autouse=True, scope="module")
def _x64():
    """The known-answer checks run in float64 (x64 switched on for this module only)."""
    with jax.enable_x64(True):
        yield


# A tiny study: P = 1*4 + 4 + 4*4 + 4 + 4 + 1 = 33 parameters, so Lanczos with 33 iterations is
# exact, and the subsample is the whole data set, so the exact spectrum is the full-data one.
TINY = dict(hidden=(4, 4), n_data=128, batch_size=16, iters=30, eval_every=10, dtype="float64")
P_TINY = 33


def quadratic(eig_P, seed=0):
    """``(A, loss)`` with ``A = Q diag(eig) Q^T`` and ``loss(p) = p^T A p / 2`` (Hessian A)."""
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(len(eig_P), len(eig_P))))
    A = jnp.asarray(q @ np.diag(eig_P) @ q.T)
    return A, lambda p: 0.5 * p @ A @ p


def descend(tx, grad_fn, p0, steps):
    """``steps`` updates of ``tx`` on the gradient field ``grad_fn``; the final parameters."""

    def step(carry, _):
        p, state = carry
        updates, state = tx.update(grad_fn(p), state, p)
        return (optax.apply_updates(p, updates), state), None

    return jax.lax.scan(step, (p0, tx.init(p0)), None, length=steps)[0][0]


def test_quadratic_hessian_spectrum_and_top_eigenvalue_are_exact():
    eig = np.array([-0.5, 1e-4, 0.3, 1.0, 2.0, 7.0, 50.0])
    A, loss = quadratic(eig)
    p = jnp.asarray(np.random.default_rng(1).normal(size=7))
    H = curvature.hessian(loss, p, block=3)  # 3 blocks, the last one padded
    np.testing.assert_allclose(H, A, atol=1e-12)
    np.testing.assert_allclose(np.linalg.eigvalsh(np.asarray(H)), eig, atol=1e-12)
    v0 = jnp.ones(7)
    lam, v = curvature.lanczos_top(curvature.hvp_fn(loss, p), v0, 7)
    assert lam == pytest.approx(50.0, rel=1e-12)
    np.testing.assert_allclose(jnp.abs(A @ v), 50.0 * jnp.abs(v), atol=1e-9)
    lam_pow, _ = curvature.power_iteration(lambda u: A @ u, v0, 60)  # |50/7|^-60: converged
    assert lam_pow == pytest.approx(50.0, rel=1e-12)


def test_gradient_descent_decays_each_eigendirection_as_one_minus_lr_lambda_to_the_t():
    """GD on the quadratic through the registry's SGD: component i of p_t is (1 - lr lam_i)^t of
    p_0; the stuck step of ``curvature`` marks exactly the directions that keep over half."""
    eig = np.array([1e-3, 0.05, 0.0690, 0.0696, 0.08, 1.0, 150.0])  # lr*lam brackets 6.93e-4
    A, loss = quadratic(eig, seed=2)
    lr, T = 0.01, 1000
    q = np.linalg.eigh(np.asarray(A))[1]
    p0 = jnp.asarray(q.sum(axis=1))  # one unit in every eigendirection
    p_T = descend(make_optimizer("sgd", lr=lr), lambda p: A @ p, p0, T)
    left = q.T @ np.asarray(p_T)
    np.testing.assert_allclose(left, (1 - lr * eig) ** T, rtol=1e-9, atol=1e-12)  # atol: rounding of the rotation Q
    assert list(left > 0.5) == list(lr * eig < curvature.stuck_step(T))


@pytest.mark.parametrize(("name", "hp"), [("sgd", {"lr": 0.01}), ("momentum", {"lr": 0.01, "momentum": 0.9})])
def test_stability_threshold_separates_converging_from_diverging_runs(name, hp):
    """On a 1-D quadratic lam p^2 / 2 the registry's optimizer converges just below its
    threshold (2/lr, 2(1+mu)/lr) and diverges just above it."""
    kind, edge = curvature.sharpness_threshold(name, hp)
    assert kind == "sharpness"
    tx = make_optimizer(name, **hp)
    final = lambda lam: float(jnp.abs(descend(tx, lambda p: lam * p, jnp.ones(1), 3000)[0]))
    assert final(0.99 * edge) < 1e-3
    assert final(1.01 * edge) > 1e3


def test_linear_model_hessian_and_sharpness_on_known_data():
    """MSE of y ~ w x + b on known data: H = 2/N [[sum x^2, sum x], [sum x, N]] exactly."""
    x = jnp.asarray([-2.0, -1.0, 0.5, 1.0, 3.0])
    y = 2 * x - 1
    loss = lambda p: jnp.mean((p[0] * x + p[1] - y) ** 2)
    H_known = 2 / 5 * np.array([[float(jnp.sum(x**2)), float(jnp.sum(x))], [float(jnp.sum(x)), 5.0]])
    p = jnp.asarray([0.3, -0.2])
    np.testing.assert_allclose(curvature.hessian(loss, p, block=1), H_known, rtol=1e-12)
    lam, _ = curvature.lanczos_top(curvature.hvp_fn(loss, p), jnp.ones(2), 2)
    assert lam == pytest.approx(np.linalg.eigvalsh(H_known)[-1], rel=1e-12)
    d = jnp.asarray([0.5, 2.0])
    lam_d, _ = curvature.lanczos_top(curvature.preconditioned(curvature.hvp_fn(loss, p), d), jnp.ones(2), 2)
    assert lam_d == pytest.approx(np.linalg.eigvalsh(np.diag(d) @ H_known @ np.diag(d))[-1], rel=1e-12)


def test_lanczos_and_power_iteration_agree_with_eigh_on_an_mlp_hessian():
    cfg = seed_study(**TINY)
    *_, loss = diagnostics.make_diagnostics_fns(cfg)
    key = jax.random.key(3)
    p, v0 = jax.random.normal(key, (P_TINY,)), jax.random.normal(jax.random.fold_in(key, 1), (P_TINY,))
    x = jnp.linspace(-3, 3, 64)[:, None]
    f = lambda q: loss(q, x, jnp.cos(10 * x))
    eig = np.linalg.eigvalsh(np.asarray(jax.jit(curvature.hessian, static_argnums=0)(f, p)))
    big = eig[np.argmax(np.abs(eig))]
    gap = np.sort(np.abs(eig))[-2] / abs(big)
    power_iters = int(np.ceil(np.log(1e-14) / np.log(gap))) + 1

    @jax.jit
    def estimates(p, v0):
        hvp = curvature.hvp_fn(f, p)
        few = curvature.lanczos_top(hvp, v0, 5)[0]
        return curvature.lanczos_top(hvp, v0, P_TINY)[0], few, curvature.power_iteration(hvp, v0, power_iters)[0]

    full, few, power = estimates(p, v0)
    assert full == pytest.approx(eig[-1], rel=1e-9)
    assert few <= eig[-1] * (1 + 1e-12)  # few iterations still bound it from below (Rayleigh-Ritz)
    assert power == pytest.approx(big, rel=1e-8)


def test_power_iteration_follows_its_known_iterates():
    """On diag(2, 1) from (1, 1), k steps give v ~ (2^k, 1): Rayleigh quotient (2 4^k + 1) / (4^k + 1)."""
    A = jnp.diag(jnp.asarray([2.0, 1.0]))
    for k in (1, 3, 8):
        lam, v = curvature.power_iteration(lambda u: A @ u, jnp.ones(2), k)
        assert lam == pytest.approx((2 * 4**k + 1) / (4**k + 1), rel=1e-12)
        assert float(v[0] / v[1]) == pytest.approx(2.0**k, rel=1e-12)


def test_lanczos_survives_an_invariant_start_vector():
    """A start vector inside a 2-D invariant subspace closes the Krylov space after 2 steps."""
    A = jnp.diag(jnp.asarray([5.0, 3.0, 1.0, 9.0]))
    lam, v = curvature.lanczos_top(lambda u: A @ u, jnp.asarray([1.0, 1.0, 0.0, 0.0]), 4)
    assert lam == pytest.approx(5.0, rel=1e-12) and abs(float(v[0])) == pytest.approx(1.0)


def test_residual_fft_of_a_pure_sinusoid_lands_in_its_band():
    """A sin(2 pi f x) on the grid of the run: the band holding f gets A^2/2 (its mean square),
    every other band nothing; the bands sum to the grid MSE (Parseval)."""
    length, m = 6.0, diagnostics.GRID_POINTS
    x = -3 + length * np.arange(m) / m
    for f, band in ((2 / length, 0), (10 / length, 1), (20 / length, 2), (100 / length, 3)):
        r = 0.7 * np.sin(2 * np.pi * f * x + 0.4)
        got = np.asarray(diagnostics.band_mse(jnp.asarray(r), length, diagnostics.BANDS))
        want = np.zeros(len(diagnostics.BANDS))
        want[band] = 0.7**2 / 2
        np.testing.assert_allclose(got, want, atol=1e-12)
    r = np.random.default_rng(0).normal(size=m)
    assert float(jnp.sum(diagnostics.band_mse(jnp.asarray(r), length, diagnostics.BANDS))) == pytest.approx(
        np.mean(r**2)
    )


def test_region_mse_splits_by_the_target_zeros():
    edges = [hi for _, _, hi in diagnostics.REGIONS[:-1]]
    assert np.cos(10 * np.asarray(edges)) == pytest.approx(0, abs=1e-12)  # zeros of cos(10x)
    absx = jnp.asarray([0.0, 0.1, 0.2, 0.4, 0.9, 1.5, 2.5, 2.9])
    r2 = jnp.asarray([1.0, 3.0, 5.0, 7.0, 11.0, 13.0, 17.0, 19.0])
    np.testing.assert_allclose(diagnostics.region_mse(absx, r2, diagnostics.REGIONS), [2.0, 6.0, 11.0, 13.0, 18.0])


def test_subsample_is_stratified_in_x():
    x = np.random.default_rng(0).uniform(-3, 3, 1000)
    idx = diagnostics.subsample_indices(x, 100)
    assert len(set(idx.tolist())) == 100
    xs = np.sort(x[idx])
    np.testing.assert_array_equal(xs, np.sort(x)[(np.arange(100) * 10 + 5)])


def test_adam_scaling_from_the_optimizer_state():
    """After one Adam step with gradient g: v_hat = g^2, so D = sqrt(lr / (|g| + eps)), read from
    the injected-hyperparameter state as the compiled run reads it."""
    g = jnp.asarray([0.5, -2.0, 1e-3])
    tx = make_optimizer("adam", lr=0.01)
    _, state = tx.update(g, tx.init(jnp.zeros(3)), jnp.zeros(3))
    np.testing.assert_allclose(diagnostics._adam_scaling(state), np.sqrt(0.01 / (np.abs(g) + 1e-8)), rtol=1e-6)
    assert np.all(np.isnan(diagnostics._adam_scaling(tx.init(jnp.zeros(3)))))  # no second moment yet
    assert diagnostics._adam_scaling(make_optimizer("momentum").init(jnp.zeros(3))) is None


@pytest.fixture(scope="module")
def tiny_study():
    cfg = seed_study(**TINY, seeds=3)
    return diagnostics.run_diagnostics(cfg, subsample=cfg.data.n_data, lanczos_iters=P_TINY)


def test_in_run_sharpness_equals_the_exact_spectrum_when_the_subsample_is_all_data(tiny_study):
    d = tiny_study
    idx = [list(d.eval_steps).index(s) for s in d.spectrum_steps]
    assert list(d.spectrum_steps) == [0, 20, 30]  # first, middle (index round(1.5) = 2), last
    for name, r in d.runs.items():
        np.testing.assert_allclose(r.sharpness_EHS[idx], r.eig_KHSP[..., -1], rtol=1e-8)
        np.testing.assert_allclose(r.lanczos_top_KHS, r.eig_KHSP[..., -1], rtol=1e-8)
        if name == "adam":
            np.testing.assert_allclose(r.precond_sharpness_EHS[idx[1:]], r.precond_eig_KHSP[1:, ..., -1], rtol=1e-8)
            assert np.all(np.isnan(r.precond_eig_KHSP[0]))  # no second moment before step 1
        else:
            assert np.all(np.isnan(r.precond_sharpness_EHS))
    # Every run of a seed starts from the same weights: one spectrum at step 0.
    np.testing.assert_array_equal(d.runs["sgd"].eig_KHSP[0], d.runs["adam"].eig_KHSP[0])


def test_step_statistics(tiny_study):
    """SGD's update is lr times its minibatch gradient: step size exactly lr; the loss decrease
    is the MSE before the last step minus the MSE after."""
    sgd, momentum = tiny_study.runs["sgd"], tiny_study.runs["momentum"]
    np.testing.assert_allclose(sgd.step_size_EHS[1:], 0.01, rtol=1e-10)
    assert np.all(np.isnan(sgd.step_size_EHS[0]))
    # A momentum buffer of mostly aligned gradients: steps longer than lr, typically. Not every
    # one: a minibatch gradient against the buffer shortens it (0.0098 at one point of this
    # stream since batch indices are drawn in int32 in every x64 mode, issue 20).
    assert np.median(momentum.step_size_EHS[1:]) > 0.02 and np.mean(momentum.step_size_EHS[1:] > 0.01) >= 0.8
    assert np.all(np.isfinite(sgd.loss_drop_EHS[1:])) and np.all(sgd.grad_norm_EHS > 0)


def test_region_and_band_errors_add_up_to_the_mse(tiny_study):
    """Regions weighted by their share of the data give the full-data MSE; the bands sum to the
    MSE against the noise-free target on the uniform grid (Parseval), recomputed here from the
    final weights."""
    d = tiny_study
    share_SR = d.region_count_SR / d.region_count_SR.sum(axis=1, keepdims=True)
    *_, loss = diagnostics.make_diagnostics_fns(d.config)
    x = jnp.asarray(-3 + 6 * np.arange(diagnostics.GRID_POINTS) / diagnostics.GRID_POINTS)[:, None]
    for r in d.runs.values():
        np.testing.assert_allclose(np.sum(r.region_mse_EHSR * share_SR, axis=-1), r.mse_EHS, rtol=1e-10)
        for s in range(3):
            grid_mse = float(loss(r.params_KHSP[-1, 0, s], x, TARGETS["seed"](x)))
            assert r.band_mse_EHSF[-1, 0, s].sum() == pytest.approx(grid_mse, rel=1e-10)


def test_seed_in_a_study_equals_the_seed_alone(tiny_study):
    """Seed 2 of 3 run alone, with the optimizers in another order and momentum left out, gives
    the same diagnostics: nothing depends on the other seeds or the other optimizers."""
    cfg = tiny_study.config
    alone = diagnostics.run_diagnostics(
        seed_study(**TINY, optimizers=("adam", "sgd"), lr=0.01),
        subsample=cfg.data.n_data,
        lanczos_iters=P_TINY,
        keys_S=seed_keys(cfg.seed, 3)[2:],
    )
    for name, r in alone.runs.items():
        for field in r._fields:
            got, want = getattr(r, field), getattr(tiny_study.runs[name], field)
            np.testing.assert_allclose(got[:, :, 0], want[:, :, 2], rtol=1e-9, atol=1e-12, err_msg=f"{name}.{field}")


def test_summary_is_json_ready(tiny_study):
    text = json.dumps(diagnostics_report.diagnostics_summary(tiny_study), allow_nan=False)
    summary = json.loads(text)
    assert set(summary["optimizers"]) == {"sgd", "momentum", "adam"}


@pytest.mark.parametrize(
    ("setting", "kw"),
    [
        ("spectrum_at", {"spectrum_at": -1, "subsample": 64}),
        ("spectrum_at", {"spectrum_at": 5, "subsample": 64}),  # 4 evaluations
        ("subsample", {"subsample": 129}),
        ("lanczos_iters", {"lanczos_iters": 0, "subsample": 64}),
    ],
)
def test_bad_settings_stop_before_compiling(setting, kw):
    with pytest.raises(ConfigError, match=setting):
        diagnostics.run_diagnostics(seed_study(**TINY), **kw)


def test_stuck_step_formula():
    assert curvature.stuck_step(10_000) == pytest.approx(math.log(2) / 10_000, rel=1e-4)


@pytest.fixture(scope="module")
def diagnose_script():
    """``scripts/diagnose.py`` as a module; its OPENBLAS_NUM_THREADS default is undone here."""
    import importlib
    import os
    import sys
    from pathlib import Path

    before = os.environ.get("OPENBLAS_NUM_THREADS")
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
    script = importlib.import_module("diagnose")
    if before is None:
        os.environ.pop("OPENBLAS_NUM_THREADS", None)
    return script


@pytest.mark.parametrize(
    ("argv", "flag"),
    [
        (["--subsample", "0"], "--subsample"),
        (["--spectrum-at", "50"], "--spectrum-at"),
        (["--check-subsample", "1,x"], "--check-subsample"),
        (["--optimizers", "sgd,nope"], "--optimizers"),
        (["--iters", "0"], "--iters"),
    ],
)
def test_diagnose_script_refuses_bad_input_in_one_line(diagnose_script, usage_error, argv, flag, tmp_path):
    assert flag in usage_error(diagnose_script, [*argv, "--out", str(tmp_path / "o")])
    assert not (tmp_path / "o").exists()  # refused before claiming the output directory


# --- issue 20: crashes (w20crash) ----------------------------------------------------------------


@pytest.mark.parametrize("name", ["rmsprop", "rmsprop_centered", "rmsprop_momentum", "rmsprop_momentum_optax"])
def test_rmsprop_states_are_not_taken_for_adam_states(name):
    """Every NamedTuple has a ``count`` method: RMSprop's ``ScaleByRmsState(nu)`` once passed as
    an Adam state and diagnose died with KeyError 'beta2'."""
    state = make_optimizer(name).init(jnp.ones(3))
    assert curvature.find_adam_state(state) is None
    assert diagnostics._adam_scaling(state) is None
    adam = make_optimizer("adam").init(jnp.ones(3))
    assert diagnostics._adam_scaling(adam) is not None


def test_findings_of_a_diverged_run_say_so_instead_of_crashing(tiny_study):
    """A run whose every measurement is NaN/inf (diverged) gives 'n/a (... diverged)' in the
    findings, not ``ValueError: All-NaN slice`` after all the compute."""
    name = tiny_study.config.optimizer_names[0]
    run = tiny_study.runs[name]
    fields = {
        f: np.full_like(v, np.inf if f.startswith("mse") else np.nan)
        for f, v in run._asdict().items()
        if isinstance(v, np.ndarray) and v.dtype.kind == "f"
    }
    bad = run._replace(**fields)
    diag = tiny_study._replace(runs={**tiny_study.runs, name: bad})
    summary = diagnostics_report.diagnostics_summary(diag)
    text = diagnostics_report.findings_markdown(summary)
    assert f"{name}: n/a (no finite error: diverged)" in text
    assert f"{name} inf" in text  # ranked last by its final MSE

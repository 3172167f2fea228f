"""The optimizer zoo against PyTorch: every registry entry, every step, both precisions.

Table-driven over ``jaxopt_cmp.optimizers.OPTIMIZERS``: a new entry is compared (or fails for want
of a torch row) by itself. Two sources of gradients, identical start in both frameworks:

- 1,000 random gradients on a small pytree (``parity.random_gradients``): isolates the update
  formula, cheap, every entry scale from 1e-4 to 3 so eps placements show;
- the seed MLP on the seed data, 200 steps (weights copied from JAX, batches drawn on the JAX side,
  the engine's own step; 1,000 steps in ``scripts/validate.py``).

float64 must agree to ``parity.F64_TOL`` (1e-10) relative at every step; float32 within
``parity.K_F32`` (4) times JAX's own float32-vs-float64 drift. Every comparison runs under
``parity.precision`` (x64 for float64 only, matmul precision "highest"). Then: the facts behind
each mapping (library defaults do *not* agree), learning-rate schedules, and the injected
(``inject_hyperparams``) vs plain optax forms. The registry's defaults: tests/test_registry.py.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import optax
import pytest
import torch

from jaxopt_cmp import torch_optim
from jaxopt_cmp.optimizers import OPTIMIZERS, make_optimizer
from torch_ref import parity, reference_optim
from torch_ref.optimizers import TORCH_OPTIMIZERS

NAMES = sorted(OPTIMIZERS)
GRAD_STEPS, MLP_STEPS = 1_000, 200
SHAPES = {"w": (4, 3), "b": (5,)}


def lr_lambda(t) -> float:
    """A warm-up (0.1 -> 1 over ~30 steps) times a 1/(1 + t/100) decay: lr moves every step.

    Branch-free, so the same function serves torch (int t) and optax (its int32 count). Written
    ``0.01 * t``, not ``t / 100``: JAX divides an int32 in float32 even in x64 mode (see
    test_optax_schedules_of_the_int32_count_are_float32).
    """
    return (1 - 0.9 * 0.9**t) / (1 + 0.01 * t)


@pytest.fixture(scope="module")
def gradients():
    return parity.random_gradients(0, GRAD_STEPS, SHAPES)


def other_hparams(name: str) -> dict:
    """A value other than the default for every hyperparameter of ``name`` (:data:`OTHER_VALUE`)."""
    return {k: OTHER_VALUE[k](v) for k, v in OPTIMIZERS[name].defaults.items()}


def f32_hparams(name: str) -> dict:
    # AdamW at lr 2^-10, wd 2^-3 in float32, as on the MLP: see parity.MLP_HPARAMS and
    # test_torch_adamw_float32_decay_adds_its_own_drift.
    return parity.MLP_HPARAMS["adamw"] if name == "adamw" else {}


VARIANTS = {"defaults": lambda name: {}, "other": other_hparams, "f32": f32_hparams}


@pytest.fixture(scope="module")
def grad_run(gradients):
    """``grad_run(name, dtype, scheduled=False, variant="defaults") -> (jax params_T, torch
    params_T)`` at the hyperparameters ``VARIANTS[variant](name)``. The JAX side runs every entry
    of the registry in one compiled scan per (dtype, schedule, variant): 3.5x faster than one each."""

    @functools.cache
    def jax_runs(dtype, scheduled, variant):
        schedule = lr_lambda if scheduled else None
        txs = {n: parity.registry_tx(n, schedule, **VARIANTS[variant](n)) for n in NAMES}
        return parity.jax_gradient_runs(txs, *gradients, dtype)

    @functools.cache
    def get(name, dtype, scheduled=False, variant="defaults"):
        schedule = lr_lambda if scheduled else None
        torch_T = parity.torch_registry_run(name, *gradients, dtype, schedule, **VARIANTS[variant](name))
        return jax_runs(dtype, scheduled, variant)[name], torch_T

    return get


def assert_every_step(err_T: np.ndarray, tol: float, steps: int, what: str) -> None:
    """All ``steps`` steps compared, none (NaN included) above ``tol``."""
    assert err_T.shape == (steps,), f"{what}: compared {err_T.shape} steps, expected {steps}"
    bad = np.flatnonzero(~(err_T <= tol))
    assert bad.size == 0, (
        f"{what}: {bad.size} steps exceed {tol:.3g}; first at step {bad[0] + 1}: {err_T[bad[0]]:.3g} "
        f"(max {np.nanmax(err_T):.3g})"
    )


def moved(params_T, start) -> float:
    """How far a run went: ``max |p_T - p_0|`` (last step) over ``max |p_0|``, across all arrays."""
    pairs = list(zip(parity.leaves(params_T), parity.leaves(start)))
    return max(np.abs(p[-1] - s).max() for p, s in pairs) / max(np.abs(s).max() for _, s in pairs)


# ---------------------------------------------------------------------------------------------
# The registry itself

REQUIRED = (
    "sgd momentum nesterov adam adamw amsgrad rmsprop rmsprop_centered rmsprop_momentum adagrad adadelta adamax nadam"
    " radam lion"
).split()


def test_registry_holds_the_zoo():
    """Each with a torch row (its facts: tests/test_registry.py)."""
    assert set(REQUIRED) <= set(OPTIMIZERS) == set(TORCH_OPTIMIZERS)


# ---------------------------------------------------------------------------------------------
# Random gradients: 1,000 steps, every step


@pytest.mark.parametrize("name", NAMES)
def test_float64_random_gradient_runs_agree_at_every_step(name, grad_run, gradients):
    jax_T, torch_T = grad_run(name, "float64")
    assert_every_step(parity.deviation_T(torch_T, jax_T), parity.F64_TOL, GRAD_STEPS, name)
    assert moved(jax_T, gradients[0]) > 1e-3, f"{name} barely moved: the comparison says little"


# A value other than the default for every hyperparameter (inside its bounds), so that options
# the defaults leave off (lr_decay, initial_accumulator_value, weight_decay 0, ...) are compared too.
OTHER_VALUE = {
    "lr": lambda v: v / 2,
    "momentum": lambda v: 0.7,
    "beta1": lambda v: 0.8,
    "beta2": lambda v: 0.98,
    "eps": lambda v: 1e-5,
    "weight_decay": lambda v: 0.05,
    "alpha": lambda v: 0.9,
    "rho": lambda v: 0.8,
    "lr_decay": lambda v: 0.01,
    "initial_accumulator_value": lambda v: 0.3,
    "momentum_decay": lambda v: 0.02,
}


@pytest.mark.parametrize("name", NAMES)
def test_float64_random_gradient_runs_agree_off_the_defaults(name, grad_run):
    """Every hyperparameter at another value at once (measured <= 5.2e-14 adamw, else <= 3e-15); each
    must reach torch: a dropped one would leave torch at its default, which can equal ours."""
    hp = other_hparams(name)
    assert all(hp[k] != v for k, v in OPTIMIZERS[name].defaults.items()), name
    jax_T, torch_T = grad_run(name, "float64", variant="other")
    assert_every_step(parity.deviation_T(torch_T, jax_T), parity.F64_TOL, GRAD_STEPS, f"{name} {hp}")


@pytest.mark.parametrize("name", NAMES)
def test_float32_random_gradient_gap_lies_within_the_jax_noise_floor(name, grad_run):
    """Measured over 1,000 steps: JAX's own float32 drift 0.9e-6 .. 1.7e-6 (lion 1e-5, where a
    rounding can flip a sign), the torch-vs-JAX gap at most 1.4x that (nadam; adamw 2.1x, see
    below); sgd and lion exactly 0."""
    jax64, _ = grad_run(name, "float64", variant="f32")
    jax32, torch32 = grad_run(name, "float32", variant="f32")
    gap, floor = parity.float32_band(jax64, jax32, torch32)
    assert 0 < floor < 1e-4, f"{name}: JAX's float32 run is {floor:.3g} from float64"
    assert gap <= parity.K_F32 * floor, f"{name}: gap {gap:.3g} > {parity.K_F32} x floor {floor:.3g}"


def test_torch_adamw_float32_decay_adds_its_own_drift(grad_run):
    """torch.optim.AdamW decays by ``p *= 1 - lr wd``, a separate float32 rounding of every weight
    each step (after rounding the factor itself); JAX adds ``-lr wd p`` into the update. At the
    defaults (lr 1e-3, wd 1e-2) torch's float32 run drifts 8x further from its float64 run than
    JAX's does (20x over 1,000 MLP steps); at lr 2^-10, wd 2^-3 (exact factor, a decay well above
    a weight's last bit) 2.3x (1.3x on the MLP). All measured."""
    drift = {}
    for variant in ("defaults", "f32"):
        (jax64, torch64), (jax32, torch32) = (grad_run("adamw", d, variant=variant) for d in ("float64", "float32"))
        drift[variant] = parity.deviation_T(torch32, torch64).max() / parity.deviation_T(jax32, jax64).max()
    assert drift["defaults"] > 5 and drift["f32"] < parity.K_F32, drift


# ---------------------------------------------------------------------------------------------
# The seed MLP: 200 steps, every step


@pytest.fixture(scope="module")
def problem():
    return parity.seed_problem(MLP_STEPS)


# Optimizers compiled together on the JAX side (one compilation per group and dtype, ~2x faster
# than one per optimizer); groups of 10 bound the memory: 10 x 200 steps x 4,353 float64 = 70 MB.
GROUPS = [NAMES[i : i + 10] for i in range(0, len(NAMES), 10)]


@pytest.fixture(scope="module")
def mlp_gaps(problem):
    """``mlp_gaps(name)``: deviations only (each trajectory is 10 MB): the float64 gap and loss gap
    per step, the float32 (gap, floor), and how far the run moved."""

    @functools.cache
    def group(names):
        hp = {n: parity.MLP_HPARAMS.get(n, {}) for n in names}
        jax_runs = {d: parity.jax_mlp_trajectories(hp, problem, d) for d in ("float64", "float32")}
        gaps = {}
        for n in names:
            torch_runs = {d: parity.torch_mlp_trajectory(n, problem, d, **hp[n]) for d in jax_runs}
            (j64, j32), (t64, t32) = (jax_runs[d][n] for d in jax_runs), (torch_runs[d] for d in jax_runs)
            gaps[n] = {
                "f64": parity.deviation_T(t64.params_T, j64.params_T),
                "loss64": np.abs(t64.loss_T / j64.loss_T - 1),
                "f32": parity.float32_band(
                    j64.params_T, j32.params_T, t32.params_T, t64.params_T if n in parity.SIGN_UPDATES else None
                ),
                "moved": moved(j64.params_T, problem.params),
            }
        return gaps

    return lambda name: group(next(g for g in map(tuple, GROUPS) if name in g))[name]


@pytest.mark.parametrize("name", NAMES)
def test_float64_mlp_runs_agree_at_every_step(name, mlp_gaps):
    """Measured over 200 steps: <= 7.2e-15 for every entry (params), <= 3.1e-14 (loss, nadam)."""
    gaps = mlp_gaps(name)
    assert_every_step(gaps["f64"], parity.F64_TOL, MLP_STEPS, f"{name} params")
    assert_every_step(gaps["loss64"], parity.F64_TOL, MLP_STEPS, f"{name} loss")
    assert gaps["moved"] > 1e-3, f"{name} barely moved"


@pytest.mark.parametrize("name", NAMES)
def test_float32_mlp_gap_lies_within_the_jax_noise_floor(name, mlp_gaps):
    """Measured over 200 steps: gap/floor <= 1.6 (adadelta; nadam 1.1), floors 8e-7 .. 1.6e-5;
    lion 1e-2 against the larger of both frameworks' drifts (see parity.SIGN_UPDATES)."""
    gap, floor = mlp_gaps(name)["f32"]
    assert 0 < floor < 0.1, f"{name}: JAX's float32 run is {floor:.3g} from float64"
    assert gap <= parity.K_F32 * floor, f"{name}: gap {gap:.3g} > {parity.K_F32} x floor {floor:.3g}"


# ---------------------------------------------------------------------------------------------
# The facts behind each mapping: with each library's own defaults the two do NOT agree


def _torch(cls, **kwargs):
    return lambda tensors: cls(tensors, **kwargs)


# (fact, optax with its defaults, torch with its defaults); each differs in exactly the named way
# or, where torch cannot express optax's choice, in the way the torch row's note (torch_ref.optimizers) states.
LIBRARY_DEFAULTS = {
    "rmsprop decay: optax 0.9, torch alpha 0.99": (
        optax.rmsprop(1e-2, eps_in_sqrt=False),
        _torch(torch.optim.RMSprop, lr=1e-2),
    ),
    "rmsprop eps: optax inside the sqrt, torch outside": (
        optax.rmsprop(1e-2, decay=0.99),
        _torch(torch.optim.RMSprop, lr=1e-2),
    ),
    "rmsprop_centered eps: inside vs outside the sqrt": (
        optax.rmsprop(1e-2, decay=0.99, centered=True),
        _torch(torch.optim.RMSprop, lr=1e-2, centered=True),
    ),
    "adagrad accumulator: optax 0.1, torch 0 (eps: 1e-7 inside vs 1e-10 outside)": (
        optax.adagrad(1e-2),
        _torch(torch.optim.Adagrad, lr=1e-2),
    ),
    "adamw weight_decay: optax 1e-4, torch 1e-2": (optax.adamw(1e-3), _torch(torch.optim.AdamW, lr=1e-3)),
    "nadam: optax constant beta1, torch's mu_t schedule": (optax.nadam(2e-3), _torch(torch.optim.NAdam, lr=2e-3)),
    "amsgrad: optax max of bias-corrected v, torch max of raw v": (
        optax.amsgrad(1e-3),
        _torch(torch.optim.Adam, lr=1e-3, amsgrad=True),
    ),
    "radam: eps after vs before the bias correction": (optax.radam(1e-3), _torch(torch.optim.RAdam, lr=1e-3)),
    "adadelta lr: optax None (no -lr scaling at all), torch 1.0": (optax.adadelta(), _torch(torch.optim.Adadelta)),
    "lion weight_decay: optax 1e-3, the paper's code 0": (optax.lion(1e-4), _torch(reference_optim.Lion, lr=1e-4)),
}


@pytest.mark.parametrize("fact", sorted(LIBRARY_DEFAULTS))
def test_library_defaults_disagree(fact, gradients):
    """Measured over the 1,000 random-gradient steps: 4e-6 (radam: eps/sqrt(1 - b2^t) vs eps
    matters only while v is tiny and t small), 1e-4 (lion), 9e-3 .. 0.77 (the rest): every gap is
    >= 1e4 x the float64 tolerance, so the registry's mapping (which agrees, above) does real work."""
    tx, make = LIBRARY_DEFAULTS[fact]
    jax_T = parity.jax_gradient_run(tx, *gradients, "float64")
    torch_T = parity.torch_gradient_run(make, *gradients, "float64")
    assert parity.deviation_T(torch_T, jax_T).max() > 1e-6, fact


def test_optax_entries_differ_from_the_torch_ones(grad_run, gradients):
    """``<name>_optax`` (optax's formula) vs ``<name>`` (torch's, a reimplementation), same
    hyperparameters."""
    names = [n for n in NAMES if TORCH_OPTIMIZERS[n].parity == "reimplementation"]
    assert set(names) == {"nadam", "amsgrad", "radam", "adagrad", "rmsprop_momentum"}
    for name in names:
        theirs = OPTIMIZERS[f"{name}_optax"].defaults
        hp = {k: v for k, v in OPTIMIZERS[name].defaults.items() if k in theirs}
        schedule = lr_lambda if name == "rmsprop_momentum" else None  # differs only under a schedule
        ours = grad_run(name, "float64", schedule is not None)[0]
        other = parity.jax_gradient_run(parity.registry_tx(f"{name}_optax", schedule, **hp), *gradients, "float64")
        assert parity.deviation_T(ours, other).max() > 1e-6, name


def test_torch_nadam_keeps_its_momentum_product_in_float32(gradients):
    """torch.optim.NAdam creates ``mu_product`` in the default dtype (float32): in float64 runs
    it is 2e-11 from the exact formula (measured); torch_ref's NAdam (default dtype float64 for
    that step) agrees to 4e-15."""
    jax_T = parity.jax_gradient_run(make_optimizer("nadam"), *gradients, "float64")
    plain = parity.torch_gradient_run(_torch(torch.optim.NAdam, lr=2e-3), *gradients, "float64")
    fixed = parity.torch_gradient_run(_torch(reference_optim.NAdam, lr=2e-3), *gradients, "float64")
    assert parity.deviation_T(plain, jax_T).max() > 1e-12
    assert parity.deviation_T(fixed, jax_T).max() < 1e-13
    assert torch.get_default_dtype() == torch.float32  # restored


# ---------------------------------------------------------------------------------------------
# Learning-rate schedules: an optax schedule (count -> lr) vs torch's LambdaLR


@pytest.mark.parametrize("name", NAMES)
def test_float64_runs_agree_under_a_learning_rate_schedule(name, grad_run):
    jax_T, torch_T = grad_run(name, "float64", scheduled=True)
    gap = parity.deviation_T(torch_T, jax_T)
    if TORCH_OPTIMIZERS[name].schedule_parity:
        assert_every_step(gap, parity.F64_TOL, GRAD_STEPS, f"{name} scheduled")
    else:  # documented: agrees at constant lr (tested above), not under a schedule
        assert gap.max() > 1e-3, name


def test_optax_schedules_of_the_int32_count_are_float32(gradients):
    """optax counts steps in int32, and JAX computes ``int32 / int`` in float32 even in x64 mode;
    inject_hyperparams keeps a strongly typed float32 as it is. So optax.linear_schedule,
    exponential_decay, polynomial_schedule, warmup_cosine_decay_schedule (not cosine_decay_schedule)
    hand a float64 run a float32 learning rate: measured 1.6e-9 from torch's LambdaLR over 1,000
    steps, 1e4 x rounding. Feeding them a float count restores float64 (measured 1e-16)."""
    import jax
    import jax.numpy as jnp

    schedule = optax.linear_schedule(1.0, 0.1, GRAD_STEPS)
    with jax.enable_x64(True):
        assert jax.jit(schedule)(jnp.int32(5)).dtype == jnp.float32
    lam = lambda t: 1 - 0.9 * t / GRAD_STEPS  # the same schedule in Python floats
    torch_T = parity.torch_gradient_run(_torch(torch.optim.Adam, lr=1e-3), *gradients, "float64", lam)
    lrs = {"int32 count": lambda c: 1e-3 * schedule(c), "float count": lambda c: 1e-3 * schedule(jnp.asarray(c, float))}
    gaps = {}
    for label, lr in lrs.items():
        jax_T = parity.jax_gradient_run(make_optimizer("adam", lr=lr), *gradients, "float64")
        gaps[label] = parity.deviation_T(torch_T, jax_T).max()
    assert gaps["int32 count"] > 1e-10 and gaps["float count"] <= 1e-13, gaps


# Plain optax aliases under a schedule: where optax applies lr relative to a momentum buffer.
SCHEDULED_ALIASES = {
    "sgd momentum: trace, then lr (as torch)": (
        lambda lr: optax.sgd(lr, momentum=0.9),
        _torch(torch.optim.SGD, lr=1e-2, momentum=0.9),
        True,
    ),
    "sgd nesterov: trace, then lr (as torch)": (
        lambda lr: optax.sgd(lr, momentum=0.9, nesterov=True),
        _torch(torch.optim.SGD, lr=1e-2, momentum=0.9, nesterov=True),
        True,
    ),
    "adamw: decay scaled by the current lr (as torch)": (
        lambda lr: optax.adamw(lr, weight_decay=1e-2),
        _torch(torch.optim.AdamW, lr=1e-2),
        True,
    ),
    "rmsprop momentum: lr BEFORE the trace (torch: after)": (
        lambda lr: optax.rmsprop(lr, decay=0.99, eps_in_sqrt=False, momentum=0.9),
        _torch(torch.optim.RMSprop, lr=1e-2, momentum=0.9),
        False,
    ),
}


@pytest.mark.parametrize("case", sorted(SCHEDULED_ALIASES))
def test_plain_optax_under_a_schedule(case, gradients):
    build, make, agrees = SCHEDULED_ALIASES[case]
    runs = {}
    for scheduled in (False, True):
        schedule = (lambda count: 1e-2 * lr_lambda(count)) if scheduled else 1e-2
        jax_T = parity.jax_gradient_run(build(schedule), *gradients, "float64")
        torch_T = parity.torch_gradient_run(make, *gradients, "float64", lr_lambda if scheduled else None)
        runs[scheduled] = parity.deviation_T(torch_T, jax_T).max()
    assert runs[False] <= parity.F64_TOL, case  # constant lr: always the same
    assert (runs[True] <= parity.F64_TOL) == agrees, (case, runs)


# ---------------------------------------------------------------------------------------------
# inject_hyperparams: what studies run vs the plain transformation

PLAIN = {
    "adam": lambda: optax.adam(1e-3),
    "amsgrad": lambda: torch_optim.amsgrad(1e-3),
    "amsgrad_optax": lambda: optax.amsgrad(1e-3),
}


@pytest.mark.parametrize("name", sorted(PLAIN))
def test_injected_form_matches_the_plain_one_and_torch(name, gradients, grad_run):
    """float64: the same to rounding (measured 0 when each is compiled alone, <= 3e-16 when the
    injected one is compiled with the rest of the registry). float32: the injected hyperparameters
    are float32 arrays, so 1 - beta is formed in float32 (1 - f32(0.999) is 1.3e-5 from f32(0.001))
    where the plain form rounds Python's 1 - beta: measured 1.3e-6 .. 1.6e-6 apart after 1,000
    steps, the size of float32's noise floor (0.9e-6 .. 1.1e-6), while the injected form stays
    4e-7 .. 6e-7 from torch."""
    for dtype in ("float64", "float32"):
        injected, torch_T = grad_run(name, dtype)
        plain = parity.jax_gradient_run(PLAIN[name](), *gradients, dtype)
        apart = parity.deviation_T(injected, plain).max()
        if dtype == "float64":
            assert apart <= 1e-14, name
            assert parity.deviation_T(torch_T, injected).max() <= parity.F64_TOL
        else:
            floor = parity.deviation_T(injected, grad_run(name, "float64")[0]).max()
            assert 0 < apart <= parity.K_F32 * floor, (name, apart, floor)
            assert parity.deviation_T(torch_T, injected).max() <= parity.K_F32 * floor


def test_injected_hyperparameters_take_the_parameters_dtype():
    """The trap behind the float32 difference above: beta2 is stored as float32(0.999)."""
    import jax.numpy as jnp

    state = make_optimizer("adam").init(jnp.zeros(3, jnp.float32))
    beta2 = state.hyperparams["beta2"]
    assert beta2.dtype == jnp.float32
    assert abs(float(1 - beta2) / 1e-3 - 1) > 1e-5  # 1 - float32(0.999) = 9.99987e-4
    assert math.isclose(float(1 - beta2), 1 - float(np.float32(0.999)), rel_tol=1e-7)

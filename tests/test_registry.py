"""The optimizer registry as data: its rows, the torch table's facts, defaults (torch.optim's own
unless listed; they descend), Lion against the paper, :func:`register_optimizer`, and a light
``import jaxopt_cmp.config``."""

from __future__ import annotations

import importlib
import inspect
import math
import subprocess
import sys

import numpy as np
import optax
import pytest
import torch

from jaxopt_cmp.checks import ConfigError
from jaxopt_cmp.config import OptimizerConfig, seed_study
from jaxopt_cmp.optimizers import OPTIMIZERS, POSITIVE, UNIT, check_hparams, make_optimizer, register_optimizer
from jaxopt_cmp.study import run_study
from torch_ref.optimizers import PARITY_KINDS, TORCH_OPTIMIZERS, torch_base
from torch_ref.optimizers import make_optimizer as torch_optimizer

# ---------------------------------------------------------------------------------------------
# Rows and the torch table


def test_every_registry_row_has_a_torch_row_with_its_facts():
    assert set(OPTIMIZERS) == set(TORCH_OPTIMIZERS)
    for name, row in TORCH_OPTIMIZERS.items():
        assert row.parity in PARITY_KINDS and row.note, name
        assert set(row.deliberate) <= set(OPTIMIZERS[name].defaults), name
        if row.parity == "reimplementation":  # optax's own formula stays available beside torch's
            assert f"{name}_optax" in OPTIMIZERS, name


@pytest.mark.parametrize("name", sorted(TORCH_OPTIMIZERS))
def test_counterpart_text_names_the_class_that_runs_and_every_hyperparameter(name):
    row = TORCH_OPTIMIZERS[name]
    path, _, args = row.counterpart.partition("(")
    module, _, cls = path.rpartition(".")
    assert getattr(importlib.import_module(module), cls) is row.cls, row.counterpart
    assert all(k in args for k in OPTIMIZERS[name].defaults), row.counterpart


def test_parity_kind_follows_what_runs():
    """reference: the torch class extends no torch.optim optimizer; reimplementation: the JAX
    build differs from optax's alias (checked against the ``_optax`` twin in test_zoo)."""
    kinds = {n: r.parity for n, r in TORCH_OPTIMIZERS.items()}
    assert {n for n, k in kinds.items() if k == "reference"} == {
        n for n, r in TORCH_OPTIMIZERS.items() if torch_base(r.cls) is None
    }
    assert kinds["lion"] == "reference" and kinds["adam"] == "mapping" and kinds["nadam"] == "reimplementation"


# ---------------------------------------------------------------------------------------------
# Defaults: the registry against torch.optim's own (read from torch, never from the registry)


@pytest.mark.parametrize("name", sorted(TORCH_OPTIMIZERS))
def test_defaults_are_torchs_own_unless_listed_as_deliberate(name):
    """``torch.optim.X([p]).defaults`` (the reference class's own for rows without one) read
    back through the table's mapping; a difference must be listed, with its reason, in the row's
    ``deliberate``, and a listed one must still differ."""
    row, ours = TORCH_OPTIMIZERS[name], OPTIMIZERS[name].defaults
    theirs = row.own_defaults()
    assert set(theirs) == set(ours), f"{name}: the mapping does not pass {set(ours) ^ set(theirs)} to torch"
    differ = {k: (ours[k], theirs[k]) for k in ours if not math.isclose(ours[k], theirs[k], rel_tol=1e-12)}
    assert set(differ) == set(row.deliberate), f"{name}: registry vs torch {differ}, listed {dict(row.deliberate)}"
    assert all(row.deliberate.values()), f"{name}: a deliberate difference needs its reason"


def test_own_defaults_come_from_torch_not_from_the_registry():
    """Negative control: the comparison sees torch's values (AdamW 1e-2, RMSprop 0.99, SGD 1e-3)."""
    sig = lambda cls, k: inspect.signature(cls).parameters[k].default
    assert TORCH_OPTIMIZERS["adamw"].own_defaults()["weight_decay"] == sig(torch.optim.AdamW, "weight_decay")
    assert TORCH_OPTIMIZERS["rmsprop"].own_defaults()["alpha"] == sig(torch.optim.RMSprop, "alpha")
    assert TORCH_OPTIMIZERS["nadam"].own_defaults()["momentum_decay"] == sig(torch.optim.NAdam, "momentum_decay")
    assert TORCH_OPTIMIZERS["sgd"].own_defaults()["lr"] == sig(torch.optim.SGD, "lr")


# ---------------------------------------------------------------------------------------------
# Defaults that descend


def quadratic_losses(tx, steps: int = 500):
    """Losses of ``0.5 sum a_i (x_i - 1)^2`` (a_i from 0.1 to 10) from x = 0, float64."""
    import jax
    import jax.numpy as jnp

    from torch_ref.parity import precision

    with precision("float64"):
        a = jnp.logspace(-1, 1, 8)
        loss = lambda x: 0.5 * jnp.sum(a * (x - 1) ** 2)

        def body(carry, _):
            x, state = carry
            updates, state = tx.update(jax.grad(loss)(x), state, x)
            x = optax.apply_updates(x, updates)
            return (x, state), loss(x)

        x0 = jnp.zeros(8)
        losses = jax.lax.scan(body, (x0, tx.init(x0)), None, length=steps)[1]
        return float(loss(x0)), np.asarray(losses)


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_registry_defaults_descend_on_a_quadratic(name):
    """Measured loss ratio after 500 steps: <= 0.37 for all but radam (0.66) and lion (0.90, lr
    1e-4 moves each coordinate by at most 1e-4 a step)."""
    start, losses = quadratic_losses(make_optimizer(name))
    assert np.all(np.isfinite(losses)) and losses[-1] < 0.95 * start, (name, start, losses[-1])


def test_optax_adadelta_default_climbs():
    """optax.adadelta(learning_rate=None) skips scale_by_learning_rate: its updates are +delta.
    Measured: 10.3 -> 688 in 500 steps; with learning_rate=1.0 (torch's default) -> 6e-15."""
    start, losses = quadratic_losses(optax.adadelta())
    assert losses[-1] > 10 * start
    start, losses = quadratic_losses(optax.adadelta(1.0))
    assert losses[-1] < 1e-3 * start


@pytest.mark.parametrize("alias", [optax.sgd, optax.adam, optax.rmsprop, optax.adagrad, optax.lion, optax.adamax])
def test_optax_aliases_have_no_default_learning_rate(alias):
    """Why every registry entry carries torch's lr default: optax requires one."""
    with pytest.raises(TypeError):
        alias()


# ---------------------------------------------------------------------------------------------
# Lion: no torch.optim, so both sides against the paper's update written here in numpy

PAPER_LION = {"lr": 1e-4, "beta1": 0.9, "beta2": 0.99, "weight_decay": 0.0}  # the paper's code


def paper_lion(p, grads_T, lr, beta1, beta2, weight_decay):
    """Chen et al. 2023, Algorithm 2: ``c = b1 m + (1-b1) g``; ``p -= lr (sign(c) + wd p)``;
    ``m = b2 m + (1-b2) g``. Returns the parameters after every step."""
    m, out = np.zeros_like(p), []
    for g in grads_T:
        c = beta1 * m + (1 - beta1) * g
        p = p - lr * (np.sign(c) + weight_decay * p)
        m = beta2 * m + (1 - beta2) * g
        out.append(p)
    return np.stack(out)


def jax_run(name, p, grads_T, **hp):
    import jax.numpy as jnp

    from torch_ref.parity import precision

    with precision("float64"):
        tx, x = make_optimizer(name, **hp), jnp.asarray(p)
        state, out = tx.init(x), []
        for g in grads_T:
            updates, state = tx.update(jnp.asarray(g), state, x)
            x = optax.apply_updates(x, updates)
            out.append(np.asarray(x))
    return np.stack(out)


def torch_run(name, p, grads_T, **hp):
    x = torch.nn.Parameter(torch.tensor(p))
    opt, out = torch_optimizer(name, [x], **hp), []
    for g in grads_T:
        x.grad = torch.tensor(g)
        opt.step()
        out.append(x.detach().numpy().copy())
    return np.stack(out)


@pytest.mark.parametrize("variant", ["defaults", "other"])
def test_lion_both_sides_take_the_papers_step(variant):
    """10 steps in float64 (agree to rounding): at the registry defaults, which must be the
    paper's, and at other values. A step size changed on both sides shows here."""
    rng = np.random.default_rng(0)
    p, grads_T = rng.normal(size=7), rng.normal(size=(10, 7))
    hp = {} if variant == "defaults" else {"lr": 0.03, "beta1": 0.8, "beta2": 0.95, "weight_decay": 0.2}
    if variant == "defaults":
        assert dict(OPTIMIZERS["lion"].defaults) == PAPER_LION
    want = paper_lion(p, grads_T, **{**PAPER_LION, **hp})
    for side, run in (("jax", jax_run), ("torch", torch_run)):
        got = run("lion", p, grads_T, **hp)
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-14, err_msg=f"{side} lion {variant}")


# ---------------------------------------------------------------------------------------------
# register_optimizer


@pytest.fixture
def registry():
    """Restores :data:`OPTIMIZERS` after a test that registers."""
    saved = dict(OPTIMIZERS)
    yield OPTIMIZERS
    OPTIMIZERS.clear()
    OPTIMIZERS.update(saved)


ADABELIEF = {
    "build": lambda lr, beta1, beta2, eps: optax.adabelief(lr, b1=beta1, b2=beta2, eps=eps),
    "defaults": {"lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "eps": 1e-16},
    "bounds": {"lr": POSITIVE, "beta1": UNIT, "beta2": UNIT, "eps": POSITIVE},
}


@pytest.mark.parametrize(
    "name, change, setting",
    [
        ("2fast", {}, "optimizer name"),
        ("ada belief", {}, "optimizer name"),
        ("adam", {}, "optimizer name"),  # taken, replace not given
        ("adabelief", {"defaults": {"lr": 1e-3, "beta1": 0.9, "beta2": 0.999}}, "adabelief defaults"),
        ("adabelief", {"build": lambda lr, b1, beta2, eps: None}, "adabelief defaults"),
        ("adabelief", {"defaults": {**ADABELIEF["defaults"], "beta1": 1.0}}, "adabelief default beta1"),
        ("adabelief", {"defaults": {**ADABELIEF["defaults"], "lr": float("nan")}}, "adabelief default lr"),
        ("adabelief", {"bounds": {**ADABELIEF["bounds"], "eps": (1.0, 0.0, False, False)}}, "adabelief bounds['eps']"),
        ("adabelief", {"bounds": {"lr": POSITIVE}}, "adabelief bounds"),
        ("adabelief", {"build": "optax.adabelief"}, "adabelief build"),
    ],
)
def test_register_refuses_bad_rows(registry, name, change, setting):
    before = dict(registry)
    with pytest.raises(ConfigError) as err:
        register_optimizer(name, **{**ADABELIEF, **change})
    assert err.value.setting == setting
    assert registry == before


def test_register_replace_overrides_and_check_hparams_uses_the_new_bounds(registry):
    register_optimizer("adabelief", **ADABELIEF)
    check_hparams("adabelief", {"eps": (1e-12,)})
    narrow = {"bounds": {**ADABELIEF["bounds"], "eps": (1e-10, 1.0, False, True)}}
    with pytest.raises(ConfigError):  # its default 1e-16 lies outside
        register_optimizer("adabelief", **{**ADABELIEF, **narrow}, replace=True)
    defaults = {**ADABELIEF["defaults"], "eps": 1e-8}
    assert (
        register_optimizer("adabelief", **{**ADABELIEF, **narrow, "defaults": defaults}, replace=True).defaults
        == defaults
    )
    with pytest.raises(ConfigError):
        check_hparams("adabelief", {"eps": (1e-12,)})
    assert OPTIMIZERS["adabelief"].defaults["eps"] == 1e-8


def test_a_registered_optimizer_runs_in_a_study_like_a_builtin(registry):
    """A custom row (optax.adabelief) trains; a registered copy of adam gives adam's numbers."""
    register_optimizer("adabelief", **ADABELIEF)
    register_optimizer(
        "my_adam",
        lambda lr, beta1, beta2, eps: optax.adam(lr, b1=beta1, b2=beta2, eps=eps),
        OPTIMIZERS["adam"].defaults,
        OPTIMIZERS["adam"].bounds,
    )
    optimizers = (
        OptimizerConfig.make("adabelief", lr=[1e-2, 3e-2]),
        OptimizerConfig.make("adam", lr=[1e-2, 3e-2]),
        OptimizerConfig.make("my_adam", lr=[1e-2, 3e-2]),
    )
    cfg = seed_study(
        optimizers=optimizers,
        iters=60,
        eval_every=30,
        n_data=256,
        batch_size=32,
        hidden=(8,),
        seeds=1,
        record_predictions=False,
    )
    mse = run_study(cfg).mse_EHS
    assert mse["adabelief"].shape == (3, 2, 1) and np.all(np.isfinite(mse["adabelief"]))
    assert np.all(mse["adabelief"][-1] < mse["adabelief"][0])  # it learns, at both lrs
    assert not np.array_equal(mse["adabelief"][-1, 0], mse["adabelief"][-1, 1])  # lr reaches it
    np.testing.assert_allclose(mse["my_adam"], mse["adam"], rtol=1e-6)


# ---------------------------------------------------------------------------------------------
# Importing the config stays light

LIGHT_IMPORT = """
import sys
import jaxopt_cmp.config
print(sorted(m for m in ("optax", "jaxopt_cmp.torch_optim", "torch", "torch_ref") if m in sys.modules))
jaxopt_cmp.optimizers.make_optimizer("nadam").init({"w": 0.0})  # builders import what they use
print(sorted(m for m in ("optax", "jaxopt_cmp.torch_optim") if m in sys.modules))
"""


def test_importing_the_config_imports_neither_optax_nor_torch_optim():
    out = subprocess.run([sys.executable, "-c", LIGHT_IMPORT], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.split("\n")[:2] == ["[]", "['jaxopt_cmp.torch_optim', 'optax']"], out.stdout

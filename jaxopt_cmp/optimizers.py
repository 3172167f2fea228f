"""Optimizer registry: a name and float hyperparameters -> an ``optax.GradientTransformation``.

Hyperparameters use torch's names (``lr``, ``momentum``, ``betas`` split into ``beta1``/``beta2``,
``eps``, ...) and torch's defaults, so a name means the same optimizer in ``jaxopt_cmp`` and in
``torch_ref``. Every transformation is built through ``optax.inject_hyperparams``: the values live
in the optimizer state as arrays, so a study can ``vmap`` over them and a new grid never
recompiles.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import optax

from jaxopt_cmp.checks import ConfigError, check_real

# (low, high, low_open, high_open): the allowed interval of a hyperparameter.
POSITIVE = (0.0, math.inf, True, True)
UNIT = (0.0, 1.0, False, True)


@dataclass(frozen=True)
class OptimizerDef:
    """One registry entry: how to build it, its torch-matching defaults and allowed ranges.

    ``parity`` says how the torch counterpart is matched: ``"mapping"`` (the two libraries agree
    once hyperparameters are mapped), ``"reimplementation"`` (a transformation written here
    reproduces torch's formula) or ``"reference"`` (torch has none; ``torch_ref`` implements it).
    """

    name: str
    build: Callable[..., optax.GradientTransformation]
    defaults: Mapping[str, float]
    bounds: Mapping[str, tuple[float, float, bool, bool]]
    parity: str
    torch: str
    note: str = ""


def _sgd(lr):
    return optax.sgd(lr)


def _momentum(lr, momentum):
    # optax.trace (t = g + m t; p -= lr t) is torch.optim.SGD's momentum buffer exactly.
    return optax.sgd(lr, momentum=momentum)


def _adam(lr, beta1, beta2, eps):
    return optax.adam(lr, b1=beta1, b2=beta2, eps=eps)


_REGISTRY = (
    OptimizerDef(
        "sgd", _sgd, {"lr": 1e-2}, {"lr": POSITIVE}, "mapping", "torch.optim.SGD(lr)",
        "identical update p -= lr g",
    ),
    OptimizerDef(
        "momentum", _momentum, {"lr": 1e-2, "momentum": 0.9}, {"lr": POSITIVE, "momentum": UNIT},
        "mapping", "torch.optim.SGD(lr, momentum)",
        "optax.trace keeps t = g + m t like torch's buffer (dampening 0); lr applied after the trace",
    ),
    OptimizerDef(
        "adam", _adam, {"lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8},
        {"lr": POSITIVE, "beta1": UNIT, "beta2": UNIT, "eps": POSITIVE},
        "mapping", "torch.optim.Adam(lr, betas=(beta1, beta2), eps)",
        "both add eps outside the square root of the bias-corrected second moment",
    ),
)

OPTIMIZERS: dict[str, OptimizerDef] = {d.name: d for d in _REGISTRY}


def check_hparams(name: str, hparams: Mapping[str, tuple[float, ...]]) -> None:
    """Raises ``ConfigError`` for an unknown optimizer, unknown hyperparameter or bad value."""
    if name not in OPTIMIZERS:
        raise ConfigError("optimizer", name, f"expected one of {', '.join(OPTIMIZERS)}")
    spec = OPTIMIZERS[name]
    sizes = {len(v) for v in hparams.values()}
    if len(sizes) > 1:
        raise ConfigError(f"{name} grid", dict(hparams), "expected every swept value list of one length")
    for key, values in hparams.items():
        if key not in spec.defaults:
            raise ConfigError(f"{name} hyperparameter", key, f"expected one of {', '.join(spec.defaults)}")
        if not values:
            raise ConfigError(key, values, "expected at least one value")
        low, high, low_open, high_open = spec.bounds[key]
        for v in values:
            check_real(key, v, low, high, low_open=low_open, high_open=high_open)


def make_optimizer(name: str, **hparams) -> optax.GradientTransformation:
    """The registry's transformation, hyperparameters injected (floats or arrays)."""
    spec = OPTIMIZERS[name]
    return optax.inject_hyperparams(spec.build)(**{**spec.defaults, **hparams})

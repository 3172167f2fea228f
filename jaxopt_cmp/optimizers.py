"""Optimizer registry: a name and float hyperparameters -> an ``optax.GradientTransformation``.

Hyperparameters use torch's names (``lr``, ``momentum``, ``betas`` split into ``beta1``/``beta2``,
``eps``, ``alpha``, ``rho``, ``weight_decay``, ...) and torch's defaults, so a name means the same
optimizer in ``jaxopt_cmp`` and in ``torch_ref``. Every transformation is built through
``optax.inject_hyperparams``: the values live in the optimizer state as arrays, so a study can
``vmap`` over them and a new grid never recompiles; ``lr`` may also be a schedule ``step -> lr``.

Each entry says how its torch twin is matched (``parity``):

- ``"mapping"``: an optax optimizer that agrees with ``torch.optim`` once hyperparameters are mapped
  (a default that differs, eps outside the square root, ...); ``note`` says which;
- ``"reimplementation"``: optax has no exact counterpart of torch's formula, so
  :mod:`jaxopt_cmp.torch_optim` reproduces it (optax's own stays available as ``<name>_optax``);
- ``"reference"``: torch has no such optimizer; ``torch_ref.reference_optim`` implements it from
  the paper (Lion) or from optax's formula (the ``*_optax`` entries).

``schedule_parity`` is False where the two agree only while ``lr`` is constant (optax scales by
lr before a momentum buffer that torch fills with unscaled steps).

Every optimizer here is elementwise: each entry of the update depends only on the same entry of
the gradient, parameters and state. The engine (:mod:`jaxopt_cmp.train`) relies on this: it feeds
each run's parameters as one flat vector, which is exact only for elementwise optimizers (a
layer-wise one such as LARS or LAMB would see one "layer").
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import optax

from jaxopt_cmp import torch_optim
from jaxopt_cmp.checks import ConfigError, check_real

# (low, high, low_open, high_open): the allowed interval of a hyperparameter.
POSITIVE = (0.0, math.inf, True, True)
NONNEGATIVE = (0.0, math.inf, False, True)
UNIT = (0.0, 1.0, False, True)
OPEN_UNIT = (0.0, 1.0, True, True)
PARITY_KINDS = ("mapping", "reimplementation", "reference")


@dataclass(frozen=True)
class OptimizerDef:
    """One registry entry: how to build it, its torch-matching defaults and allowed ranges.

    ``parity`` is one of :data:`PARITY_KINDS` (module doc); ``torch`` names the torch counterpart
    with the hyperparameter mapping; ``optax`` the optax call ``build`` makes; ``note`` the facts
    that differ between the libraries' defaults or formulas.
    """

    name: str
    build: Callable[..., optax.GradientTransformation]
    defaults: Mapping[str, float]
    bounds: Mapping[str, tuple[float, float, bool, bool]]
    parity: str
    torch: str
    note: str = ""
    optax: str = ""
    schedule_parity: bool = True


def _sgd(lr):
    return optax.sgd(lr)


def _momentum(lr, momentum):
    # optax.trace (t = g + m t; p -= lr t) is torch.optim.SGD's momentum buffer exactly.
    return optax.sgd(lr, momentum=momentum)


def _nesterov(lr, momentum):
    return optax.sgd(lr, momentum=momentum, nesterov=True)


def _adam(lr, beta1, beta2, eps):
    return optax.adam(lr, b1=beta1, b2=beta2, eps=eps)


def _adamw(lr, beta1, beta2, eps, weight_decay):
    return optax.adamw(lr, b1=beta1, b2=beta2, eps=eps, weight_decay=weight_decay)


def _amsgrad(lr, beta1, beta2, eps):
    return torch_optim.amsgrad(lr, beta1, beta2, eps)


def _amsgrad_optax(lr, beta1, beta2, eps):
    return optax.amsgrad(lr, b1=beta1, b2=beta2, eps=eps)


def _rmsprop(lr, alpha, eps):
    return optax.rmsprop(lr, decay=alpha, eps=eps, eps_in_sqrt=False)


def _rmsprop_centered(lr, alpha, eps):
    return optax.rmsprop(lr, decay=alpha, eps=eps, eps_in_sqrt=False, centered=True)


def _rmsprop_momentum(lr, alpha, eps, momentum):
    return torch_optim.rmsprop_momentum(lr, alpha, eps, momentum)


def _rmsprop_momentum_optax(lr, alpha, eps, momentum):
    return optax.rmsprop(lr, decay=alpha, eps=eps, eps_in_sqrt=False, momentum=momentum)


def _adagrad(lr, lr_decay, initial_accumulator_value, eps):
    return torch_optim.adagrad(lr, lr_decay, initial_accumulator_value, eps)


def _adagrad_optax(lr, initial_accumulator_value, eps):
    return optax.adagrad(lr, initial_accumulator_value=initial_accumulator_value, eps=eps)


def _adadelta(lr, rho, eps):
    return optax.adadelta(learning_rate=lr, rho=rho, eps=eps)


def _adamax(lr, beta1, beta2, eps):
    return optax.adamax(lr, b1=beta1, b2=beta2, eps=eps)


def _nadam(lr, beta1, beta2, eps, momentum_decay):
    return torch_optim.nadam(lr, beta1, beta2, eps, momentum_decay)


def _nadam_optax(lr, beta1, beta2, eps):
    return optax.nadam(lr, b1=beta1, b2=beta2, eps=eps)


def _radam(lr, beta1, beta2, eps):
    return torch_optim.radam(lr, beta1, beta2, eps)


def _radam_optax(lr, beta1, beta2, eps):
    return optax.radam(lr, b1=beta1, b2=beta2, eps=eps)


def _lion(lr, beta1, beta2, weight_decay):
    return optax.lion(lr, b1=beta1, b2=beta2, weight_decay=weight_decay)


_ADAM = {"lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8}
_ADAM_BOUNDS = {"lr": POSITIVE, "beta1": UNIT, "beta2": UNIT, "eps": POSITIVE}
_RMS = {"lr": 1e-2, "alpha": 0.99, "eps": 1e-8}
_RMS_BOUNDS = {"lr": POSITIVE, "alpha": UNIT, "eps": POSITIVE}

_REGISTRY = (
    OptimizerDef(
        "sgd", _sgd, {"lr": 1e-2}, {"lr": POSITIVE}, "mapping", "torch.optim.SGD(lr)",
        "identical update p -= lr g; optax.sgd requires lr, torch's default is 1e-3 (1e-2 here, the seed's)",
        "optax.sgd(lr)",
    ),
    OptimizerDef(
        "momentum", _momentum, {"lr": 1e-2, "momentum": 0.9}, {"lr": POSITIVE, "momentum": UNIT},
        "mapping", "torch.optim.SGD(lr, momentum)",
        "optax.trace keeps b = g + m b like torch's buffer (dampening 0; torch's first buffer is g); "
        "lr applied after the buffer in both",
        "optax.sgd(lr, momentum)",
    ),
    OptimizerDef(
        "nesterov", _nesterov, {"lr": 1e-2, "momentum": 0.9}, {"lr": POSITIVE, "momentum": OPEN_UNIT},
        "mapping", "torch.optim.SGD(lr, momentum, nesterov=True)",
        "both step along g + m b with b = g + m b (the Sutskever form); torch needs momentum > 0",
        "optax.sgd(lr, momentum, nesterov=True)",
    ),
    OptimizerDef(
        "adam", _adam, dict(_ADAM), _ADAM_BOUNDS, "mapping", "torch.optim.Adam(lr, betas=(beta1, beta2), eps)",
        "both add eps outside the square root of the bias-corrected second moment; optax requires lr "
        "(torch 1e-3)",
        "optax.adam(lr, b1=beta1, b2=beta2, eps)",
    ),
    OptimizerDef(
        "adamw", _adamw, {**_ADAM, "weight_decay": 1e-2}, {**_ADAM_BOUNDS, "weight_decay": NONNEGATIVE},
        "mapping", "torch.optim.AdamW(lr, betas=(beta1, beta2), eps, weight_decay)",
        "weight_decay default: optax 1e-4, torch 1e-2; both decay by lr * weight_decay * p (scaled by lr)",
        "optax.adamw(lr, b1=beta1, b2=beta2, eps, weight_decay)",
    ),
    OptimizerDef(
        "amsgrad", _amsgrad, dict(_ADAM), _ADAM_BOUNDS,
        "reimplementation", "torch.optim.Adam(lr, betas=(beta1, beta2), eps, amsgrad=True)",
        "torch keeps the max of the raw second moment, then bias-corrects it; optax.amsgrad keeps "
        "the max of the bias-corrected moment (larger early on): they differ from step 2",
        "torch_optim.amsgrad (optax's own: amsgrad_optax)",
    ),
    OptimizerDef(
        "amsgrad_optax", _amsgrad_optax, dict(_ADAM), _ADAM_BOUNDS,
        "reference", "torch_ref.reference_optim.OptaxAMSGrad (optax's formula in torch)",
        "optax's AMSGrad: max of the bias-corrected second moment (not torch's)",
        "optax.amsgrad(lr, b1=beta1, b2=beta2, eps)",
    ),
    OptimizerDef(
        "rmsprop", _rmsprop, dict(_RMS), _RMS_BOUNDS, "mapping", "torch.optim.RMSprop(lr, alpha, eps)",
        "decay default: optax 0.9, torch alpha 0.99; eps: optax inside the square root by default "
        "(eps_in_sqrt=True), torch outside: mapped with decay=alpha, eps_in_sqrt=False",
        "optax.rmsprop(lr, decay=alpha, eps, eps_in_sqrt=False)",
    ),
    OptimizerDef(
        "rmsprop_centered", _rmsprop_centered, dict(_RMS), _RMS_BOUNDS,
        "mapping", "torch.optim.RMSprop(lr, alpha, eps, centered=True)",
        "as rmsprop: decay=alpha (optax 0.9, torch 0.99), eps outside sqrt(v - m^2)",
        "optax.rmsprop(lr, decay=alpha, eps, eps_in_sqrt=False, centered=True)",
    ),
    OptimizerDef(
        "rmsprop_momentum", _rmsprop_momentum, {**_RMS, "momentum": 0.9}, {**_RMS_BOUNDS, "momentum": UNIT},
        "reimplementation", "torch.optim.RMSprop(lr, alpha, eps, momentum)",
        "torch: b = m b + g/(sqrt(v)+eps), p -= lr b; optax.rmsprop(momentum=m) scales by lr before "
        "the trace: same at constant lr, not under a schedule; torch's default momentum is 0",
        "torch_optim.rmsprop_momentum: optax.chain(scale_by_rms(alpha, eps, eps_in_sqrt=False), "
        "trace(momentum), scale_by_learning_rate(lr)) (optax's order: rmsprop_momentum_optax)",
    ),
    OptimizerDef(
        "rmsprop_momentum_optax", _rmsprop_momentum_optax, {**_RMS, "momentum": 0.9},
        {**_RMS_BOUNDS, "momentum": UNIT},
        "mapping", "torch.optim.RMSprop(lr, alpha, eps, momentum) (constant lr only)",
        "optax's order (lr before the momentum trace): agrees with torch only while lr is constant",
        "optax.rmsprop(lr, decay=alpha, eps, eps_in_sqrt=False, momentum)",
        schedule_parity=False,
    ),
    OptimizerDef(
        "adagrad", _adagrad, {"lr": 1e-2, "lr_decay": 0.0, "initial_accumulator_value": 0.0, "eps": 1e-10},
        {"lr": POSITIVE, "lr_decay": NONNEGATIVE, "initial_accumulator_value": NONNEGATIVE, "eps": POSITIVE},
        "reimplementation", "torch.optim.Adagrad(lr, lr_decay, initial_accumulator_value, eps)",
        "optax.adagrad: accumulator starts at 0.1 (torch 0), eps 1e-7 inside the square root (torch "
        "1e-10 outside), no lr_decay",
        "torch_optim.adagrad (optax's own: adagrad_optax)",
    ),
    OptimizerDef(
        "adagrad_optax", _adagrad_optax, {"lr": 1e-2, "initial_accumulator_value": 0.1, "eps": 1e-7},
        {"lr": POSITIVE, "initial_accumulator_value": NONNEGATIVE, "eps": POSITIVE},
        "reference", "torch_ref.reference_optim.OptaxAdagrad (optax's formula in torch)",
        "optax's Adagrad: g / sqrt(s + eps), s from 0.1",
        "optax.adagrad(lr, initial_accumulator_value, eps)",
    ),
    OptimizerDef(
        "adadelta", _adadelta, {"lr": 1.0, "rho": 0.9, "eps": 1e-6}, {"lr": POSITIVE, "rho": UNIT, "eps": POSITIVE},
        "mapping", "torch.optim.Adadelta(lr, rho, eps)",
        "same formula; optax.adadelta's learning_rate defaults to None, which skips the -lr scaling "
        "altogether, so optax.adadelta() climbs the loss; torch's default lr is 1.0",
        "optax.adadelta(learning_rate=lr, rho, eps)",
    ),
    OptimizerDef(
        "adamax", _adamax, {**_ADAM, "lr": 2e-3}, _ADAM_BOUNDS,
        "mapping", "torch.optim.Adamax(lr, betas=(beta1, beta2), eps)",
        "same formula, eps inside the max in both (u = max(beta2 u, |g| + eps)); optax requires lr "
        "(torch 2e-3)",
        "optax.adamax(lr, b1=beta1, b2=beta2, eps)",
    ),
    OptimizerDef(
        "nadam", _nadam, {**_ADAM, "lr": 2e-3, "momentum_decay": 4e-3},
        {**_ADAM_BOUNDS, "momentum_decay": NONNEGATIVE},
        "reimplementation",
        "torch.optim.NAdam(lr, betas=(beta1, beta2), eps, momentum_decay) (torch_ref.reference_optim.NAdam: "
        "its scalar state in the parameters' dtype)",
        "torch warms the momentum up, mu_t = beta1 (1 - 0.5 * 0.96^(t momentum_decay)), and "
        "corrects by the product of the mu_t; optax.nadam uses a constant beta1 (Dozat's simplified "
        "form); torch keeps that product in float32 unless the default dtype is float64",
        "torch_optim.nadam (optax's own: nadam_optax)",
    ),
    OptimizerDef(
        "nadam_optax", _nadam_optax, {**_ADAM, "lr": 2e-3}, _ADAM_BOUNDS,
        "reference", "torch_ref.reference_optim.OptaxNAdam (optax's formula in torch)",
        "optax's NAdam: Adam with m_hat = beta1 m/(1-beta1^(t+1)) + (1-beta1) g/(1-beta1^t)",
        "optax.nadam(lr, b1=beta1, b2=beta2, eps)",
    ),
    OptimizerDef(
        "radam", _radam, dict(_ADAM), _ADAM_BOUNDS,
        "reimplementation", "torch.optim.RAdam(lr, betas=(beta1, beta2), eps)",
        "torch adds eps to sqrt(v) before the bias correction (optax after) and rectifies when "
        "rho_t > 5 (optax rho_t >= 5)",
        "torch_optim.radam (optax's own: radam_optax)",
    ),
    OptimizerDef(
        "radam_optax", _radam_optax, dict(_ADAM), _ADAM_BOUNDS,
        "reference", "torch_ref.reference_optim.OptaxRAdam (optax's formula in torch)",
        "optax's RAdam: eps added to the bias-corrected sqrt(v), threshold rho_t >= 5",
        "optax.radam(lr, b1=beta1, b2=beta2, eps)",
    ),
    OptimizerDef(
        "lion", _lion, {"lr": 1e-4, "beta1": 0.9, "beta2": 0.99, "weight_decay": 0.0},
        {"lr": POSITIVE, "beta1": UNIT, "beta2": UNIT, "weight_decay": NONNEGATIVE},
        "reference", "torch_ref.reference_optim.Lion(lr, betas=(beta1, beta2), weight_decay)",
        "no torch.optim Lion; Chen et al. 2023: c = b1 m + (1-b1) g, p -= lr (sign(c) + wd p), "
        "m = b2 m + (1-b2) g; optax.lion's default weight_decay is 1e-3 (the paper's code: 0)",
        "optax.lion(lr, b1=beta1, b2=beta2, weight_decay)",
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
    """The registry's transformation, hyperparameters injected (floats, arrays or, for a schedule,
    callables ``count -> value`` evaluated at each update with the number of updates done)."""
    spec = OPTIMIZERS[name]
    return optax.inject_hyperparams(spec.build)(**{**spec.defaults, **hparams})

"""The torch counterpart of every ``jaxopt_cmp.optimizers`` registry entry, by the same name.

One row per optimizer: the ``torch.optim`` class (or, where torch has none, a hand-written one from
:mod:`torch_ref.reference_optim`) and how the registry's hyperparameters (torch's names, ``betas``
split into ``beta1``/``beta2``) become its keyword arguments. Defaults and allowed
ranges are read from the JAX registry, so both packages share one source of truth; adding an
optimizer here is adding a row.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch

from jaxopt_cmp.checks import ConfigError
from jaxopt_cmp.optimizers import OPTIMIZERS, check_hparams
from torch_ref import reference_optim


@dataclass(frozen=True)
class TorchOptimizerDef:
    """``cls(parameters, **kwargs(**hparams))`` builds the registry optimizer ``name`` in torch."""

    name: str
    cls: type[torch.optim.Optimizer]
    kwargs: Callable[..., dict]


def _adam_kwargs(lr, beta1, beta2, eps):
    return {"lr": lr, "betas": (beta1, beta2), "eps": eps}


_TABLE = (
    TorchOptimizerDef("sgd", torch.optim.SGD, lambda lr: {"lr": lr}),
    TorchOptimizerDef("momentum", torch.optim.SGD, lambda lr, momentum: {"lr": lr, "momentum": momentum}),
    TorchOptimizerDef(
        "nesterov", torch.optim.SGD, lambda lr, momentum: {"lr": lr, "momentum": momentum, "nesterov": True}
    ),
    TorchOptimizerDef("adam", torch.optim.Adam, _adam_kwargs),
    TorchOptimizerDef(
        "adamw",
        torch.optim.AdamW,
        lambda lr, beta1, beta2, eps, weight_decay: {
            **_adam_kwargs(lr, beta1, beta2, eps), "weight_decay": weight_decay
        },
    ),
    TorchOptimizerDef(
        "amsgrad",
        torch.optim.Adam,
        lambda lr, beta1, beta2, eps: {**_adam_kwargs(lr, beta1, beta2, eps), "amsgrad": True},
    ),
    TorchOptimizerDef("amsgrad_optax", reference_optim.OptaxAMSGrad, _adam_kwargs),
    TorchOptimizerDef("rmsprop", torch.optim.RMSprop, lambda lr, alpha, eps: {"lr": lr, "alpha": alpha, "eps": eps}),
    TorchOptimizerDef(
        "rmsprop_centered",
        torch.optim.RMSprop,
        lambda lr, alpha, eps: {"lr": lr, "alpha": alpha, "eps": eps, "centered": True},
    ),
    TorchOptimizerDef(
        "rmsprop_momentum",
        torch.optim.RMSprop,
        lambda lr, alpha, eps, momentum: {"lr": lr, "alpha": alpha, "eps": eps, "momentum": momentum},
    ),
    TorchOptimizerDef(
        "rmsprop_momentum_optax",
        torch.optim.RMSprop,
        lambda lr, alpha, eps, momentum: {"lr": lr, "alpha": alpha, "eps": eps, "momentum": momentum},
    ),
    TorchOptimizerDef(
        "adagrad",
        torch.optim.Adagrad,
        lambda lr, lr_decay, initial_accumulator_value, eps: {
            "lr": lr, "lr_decay": lr_decay, "initial_accumulator_value": initial_accumulator_value, "eps": eps
        },
    ),
    TorchOptimizerDef(
        "adagrad_optax",
        reference_optim.OptaxAdagrad,
        lambda lr, initial_accumulator_value, eps: {
            "lr": lr, "initial_accumulator_value": initial_accumulator_value, "eps": eps
        },
    ),
    TorchOptimizerDef("adadelta", torch.optim.Adadelta, lambda lr, rho, eps: {"lr": lr, "rho": rho, "eps": eps}),
    TorchOptimizerDef("adamax", torch.optim.Adamax, _adam_kwargs),
    TorchOptimizerDef(
        "nadam",
        reference_optim.NAdam,
        lambda lr, beta1, beta2, eps, momentum_decay: {
            **_adam_kwargs(lr, beta1, beta2, eps), "momentum_decay": momentum_decay
        },
    ),
    TorchOptimizerDef("nadam_optax", reference_optim.OptaxNAdam, _adam_kwargs),
    TorchOptimizerDef("radam", torch.optim.RAdam, _adam_kwargs),
    TorchOptimizerDef("radam_optax", reference_optim.OptaxRAdam, _adam_kwargs),
    TorchOptimizerDef(
        "lion",
        reference_optim.Lion,
        lambda lr, beta1, beta2, weight_decay: {"lr": lr, "betas": (beta1, beta2), "weight_decay": weight_decay},
    ),
)

TORCH_OPTIMIZERS: dict[str, TorchOptimizerDef] = {d.name: d for d in _TABLE}


def torch_kwargs(name: str, **hparams: float) -> dict:
    """The ``torch.optim`` keyword arguments for registry optimizer ``name`` (defaults filled in).

    Hyperparameter names and values are checked by the JAX registry's rules
    (``ConfigError`` for an unknown optimizer, unknown hyperparameter or a value out of range).
    """
    check_hparams(name, {k: (v,) for k, v in hparams.items()})
    if name not in TORCH_OPTIMIZERS:
        have = ", ".join(TORCH_OPTIMIZERS)
        raise ConfigError("optimizer", name, f"no torch counterpart yet; torch_ref has {have}")
    full = {k: float(v) for k, v in {**OPTIMIZERS[name].defaults, **hparams}.items()}
    return TORCH_OPTIMIZERS[name].kwargs(**full)


def make_optimizer(name: str, parameters: Iterable[torch.nn.Parameter], **hparams: float):
    """The ``torch.optim`` twin of ``jaxopt_cmp.optimizers.make_optimizer(name, **hparams)``."""
    kwargs = torch_kwargs(name, **hparams)  # validates name and values first
    return TORCH_OPTIMIZERS[name].cls(parameters, **kwargs)

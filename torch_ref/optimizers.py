"""The torch counterpart of every ``jaxopt_cmp.optimizers`` registry entry, by the same name.

One row per optimizer: the ``torch.optim`` class and how the registry's hyperparameters (torch's
names, ``betas`` split into ``beta1``/``beta2``) become its keyword arguments. Defaults and allowed
ranges are read from the JAX registry, so both packages share one source of truth; adding an
optimizer here is adding a row.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch

from jaxopt_cmp.checks import ConfigError
from jaxopt_cmp.optimizers import OPTIMIZERS, check_hparams


@dataclass(frozen=True)
class TorchOptimizerDef:
    """``cls(parameters, **kwargs(**hparams))`` builds the registry optimizer ``name`` in torch."""

    name: str
    cls: type[torch.optim.Optimizer]
    kwargs: Callable[..., dict]


_TABLE = (
    TorchOptimizerDef("sgd", torch.optim.SGD, lambda lr: {"lr": lr}),
    TorchOptimizerDef("momentum", torch.optim.SGD, lambda lr, momentum: {"lr": lr, "momentum": momentum}),
    TorchOptimizerDef(
        "adam",
        torch.optim.Adam,
        lambda lr, beta1, beta2, eps: {"lr": lr, "betas": (beta1, beta2), "eps": eps},
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

"""The torch counterpart of every ``jaxopt_cmp.optimizers`` registry entry, by the same name.

One row per optimizer: the ``torch.optim`` class (or, where torch has none, a hand-written one from
:mod:`torch_ref.reference_optim`), ``kwargs``: how the registry's hyperparameters (torch's names,
``betas`` split into ``beta1``/``beta2``) become its keyword arguments, and the facts of the match:

- ``note``: what differs between optax and torch (defaults, formulas) for this optimizer;
- ``deliberate``: registry defaults that differ from ``torch.optim``'s own, each with its reason
  (``tests/test_registry.py`` fails on any other difference);
- ``schedule_parity``: False where the two agree only while ``lr`` is constant.

Derived from what runs: ``counterpart`` (the class and mapping as text) and ``parity``, one of
:data:`PARITY_KINDS`: ``"mapping"`` (an optax optimizer agrees with torch once hyperparameters are
mapped), ``"reimplementation"`` (the registry's build calls :mod:`jaxopt_cmp.torch_optim`, torch's
formula in optax; optax's own stays available as ``<name>_optax``) or ``"reference"`` (torch has
no such optimizer: ``torch_ref.reference_optim`` implements the paper's or optax's formula).
Values are checked, and defaults filled in, by the JAX registry: adding an optimizer here is adding
a row.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

import torch

from jaxopt_cmp.checks import ConfigError
from jaxopt_cmp.optimizers import OPTIMIZERS, check_hparams
from torch_ref import reference_optim

PARITY_KINDS = ("mapping", "reimplementation", "reference")


class _Name(str):
    """A hyperparameter's name standing in for its value, to read a ``kwargs`` mapping as text."""

    def __repr__(self) -> str:
        return str(self)


def torch_base(cls: type) -> type | None:
    """The ``torch.optim`` optimizer class ``cls`` is or extends; None where torch has none."""
    own = lambda c: c is not torch.optim.Optimizer and getattr(torch.optim, c.__name__, None) is c
    return next((c for c in cls.__mro__ if own(c)), None)


def _class_name(cls: type) -> str:
    return f"torch.optim.{cls.__name__}" if torch_base(cls) is cls else f"{cls.__module__}.{cls.__qualname__}"


@dataclass(frozen=True)
class TorchOptimizerDef:
    """``cls(parameters, **kwargs(**hparams))`` builds the registry optimizer ``name`` in torch."""

    name: str
    cls: type[torch.optim.Optimizer]
    kwargs: Callable[..., dict]
    note: str = ""
    deliberate: Mapping[str, str] = field(default_factory=dict)
    schedule_parity: bool = True

    def symbolic_kwargs(self) -> dict:
        """``kwargs`` with each hyperparameter's name in place of its value (a :class:`_Name`)."""
        return self.kwargs(**{k: _Name(k) for k in inspect.signature(self.kwargs).parameters})

    @property
    def counterpart(self) -> str:
        """The call as text, e.g. ``torch.optim.Adam(lr, betas=(beta1, beta2), eps, amsgrad=True)``."""
        args = [k if k == v else f"{k}={v!r}" for k, v in self.symbolic_kwargs().items()]
        return f"{_class_name(self.cls)}({', '.join(args)})"

    @property
    def parity(self) -> str:
        if torch_base(self.cls) is None:
            return "reference"
        build = OPTIMIZERS[self.name].build
        code = getattr(build, "__code__", None)
        return "reimplementation" if code and "torch_optim" in code.co_names else "mapping"

    def own_defaults(self) -> dict[str, float]:
        """Per registry hyperparameter, the default of the torch side itself: ``torch.optim``'s
        (the base class for a subclass), else the reference class's, read back through ``kwargs``."""
        cls = torch_base(self.cls) or self.cls
        theirs = cls([torch.nn.Parameter(torch.zeros(1))]).defaults
        out = {}
        for key, value in self.symbolic_kwargs().items():
            if isinstance(value, _Name):
                out[str(value)] = theirs[key]
            elif isinstance(value, tuple):  # betas=(beta1, beta2)
                out.update({str(v): t for v, t in zip(value, theirs[key], strict=True) if isinstance(v, _Name)})
        return out


def _adam_kwargs(lr, beta1, beta2, eps):
    return {"lr": lr, "betas": (beta1, beta2), "eps": eps}


def _rms_kwargs(lr, alpha, eps):
    return {"lr": lr, "alpha": alpha, "eps": eps}


_SEED_LR = {"lr": "the seed notebook's learning rate"}
_MOMENTUM = {"momentum": "0.9, the seed notebook's (torch's 0 is plain SGD)"}
_OPTAX_FORM = "optax's formula, run in torch to show how it differs from torch's own"

_TABLE = (
    TorchOptimizerDef(
        name="sgd",
        cls=torch.optim.SGD,
        kwargs=lambda lr: {"lr": lr},
        note="identical update p -= lr g; optax.sgd has no default lr",
        deliberate=_SEED_LR,
    ),
    TorchOptimizerDef(
        name="momentum",
        cls=torch.optim.SGD,
        kwargs=lambda lr, momentum: {"lr": lr, "momentum": momentum},
        note="optax.trace keeps b = g + m b like torch's buffer (dampening 0); lr after the buffer in both",
        deliberate={**_SEED_LR, **_MOMENTUM},
    ),
    TorchOptimizerDef(
        name="nesterov",
        cls=torch.optim.SGD,
        kwargs=lambda lr, momentum: {"lr": lr, "momentum": momentum, "nesterov": True},
        note="both step along g + m b with b = g + m b (Sutskever's form); torch needs momentum > 0",
        deliberate={**_SEED_LR, **_MOMENTUM},
    ),
    TorchOptimizerDef(
        name="adam",
        cls=torch.optim.Adam,
        kwargs=_adam_kwargs,
        note="both add eps outside the square root of the bias-corrected second moment",
    ),
    TorchOptimizerDef(
        name="adamw",
        cls=torch.optim.AdamW,
        kwargs=lambda lr, beta1, beta2, eps, weight_decay: {
            **_adam_kwargs(lr, beta1, beta2, eps),
            "weight_decay": weight_decay,
        },
        note="weight_decay default: optax 1e-4, torch 1e-2; both decay by lr * weight_decay * p",
    ),
    TorchOptimizerDef(
        name="amsgrad",
        cls=torch.optim.Adam,
        kwargs=lambda lr, beta1, beta2, eps: {**_adam_kwargs(lr, beta1, beta2, eps), "amsgrad": True},
        note="torch: max of the raw second moment, then bias-corrected; optax.amsgrad: max of the "
        "bias-corrected one (larger early on); they differ from step 2",
    ),
    TorchOptimizerDef(name="amsgrad_optax", cls=reference_optim.OptaxAMSGrad, kwargs=_adam_kwargs, note=_OPTAX_FORM),
    TorchOptimizerDef(
        name="rmsprop",
        cls=torch.optim.RMSprop,
        kwargs=_rms_kwargs,
        note="decay default: optax 0.9, torch alpha 0.99; eps: optax inside the square root by default, "
        "torch outside (mapped with eps_in_sqrt=False)",
    ),
    TorchOptimizerDef(
        name="rmsprop_centered",
        cls=torch.optim.RMSprop,
        kwargs=lambda lr, alpha, eps: {**_rms_kwargs(lr, alpha, eps), "centered": True},
        note="as rmsprop: decay=alpha (optax 0.9, torch 0.99), eps outside sqrt(v - m^2)",
    ),
    TorchOptimizerDef(
        name="rmsprop_momentum",
        cls=torch.optim.RMSprop,
        kwargs=lambda lr, alpha, eps, momentum: {**_rms_kwargs(lr, alpha, eps), "momentum": momentum},
        note="optax.rmsprop(momentum=m) scales by lr before its momentum trace, torch after: the same "
        "at constant lr, not under a schedule (optax's order: rmsprop_momentum_optax)",
        deliberate=_MOMENTUM,
    ),
    TorchOptimizerDef(
        name="rmsprop_momentum_optax",
        cls=torch.optim.RMSprop,
        kwargs=lambda lr, alpha, eps, momentum: {**_rms_kwargs(lr, alpha, eps), "momentum": momentum},
        note="optax's order (lr before the momentum trace): agrees with torch only while lr is constant",
        deliberate=_MOMENTUM,
        schedule_parity=False,
    ),
    TorchOptimizerDef(
        name="adagrad",
        cls=torch.optim.Adagrad,
        kwargs=lambda lr, lr_decay, initial_accumulator_value, eps: {
            "lr": lr,
            "lr_decay": lr_decay,
            "initial_accumulator_value": initial_accumulator_value,
            "eps": eps,
        },
        note="optax.adagrad: accumulator from 0.1 (torch 0), eps 1e-7 inside the square root (torch "
        "1e-10 outside), no lr_decay",
    ),
    TorchOptimizerDef(
        name="adagrad_optax",
        cls=reference_optim.OptaxAdagrad,
        kwargs=lambda lr, initial_accumulator_value, eps: {
            "lr": lr,
            "initial_accumulator_value": initial_accumulator_value,
            "eps": eps,
        },
        note=_OPTAX_FORM,
    ),
    TorchOptimizerDef(
        name="adadelta",
        cls=torch.optim.Adadelta,
        kwargs=lambda lr, rho, eps: {"lr": lr, "rho": rho, "eps": eps},
        note="same formula; optax.adadelta's learning_rate defaults to None, which skips the -lr "
        "scaling, so optax.adadelta() climbs the loss",
    ),
    TorchOptimizerDef(
        name="adamax",
        cls=torch.optim.Adamax,
        kwargs=_adam_kwargs,
        note="same formula, eps inside the max in both (u = max(beta2 u, |g| + eps))",
    ),
    TorchOptimizerDef(
        name="nadam",
        cls=reference_optim.NAdam,
        kwargs=lambda lr, beta1, beta2, eps, momentum_decay: {
            **_adam_kwargs(lr, beta1, beta2, eps),
            "momentum_decay": momentum_decay,
        },
        note="torch warms the momentum up (mu_t = beta1 (1 - 0.5 * 0.96^(t momentum_decay))), optax.nadam "
        "keeps beta1 constant; torch.optim.NAdam keeps the product of the mu_t in float32 (the "
        "subclass here: in the parameters' dtype)",
    ),
    TorchOptimizerDef(name="nadam_optax", cls=reference_optim.OptaxNAdam, kwargs=_adam_kwargs, note=_OPTAX_FORM),
    TorchOptimizerDef(
        name="radam",
        cls=torch.optim.RAdam,
        kwargs=_adam_kwargs,
        note="torch adds eps to sqrt(v) before the bias correction (optax after) and rectifies when "
        "rho_t > 5 (optax rho_t >= 5)",
    ),
    TorchOptimizerDef(name="radam_optax", cls=reference_optim.OptaxRAdam, kwargs=_adam_kwargs, note=_OPTAX_FORM),
    TorchOptimizerDef(
        name="lion",
        cls=reference_optim.Lion,
        kwargs=lambda lr, beta1, beta2, weight_decay: {"lr": lr, "betas": (beta1, beta2), "weight_decay": weight_decay},
        note="no torch.optim Lion: the paper's update (Chen et al. 2023); optax.lion's default "
        "weight_decay is 1e-3 (the paper's code: 0)",
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


# How each jaxopt_cmp.schedules kind is built from torch.optim.lr_scheduler classes, stepped the way
# torch users do (scheduler.step() after optimizer.step()): update t uses the lr after t steps.
SCHEDULER_MAPPING = {
    "constant": "no scheduler",
    "warmup": "LinearLR(start_factor=1 / (warmup + 1), end_factor=1, total_iters=warmup), then the decay by "
    "SequentialLR(milestones=[warmup]); warmup=0: the decay alone",
    "cosine": "CosineAnnealingLR(T_max=max(iters - 1 - warmup, 1), eta_min=final_lr_fraction * lr)",
    "linear": "LinearLR(start_factor=1, end_factor=final_lr_fraction, total_iters=max(iters - 1 - warmup, 1))",
    "step": "StepLR(step_size, gamma)",
}


def make_scheduler(optimizer: torch.optim.Optimizer, kind: str, iters: int, **params: float):
    """The ``torch.optim.lr_scheduler`` twin of ``jaxopt_cmp.schedules.make_schedule(kind, lr, iters,
    **params)`` on ``optimizer`` (its lr is the base lr), per :data:`SCHEDULER_MAPPING`; None for
    ``"constant"``. Call its ``step()`` after each ``optimizer.step()``."""
    from jaxopt_cmp.schedules import DEFAULTS, PARAMS, check_schedule

    # Like make_schedule, the parameters another kind uses are passed (a config's full grid) and unused.
    p = {**DEFAULTS, **check_schedule(kind, {k: v for k, v in params.items() if k in PARAMS.get(kind, DEFAULTS)})}
    if kind == "constant":
        return None
    sch = torch.optim.lr_scheduler
    warmup, lr = int(p["warmup"]), optimizer.param_groups[0]["lr"]
    span = max(int(iters) - 1 - warmup, 1)
    if kind == "cosine":
        decay = sch.CosineAnnealingLR(optimizer, T_max=span, eta_min=p["final_lr_fraction"] * lr)
    elif kind == "linear":
        decay = sch.LinearLR(optimizer, start_factor=1.0, end_factor=p["final_lr_fraction"], total_iters=span)
    else:
        decay = sch.StepLR(optimizer, step_size=int(p["step_size"]), gamma=p["gamma"])
    if warmup == 0:
        return decay
    warm = sch.LinearLR(optimizer, start_factor=1 / (warmup + 1), end_factor=1.0, total_iters=warmup)
    return sch.SequentialLR(optimizer, [warm, decay], milestones=[warmup])

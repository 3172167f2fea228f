"""Optimizer registry: a name and float hyperparameters -> an ``optax.GradientTransformation``.

One row per optimizer: ``build(**hyperparameters)``, their ``defaults``, allowed ``bounds`` and
default search ``space`` (:func:`jaxopt_cmp.search.default_space`).
Names and defaults are torch's (``lr``, ``momentum``, ``betas`` split into ``beta1``/``beta2``,
``eps``, ``alpha``, ...), so a name means the same optimizer here and in ``torch_ref``, whose table
(:mod:`torch_ref.optimizers`) holds the torch counterpart of each row, how the two are matched and
which defaults differ from ``torch.optim``'s on purpose. :func:`make_optimizer` builds a row through
``optax.inject_hyperparams``: the values live in the optimizer state as arrays, so a study can
``vmap`` over them and a new grid never recompiles; ``lr`` may also be a schedule ``step -> lr``.
:func:`register_optimizer` adds a row.

Every optimizer here is elementwise: each entry of the update depends only on the same entry of
the gradient, parameters and state. The engine (:mod:`jaxopt_cmp.train`) relies on this: it feeds
each run's parameters as one flat vector, which is exact only for elementwise optimizers (a
layer-wise one such as LARS or LAMB would see one "layer").
"""

from __future__ import annotations

import importlib
import inspect
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from jaxopt_cmp.checks import ConfigError, check_real
from jaxopt_cmp.schedules import DEFAULTS as SCHEDULE_DEFAULTS

if TYPE_CHECKING:
    import optax as _optax


class _Lazy:
    """A module imported at its first attribute use, so that importing the registry (and with it
    the config, ``--help``, a results loader) does not import optax."""

    def __init__(self, module: str):
        self._module = module

    def __getattr__(self, attr: str):
        return getattr(importlib.import_module(self._module), attr)


optax = _Lazy("optax")
torch_optim = _Lazy("jaxopt_cmp.torch_optim")

# (low, high, low_open, high_open): the allowed interval of a hyperparameter.
POSITIVE = (0.0, math.inf, True, True)
NONNEGATIVE = (0.0, math.inf, False, True)
UNIT = (0.0, 1.0, False, True)
OPEN_UNIT = (0.0, 1.0, True, True)


@dataclass(frozen=True)
class OptimizerDef:
    """One registry row: ``build(**defaults)`` is the transformation; ``bounds`` maps each
    hyperparameter to its allowed interval ``(low, high, low_open, high_open)``; ``space`` maps the
    hyperparameters a random search tunes to their distributions (``"loguniform(1e-4,1)"``, the
    syntax of ``--space``; the others stay at their defaults)."""

    name: str
    build: Callable[..., _optax.GradientTransformation]
    defaults: Mapping[str, float]
    bounds: Mapping[str, tuple[float, float, bool, bool]]
    space: Mapping[str, str] = field(default_factory=dict)


_ADAM = {"lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8}
_ADAM_BOUNDS = {"lr": POSITIVE, "beta1": UNIT, "beta2": UNIT, "eps": POSITIVE}
_RMS = {"lr": 1e-2, "alpha": 0.99, "eps": 1e-8}
_RMS_BOUNDS = {"lr": POSITIVE, "alpha": UNIT, "eps": POSITIVE}
_RMS_MOMENTUM = {**_RMS, "momentum": 0.9}
_RMS_MOMENTUM_BOUNDS = {**_RMS_BOUNDS, "momentum": UNIT}


# Default search spaces. Their form follows Choi et al. 2019, "On empirical comparisons of
# optimizers" (Appendix D): lr, 1 - momentum, 1 - beta1, 1 - beta2 and eps each log-uniform, so
# that every hyperparameter the update has is tuned (their point: with momentum and eps tuned too,
# the inclusion hierarchy SGD <= momentum <= Adam shows; Schmidt et al. 2021, "Descending through a
# crowded valley", tune lr log-uniformly with the same random-search protocol). The ranges are this
# project's choice, one rule for every row: lr over 4 decades centred on the row's (torch's)
# default, 1 - momentum/beta1 in [1e-3, 1], 1 - beta2/alpha in [1e-4, 1e-1] (0.9 .. 0.9999), eps
# in [1e-10, 1e-2]; lr_decay, initial_accumulator_value and momentum_decay stay at their defaults.
def _lr(default: float) -> str:
    return f"loguniform({default / 100:g},{default * 100:g})"


_MOM, _BETA2, _EPS = "1-loguniform(1e-3,1)", "1-loguniform(1e-4,1e-1)", "loguniform(1e-10,1e-2)"
_ADAM_SPACE = {"lr": _lr(1e-3), "beta1": _MOM, "beta2": _BETA2, "eps": _EPS}
_RMS_SPACE = {"lr": _lr(1e-2), "alpha": _BETA2, "eps": _EPS}

_BUILTIN = (
    OptimizerDef(
        name="sgd",
        build=lambda lr: optax.sgd(lr),
        defaults={"lr": 1e-2},
        bounds={"lr": POSITIVE},
        space={"lr": _lr(1e-2)},
    ),
    OptimizerDef(
        name="momentum",
        build=lambda lr, momentum: optax.sgd(lr, momentum=momentum),
        defaults={"lr": 1e-2, "momentum": 0.9},
        bounds={"lr": POSITIVE, "momentum": UNIT},
        space={"lr": _lr(1e-2), "momentum": _MOM},
    ),
    OptimizerDef(
        name="nesterov",
        build=lambda lr, momentum: optax.sgd(lr, momentum=momentum, nesterov=True),
        defaults={"lr": 1e-2, "momentum": 0.9},
        bounds={"lr": POSITIVE, "momentum": OPEN_UNIT},
        space={"lr": _lr(1e-2), "momentum": _MOM},
    ),
    OptimizerDef(
        name="adam",
        build=lambda lr, beta1, beta2, eps: optax.adam(lr, b1=beta1, b2=beta2, eps=eps),
        defaults=_ADAM,
        bounds=_ADAM_BOUNDS,
        space=_ADAM_SPACE,
    ),
    OptimizerDef(
        name="adamw",
        build=lambda lr, beta1, beta2, eps, weight_decay: optax.adamw(
            lr, b1=beta1, b2=beta2, eps=eps, weight_decay=weight_decay
        ),
        defaults={**_ADAM, "weight_decay": 1e-2},
        bounds={**_ADAM_BOUNDS, "weight_decay": NONNEGATIVE},
        space={**_ADAM_SPACE, "weight_decay": "loguniform(1e-4,1)"},
    ),
    OptimizerDef(
        name="amsgrad",
        build=lambda lr, beta1, beta2, eps: torch_optim.amsgrad(lr, beta1, beta2, eps),
        defaults=_ADAM,
        bounds=_ADAM_BOUNDS,
        space=_ADAM_SPACE,
    ),
    OptimizerDef(
        name="amsgrad_optax",
        build=lambda lr, beta1, beta2, eps: optax.amsgrad(lr, b1=beta1, b2=beta2, eps=eps),
        defaults=_ADAM,
        bounds=_ADAM_BOUNDS,
        space=_ADAM_SPACE,
    ),
    OptimizerDef(
        name="rmsprop",
        build=lambda lr, alpha, eps: optax.rmsprop(lr, decay=alpha, eps=eps, eps_in_sqrt=False),
        defaults=_RMS,
        bounds=_RMS_BOUNDS,
        space=_RMS_SPACE,
    ),
    OptimizerDef(
        name="rmsprop_centered",
        build=lambda lr, alpha, eps: optax.rmsprop(lr, decay=alpha, eps=eps, eps_in_sqrt=False, centered=True),
        defaults=_RMS,
        bounds=_RMS_BOUNDS,
        space=_RMS_SPACE,
    ),
    OptimizerDef(
        name="rmsprop_momentum",
        build=lambda lr, alpha, eps, momentum: torch_optim.rmsprop_momentum(lr, alpha, eps, momentum),
        defaults=_RMS_MOMENTUM,
        bounds=_RMS_MOMENTUM_BOUNDS,
        space={**_RMS_SPACE, "momentum": _MOM},
    ),
    OptimizerDef(
        name="rmsprop_momentum_optax",
        build=lambda lr, alpha, eps, momentum: optax.rmsprop(
            lr, decay=alpha, eps=eps, eps_in_sqrt=False, momentum=momentum
        ),
        defaults=_RMS_MOMENTUM,
        bounds=_RMS_MOMENTUM_BOUNDS,
        space={**_RMS_SPACE, "momentum": _MOM},
    ),
    OptimizerDef(
        name="adagrad",
        build=lambda lr, lr_decay, initial_accumulator_value, eps: torch_optim.adagrad(
            lr, lr_decay, initial_accumulator_value, eps
        ),
        defaults={"lr": 1e-2, "lr_decay": 0.0, "initial_accumulator_value": 0.0, "eps": 1e-10},
        bounds={"lr": POSITIVE, "lr_decay": NONNEGATIVE, "initial_accumulator_value": NONNEGATIVE, "eps": POSITIVE},
        space={"lr": _lr(1e-2), "eps": _EPS},
    ),
    OptimizerDef(
        name="adagrad_optax",
        build=lambda lr, initial_accumulator_value, eps: optax.adagrad(
            lr, initial_accumulator_value=initial_accumulator_value, eps=eps
        ),
        defaults={"lr": 1e-2, "initial_accumulator_value": 0.1, "eps": 1e-7},
        bounds={"lr": POSITIVE, "initial_accumulator_value": NONNEGATIVE, "eps": POSITIVE},
        space={"lr": _lr(1e-2), "eps": _EPS},
    ),
    OptimizerDef(
        name="adadelta",
        build=lambda lr, rho, eps: optax.adadelta(learning_rate=lr, rho=rho, eps=eps),
        defaults={"lr": 1.0, "rho": 0.9, "eps": 1e-6},
        bounds={"lr": POSITIVE, "rho": UNIT, "eps": POSITIVE},
        space={"lr": _lr(1.0), "rho": _MOM, "eps": _EPS},
    ),
    OptimizerDef(
        name="adamax",
        build=lambda lr, beta1, beta2, eps: optax.adamax(lr, b1=beta1, b2=beta2, eps=eps),
        defaults={**_ADAM, "lr": 2e-3},
        bounds=_ADAM_BOUNDS,
        space={**_ADAM_SPACE, "lr": _lr(2e-3)},
    ),
    OptimizerDef(
        name="nadam",
        build=lambda lr, beta1, beta2, eps, momentum_decay: torch_optim.nadam(lr, beta1, beta2, eps, momentum_decay),
        defaults={**_ADAM, "lr": 2e-3, "momentum_decay": 4e-3},
        bounds={**_ADAM_BOUNDS, "momentum_decay": NONNEGATIVE},
        space={**_ADAM_SPACE, "lr": _lr(2e-3)},
    ),
    OptimizerDef(
        name="nadam_optax",
        build=lambda lr, beta1, beta2, eps: optax.nadam(lr, b1=beta1, b2=beta2, eps=eps),
        defaults={**_ADAM, "lr": 2e-3},
        bounds=_ADAM_BOUNDS,
        space={**_ADAM_SPACE, "lr": _lr(2e-3)},
    ),
    OptimizerDef(
        name="radam",
        build=lambda lr, beta1, beta2, eps: torch_optim.radam(lr, beta1, beta2, eps),
        defaults=_ADAM,
        bounds=_ADAM_BOUNDS,
        space=_ADAM_SPACE,
    ),
    OptimizerDef(
        name="radam_optax",
        build=lambda lr, beta1, beta2, eps: optax.radam(lr, b1=beta1, b2=beta2, eps=eps),
        defaults=_ADAM,
        bounds=_ADAM_BOUNDS,
        space=_ADAM_SPACE,
    ),
    OptimizerDef(
        name="lion",
        build=lambda lr, beta1, beta2, weight_decay: optax.lion(lr, b1=beta1, b2=beta2, weight_decay=weight_decay),
        defaults={"lr": 1e-4, "beta1": 0.9, "beta2": 0.99, "weight_decay": 0.0},
        bounds={"lr": POSITIVE, "beta1": UNIT, "beta2": UNIT, "weight_decay": NONNEGATIVE},
        space={"lr": _lr(1e-4), "beta1": _MOM, "beta2": "1-loguniform(1e-3,1e-1)"},
    ),
)

OPTIMIZERS: dict[str, OptimizerDef] = {}


def _check_bounds(name: str, key: str, interval) -> None:
    ok = isinstance(interval, tuple) and len(interval) == 4
    if not ok or not (isinstance(interval[0], (int, float)) and isinstance(interval[1], (int, float))):
        raise ConfigError(f"{name} bounds[{key!r}]", interval, "expected (low, high, low_open, high_open)")
    if not interval[0] < interval[1]:
        raise ConfigError(f"{name} bounds[{key!r}]", interval, "expected low < high")


# Columns of runs.csv / history.csv / to_frame() beside the hyperparameters: a hyperparameter of
# one of these names would overwrite the column (jaxopt_cmp.results writes them).
RESERVED_NAMES = frozenset(
    {"optimizer", "grid_index", "seed", "schedule", "step", "mse", "val_mse", "test_mse", "final_mse"}
    | {"final_val_mse", "final_test_mse", "diverged_at", "steps_to_target"}
    | set(SCHEDULE_DEFAULTS)  # a schedule's parameters share the grid with the optimizer's
)


def _check_row(row: OptimizerDef) -> None:
    """The rules :func:`register_optimizer` states, for a row whose name is already accepted."""
    for key in row.defaults:
        if key in RESERVED_NAMES:
            names = ", ".join(sorted(RESERVED_NAMES))
            allowed = f"expected a name other than the results columns and schedule parameters {names}"
            raise ConfigError(f"{row.name} hyperparameter", key, allowed)
    if not callable(row.build):
        raise ConfigError(f"{row.name} build", row.build, "expected a callable taking the hyperparameters")
    takes = list(inspect.signature(row.build).parameters)
    if sorted(takes) != sorted(row.defaults):
        raise ConfigError(f"{row.name} defaults", sorted(row.defaults), f"expected build's parameters {takes}")
    if set(row.bounds) != set(row.defaults):
        raise ConfigError(f"{row.name} bounds", sorted(row.bounds), f"expected one interval for each of {takes}")
    for key, interval in row.bounds.items():
        _check_bounds(row.name, key, interval)
        low, high, low_open, high_open = interval
        check_real(f"{row.name} default {key}", row.defaults[key], low, high, low_open=low_open, high_open=high_open)
    unknown = sorted(set(row.space) - set(row.defaults))
    if unknown or not all(isinstance(v, str) for v in row.space.values()):
        raise ConfigError(f"{row.name} space", dict(row.space), f"expected distributions (strings) of {takes}")


def register_optimizer(
    name: str,
    build: Callable[..., _optax.GradientTransformation],
    defaults: Mapping[str, float],
    bounds: Mapping[str, tuple[float, float, bool, bool]],
    *,
    space: Mapping[str, str] | None = None,
    replace: bool = False,
) -> OptimizerDef:
    """Adds ``name`` to :data:`OPTIMIZERS`: ``build(**hyperparameters)`` returns the transformation
    (``lr`` first by convention; every parameter is injected, so a study can sweep it).

    ``defaults`` gives a float for each of ``build``'s parameters and ``bounds`` each one's interval
    ``(low, high, low_open, high_open)`` (e.g. :data:`POSITIVE`, :data:`UNIT`); every default must
    lie in its interval. ``space`` (optional) is its default search space, e.g.
    ``{"lr": "loguniform(1e-5,1e-1)", "beta2": "1-loguniform(1e-4,1e-1)"}`` (without it, a search
    draws lr log-uniformly over 4 decades centred on its default). ``name`` must be a Python
    identifier not registered yet, unless ``replace``. Raises ``ConfigError`` otherwise. Example::

        register_optimizer(
            "adabelief",
            lambda lr, beta1, beta2, eps: optax.adabelief(lr, b1=beta1, b2=beta2, eps=eps),
            defaults={"lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "eps": 1e-16},
            bounds={"lr": POSITIVE, "beta1": UNIT, "beta2": UNIT, "eps": POSITIVE},
        )
    """
    if not isinstance(name, str) or not name.isidentifier():
        raise ConfigError("optimizer name", name, "expected a Python identifier")
    if name in OPTIMIZERS and not replace:
        raise ConfigError("optimizer name", name, "already registered (pass replace=True to replace it)")
    space = dict(space) if space is not None else {"lr": _lr(defaults["lr"])} if "lr" in defaults else {}
    row = OptimizerDef(name=name, build=build, defaults=dict(defaults), bounds=dict(bounds), space=space)
    _check_row(row)
    made = row.build(**row.defaults)
    if not (callable(getattr(made, "init", None)) and callable(getattr(made, "update", None))):
        raise ConfigError(f"{name} build", type(made).__name__, "expected it to return an optax GradientTransformation")
    OPTIMIZERS[name] = row
    return row


for _row in _BUILTIN:  # checked without building (importing the registry does not import optax)
    _check_row(_row)
    OPTIMIZERS[_row.name] = _row


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


def make_optimizer(name: str, schedule: str = "constant", **hparams) -> _optax.GradientTransformation:
    """The registry's transformation, hyperparameters injected (floats, arrays or, for a schedule,
    callables ``count -> value`` evaluated at each update with the number of updates done).

    With ``schedule`` other than ``"constant"``, ``hparams`` also holds ``iters`` and the schedule's
    parameters (:mod:`jaxopt_cmp.schedules`), all arrays in the state: the injected ``lr`` is set to
    the schedule's value before each update. ``"constant"`` builds exactly the unscheduled program.
    """
    spec = OPTIMIZERS[name]
    if schedule == "constant":
        return optax.inject_hyperparams(spec.build)(**{**spec.defaults, **hparams})
    from jaxopt_cmp import schedules

    sched = {k: hparams.pop(k) for k in (*schedules.DEFAULTS, "iters") if k in hparams}
    rest = {**spec.defaults, **hparams}
    lr = rest.pop("lr")
    inner = lambda lr: optax.inject_hyperparams(spec.build)(lr=lr, **rest)
    return schedules.scheduled(schedule, inner, lr, sched.pop("iters", 1.0), **sched)

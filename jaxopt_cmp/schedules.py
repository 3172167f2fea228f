"""Learning-rate schedules: ``make_schedule(kind, lr, iters, **params)`` -> ``step -> lr``.

Conventions (where JAX/torch ports usually break):

- ``t`` is the 0-based number of updates already done; update ``t`` (the ``t + 1``-th) uses
  ``schedule(t)``. So step 0 uses ``schedule(0)``; the last update of a run of ``iters`` steps uses
  ``schedule(iters - 1)``. In torch this is a scheduler stepped after ``optimizer.step()``.
- Warmup (every kind but ``constant``): ``lr * (t + 1) / (warmup + 1)`` for ``t <= warmup``, so
  step 0 uses ``lr / (warmup + 1)`` (never 0) and step ``warmup`` is the first at the full ``lr``
  (torch ``LinearLR(start_factor=1 / (warmup + 1), total_iters=warmup)``). ``warmup=0``: no warmup.
- Decay over ``s = t - warmup`` in ``[0, D]``, ``D = max(iters - 1 - warmup, 1)``, ``f`` =
  ``final_lr_fraction``: ``cosine`` ``lr * (f + (1 - f) * (1 + cos(pi s / D)) / 2)``; ``linear``
  ``lr * (1 - (1 - f) * s / D)``; both reach ``f * lr`` at the last step ``t = iters - 1`` when
  ``warmup <= iters - 2``; with ``warmup = iters - 1`` (``iters = 1`` included) the last step is
  ``t = warmup``, at the full ``lr``: nothing decays.
  ``step``: ``lr * gamma ** floor(s / step_size)``.

Every parameter may be an array (the engine passes per-run arrays under ``vmap``); the result is
computed in ``lr``'s dtype, float64 in a float64 run (optax's own schedules compute ``count / N``
in float32 even then). Only ``kind`` is static.
"""

from __future__ import annotations

import math
from typing import NamedTuple

from jaxopt_cmp.checks import ConfigError, check_choice, check_int, check_real, is_real

SCHEDULES = ("constant", "cosine", "linear", "step")
# The schedule parameters and their defaults (hyperparameters like lr: grid axes).
DEFAULTS = {"warmup": 0.0, "final_lr_fraction": 0.0, "step_size": 1000.0, "gamma": 0.1}
# The parameters each kind uses: another kind's parameter is refused, never silently ignored.
PARAMS = {
    "constant": (),
    "cosine": ("warmup", "final_lr_fraction"),
    "linear": ("warmup", "final_lr_fraction"),
    "step": ("warmup", "step_size", "gamma"),
}


def check_schedule(kind: str, params) -> dict[str, float]:
    """Raises ``ConfigError`` for an unknown kind, unknown parameter or value out of range; returns
    the parameters as floats. ``warmup < iters`` is checked where ``iters`` is known."""
    check_choice("schedule", kind, SCHEDULES)
    out = {}
    for key, value in params.items():
        if key not in DEFAULTS:
            raise ConfigError("schedule parameter", key, f"expected one of {', '.join(DEFAULTS)}")
        if key not in PARAMS[kind]:
            takes = f"takes {', '.join(PARAMS[kind])}" if PARAMS[kind] else "takes no parameters"
            raise ConfigError(key, value, f"does not apply to schedule {kind}, which {takes} (--schedule)")
        if key == "warmup":
            out[key] = float(check_int("warmup", _integral(value), low=0))
        elif key == "step_size":
            out[key] = float(check_int("step_size", _integral(value), low=1))
        elif key == "final_lr_fraction":
            out[key] = check_real("final_lr_fraction", value, 0.0, 1.0, high_open=False)
        else:
            out[key] = check_real("gamma", value, 0.0, math.inf, low_open=True, high_open=True)
    return out


def _integral(value):
    """A whole float (as saved results hold every hyperparameter) as an int; else unchanged."""
    return int(value) if is_real(value) and math.isfinite(float(value)) and float(value).is_integer() else value


def make_schedule(kind: str, lr, iters, warmup=0.0, final_lr_fraction=0.0, step_size=1000.0, gamma=0.1):
    """The schedule ``step -> lr`` (module doc for the formulas and conventions); jnp and vmap
    friendly, computed in ``lr``'s dtype."""
    import jax.numpy as jnp

    check_choice("schedule", kind, SCHEDULES)
    lr = jnp.asarray(lr)
    if not jnp.issubdtype(lr.dtype, jnp.floating):
        lr = lr.astype(jnp.result_type(float))
    dt = lr.dtype
    iters, warmup, f = (jnp.asarray(v, dt) for v in (iters, warmup, final_lr_fraction))
    step_size, gamma = jnp.asarray(step_size, dt), jnp.asarray(gamma, dt)

    def schedule(t):
        t = jnp.asarray(t).astype(dt)
        if kind == "constant":
            return lr * jnp.ones_like(t)
        warm = (t + 1) / (warmup + 1)
        s = t - warmup
        d = jnp.maximum(iters - 1 - warmup, 1)
        frac = jnp.clip(s / d, 0, 1)
        if kind == "cosine":
            decay = f + (1 - f) * (1 + jnp.cos(jnp.pi * frac)) / 2
        elif kind == "linear":
            decay = 1 - (1 - f) * frac
        else:
            decay = gamma ** jnp.floor(jnp.maximum(s, 0) / step_size)
        return lr * jnp.where(t < warmup, warm, decay)

    return schedule


class ScheduledState(NamedTuple):
    """The scheduled optimizer's state: base ``lr``, schedule parameters and ``iters`` as arrays
    (per run under ``vmap``), and the injected inner optimizer's state (whose ``count`` is ``t``)."""

    lr: object
    params: dict
    inner: object


def scheduled(kind: str, inner_factory, lr, iters, **params):
    """A ``GradientTransformation`` that, at each update, sets the injected ``lr`` of the inner
    optimizer (``inner_factory(lr)``, built with ``optax.inject_hyperparams``) to
    ``make_schedule(kind, ...)(t)`` and then runs its update."""
    import jax.numpy as jnp
    import optax

    inner = inner_factory(lr)
    full = {**DEFAULTS, **params, "iters": iters}

    def init_fn(p):
        state = inner.init(p)
        dt = state.hyperparams["lr"].dtype
        return ScheduledState(jnp.asarray(lr, dt), {k: jnp.asarray(v, dt) for k, v in full.items()}, state)

    def update_fn(updates, state, p=None):
        sp = dict(state.params)
        rate = make_schedule(kind, state.lr, sp.pop("iters"), **sp)(state.inner.count)
        hp = {**state.inner.hyperparams, "lr": rate.astype(state.inner.hyperparams["lr"].dtype)}
        updates, new = inner.update(updates, state.inner._replace(hyperparams=hp), p)
        return updates, state._replace(inner=new)

    return optax.GradientTransformation(init_fn, update_fn)

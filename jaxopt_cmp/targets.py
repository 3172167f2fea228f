"""Regression targets ``f(x)``: a small registry by name.

Each target takes the array namespace as a second argument (``jax.numpy``, ``numpy`` or
``torch``) so that both frameworks compute the very same formula. ``x`` is ``(N, d)`` with ``d``
the target's input dimension (:data:`XDIM`, 1 unless listed); ``f(x)`` is ``(N, 1)``.
"""

from __future__ import annotations

from collections.abc import Callable

import jax.numpy as jnp


def seed_target(x, xp=jnp):
    """The seed notebook's target: ``exp(-x^2) cos(10 x)``."""
    return xp.exp(-(x**2)) * xp.cos(10.0 * x)


def sin_target(x, xp=jnp):
    return xp.sin(3.0 * x)


def abs_target(x, xp=jnp):
    return xp.abs(x)


def multiscale_target(x, xp=jnp):
    """``sin x + 0.5 sin 5x + 0.25 sin 15x``: three frequencies, the highest with the least weight."""
    return xp.sin(x) + 0.5 * xp.sin(5.0 * x) + 0.25 * xp.sin(15.0 * x)


def step_target(x, xp=jnp):
    """``sign(x)``: one jump at 0."""
    return xp.sign(x)


def chirp_target(x, xp=jnp):
    """``sin(2 x^2)``: the local frequency ``2x / pi`` rises with ``x``."""
    return xp.sin(2.0 * x**2)


def franke_target(x, xp=jnp):
    """Franke's function (Franke 1979) of ``x = (u, v)`` on ``[0, 1]^2``: two peaks, a ridge and a dip."""
    u, v = 9.0 * x[:, :1], 9.0 * x[:, 1:2]
    return (
        0.75 * xp.exp(-((u - 2) ** 2 + (v - 2) ** 2) / 4)
        + 0.75 * xp.exp(-((u + 1) ** 2) / 49 - (v + 1) / 10)
        + 0.5 * xp.exp(-((u - 7) ** 2 + (v - 3) ** 2) / 4)
        - 0.2 * xp.exp(-((u - 4) ** 2) - (v - 7) ** 2)
    )


TARGETS: dict[str, Callable] = {
    "seed": seed_target,
    "sin": sin_target,
    "abs": abs_target,
    "multiscale": multiscale_target,
    "step": step_target,
    "chirp": chirp_target,
    "franke": franke_target,
}
XDIM: dict[str, int] = {"franke": 2}  # input dimension of targets not 1-D


def target_xdim(name: str) -> int:
    return XDIM.get(name, 1)

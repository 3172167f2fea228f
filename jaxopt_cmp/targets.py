"""Regression targets ``f(x)``: a small registry by name.

Each target takes the array namespace as a second argument (``jax.numpy``, ``numpy`` or
``torch``) so that both frameworks compute the very same formula.
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


TARGETS: dict[str, Callable] = {"seed": seed_target, "sin": sin_target, "abs": abs_target}

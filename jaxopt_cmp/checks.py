"""The one error type for bad settings, and the checks that raise it; the one message for a
missing optional dependency (:func:`import_extra`)."""

from __future__ import annotations

import importlib
import math
from collections.abc import Sequence

import numpy as np


class ConfigError(ValueError):
    """A setting has a value that is not allowed. ``setting`` names it as the user spells it."""

    def __init__(self, setting: str, value, allowed: str):
        self.setting, self.value, self.allowed = setting, value, allowed
        super().__init__(f"{setting}={value!r} is not allowed: {allowed}")


def is_int(v) -> bool:
    """Python and numpy integers (not bools)."""
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def is_real(v) -> bool:
    """Python and numpy reals, and 0-d real arrays (not bools, not complex)."""
    if isinstance(v, np.ndarray) and v.ndim == 0:
        v = v[()]
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))


def check_int(setting: str, value, low: int = 1, high: int | None = None) -> int:
    """``value`` as a Python int if ``low <= value (<= high)``; ``ConfigError`` otherwise."""
    if hasattr(value, "shape") and getattr(value, "shape", None) == () and hasattr(value, "item"):
        value = value.item() if is_int(value.item()) else value  # a 0-d numpy/jax integer array
    if not is_int(value) or value < low or (high is not None and value > high):
        allowed = f"an integer >= {low}" if high is None else f"an integer in [{low}, {high}]"
        raise ConfigError(setting, value, f"expected {allowed}")
    return int(value)


def check_real(setting: str, value, low: float, high: float, *, low_open=False, high_open=True) -> float:
    """``value`` as a Python float if ``low <(=) value <(=) high`` and finite; the message states
    the interval."""
    if hasattr(value, "shape") and getattr(value, "shape", None) == () and hasattr(value, "item"):
        value = value.item()  # numpy/jax 0-d arrays and scalars
    ok = is_real(value) and math.isfinite(value)
    if ok:
        ok = (value > low if low_open else value >= low) and (value < high if high_open else value <= high)
    if not ok:
        interval = f"{'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
        raise ConfigError(setting, value, f"expected a finite number in {interval}")
    return float(value)


def check_choice(setting: str, value, choices: Sequence[str]) -> None:
    if value not in choices:
        raise ConfigError(setting, value, f"expected one of {', '.join(choices)}")


class MissingExtra(ImportError):
    """An optional dependency is not installed; the message is one line naming the extra to install."""


def import_extra(module: str, extra: str, needed_by: str):
    """``module`` imported, or :class:`MissingExtra`: "``needed_by`` needs ``module``, which is not
    installed: pip install -e ".[extra]"". Only the module itself missing counts: an import error
    inside an installed ``module`` propagates as it is."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as err:
        if err.name != module.partition(".")[0]:
            raise
        raise MissingExtra(f'{needed_by} needs {module}, which is not installed: pip install -e ".[{extra}]"') from None

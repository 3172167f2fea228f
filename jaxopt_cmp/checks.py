"""The one error type for bad settings, and the checks that raise it."""

from __future__ import annotations

import math
from collections.abc import Sequence


class ConfigError(ValueError):
    """A setting has a value that is not allowed. ``setting`` names it as the user spells it."""

    def __init__(self, setting: str, value, allowed: str):
        self.setting, self.value, self.allowed = setting, value, allowed
        super().__init__(f"{setting}={value!r} is not allowed: {allowed}")


def is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def check_int(setting: str, value, low: int = 1) -> None:
    if not is_int(value) or value < low:
        raise ConfigError(setting, value, f"expected an integer >= {low}")


def check_real(setting: str, value, low: float, high: float, *, low_open=False, high_open=True):
    """Checks ``low <(=) value <(=) high`` and finiteness; the message states the interval."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        ok = (value > low if low_open else value >= low) and (value < high if high_open else value <= high)
    if not ok:
        interval = f"{'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
        raise ConfigError(setting, value, f"expected a finite number in {interval}")


def check_choice(setting: str, value, choices: Sequence[str]) -> None:
    if value not in choices:
        raise ConfigError(setting, value, f"expected one of {', '.join(choices)}")

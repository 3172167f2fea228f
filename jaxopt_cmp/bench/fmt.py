"""How measured values read in bench.md: a summary's median (min-max), and markdown tables."""

from __future__ import annotations

from jaxopt_cmp.io import format_table


def x_range(s: dict, digits: int = 1) -> str:
    """A ratio summary: ``12.3x (11.0-14.1)``."""
    if s["median"] is None:
        return "n/a"
    return f"{s['median']:.{digits}f}x ({s['min']:.{digits}f}-{s['max']:.{digits}f})"


def rate_range(s: dict) -> str:
    """A rate summary: ``57,576 (55,012-60,100)``."""
    return "n/a" if s["median"] is None else f"{s['median']:,.0f} ({s['min']:,.0f}-{s['max']:,.0f})"


def pct_range(s: dict) -> str:
    """A fraction summary as percentages: ``57% (55%-61%)``."""
    return "n/a" if s["median"] is None else f"{s['median']:.0%} ({s['min']:.0%}-{s['max']:.0%})"


def seconds_range(s: dict) -> str:
    """A seconds summary: ``9.1 (8.7-9.6)``."""
    return "n/a" if s["median"] is None else f"{s['median']:.2f} ({s['min']:.2f}-{s['max']:.2f})"


def gflops(rate, flops) -> str:
    """Model-steps/s times FLOPs per model-step, in GFLOP/s."""
    return "n/a" if not rate else f"{rate * flops / 1e9:.1f} GFLOP/s"


def mb(v) -> str:
    return "-" if v is None else f"{v:,.0f}"


def table(header: list[str], rows: list[list]) -> list[str]:
    """A markdown table (``jaxopt_cmp.io.format_table``), one line per row."""
    return format_table(header, rows, markdown=True).split("\n")

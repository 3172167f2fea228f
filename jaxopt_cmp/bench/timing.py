"""Measurement primitives shared by the workers and the parent: timed calls, summaries."""

from __future__ import annotations

import math
import resource
import statistics
import time


def timed(fn, *args) -> tuple[object, dict]:
    """``fn(*args)`` and its wall seconds and the CPU seconds this process spent (all threads)."""
    r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    value = fn(*args)
    wall, r1 = time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF)
    return value, {"wall_s": wall, "cpu_s": (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)}


def summary(values) -> dict:
    """Median, min and max of the finite values (None when there are none), and the values."""
    finite = [v for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return {"median": None, "min": None, "max": None, "values": list(values)}
    return {"median": statistics.median(finite), "min": min(finite), "max": max(finite), "values": list(values)}

"""A grid axis of too many points is refused before its points are made (issue 30, item 7):
``lr=a:b:N`` with N beyond the largest product grid is one line, not a MemoryError, a ValueError
traceback or gigabytes allocated first."""

from __future__ import annotations

import sys
import tracemalloc
from pathlib import Path

import pytest

from jaxopt_cmp import search
from jaxopt_cmp.checks import ConfigError

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import study  # noqa: E402


@pytest.mark.parametrize("n", [search.MAX_TRIALS + 1, 30_000_000, 10**10, 10**23])
@pytest.mark.parametrize("log", ["", "log"])
def test_an_axis_beyond_the_limit_is_refused_before_it_is_made(n, log):
    tracemalloc.start()
    try:
        with pytest.raises(ConfigError, match=r"expected a:b:n with n <= 1,000,000"):
            search.parse_axis(f"lr=1e-3:1e-1:{n}{log}")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000, peak


def test_an_axis_at_the_limit_is_made():
    name, values = search.parse_axis(f"lr=0:1:{search.MAX_TRIALS}")
    assert name == "lr" and len(values) == search.MAX_TRIALS and values[-1] == 1.0


def test_the_script_says_it_in_one_line(usage_error, tmp_path):
    argv = ["--optimizers", "sgd", "--grid", "lr=1e-3:1e-1:10000000000", "--no-plots", "--out", str(tmp_path / "o")]
    assert "--grid=lr=1e-3:1e-1:10000000000 is not allowed: expected a:b:n with n <= 1,000,000" in usage_error(
        study, argv
    )

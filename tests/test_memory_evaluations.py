"""The memory budget counts what every evaluation costs (issue 30, item 3): the arrays each one
returns and, when figures are drawn, a snapshot panel each. ``--eval-every 1`` over 8,000 steps
was accepted at ``--max-memory 0.3`` (estimate 0.02 GB) and peaked at 1.57 GB; checked here under
a real address-space limit (``RLIMIT_AS``): what the budget accepts runs, the rest is one line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from jaxopt_cmp.budget import EVAL_ARRAY_BYTES, SNAPSHOT_PANEL_BYTES, check_budget, estimate_bytes
from jaxopt_cmp.checks import ConfigError
from jaxopt_cmp.config import seed_study

ROOT = Path(__file__).resolve().parents[1]
ISSUE = ["--iters", "8000", "--n-data", "100", "--hidden", "8", "--no-plots", "--no-cache", "--max-memory", "0.3"]
# Runs compare.py as its command line does, under an address-space limit (0: none), and writes the
# process's peak address space (VmPeak).
RUN = """
import atexit, resource, runpy, sys
limit, path, script, sys.argv = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[3:]
if limit:
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
def peak():
    vm = next(line for line in open("/proc/self/status") if line.startswith("VmPeak:"))
    open(path, "w").write(str(int(vm.split()[1]) * 1024))
atexit.register(peak)
runpy.run_path(script, run_name="__main__")
"""


def test_every_evaluation_is_counted():
    cfg = seed_study(iters=8000, eval_every=1, n_data=100, hidden=(8,))
    parts = estimate_bytes(cfg, figures=True)
    assert parts["evaluations"] == 8001 * 3 * 4 * EVAL_ARRAY_BYTES  # 3 optimizers x (3 MSEs + predictions)
    assert parts["figures"] == 8001 * SNAPSHOT_PANEL_BYTES and estimate_bytes(cfg)["figures"] == 0
    with pytest.raises(ConfigError, match=r"needs about 1\.5\d GB \(evaluations 1\.54 GB"):
        check_budget(cfg, 0.3e9)
    two_d = seed_study(iters=8000, eval_every=1, n_data=100, hidden=(8,), target="franke", xdim=2)
    assert estimate_bytes(two_d, figures=True)["figures"] == 0  # no snapshot grid for 2-D inputs


def test_the_scripts_count_the_figures_they_draw(usage_error, tmp_path):
    sys.path.insert(0, str(ROOT / "scripts"))
    import compare

    argv = [
        "--iters",
        "8000",
        "--n-data",
        "100",
        "--hidden",
        "8",
        "--max-memory",
        "3",
        "--eval-every",
        "1",
        "--out",
        str(tmp_path / "o"),
    ]  # fmt: skip  (figures drawn: no --no-plots)
    assert "(figures 3.6 GB, evaluations 1.54 GB" in usage_error(compare, argv)
    assert not (tmp_path / "o").exists()


def _compare(tmp_path, name: str, argv: list[str], limit: int = 0) -> tuple[subprocess.CompletedProcess, int]:
    peak = tmp_path / f"{name}.peak"
    command = [sys.executable, "-c", RUN, str(limit), str(peak), str(ROOT / "scripts" / "compare.py"), *argv]
    proc = subprocess.run([*command, "--out", str(tmp_path / name)], capture_output=True, text=True, cwd=tmp_path)
    return proc, int(peak.read_text()) if peak.exists() else 0


def test_what_the_budget_accepts_runs_under_a_real_limit(tmp_path):
    _, baseline = _compare(tmp_path, "baseline", [*ISSUE, "--eval-every", "4000"])  # 3 evaluations
    assert baseline > 0
    limit = baseline + int(0.3e9)  # the process as it is with a tiny study, plus --max-memory
    refused, _ = _compare(tmp_path, "issue", [*ISSUE, "--eval-every", "1"], limit)
    assert refused.returncode == 2, refused.stderr[-2000:]
    assert refused.stderr.strip().startswith("compare.py: error: --max-memory=0.3 GB is not allowed")
    assert "evaluations 1.54 GB" in refused.stderr and not (tmp_path / "issue").exists()
    accepted, _ = _compare(tmp_path, "accepted", [*ISSUE, "--eval-every", "20"], limit)  # 401 evaluations
    assert accepted.returncode == 0, accepted.stderr[-2000:]

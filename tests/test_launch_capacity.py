"""The launcher refuses more processes than the machine holds (issue 30, item 5): one line, exit 2,
nothing started, instead of 100 JAX runtimes on 2 cores ending in C++ heartbeat aborts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from jaxopt_cmp import launch, runtime

REPO = Path(__file__).resolve().parents[1]


def test_the_most_processes_follow_the_cores_and_the_memory(monkeypatch):
    monkeypatch.setattr(runtime, "cpu_count", lambda: 2)
    monkeypatch.setattr(runtime, "host_available_bytes", lambda: 100e9)
    assert launch.max_processes()[0] == 4
    monkeypatch.setattr(runtime, "host_available_bytes", lambda: 1.5e9)  # 1.2 GB usable: two of 0.5 GB
    most, why = launch.max_processes()
    assert most == 2 and why == "2 cores x 2; 1.2 GB for 0.5 GB each"
    monkeypatch.setattr(runtime, "host_available_bytes", lambda: 0.1e9)  # one always runs
    assert launch.max_processes()[0] == 1


def test_too_many_processes_are_one_line_and_nothing_starts(tmp_path):
    marker = tmp_path / "started"
    most = launch.max_processes()[0]
    command = [sys.executable, "-m", "jaxopt_cmp.launch", "-n", str(most + 1), "--", sys.executable, "-c",
               f"open({str(marker)!r}, 'w')"]  # fmt: skip
    p = subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=60)
    assert p.returncode == 2 and not marker.exists()
    line = f"python -m jaxopt_cmp.launch: error: -n={most + 1} is not allowed: expected at most {most} processes"
    assert p.stderr.startswith(line) and p.stderr.count("\n") == 1, p.stderr

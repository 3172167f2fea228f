"""The suite's own machinery (tests/conftest.py): one persistent compilation cache shared by every
process of a run, a test's leftover processes ended with it, and the developer loop's marker."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from conftest import RUN_CACHE_ENV, SLOW, _kill_children

ROOT = Path(__file__).resolve().parents[1]


def test_every_process_of_the_run_shares_one_compilation_cache():
    """This process and the processes a test starts (inheriting the environment) compile into the
    run's own cache directory, so a program compiled once is loaded everywhere after."""
    import jax

    run_cache = os.environ[RUN_CACHE_ENV]
    assert Path(run_cache).is_dir() and jax.config.jax_compilation_cache_dir == run_cache
    code = (
        "import jax; print(jax.config.jax_compilation_cache_dir, jax.config.jax_persistent_cache_min_compile_time_secs)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == [run_cache, "0.0"]
    code = "from jaxopt_cmp.runtime import default_cache_dir; print(default_cache_dir())"  # the scripts' default
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT).stdout
    assert out.strip() == run_cache


def test_a_tests_leftover_processes_are_killed():
    """What a test started and left running (a child and its own child) is ended; what ran before
    the test is left alone."""
    import psutil

    keep = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        before = {c.pid for c in psutil.Process().children(recursive=True)}
        sleep = "import time; time.sleep(60)"
        spawn = f"import subprocess, sys; subprocess.Popen([sys.executable, '-c', {sleep!r}]); {sleep}"
        left = subprocess.Popen([sys.executable, "-c", spawn])
        grandchild = None
        for _ in range(100):
            kids = psutil.Process(left.pid).children()
            if kids:
                grandchild = kids[0]
                break
            psutil.wait_procs([], timeout=0.05)
        assert grandchild is not None
        killed = _kill_children(os.getpid(), before)
        assert sorted(killed) == sorted([left.pid, grandchild.pid])
        assert left.wait(5) is not None and not grandchild.is_running()
        assert keep.poll() is None
    finally:
        keep.kill()
        keep.wait()


def test_the_default_run_runs_the_slow_tests_too():
    """``slow`` only serves ``pytest -m "not slow"``: the README's test command deselects nothing."""
    ini = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    assert "-m" not in ini["addopts"].split() and SLOW


@pytest.mark.parametrize("prefix", SLOW)
def test_each_slow_entry_names_a_test_file(prefix):
    assert (ROOT / prefix.split("::")[0]).is_file(), prefix


def test_a_run_past_its_bound_ends_failed_and_says_why():
    """The whole run's bound: past it the process ends (status 3) with one line naming the bound,
    and the processes it started end with it, instead of a hang that waits for CI's limit."""
    sleeper = "import time; time.sleep(60)"
    code = (
        "import subprocess, sys, time; sys.path.insert(0, 'tests'); import conftest; "
        f"child = subprocess.Popen([sys.executable, '-c', {sleeper!r}]); print(child.pid, flush=True); "
        "conftest._bound_the_whole_run(1.0); time.sleep(60)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=50)
    assert proc.returncode == 3 and "the run exceeded its bound of 1 s" in proc.stderr, proc.stderr
    import psutil

    pid = int(proc.stdout.split()[0])
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE

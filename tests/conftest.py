"""Shared fixtures, and the XLA device count every test starts from.

Tests own their device count: one XLA host device in this process and in every subprocess a test
starts (they inherit ``XLA_FLAGS``), whatever else the session imports (``scripts/_cli.py`` would
give one device per core when imported first). A test that needs several devices starts a
subprocess with its own ``XLA_FLAGS`` (fixture ``host_devices_env``). Set before jax is imported.
"""

import os
import re
import shutil
import sys
import tempfile
import threading
from pathlib import Path

DEVICE_FLAG = "--xla_force_host_platform_device_count"


def xla_env(devices: int, env: dict | None = None) -> dict:
    """``env`` (default: this process's) with ``XLA_FLAGS`` asking for ``devices`` host devices."""
    env = dict(os.environ if env is None else env)
    others = re.sub(rf"{DEVICE_FLAG}=\S*", "", env.get("XLA_FLAGS", "")).split()
    env["XLA_FLAGS"] = " ".join([*others, f"{DEVICE_FLAG}={devices}"])
    return env


os.environ["XLA_FLAGS"] = xla_env(1)["XLA_FLAGS"]

# One persistent compilation cache for the whole run: this process, the xdist workers (started
# after this module is imported, with its environment) and every process a test starts (scripts,
# `launch -n 2`, kernels) compile a program once and load it after. A fresh directory per run, so
# every run starts cold; the tests about the cache itself pass --no-cache or a --cache-dir of their own.
RUN_CACHE_ENV = "JAXOPT_CMP_TEST_RUN_CACHE"
_OWN_CACHE = None
if not os.environ.get(RUN_CACHE_ENV):
    _OWN_CACHE = tempfile.mkdtemp(prefix="jaxopt_cmp-test-cache-")
    os.environ.update(
        {
            RUN_CACHE_ENV: _OWN_CACHE,
            "JAX_COMPILATION_CACHE_DIR": _OWN_CACHE,  # JAX reads it when imported (here and in subprocesses)
            "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
            "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0",
            "JAXOPT_CMP_CACHE_DIR": _OWN_CACHE,  # the scripts' default --cache-dir
        }
    )

import pytest  # noqa: E402

from torch_ref.train import single_threaded  # noqa: E402


def pytest_configure(config):
    # The one device above is deliberate; run_study's advice to use every core (OneDeviceWarning)
    # is noise here. tests/test_notebook.py checks the warning itself (pytest.warns sees it).
    config.addinivalue_line("filterwarnings", "ignore:JAX sees one CPU device:UserWarning")
    if not hasattr(config, "workerinput"):  # the controller (or a run without xdist)
        _bound_the_whole_run(RUN_BOUND_S)


def pytest_unconfigure(config):
    if _OWN_CACHE is not None and not hasattr(config, "workerinput"):
        shutil.rmtree(_OWN_CACHE, ignore_errors=True)


# The whole run's bound: pytest-timeout bounds each test (pyproject.toml), but a run whose worker
# died (the machine out of memory) once left the controller and a replacement worker waiting on
# each other for 20+ minutes. Past this many seconds the run ends, failed, naming the bound.
RUN_BOUND_S = 45 * 60


def _bound_the_whole_run(seconds: float) -> None:
    def end() -> None:
        sys.stderr.write(f"\ntests/conftest.py: the run exceeded its bound of {seconds:.0f} s; ending it\n")
        sys.stderr.flush()
        _kill_children(os.getpid())
        os._exit(3)

    timer = threading.Timer(seconds, end)
    timer.daemon = True
    timer.start()


# multiprocessing's own helpers live as long as the process that started them (a killed resource
# tracker warns and is started again): never a test's leftover.
_KEPT = ("multiprocessing.resource_tracker", "multiprocessing.forkserver")


def _kill_children(pid: int, before: set[int] = frozenset()) -> list[int]:
    """Kills the processes below ``pid`` (all generations) not in ``before``; their pids."""
    import psutil

    def leftover(child) -> bool:
        try:
            return child.pid not in before and not any(k in " ".join(child.cmdline()) for k in _KEPT)
        except psutil.Error:
            return False

    try:
        children = [c for c in psutil.Process(pid).children(recursive=True) if leftover(c)]
    except psutil.Error:
        return []
    for child in children:
        try:
            child.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(children, timeout=5)
    return [c.pid for c in children]


# The genuinely long system tests (whole scripts, several processes, kernels, a browser, every
# optimizer against torch): marked ``slow`` for a fast developer loop, ``pytest -m "not slow"``. The
# README's test command and CI run everything. Node-id prefixes; each must match a test.
SLOW = (
    "tests/test_bench.py::test_bench_runs_tiny",
    "tests/test_engine.py::test_sharded_and_laned_equal_single_device",
    "tests/test_engine_parity.py::test_engine_matches_torch_ref_for_every_optimizer",
    "tests/test_example_notebook.py",
    "tests/test_html_report.py",
    "tests/test_launch.py::test_launch_two_processes",
    "tests/test_launch.py::test_a_killed_process_stops_the_survivor",
    "tests/test_launch.py::test_faked_slurm",
    "tests/test_multiprocess.py::test_two_processes",
    "tests/test_multiprocess.py::test_seeds_not_divisible",
    "tests/test_notebook_kernel.py",
    "tests/test_readme.py::test_readme_command_runs",
    "tests/test_readme.py::test_readme_python_blocks_run",
    "tests/test_reliability.py::test_same_config_bit_identical_across_processes",
    "tests/test_resume.py::test_killed_at_every_moment",
    "tests/test_resume.py::test_resume_with_lanes_sharded_seeds_and_float64",
    "tests/test_resume_processes.py",
    "tests/test_schedules.py::test_engine_matches_torch_ref_under_schedules",
    "tests/test_suite.py::test_suite_script_end_to_end",
    "tests/test_tune.py::test_tune_killed_mid_schedule",
    "tests/test_validate.py::test_quick_run",
)


@pytest.hookimpl(tryfirst=True)  # before -m deselects
def pytest_collection_modifyitems(config, items):
    unmatched = set(SLOW)
    for item in items:
        hits = [p for p in SLOW if item.nodeid.startswith(p)]
        if hits:
            item.add_marker(pytest.mark.slow)
            unmatched.difference_update(hits)
    every_file = {p.name for p in Path(__file__).parent.glob("test_*.py")} <= {item.path.name for item in items}
    if unmatched and every_file:  # a whole run: an entry that names no test is stale
        raise pytest.UsageError(f"tests/conftest.py SLOW names no test: {sorted(unmatched)}")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    """A test's own processes end with it: what it started and left running (a failure between a
    start and a wait) is killed, so nothing outlives its test or holds a core for the next."""
    import psutil

    before = {c.pid for c in psutil.Process().children(recursive=True)}
    try:
        return (yield)
    finally:
        _kill_children(os.getpid(), before)


@pytest.fixture(autouse=True, scope="session")
def _torch_one_thread():
    """The tests' tiny torch ops run ~100x slower with OpenMP threads on a busy 2-core machine."""
    with single_threaded():
        yield


@pytest.fixture
def usage_error(capsys):
    """``usage_error(script, argv) -> stderr``: runs a script module's ``main(argv)`` the way the
    script runs it and asserts the bad-input contract: exit status 2, one stderr line, no traceback."""

    def run(script, argv) -> str:
        with pytest.raises(SystemExit) as exc:
            script._cli.run_main(script.PROG, lambda: script.main(argv))
        assert exc.value.code == 2
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and "Traceback" not in err and err.startswith(f"{script.PROG}: error:"), err
        return err

    return run


@pytest.fixture(autouse=True, scope="session")
def _one_host_device():
    """Fails the session early if something initialised jax before the flag above was set."""
    import jax

    assert jax.device_count() == 1 or jax.default_backend() != "cpu", (
        f"expected 1 XLA host device, got {jax.device_count()}: jax was initialised before tests/conftest.py"
    )


@pytest.fixture
def host_devices_env():
    """``host_devices_env(n) -> env``: this process's environment asking for ``n`` XLA host
    devices, for a subprocess that needs several (or wants to state its count)."""
    return xla_env


def assert_same_study(a, b, texts=("runs.csv", "history.csv"), ignore_versions=()) -> None:
    """Two studies' output directories hold the same results: ``results.json`` but ``timing`` (and
    the ``ignore_versions`` entries) equal, every array of ``arrays.npz`` bit for bit (dtype too),
    and the ``texts`` files byte for byte."""
    import json
    from pathlib import Path

    import numpy as np

    a, b = Path(a), Path(b)
    ra, rb = (json.loads((d / "results.json").read_text()) for d in (a, b))
    for r in (ra, rb):
        r.pop("timing")
        for key in ignore_versions:
            r["versions"].pop(key)
    assert ra == rb
    na, nb = np.load(a / "arrays.npz"), np.load(b / "arrays.npz")
    assert sorted(na.files) == sorted(nb.files)
    for name in na.files:
        assert na[name].dtype == nb[name].dtype, name
        np.testing.assert_array_equal(na[name], nb[name], err_msg=name)
    for name in texts:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name

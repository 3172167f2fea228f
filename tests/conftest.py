"""Shared fixtures, and the XLA device count every test starts from.

Tests own their device count: one XLA host device in this process and in every subprocess a test
starts (they inherit ``XLA_FLAGS``), whatever else the session imports (``scripts/_cli.py`` would
give one device per core when imported first). A test that needs several devices starts a
subprocess with its own ``XLA_FLAGS`` (fixture ``host_devices_env``). Set before jax is imported.
"""

import os
import re

DEVICE_FLAG = "--xla_force_host_platform_device_count"


def xla_env(devices: int, env: dict | None = None) -> dict:
    """``env`` (default: this process's) with ``XLA_FLAGS`` asking for ``devices`` host devices."""
    env = dict(os.environ if env is None else env)
    others = re.sub(rf"{DEVICE_FLAG}=\S*", "", env.get("XLA_FLAGS", "")).split()
    env["XLA_FLAGS"] = " ".join([*others, f"{DEVICE_FLAG}={devices}"])
    return env


os.environ["XLA_FLAGS"] = xla_env(1)["XLA_FLAGS"]

import pytest  # noqa: E402

from torch_ref.train import single_threaded  # noqa: E402


def pytest_configure(config):
    # The one device above is deliberate; run_study's advice to use every core (OneDeviceWarning)
    # is noise here. tests/test_notebook.py checks the warning itself (pytest.warns sees it).
    config.addinivalue_line("filterwarnings", "ignore:JAX sees one CPU device:UserWarning")


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

"""Several processes under ``jax.distributed`` (gloo collectives on CPU), for real: two local
processes run the README recipe (tests/multiprocess_worker.py); both hold the same gathered result,
only process 0 writes, and the result is the one-process result. Plus what one process must keep."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest
from multiprocess_worker import config, flat_arrays

import jaxopt_cmp
from jaxopt_cmp import distributed
from jaxopt_cmp.checks import ConfigError
from jaxopt_cmp.data import load_data_file
from jaxopt_cmp.results import load_result
from jaxopt_cmp.study import run_study, seed_keys

WORKER = Path(__file__).with_name("multiprocess_worker.py")
REPO = Path(jaxopt_cmp.__file__).resolve().parent.parent
TIMEOUT_S = 300  # a hung collective fails the test instead of blocking CI


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _write_data(path: Path, seed: int = 0, n: int = 200) -> None:
    rng = np.random.default_rng(seed)
    x = rng.uniform(-2, 2, n)
    np.savez(path, x=x, y=np.sin(3 * x) + 0.1 * rng.normal(size=n))


def run_two_processes(tmp_path: Path, env: dict, args: list[str], args1: list[str] | None = None) -> list[str]:
    """Starts the worker as processes 0 and 1, process ``i`` in directory ``tmp_path/p<i>`` and told
    to write into its own ``out<i>`` (process 1 gets ``args1`` if given); stops both as soon as one
    fails, or at the time limit. Returns the logs; AssertionError naming the failed processes."""
    env = {**env, "PYTHONPATH": os.pathsep.join([str(REPO), *filter(None, [env.get("PYTHONPATH")])])}
    port = _free_port()

    def start(i: int) -> subprocess.Popen:
        flags = {"--coordinator": f"localhost:{port}", "--num-processes": "2", "--process-id": str(i)}
        flags.update({"--out": str(tmp_path / f"out{i}"), "--dump": str(tmp_path)})
        own = args1 if i == 1 and args1 is not None else args
        command = [sys.executable, str(WORKER), *(s for pair in flags.items() for s in pair), *own]
        (tmp_path / f"p{i}").mkdir(exist_ok=True)
        with open(tmp_path / f"log{i}.txt", "w") as log:
            return subprocess.Popen(command, cwd=tmp_path / f"p{i}", env=env, stdout=log, stderr=subprocess.STDOUT)

    procs = [start(i) for i in range(2)]
    deadline = time.monotonic() + TIMEOUT_S
    try:
        while any(p.poll() is None for p in procs) and not any(p.poll() for p in procs):
            assert time.monotonic() < deadline, f"the two processes did not finish within {TIMEOUT_S} s"
            time.sleep(0.1)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait()
    logs = [(tmp_path / f"log{i}.txt").read_text() for i in range(2)]
    failed = [
        f"process {i} exited with {p.returncode}:\n{logs[i][-3000:]}" for i, p in enumerate(procs) if p.returncode
    ]
    assert not failed, "\n".join(failed)
    return logs


def check_against_one_process(tmp_path: Path, devices: int, cfg, data=None) -> None:
    """Both processes hold the same arrays, of a real 2-process run over ``devices`` devices; only
    process 0 wrote; everything equals one process's run of the same config. Measured: bit for bit
    (jax 0.10.2, CPU); rtol 1e-5 leaves XLA room to pick other kernels for other per-device batches."""
    dumps = [dict(np.load(tmp_path / f"process{i}.npz")) for i in range(2)]
    assert [int(d.pop("process_count")) for d in dumps] == [2, 2]
    assert [int(d.pop("device_count")) for d in dumps] == [devices, devices]
    assert dumps[0].keys() == dumps[1].keys()
    for name in dumps[0]:
        np.testing.assert_array_equal(dumps[0][name], dumps[1][name], err_msg=name)
    assert not (tmp_path / "out1").exists(), "process 1 wrote files"
    saved, _ = load_result(tmp_path / "out0")
    for n, mse in saved.mse_EHS.items():
        np.testing.assert_array_equal(mse, dumps[0][f"mse_EHS/{n}"])
    one = flat_arrays(run_study(cfg, data=data))
    assert one.keys() == dumps[0].keys()
    for name, want in one.items():
        np.testing.assert_allclose(dumps[0][name], want, rtol=1e-5, atol=1e-7, err_msg=name)


def test_two_processes_match_one_process(tmp_path, host_devices_env):
    """4 seeds over 2 processes x 2 devices (one seed per device), on user data every process
    reads, with a 2-point learning-rate grid per optimizer."""
    source = str(tmp_path / "data.npz")
    _write_data(tmp_path / "data.npz")
    run_two_processes(tmp_path, host_devices_env(2), ["--seeds", "4", "--data", source])
    check_against_one_process(tmp_path, 4, config(4, 200, source), load_data_file(source))


def test_seeds_not_divisible_by_devices_run_whole_on_every_process(tmp_path, host_devices_env):
    """3 seeds over 2 processes x 1 device: the seed axis cannot be split evenly, so the study gets
    no mesh and every process trains every seed on its own (no communication); same results."""
    run_two_processes(tmp_path, host_devices_env(1), ["--seeds", "3"])
    check_against_one_process(tmp_path, 2, config(3))


@pytest.mark.parametrize("differs", ["config", "data"])
def test_processes_with_different_settings_are_refused(tmp_path, host_devices_env, differs):
    """Started with different seed counts, or with different data under the same file name, both
    processes stop with a ConfigError before compiling (instead of hanging in a collective, or
    training each process's shards on other data)."""
    for i in range(2):
        (tmp_path / f"p{i}").mkdir()
        _write_data(tmp_path / f"p{i}" / "data.npz", seed=i)
    args, args1 = (["--seeds", "4"], ["--seeds", "2"]) if differs == "config" else (["--data", "data.npz"], None)
    with pytest.raises(AssertionError) as failed:
        run_two_processes(tmp_path, host_devices_env(1), args, args1)
    value = "'seed=0, seeds=" if differs == "config" else "'data.npz'"
    assert f"{differs}={value}" in str(failed.value)
    assert "expected the same on every process; process(es) [1] differ from 0" in str(failed.value)
    assert not any(tmp_path.glob("process*.npz"))


def test_one_process_keeps_inputs_as_they_are():
    keys_S = seed_keys(0, 4)
    assert distributed.shard_seeds(keys_S, None) is keys_S
    mesh = jax.sharding.Mesh(np.array(jax.devices()), ("seeds",))
    sharded = distributed.shard_seeds(seed_keys(0, 4).reshape(1, 4), mesh, axis=1)
    assert sharded.sharding.spec == jax.sharding.PartitionSpec(None, "seeds") and sharded.is_fully_addressable
    host = distributed.to_host({"a": jax.numpy.arange(3), "b": [np.float32(2)]})
    assert isinstance(host["a"], np.ndarray) and host["a"].tolist() == [0, 1, 2] and host["b"][0] == 2
    distributed.check_same_on_every_process(config(4))  # one process: nothing to compare


@pytest.mark.parametrize(
    ("kwargs", "setting"),
    [
        ({"num_processes": 2, "process_id": 2}, "process_id"),
        ({"num_processes": 2, "process_id": -1}, "process_id"),
        ({"num_processes": 0, "process_id": 0}, "num_processes"),
        ({"coordinator_address": "localhost"}, "coordinator"),
        ({"coordinator_address": "localhost:0"}, "coordinator"),
    ],
)
def test_initialize_refuses_bad_settings_before_starting(monkeypatch, kwargs, setting):
    started = []
    monkeypatch.setattr(jax.distributed, "initialize", lambda *a, **k: started.append((a, k)))
    with pytest.raises(ConfigError) as err:
        distributed.initialize(**kwargs, cpu_collectives=None)
    assert err.value.setting == setting and not started
    distributed.initialize("localhost:1234", 2, 1, cpu_collectives=None, initialization_timeout=5)
    assert started == [(("localhost:1234", 2, 1), {"initialization_timeout": 5})]


def test_seeds_not_divisible_run_in_lanes_on_every_process(tmp_path, host_devices_env):
    """3 seeds over 2 processes x 2 devices: no seed mesh, so each process trains every seed with
    its optimizers in lanes over its own 2 devices (sgd | adam); the same results everywhere."""
    logs = run_two_processes(tmp_path, host_devices_env(2), ["--seeds", "3"])
    check_against_one_process(tmp_path, 4, config(3))
    assert all("optimizers in 2 lanes" in log for log in logs), logs

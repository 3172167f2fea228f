"""Several processes from the scripts, for real: ``python -m jaxopt_cmp.launch`` runs study.py as
two processes and gets the one-process results; a faked ``srun`` environment finds the processes
with no process flags; a killed process stops the survivor within ``--peer-timeout`` with one line;
a peer that never arrives ends the other within the bound too; the launcher passes on Ctrl-C and a
failure and leaves no process running. Every subprocess has a timeout and is killed in ``finally``."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import assert_same_study

import jaxopt_cmp

REPO = Path(jaxopt_cmp.__file__).resolve().parent.parent
STUDY = str(REPO / "scripts" / "study.py")
TINY = "--optimizers sgd,adam --lrs 0.01,0.03 --seeds 4 --iters 40 --eval-every 20 --hidden 8 --n-data 128"
# One persistent compilation cache for the module: the 2-process runs compile the same program.
CACHE = Path(os.environ.get("TMPDIR", "/tmp")) / f"jaxopt_cmp-test-launch-{os.getpid()}"
TINY = [*TINY.split(), "--batch-size", "16", "--no-plots", "--cache-dir", str(CACHE)]
TUNE = str(REPO / "scripts" / "tune.py")
TINY_TUNE = "--optimizers sgd,adam --trials 2 --seeds 4 --schedule constant --iters 40 --eval-every 20 --hidden 8"
TINY_TUNE = [*TINY_TUNE.split(), *"--n-data 128 --n-val 64 --n-test 64 --batch-size 16 --no-plots".split()]
DIAGNOSE = str(REPO / "scripts" / "diagnose.py")
DIAGNOSE_TINY = "--optimizers sgd --iters 20 --eval-every 10 --hidden 4 --n-data 64 --batch-size 16 --spectrum-at 0"
DIAGNOSE_TINY = [*DIAGNOSE_TINY.split(), "--lanczos-iters", "2", "--no-plots"]
TIMEOUT_S = 240  # a hang fails the test instead of blocking CI


def _env(host_devices_env, devices: int) -> dict:
    env = host_devices_env(devices)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [env.get("PYTHONPATH")])])
    return env


def _start(command, log: Path, env: dict, cwd: Path) -> subprocess.Popen:
    with open(log, "w") as fh:
        return subprocess.Popen(command, env=env, cwd=cwd, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)


def _end(procs) -> None:
    for p in procs:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
        p.wait()


def _finish(procs, tmp_path: Path) -> list[str]:
    """Waits for each process (``TIMEOUT_S`` each; all killed in the end); their logs ``log<i>.txt``."""
    try:
        for p in procs:
            p.wait(TIMEOUT_S)
    finally:
        _end(procs)
    return [(tmp_path / f"log{i}.txt").read_text() for i in range(len(procs))]


def _start_pair(tmp_path: Path, argv: list[str], flags: list[str], env: dict) -> list[subprocess.Popen]:
    """Processes 0 and 1 of ``argv`` with the process ``flags`` (``--process-id`` added), each
    into its own ``--out`` ``o<i>`` and log ``log<i>.txt``."""
    return [
        _start(
            [*argv, *flags, "--process-id", str(i), "--out", str(tmp_path / f"o{i}")],
            tmp_path / f"log{i}.txt",
            env,
            tmp_path,
        )  # fmt: skip
        for i in range(2)
    ]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module", autouse=True)
def _cache():
    yield
    import shutil

    shutil.rmtree(CACHE, ignore_errors=True)


@pytest.fixture(scope="module")
def one_process(tmp_path_factory) -> Path:
    """The tiny study in one process over 2 devices (the layout of 2 processes x 1 device)."""
    from conftest import xla_env

    tmp = tmp_path_factory.mktemp("one")
    env = _env(xla_env, 2)
    done = subprocess.run(
        [sys.executable, STUDY, *TINY, "--out", str(tmp / "out")], env=env, cwd=tmp, capture_output=True,
        text=True, timeout=TIMEOUT_S,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return tmp / "out"


def _launch_two(tmp_path: Path, host_devices_env, script: str, argv: list[str]) -> str:
    """``launch -n 2 -- script argv``, one device each; its log, checked: it succeeded, process 1
    printed its one line and process 0 alone named the output directory; no worker's scratch left."""
    command = [sys.executable, "-m", "jaxopt_cmp.launch", "-n", "2", "--", script, *argv]
    p = _start(command, tmp_path / "log.txt", _env(host_devices_env, 1), tmp_path)
    try:
        p.wait(TIMEOUT_S)
    finally:
        _end([p])
    log = (tmp_path / "log.txt").read_text()
    prog = Path(script).name
    assert p.returncode == 0, log[-3000:]
    assert log.count(f"{prog}: worker 1 of 2; process 0 prints and writes the results") == 1, log
    assert log.count("output directory:") == 1 and not list(tmp_path.glob(f"{prog[:-3]}-worker-*")), log
    return log


def test_launch_two_processes_equals_one_process(tmp_path, host_devices_env, one_process):
    """launch -n 2: results.json and arrays.npz equal one process's; only process 0 printed the
    results and wrote; process 1 printed its one line."""
    log = _launch_two(tmp_path, host_devices_env, STUDY, [*TINY, "--out", str(tmp_path / "out")])
    assert log.count("results.json\n") == 1, log  # process 0 only
    assert_same_study(tmp_path / "out", one_process, texts=(), ignore_versions=("process_count",))


def test_launch_two_processes_of_tune_equals_one_process(tmp_path, host_devices_env):
    """tune.py under launch -n 2 (seeds split over the processes): its schedule's study and the
    budget curves equal one process's over 2 devices; process 1 printed its one line."""
    from conftest import xla_env

    argv = [*TINY_TUNE, "--cache-dir", str(CACHE)]
    one = subprocess.run(
        [sys.executable, TUNE, *argv, "--out", str(tmp_path / "one")], env=_env(xla_env, 2), cwd=tmp_path,
        capture_output=True, text=True, timeout=TIMEOUT_S,
    )  # fmt: skip
    assert one.returncode == 0, one.stderr[-3000:]
    _launch_two(tmp_path, host_devices_env, TUNE, [*argv, "--out", str(tmp_path / "two")])
    assert_same_study(tmp_path / "two" / "constant", tmp_path / "one" / "constant", ignore_versions=("process_count",))
    assert (tmp_path / "two" / "budget.csv").read_bytes() == (tmp_path / "one" / "budget.csv").read_bytes()


def test_faked_slurm_finds_the_processes_without_flags(tmp_path, host_devices_env):
    """srun's variables on localhost: JAX's SLURM detection gives the layout and the coordinator
    (port from the job id); --distributed auto starts the runtime with no process flags. The script
    is diagnose.py (the same process flags as study.py, whose 2-process results are compared above):
    process 0 writes the diagnostics, process 1 prints its one line and writes nothing."""
    for job in range(1000, 5096):  # JAX's port for a job: 61440 + job % 4096; take a free one
        port = 61440 + job % 4096
        with socket.socket() as s:
            try:
                s.bind(("localhost", port))
                break
            except OSError:
                continue
    procs = []
    try:
        for i in range(2):
            slurm = {"SLURM_JOB_ID": str(job), "SLURM_NTASKS": "2", "SLURM_PROCID": str(i), "SLURM_LOCALID": str(i)}
            slurm.update({"SLURM_STEP_NODELIST": "localhost", "SLURM_STEP_NUM_NODES": "1", "SLURM_NODEID": "0"})
            env = {**_env(host_devices_env, 1), **slurm}
            out = ["--out", str(tmp_path / f"out{i}")]
            procs.append(
                _start([sys.executable, DIAGNOSE, *DIAGNOSE_TINY, *out], tmp_path / f"log{i}.txt", env, tmp_path)
            )
        for p in procs:
            p.wait(TIMEOUT_S)
    finally:
        _end(procs)
    logs = [(tmp_path / f"log{i}.txt").read_text() for i in range(2)]
    assert [p.returncode for p in procs] == [0, 0], logs
    assert "diagnose.py: worker 1 of 2; process 0 prints and writes the results" in logs[1], logs[1]
    assert "wrote" not in logs[1] and not (tmp_path / "out1").exists() and not list(tmp_path.glob("diagnose-worker-*"))
    assert "worker" not in logs[0] and f"wrote {tmp_path / 'out0' / 'diagnostics.npz'}" in logs[0], logs[0]


PEER_TIMEOUT_S = 3
# Measured on a loaded 2-core machine: 3.6-5.5 s from the kill to the survivor's exit with a 3-5 s
# --peer-timeout (the watchdog polls every 0.5 s; the beat of the killed process may be 0.5 s old).
BOUND_S = PEER_TIMEOUT_S + 5


def test_a_killed_process_stops_the_survivor_within_the_bound(tmp_path, host_devices_env):
    """SIGKILL to process 1 mid-training: process 0 ends within --peer-timeout (plus polling) with
    one line naming process 1, status 1 (JAX alone: ~100 s, then a C++ stack trace)."""
    port = _free_port()
    long = [*TINY, "--iters", "3000000", "--eval-every", "1000", "--peer-timeout", str(PEER_TIMEOUT_S)]
    flags = ["--coordinator", f"localhost:{port}", "--num-processes", "2"]
    env = _env(host_devices_env, 1)
    procs = _start_pair(tmp_path, [sys.executable, STUDY, *long], flags, env)
    try:
        deadline = time.monotonic() + TIMEOUT_S
        while "it/s" not in (tmp_path / "log0.txt").read_text():  # training has started
            assert time.monotonic() < deadline and procs[0].poll() is None, (tmp_path / "log0.txt").read_text()
            time.sleep(0.2)
        time.sleep(1.0)
        os.kill(procs[1].pid, signal.SIGKILL)
        killed = time.monotonic()
        procs[0].wait(TIMEOUT_S)
        took = time.monotonic() - killed
    finally:
        _end(procs)
    log = (tmp_path / "log0.txt").read_text()
    assert procs[0].returncode == 1, log[-2000:]
    assert took < BOUND_S, f"the survivor took {took:.1f} s"
    last = log.strip().splitlines()[-1]
    assert last == (
        f"study.py: error: process 0 of 2: lost process(es) [1] (no sign of life for {PEER_TIMEOUT_S} s, "
        "--peer-timeout); stopping"
    ), log[-2000:]
    assert "Traceback" not in log and "Check failure" not in log


WATCHER = """
import sys, time
from jaxopt_cmp import distributed
port, me, linger = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
distributed.initialize(f"localhost:{port}", 2, me)
lost = []
stop = distributed.watch_peers(1.0, lost.extend, poll_s=0.0)  # calls into the client without pause
time.sleep(0.5)
if me == 1:
    stop()  # process 1 has finished its work; process 0 works on past the timeout
time.sleep(linger)
print(f"lost {lost}", flush=True)
"""


def test_the_watchdog_ends_cleanly_and_spares_a_finished_peer(tmp_path):
    """Two processes whose watchdog threads call into JAX's client without pause: both exit 0 (a
    thread still calling when Python finalized aborted the process with signal 6 after the results
    were written: the CI run of stop 26, 1 run in 12 of the 2-process study here, and every run of
    this test before the fix); process 1 stopped its watchdog (finished) 2.5 s before process 0
    ends, past the 1 s timeout, and is not named lost."""
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])}
    procs = [
        _start([sys.executable, "-c", WATCHER, str(port), str(i), linger], tmp_path / f"log{i}.txt", env, tmp_path)
        for i, linger in enumerate(["2.5", "0"])
    ]
    logs = _finish(procs, tmp_path)
    assert [p.returncode for p in procs] == [0, 0], logs
    assert [log.strip().splitlines()[-1] for log in logs] == ["lost []", "lost []"], logs


def test_a_peer_that_never_arrives_or_a_port_in_use_ends_within_the_bound(tmp_path, host_devices_env):
    """Process 1 alone: ends after --peer-timeout with one line (JAX alone: 300 s, then a C++
    stack trace). Process 0 on a port already taken: one line at once."""
    env = _env(host_devices_env, 1)
    with socket.socket() as taken:
        taken.bind(("localhost", 0))
        taken.listen()
        port = taken.getsockname()[1]
        flags = ["--coordinator", f"localhost:{port}", "--num-processes", "2", "--peer-timeout", str(PEER_TIMEOUT_S)]
        procs = _start_pair(tmp_path, [sys.executable, STUDY, *TINY], flags, env)
        logs = [log.strip() for log in _finish(procs, tmp_path)]
    assert [p.returncode for p in procs] == [1, 1], logs
    first = f"study.py: error: could not start or reach the coordinator localhost:{port}"
    assert logs[0].splitlines()[-1].startswith(first), logs[0]
    assert "Traceback" not in logs[0], logs[0]
    assert logs[1].splitlines()[-1] == (
        f"study.py: error: not every process connected to localhost:{port} within {PEER_TIMEOUT_S} s "
        "(--peer-timeout): a process did not start, or the port is in use"
    ), logs[1]
    assert "Check failure" not in logs[1]


SLEEPER = "import os, sys, time; open(f'pid{sys.argv[-1]}', 'w').write(str(os.getpid())); "


def _launch_sleepers(tmp_path, body: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "jaxopt_cmp.launch", "-n", "2", "--grace", "2", "--", sys.executable, "-c"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with open(tmp_path / "log.txt", "w") as fh:
        return subprocess.Popen([*command, SLEEPER + body], cwd=tmp_path, env=env, stdout=fh, stderr=subprocess.STDOUT)


def _children_gone(tmp_path) -> None:
    for i in range(2):
        pid = int((tmp_path / f"pid{i}").read_text())
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def _wait_for_pids(tmp_path, p) -> None:
    deadline = time.monotonic() + 60
    while not all((tmp_path / f"pid{i}").exists() for i in range(2)):
        assert time.monotonic() < deadline and p.poll() is None, (tmp_path / "log.txt").read_text()
        time.sleep(0.05)


def test_launch_stops_everything_when_one_process_fails(tmp_path):
    """Process 1 exits with 3, process 0 would sleep: the launcher ends it, exits 3, one line."""
    p = _launch_sleepers(tmp_path, "time.sleep(0.5); sys.exit(3) if sys.argv[-1] == '1' else time.sleep(120)")
    try:
        p.wait(60)
        _wait_for_pids(tmp_path, p)
    finally:
        p.kill() if p.poll() is None else None
    assert p.returncode == 3
    line = "launch: process 1 of 2 exited with status 3; stopped the others"
    assert (tmp_path / "log.txt").read_text().strip() == line
    _children_gone(tmp_path)


def test_launch_forwards_ctrl_c(tmp_path):
    """SIGINT to the launcher reaches both processes; status 130; nothing left running (a process
    that ignores SIGINT is killed after --grace)."""
    body = "import signal; signal.signal(signal.SIGINT, signal.SIG_IGN) if sys.argv[-1] == '1' else None; "
    body += "time.sleep(120)"
    p = _launch_sleepers(tmp_path, body)
    try:
        _wait_for_pids(tmp_path, p)
        time.sleep(0.3)
        p.send_signal(signal.SIGINT)
        p.wait(60)
    finally:
        p.kill() if p.poll() is None else None
    assert p.returncode == 130
    assert (tmp_path / "log.txt").read_text().strip().splitlines()[-1] == "launch: interrupted; stopped 2 processes"
    _children_gone(tmp_path)


def test_process_flags_are_refused_one_line_before_starting(usage_error, tmp_path, monkeypatch):
    """Some but not all of the three flags, flags with --distributed off, a bad --peer-timeout:
    one line, exit 2, nothing started (the runtime would wait for peers)."""
    sys.path.insert(0, str(REPO / "scripts"))
    import study

    from jaxopt_cmp import distributed

    monkeypatch.setattr(distributed, "initialize", lambda *a, **k: pytest.fail("started the runtime"))
    out = ["--out", str(tmp_path / "never")]
    err = usage_error(study, ["--num-processes", "2", *out])
    assert err == "study.py: error: --num-processes=2 is not allowed: expected --coordinator too (all three, or none)"
    err = usage_error(study, ["--distributed", "off", "--coordinator", "localhost:1234", *out])
    assert err == "study.py: error: --distributed=off is not allowed: --coordinator needs --distributed auto"
    flags = ["--coordinator", "localhost:1234", "--num-processes", "2", "--process-id", "0"]
    assert "--peer-timeout=0.0 is not allowed" in usage_error(study, [*flags, "--peer-timeout", "0", *out])
    before = os.environ.get("OPENBLAS_NUM_THREADS")
    import diagnose  # sets OPENBLAS_NUM_THREADS if unset: undone below

    if before is None:
        os.environ.pop("OPENBLAS_NUM_THREADS", None)
    err = usage_error(diagnose, ["--process-id", "1", *out])
    assert err == "diagnose.py: error: --process-id=1 is not allowed: expected --coordinator too (all three, or none)"
    import tune

    err = usage_error(tune, ["--num-processes", "2", *out])
    assert err == "tune.py: error: --num-processes=2 is not allowed: expected --coordinator too (all three, or none)"
    assert not (tmp_path / "never").exists()


def test_launch_splits_the_cores_and_appends_the_process_flags(monkeypatch):
    from jaxopt_cmp import launch, runtime

    monkeypatch.setattr(runtime, "cpu_count", lambda: 8)
    assert launch.process_env(2, {"XLA_FLAGS": "--xla_cpu_foo"})["XLA_FLAGS"] == (
        "--xla_cpu_foo --xla_force_host_platform_device_count=4"
    )
    assert launch.process_env(16, {})["XLA_FLAGS"] == "--xla_force_host_platform_device_count=1"
    kept = {"XLA_FLAGS": "--xla_force_host_platform_device_count=3"}
    assert launch.process_env(2, kept) == kept
    cmds = launch.commands(2, ["scripts/study.py", "--seeds", "4"], 1234)
    assert cmds[1] == [
        sys.executable, "scripts/study.py", "--seeds", "4",
        "--coordinator", "localhost:1234", "--num-processes", "2", "--process-id", "1",
    ]  # fmt: skip
    assert launch.commands(1, ["echo"], 1)[0][0] == "echo"


def test_detect_launcher_needs_several_tasks(monkeypatch):
    """srun's variables with 2 tasks: "slurm"; with 1 task (a one-task job): None, one process."""
    from jaxopt_cmp import distributed

    for name in [k for k in os.environ if k.startswith(("SLURM_", "OMPI_"))]:
        monkeypatch.delenv(name)
    assert distributed.detect_launcher() is None
    slurm = {"SLURM_JOB_ID": "7", "SLURM_NTASKS": "2", "SLURM_PROCID": "1", "SLURM_LOCALID": "1"}
    for k, v in {**slurm, "SLURM_STEP_NODELIST": "node[001-002]"}.items():
        monkeypatch.setenv(k, v)
    assert distributed.detect_launcher() == "slurm"
    monkeypatch.setenv("SLURM_NTASKS", "1")
    assert distributed.detect_launcher() is None

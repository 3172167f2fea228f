"""``--checkpoint-every`` / ``--resume`` under two processes (``python -m jaxopt_cmp.launch -n 2``),
for real: a study SIGKILLed mid-training (the launcher and both processes), then started again with
``--resume`` under two processes, ends with the uninterrupted two-process study's results bit for
bit. The seeds are split over the two processes' devices, so every save gathers the state from
both and every resume puts each process's part back; process 1's checkpoint clock stands still
(tests/interrupt.py), so only process 0's may decide when both save. A checkpoint of another
study is refused by both processes with one line (exit 2, no hang), and so is a checkpoint that
only process 0 sees (an ``--out`` not on a filesystem every process sees)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from conftest import assert_same_study

from jaxopt_cmp import launch
from jaxopt_cmp.checkpoint import NAME, Checkpoint
from jaxopt_cmp.io import read_npz

ROOT = Path(__file__).resolve().parents[1]
STUDY = str(ROOT / "scripts" / "study.py")
INTERRUPT = str(ROOT / "tests" / "interrupt.py")
LAUNCH = [sys.executable, "-m", "jaxopt_cmp.launch", "-n", "2", "--"]
# 2 seeds over 2 processes of one device each: the seeds split. Many short chunks: the run goes on
# long enough after a checkpoint to be killed mid-training.
TINY = "--optimizers adam --lrs 0.01,0.1 --seeds 2 --iters 600 --eval-every 20 --hidden 8 --n-data 128"
TINY = [*TINY.split(), "--batch-size", "16", "--no-plots", "--peer-timeout", "20"]
TIMEOUT_S = 240


def _env(host_devices_env) -> dict:
    env = host_devices_env(1)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    return env


def _run(command: list[str], env: dict, log: Path) -> subprocess.Popen:
    with open(log, "w") as fh:
        return subprocess.Popen(command, env=env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)


def _children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (the launcher's: each in a session of its own)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _kill_all(p: subprocess.Popen) -> None:
    for pid in [*_children(p.pid), p.pid]:  # the processes first: the launcher would stop them
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    p.wait(TIMEOUT_S)


def _finish(p: subprocess.Popen, log: Path) -> str:
    try:
        p.wait(TIMEOUT_S)
    finally:
        if p.poll() is None:
            _kill_all(p)
    return log.read_text()


def test_two_processes_killed_mid_training_then_resumed_equal_an_uninterrupted_run(tmp_path, host_devices_env):
    env, cache = _env(host_devices_env), ["--cache-dir", str(tmp_path / "cache")]
    whole = _run([*LAUNCH, STUDY, *TINY, *cache, "--out", str(tmp_path / "whole")], env, tmp_path / "whole.txt")
    text = _finish(whole, tmp_path / "whole.txt")
    assert whole.returncode == 0, text[-3000:]

    out, ready = tmp_path / "out", tmp_path / "ready"
    flags = [*cache, "--checkpoint-every", "0.001", "--out", str(out), "--resume"]
    killed = _run([*LAUNCH, INTERRUPT, "at", "saved:3", str(ready), STUDY, *TINY, *flags], env, tmp_path / "k.txt")
    try:
        deadline = time.monotonic() + TIMEOUT_S
        while not ready.exists():
            assert killed.poll() is None and time.monotonic() < deadline, (tmp_path / "k.txt").read_text()[-3000:]
            time.sleep(0.01)
    finally:
        _kill_all(killed)
    assert "worker 1 of 2" in (tmp_path / "k.txt").read_text() and not (out / "results.json").exists()
    done = json.loads(bytes(read_npz(out / NAME)["meta"]).decode())["done"]
    assert 3 <= done < 30  # saved at 3 boundaries or more, of 30

    resumed = _run([*LAUNCH, STUDY, *TINY, *flags], env, tmp_path / "r.txt")
    text = _finish(resumed, tmp_path / "r.txt")
    assert resumed.returncode == 0, text[-3000:]
    assert f"resuming at step {done * 20} from {out / NAME}" in text
    assert "seeds split over 2 devices" in (out / "results.json").read_text()
    assert_same_study(out, tmp_path / "whole")
    assert not (out / NAME).exists()


def _pair(tmp_path: Path, env: dict) -> tuple[list[int], list[str]]:
    """Processes 0 and 1 of the tiny study with ``--resume``, each into its own ``--out`` ``o<i>``
    (as if they saw different filesystems): their exit statuses and logs."""
    port = launch.free_port()
    flags = ["--coordinator", f"localhost:{port}", "--num-processes", "2", "--resume"]
    procs = [
        _run([sys.executable, STUDY, *TINY, *flags, "--process-id", str(i), "--out", str(tmp_path / f"o{i}")],
             env, tmp_path / f"log{i}.txt")
        for i in range(2)
    ]  # fmt: skip
    logs = [_finish(p, tmp_path / f"log{i}.txt") for i, p in enumerate(procs)]
    return [p.returncode for p in procs], logs


def test_a_foreign_or_unshared_checkpoint_is_refused_by_every_process(tmp_path, host_devices_env):
    """Another study's checkpoint where both processes look: both exit 2 with the one line. One
    where only process 0 looks (an --out that is not shared): both exit 2 naming process 1."""
    env = _env(host_devices_env)
    for i in range(2):
        (tmp_path / f"o{i}").mkdir()
        Checkpoint(tmp_path / f"o{i}", "another study", 1).save(1, {}, [])
    codes, logs = _pair(tmp_path, env)
    assert codes == [2, 2], logs
    for i, log in enumerate(logs):
        last = log.strip().splitlines()[-1]
        assert last.startswith(f"study.py: error: {tmp_path / f'o{i}' / NAME}: a checkpoint of another config"), log
    (tmp_path / "o1" / NAME).unlink()
    codes, logs = _pair(tmp_path, env)
    assert codes == [2, 2], logs
    for i, log in enumerate(logs):
        assert log.strip().splitlines()[-1] == (
            f"study.py: error: {tmp_path / f'o{i}' / NAME}: process(es) [1] read another checkpoint (or none) "
            "than process 0; --out must be on a filesystem every process sees"
        ), log
        assert "Traceback" not in log

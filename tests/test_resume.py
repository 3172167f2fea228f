"""``study.py --checkpoint-every S`` / ``--resume``, for real: a study SIGKILLed mid-training
(once its checkpoint exists) and resumed gives the uninterrupted study's results bit for bit; the
checkpoint is gone once results are saved; another study's checkpoint, none, or a damaged one is
refused with one line before anything compiles."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import study  # noqa: E402

from jaxopt_cmp.checkpoint import NAME, Checkpoint, study_digest  # noqa: E402

CACHE = Path(os.environ.get("TMPDIR", "/tmp")) / f"jaxopt_cmp-test-resume-{os.getpid()}"
# Many short chunks: the run lasts long enough after its first checkpoint to be killed mid-training.
TINY = "--optimizers adam --lrs 0.01,0.1 --seeds 2 --iters 10000 --eval-every 50 --hidden 8 --n-data 128"
TINY = [*TINY.split(), "--batch-size", "16", "--no-plots"]
TIMEOUT_S = 240


@pytest.fixture(scope="module", autouse=True)
def _cache():
    yield
    import shutil

    shutil.rmtree(CACHE, ignore_errors=True)


def _same_study(a: Path, b: Path) -> None:
    ra, rb = (json.loads((d / "results.json").read_text()) for d in (a, b))
    ra.pop("timing"), rb.pop("timing")
    assert ra == rb
    na, nb = np.load(a / "arrays.npz"), np.load(b / "arrays.npz")
    assert sorted(na.files) == sorted(nb.files)
    for name in na.files:
        np.testing.assert_array_equal(na[name], nb[name], err_msg=name)
    for name in ("runs.csv", "history.csv"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


def test_sigkill_mid_training_then_resume_equals_an_uninterrupted_run(tmp_path):
    study.main([*TINY, "--no-cache", "--checkpoint-every", "0", "--out", str(tmp_path / "ref")])
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    # The killed run and the resumed one share a compilation cache (the second compiles nothing).
    command = [sys.executable, str(ROOT / "scripts" / "study.py"), *TINY, "--cache-dir", str(CACHE), "--out", str(out)]
    with open(tmp_path / "log.txt", "w") as log:
        p = subprocess.Popen([*command, "--checkpoint-every", "0.001"], env=env, stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + TIMEOUT_S
        while not (out / NAME).exists():
            assert p.poll() is None and time.monotonic() < deadline, (tmp_path / "log.txt").read_text()[-2000:]
            time.sleep(0.01)
        p.send_signal(signal.SIGKILL)
        p.wait(TIMEOUT_S)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == -signal.SIGKILL and not (out / "results.json").exists()
    done = Checkpoint(out, study_digest_of(TINY), 1).load()
    assert 0 < done < 200  # mid-training
    resumed = subprocess.run([*command, "--resume"], env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resuming at step {done * 50} from {out / NAME}" in resumed.stdout
    _same_study(out, tmp_path / "ref")
    assert not (out / NAME).exists() and not (tmp_path / "ref" / NAME).exists()


def study_digest_of(argv: list[str]) -> str:
    args = study.parse_args(argv)
    lrs = study._cli.parse_list("lrs", args.lrs, float)
    cfg, data = study._cli.build_config(args, {"adam": {"lr": lrs}}, args.seeds, record_predictions=True)
    return study_digest(cfg, data)


def test_another_studys_missing_or_damaged_checkpoint_is_refused(tmp_path, usage_error):
    out = tmp_path / "out"
    out.mkdir()
    other = [*TINY[:3], "0.01,0.2", *TINY[4:]]  # another lr grid
    Checkpoint(out, study_digest_of(other), 1).save(1, {}, [])
    err = usage_error(study, [*TINY, "--out", str(out), "--resume"])
    assert f"study.py: error: {out / NAME}: a checkpoint of another config, data, code or version" in err
    (out / NAME).write_bytes((out / NAME).read_bytes()[:50])
    assert "unreadable checkpoint" in usage_error(study, [*TINY, "--out", str(out), "--resume"])
    (out / NAME).unlink()
    err = usage_error(study, [*TINY, "--out", str(out), "--resume"])
    assert f"--resume={out} is not allowed: expected --out naming an interrupted study's directory" in err
    err = usage_error(study, [*TINY, "--out", str(out), "--checkpoint-every", "-1"])
    assert "--checkpoint-every=-1.0 is not allowed" in err


def test_overwrite_removes_a_stale_checkpoint(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    Checkpoint(out, "stale", 1).save(1, {}, [])
    study.main([*TINY, "--no-cache", "--iters", "100", "--out", str(out), "--overwrite", "--checkpoint-every", "0"])
    assert (out / "results.json").exists() and not (out / NAME).exists()

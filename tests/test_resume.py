"""``study.py --checkpoint-every S`` / ``--resume``, for real: one study SIGKILLed at every moment
the issue names (during compile, during a checkpoint write, mid-training, during result writing),
each time started again with the same command and ``--resume``, ends with the uninterrupted study's
results bit for bit; a checkpoint killed while being written is never taken for a good one; the
checkpoint and any half-written file are gone once results are saved; ``--overwrite`` removes
another study's checkpoint. Resuming with lanes, with sharded seeds and in float64 is bit-identical
too. Another study's checkpoint, a damaged one, or a finished study's directory is refused with one
line before anything compiles."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import assert_same_study
from interrupt import kill_at

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import study  # noqa: E402

from jaxopt_cmp.checkpoint import NAME, Checkpoint, study_digest  # noqa: E402

INTERRUPT = str(ROOT / "tests" / "interrupt.py")
STUDY = str(ROOT / "scripts" / "study.py")
CACHE = Path(os.environ.get("TMPDIR", "/tmp")) / f"jaxopt_cmp-test-resume-{os.getpid()}"
# Many short chunks: the run goes on long enough after a checkpoint to be killed mid-training.
TINY = "--optimizers adam --lrs 0.01,0.1 --seeds 2 --iters 2000 --eval-every 50 --hidden 8 --n-data 128"
TINY = [*TINY.split(), "--batch-size", "16", "--no-plots"]
TIMEOUT_S = 240


@pytest.fixture(scope="module", autouse=True)
def _cache():
    yield
    import shutil

    shutil.rmtree(CACHE, ignore_errors=True)


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}


def _kill_at(moment: str, out: Path, log: Path) -> str:
    """Runs the resumable study into ``out``, SIGKILLs it at ``moment`` (tests/interrupt.py); its log."""
    ready = out.parent / f"ready-{moment.replace(':', '-')}"
    flags = ["--cache-dir", str(CACHE), "--checkpoint-every", "0.001", "--out", str(out), "--resume"]
    return kill_at(moment, ready, [STUDY, *TINY, *flags], log, _env(), TIMEOUT_S)


def _done(out: Path) -> int:
    return Checkpoint(out, study_digest_of(TINY), 1).load()


def test_killed_at_every_moment_then_resumed_equals_an_uninterrupted_run(tmp_path):
    # Uninterrupted, in a process of its own: it fills the compilation cache the others load from.
    # Into a directory holding another study's checkpoint: --overwrite removes it.
    (tmp_path / "whole").mkdir()
    Checkpoint(tmp_path / "whole", "stale", 1).save(1, {}, [])
    whole = [sys.executable, STUDY, *TINY, "--cache-dir", str(CACHE), "--out", str(tmp_path / "whole"), "--overwrite"]
    done = subprocess.run([*whole, "--checkpoint-every", "0"], env=_env(), capture_output=True, timeout=TIMEOUT_S)
    assert done.returncode == 0, done.stderr[-3000:]
    assert not (tmp_path / "whole" / NAME).exists()
    out, log = tmp_path / "out", tmp_path / "log.txt"
    _kill_at("compile", out, log)
    assert not (out / NAME).exists() and not (out / "results.json").exists()

    # Started again: no checkpoint yet, so from step 0; killed writing its third checkpoint.
    text = _kill_at(f"write:{NAME}:3", out, log)
    assert f"no checkpoint in {out} yet: starting at step 0" in text
    (part,) = out.glob(f".{NAME}.*.tmp")  # the third, half written
    done = _done(out)  # the second, whole: the half-written one was never renamed over it
    assert 0 < done and part.stat().st_size < (out / NAME).stat().st_size

    text = _kill_at("saved:2", out, log)  # mid-training, two checkpoints later
    assert f"resuming at step {done * 50} from {out / NAME}" in text
    assert _done(out) > done

    # Writing its results: results.json is in place, summary.txt half written.
    _kill_at("write:summary.txt:1", out, log)
    assert (out / "results.json").exists() and list(out.glob(".summary.txt.*.tmp"))
    done = _done(out)
    assert done > 1  # the last save, at a late boundary

    command = [sys.executable, STUDY, *TINY, "--cache-dir", str(CACHE), "--out", str(out), "--resume"]
    resumed = subprocess.run(command, env=_env(), capture_output=True, text=True, timeout=TIMEOUT_S)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resuming at step {done * 50} from {out / NAME}" in resumed.stdout
    assert_same_study(out, tmp_path / "whole")
    assert not (out / NAME).exists() and not list(out.glob(".*.tmp"))


def test_resume_with_lanes_sharded_seeds_and_float64_is_bit_identical(tmp_path, host_devices_env):
    """On 2 devices, in one process (tests/interrupt.py twice): each study uninterrupted, and
    stopped after its second checkpoint then resumed: seeds split over the devices (float32), and
    optimizers in lanes (3 seeds do not split over 2 devices; float64)."""
    small = ["--iters", "200", "--eval-every", "20", "--hidden", "8", "--n-data", "128", "--batch-size", "16"]
    small += ["--no-plots"]
    groups = {  # float64 last: x64 mode stays on in the process
        "seeds split over 2 devices": ["--optimizers", "adam", "--lrs", "0.01", "--seeds", "2"],
        "optimizers in 2 lanes": [
            "--optimizers",
            "sgd,adam",
            "--lrs",
            "0.01,0.1",
            "--seeds",
            "3",
            "--dtype",
            "float64",
        ],
    }
    command = [sys.executable, INTERRUPT, "twice", str(tmp_path), STUDY]
    for flags in groups.values():
        command += [*flags, *small, "--"]
    env = {**host_devices_env(2), "PYTHONPATH": _env()["PYTHONPATH"]}
    done = subprocess.run(command[:-1], env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("resuming at step 40 from") == 2, done.stdout  # after 2 chunks of 20 steps
    for i, where in enumerate(groups):
        assert_same_study(tmp_path / str(i) / "resumed", tmp_path / str(i) / "whole")
        results = json.loads((tmp_path / str(i) / "resumed" / "results.json").read_text())
        assert where in results["versions"]["placement"]
    assert results["config"]["train"]["dtype"] == "float64"


def study_digest_of(argv: list[str]) -> str:
    args = study.parse_args(argv)
    lrs = study._cli.parse_list("lrs", args.lrs, float)
    cfg, data = study._cli.build_config(args, {"adam": {"lr": lrs}}, args.seeds, record_predictions=True)
    return study_digest(cfg, data)


def test_another_studys_damaged_or_finished_checkpoint_is_refused(tmp_path, usage_error):
    out = tmp_path / "out"
    out.mkdir()
    other = [*TINY[:3], "0.01,0.2", *TINY[4:]]  # another lr grid
    Checkpoint(out, study_digest_of(other), 1).save(1, {}, [])
    err = usage_error(study, [*TINY, "--out", str(out), "--resume"])
    assert f"study.py: error: {out / NAME}: a checkpoint of another config, data, code or version" in err
    (out / NAME).write_bytes((out / NAME).read_bytes()[:50])
    assert "unreadable checkpoint" in usage_error(study, [*TINY, "--out", str(out), "--resume"])
    (out / NAME).unlink()
    (out / "results.json").write_text("{}")
    err = usage_error(study, [*TINY, "--out", str(out), "--resume"])
    assert f"--resume={out} is not allowed: expected an unfinished study's directory (it holds results.json)" in err
    err = usage_error(study, [*TINY, "--resume"])
    assert "--resume=(no --out) is not allowed: expected --out naming the study's directory" in err
    err = usage_error(study, [*TINY, "--out", str(out), "--checkpoint-every", "-1"])
    assert "--checkpoint-every=-1.0 is not allowed" in err


def test_bench_checkpoint_row_counts_the_saves_and_their_cost(tmp_path):
    """bench.py --checkpoint-cost's measurement on a tiny study: no save at the 60 s default, one
    per boundary after the first at a short interval, the ratios and the per-save cost reported."""
    from jaxopt_cmp.bench import checkpoint_cost
    from jaxopt_cmp.config import seed_study

    cfg = seed_study(optimizers=("adam",), lr=[0.01, 0.1], seeds=2, iters=100, eval_every=20, hidden=(8,), n_data=128)
    doc = checkpoint_cost.measure(cfg, tmp_path, repeats=2)
    default, short = doc["intervals"]
    assert default["every_s"] == 60 and default["saves"] == [0, 0]
    assert short["saves"] == [4, 4]  # boundaries 20, 40, 60, 80 (not 0 or the end)
    assert short["ratio"] == short["train_s"]["median"] / doc["train_s"]["median"]
    assert doc["runs"] == 4 and doc["per_save_s"]["median"] > 0 and doc["checkpoint_mb"] > 0
    assert doc["projected_at_default"] == doc["per_save_s"]["median"] / 60 and not (tmp_path / NAME).exists()
    assert "per save" in checkpoint_cost.markdown(doc) and "every boundary" in checkpoint_cost.markdown(doc)

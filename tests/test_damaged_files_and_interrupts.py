"""Crashes and data loss: corrupt files are one line, re-rendering loses nothing,
--overwrite leaves no other script's stale files."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from jaxopt_cmp.checks import ConfigError
from jaxopt_cmp.config import seed_study
from jaxopt_cmp.data import load_data_file
from jaxopt_cmp.io import claim_out_dir
from jaxopt_cmp.results import OUTPUTS, ResultsError, load_result, save_result
from jaxopt_cmp.study import run_study

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import study  # noqa: E402


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    out = tmp_path_factory.mktemp("saved")
    cfg = seed_study(iters=20, eval_every=10, n_data=64, batch_size=16, hidden=(4,), optimizers=("sgd",))
    save_result(run_study(cfg), out)
    return out


def _npz_bytes(**arrays) -> bytes:
    import io

    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()


def _damaged() -> dict[str, bytes]:
    """Truncated, overwritten in the middle (zlib), and garbage behind a zip signature."""
    raw = _npz_bytes(x=np.arange(500.0), y=np.arange(500.0))
    return {
        "truncated": raw[: len(raw) // 2],
        "corrupt": raw[:200] + bytes(100) + raw[300:],
        "garbage": b"PK\x03\x04" + b"garbage" * 20,
    }


@pytest.mark.parametrize("kind", ["truncated", "corrupt", "garbage"])
def test_a_damaged_data_npz_is_a_config_error(tmp_path, kind):
    path = tmp_path / "d.npz"
    path.write_bytes(_damaged()[kind])
    with pytest.raises(ConfigError, match="not a readable .npz"):
        load_data_file(str(path))


@pytest.mark.parametrize("kind", ["truncated", "corrupt", "garbage", "strings"])
def test_a_damaged_results_npz_is_a_results_error(saved, tmp_path, kind, usage_error):
    dst = tmp_path / "r"
    shutil.copytree(saved, dst)
    if kind == "strings":
        arrays = dict(np.load(dst / "arrays.npz"))
        arrays["x_N"] = arrays["x_N"].astype(str)
        (dst / "arrays.npz").write_bytes(_npz_bytes(**arrays))
    else:
        (dst / "arrays.npz").write_bytes(_damaged()[kind])
    with pytest.raises(ResultsError, match="not a readable .npz" if kind != "strings" else "not numeric"):
        load_result(dst)
    usage_error(study, ["--from", str(dst), "--no-plots"])


def test_rerendering_in_place_keeps_the_figures(saved, tmp_path):
    """``study.py --from DIR --no-plots`` removed every PNG in DIR, and none came back."""
    dst = tmp_path / "r"
    shutil.copytree(saved, dst)
    pngs = [n for n in OUTPUTS if n.endswith(".png")]
    for name in pngs:
        (dst / name).write_bytes(b"a figure")
    study.main(["--from", str(dst), "--no-plots"])
    assert all((dst / name).read_bytes() == b"a figure" for name in pngs)


class _Claimed(Exception):
    pass


@pytest.mark.parametrize("script", ["compare", "study", "diagnose", "validate", "tune"])
def test_overwrite_removes_every_scripts_outputs(tmp_path, monkeypatch, script):
    """compare/study's --overwrite left diagnose's diagnostics.npz and diag_*.png next to the new
    results; diagnose's and validate's left results.json: every script claims with one list."""
    import importlib

    import jaxopt_cmp.io as jio

    claimed = {}

    def record(path, overwrite=False, outputs=()):
        claimed["outputs"] = tuple(outputs)
        raise _Claimed

    monkeypatch.setattr(jio, "claim_out_dir", record)
    module = importlib.import_module(script)
    sizes = "--iters 20 --eval-every 10 --n-data 64 --hidden 4" if script != "validate" else "--quick --steps 5"
    with pytest.raises(_Claimed):
        module.main([*sizes.split(), "--out", str(tmp_path / "o"), "--overwrite"])
    assert set(OUTPUTS) <= set(claimed["outputs"])  # study.py adds its checkpoint.npz (unless --resume)
    for name in ["diagnostics.npz", "diag_sharpness.png", "diag_error_bands.png", "validation.json", "results.json"]:
        (tmp_path / name).write_text("stale")
    (tmp_path / "notes.txt").write_text("mine")
    with claim_out_dir(tmp_path, overwrite=True, outputs=OUTPUTS):
        pass
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


@pytest.mark.parametrize("where", ["under_a_file", "empty"])
def test_an_unusable_cache_dir_is_one_line_naming_no_cache(saved, tmp_path, usage_error, where):
    """An unwritable cache location aborted every script with a traceback; ``--cache-dir ''``
    wrote the cache into the current directory."""
    (tmp_path / "f").write_text("")
    cache = str(tmp_path / "f" / "cache") if where == "under_a_file" else ""
    err = usage_error(study, ["--from", str(saved), "--no-plots", "--cache-dir", cache])
    assert "--cache-dir=" in err and "--no-cache" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]


def test_an_unwritable_default_cache_location_runs_without_the_cache(saved, tmp_path, monkeypatch, capsys):
    """The default location (no --cache-dir) unusable, e.g. a read-only home: one note line and the
    script runs without the cache (JAX itself only warns), instead of refusing every script."""
    (tmp_path / "f").write_text("")
    monkeypatch.setenv("JAXOPT_CMP_CACHE_DIR", str(tmp_path / "f" / "cache"))
    study.main(["--from", str(saved), "--no-plots"])
    err = capsys.readouterr().err
    assert "note: no compilation cache:" in err and "--cache-dir" in err and "not writable" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]


def _past_its_first_lines(pid: int) -> bool:
    """Whether process ``pid`` has loaded numpy, which the scripts import only after ``_cli`` set
    its SIGINT handler (Python's own start-up, before a script's first line, is not its to handle)."""
    try:
        return "_multiarray_umath" in open(f"/proc/{pid}/maps").read()
    except OSError:
        return False


@pytest.mark.parametrize("delay, parent_ignores", [(0.0, False), (0.5, True)])
def test_ctrl_c_in_the_first_second_exits_130_with_one_line(tmp_path, delay, parent_ignores):
    """Issue 20: Ctrl-C during the first second printed a 25-line traceback (or crashed the
    interpreter in half-done imports), or was swallowed and the run completed with status 0."""
    import signal
    import subprocess

    cmd = [sys.executable, str(ROOT / "scripts" / "compare.py"), "--iters", "20000", "--hidden", "4"]
    # An ignored signal stays ignored across exec: the child starts as under a background job.
    before = signal.signal(signal.SIGINT, signal.SIG_IGN if parent_ignores else signal.default_int_handler)
    try:
        proc = subprocess.Popen(
            [*cmd, "--n-data", "128", "--no-plots", "--out", str(tmp_path / "out")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
    finally:
        signal.signal(signal.SIGINT, before)
    import time

    # From the script's first lines (a loaded machine can take a second to get there), then ``delay`` s more.
    deadline = time.monotonic() + 60
    while not _past_its_first_lines(proc.pid) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(delay)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    lines = [x for x in err.splitlines() if x.strip() and "%|" not in x]  # tqdm's bar aside
    assert len(lines) == 1 and "interrupted" in lines[0], err
    assert not (tmp_path / "out" / "results.json").exists()


SWALLOWED = """
import os, signal, sys, time
sys.path.insert(0, {scripts!r})
import _cli

def main():
    try:  # a library that swallows KeyboardInterrupt (jax's gc callback does)
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(1)
    except BaseException:
        pass
    _cli.check_interrupted()
    print("results written")

_cli.run_main("swallow.py", main)
"""


def test_a_swallowed_ctrl_c_still_stops_before_results_are_written():
    import subprocess

    code = SWALLOWED.format(scripts=str(ROOT / "scripts"))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 130 and "results written" not in proc.stdout, proc.stdout + proc.stderr
    assert proc.stderr.strip().splitlines() == ["swallow.py: interrupted; no new results.json was written"]

"""Determinism across processes, interrupted runs, atomic writes, unreadable results."""

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

from jaxopt_cmp.config import DataConfig, StudyConfig, TrainConfig
from jaxopt_cmp.results import ResultsError, atomic_write_bytes, load_result, save_result
from jaxopt_cmp.study import run_study

ROOT = Path(__file__).resolve().parents[1]
FAST = ["--iters", "60", "--eval-every", "20", "--n-data", "256", "--batch-size", "16", "--no-plots"]


def script(name, *args, **kw):
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / name), *args], capture_output=True, text=True, cwd=ROOT, **kw
    )


def test_same_config_bit_identical_across_processes(tmp_path, host_devices_env):
    """Two host devices, the seed axis sharded over them (the scripts' own default on 2 cores)."""
    docs = []
    for i in range(2):
        proc = script("compare.py", *FAST, "--seeds", "2", "--out", str(tmp_path / f"r{i}"), env=host_devices_env(2))
        assert proc.returncode == 0, proc.stderr
        docs.append(json.loads((tmp_path / f"r{i}" / "results.json").read_text()))
    assert str(docs[0]["versions"]["device_count"]) == "2"
    assert docs[0]["final_mse"] == docs[1]["final_mse"]  # float equality of every value
    assert docs[0]["history"] == docs[1]["history"]
    a, b = (np.load(tmp_path / f"r{i}" / "arrays.npz") for i in range(2))
    for key in a.files:
        np.testing.assert_array_equal(a[key], b[key])


def test_ctrl_c_during_training_exits_cleanly(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "scripts" / "study.py"),
            "--iters",
            "200000",
            "--seeds",
            "4",
            "--lrs",
            "0.01",
            "--out",
            str(out),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    deadline = time.time() + 120
    while time.time() < deadline and not out.exists():
        time.sleep(0.2)
    time.sleep(8)  # well inside compilation or training (200k steps take minutes)
    assert proc.poll() is None, proc.communicate()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    assert not (out / "results.json").exists()
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


def test_killed_run_leaves_no_partial_results(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "scripts" / "compare.py"), "--iters", "200000", "--out", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=ROOT,
    )
    deadline = time.time() + 120
    while time.time() < deadline and not out.exists():
        time.sleep(0.2)
    time.sleep(3)
    proc.kill()
    proc.wait(timeout=30)
    assert out.exists() and not (out / "results.json").exists()


def small_result():
    cfg = StudyConfig(data=DataConfig(n_data=128), seeds=2, train=TrainConfig(iters=20, batch_size=8, eval_every=10))
    return run_study(cfg)


def test_atomic_write_keeps_old_file_on_failure(tmp_path, monkeypatch):
    path = tmp_path / "results.json"
    path.write_text("old complete content")

    def broken_replace(src, dst):
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError):
        atomic_write_bytes(path, b"new content that never lands")
    assert path.read_text() == "old complete content"
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]  # temp file removed


def test_save_load_round_trip(tmp_path):
    res = small_result()
    save_result(res, tmp_path)
    back, doc = load_result(tmp_path)
    assert back.config == res.config
    for n in res.config.optimizer_names:
        np.testing.assert_array_equal(back.mse_EHS[n], res.mse_EHS[n])
        np.testing.assert_array_equal(back.pred_EHN[n], res.pred_EHN[n])


@pytest.mark.parametrize(
    "content, words",
    [
        (None, "no results.json"),
        ("{not json", "not valid JSON"),
        ('{"final_mse": {}}', "schema"),
        ('{"schema": "jaxopt_cmp.results/0"}', "schema"),
        ("[1, 2]", "schema"),
        ('{"schema": "jaxopt_cmp.results/1", "config": {}}', "missing keys"),
    ],
)
def test_foreign_or_old_results_give_clear_error(tmp_path, content, words):
    if content is not None:
        (tmp_path / "results.json").write_text(content)
    with pytest.raises(ResultsError, match=words):
        load_result(tmp_path)


def test_results_with_broken_config_or_arrays(tmp_path):
    res = small_result()
    save_result(res, tmp_path)
    doc = json.loads((tmp_path / "results.json").read_text())
    doc["config"]["train"]["iters"] = -5
    (tmp_path / "results.json").write_text(json.dumps(doc))
    with pytest.raises(ResultsError, match="incomplete"):
        load_result(tmp_path)
    save_result(res, tmp_path)
    (tmp_path / "arrays.npz").unlink()
    with pytest.raises(ResultsError, match="incomplete"):
        load_result(tmp_path)


def test_study_from_dir_rerenders_and_rejects_foreign(tmp_path, capsys, usage_error):
    """In this process (tests/test_html_report.py runs study.py the same way): the study, its
    re-rendering from the saved results, and a foreign directory refused in one line."""
    sys.path.insert(0, str(ROOT / "scripts"))
    import study

    out = tmp_path / "s"
    study.main([*FAST[:-1], "--seeds", "3", "--lrs", "0.001,0.01", "--out", str(out)])
    for f in ("lr_sensitivity.png", "best_curves.png", "snapshots_best.png"):
        (out / f).unlink()
    capsys.readouterr()
    study.main(["--from", str(out)])
    assert capsys.readouterr().out.count("adam") >= 2  # summary and paired tables
    assert (out / "lr_sensitivity.png").exists() and (out / "snapshots_best.png").exists()
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "results.json").write_text('{"loss": 1}')
    assert "schema" in usage_error(study, ["--from", str(tmp_path / "foreign")])

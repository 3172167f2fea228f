"""Saving and loading results: writes that fail midway leave the previous result (or nothing),
``results.json`` comes last, and diverged runs come back exactly as they were saved.

A write that fails midway is a real one: a subprocess saves under a file-size limit
(``RLIMIT_FSIZE``, what a full disk does to a writer), so the check does not depend on how
``save_result`` writes its files, only on what is left on disk afterwards.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from jaxopt_cmp.config import DataConfig, ModelConfig, OptimizerConfig, StudyConfig, TrainConfig
from jaxopt_cmp.results import load_result, save_result
from jaxopt_cmp.study import run_study

ROOT = Path(__file__).resolve().parents[1]
resource = pytest.importorskip("resource")  # POSIX only

# Child: load the result in argv[1], pad its versions (they live in results.json only) by
# argv[4] bytes, then save it into argv[2] with every file limited to argv[3] bytes.
SAVE_UNDER_LIMIT = textwrap.dedent(
    """
    import resource, signal, sys
    from jaxopt_cmp.results import load_result, save_result
    src, dst, limit, pad = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    result, _ = load_result(src)
    result.versions = {**result.versions, "padding": "x" * pad}
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails (EFBIG)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
    try:
        save_result(result, dst)
    except OSError as err:
        print("write failed:", err)
        sys.exit(0)
    sys.exit("save_result did not fail under the file-size limit")
    """
)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A small study with diverged runs (sgd at lr 50) and large arrays (4,096 points, predictions
    recorded), saved once: ``(result, directory)``."""
    cfg = StudyConfig(
        optimizers=(OptimizerConfig.make("sgd", lr=[0.01, 50.0]), OptimizerConfig.make("adam", lr=0.01)),
        data=DataConfig(n_data=4096),
        model=ModelConfig(hidden=(8,)),
        train=TrainConfig(iters=20, batch_size=16, eval_every=10),
        seeds=2,
    )
    result = run_study(cfg)
    out = tmp_path_factory.mktemp("saved")
    save_result(result, out)
    return result, out


def save_under_limit(src: Path, dst: Path, limit: int, pad: int = 0) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", SAVE_UNDER_LIMIT, str(src), str(dst), str(limit), str(pad)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def snapshot(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in out.iterdir()}


def assert_same_arrays(a, b) -> None:
    assert a.config == b.config
    np.testing.assert_array_equal(a.eval_steps, b.eval_steps)
    np.testing.assert_array_equal(a.x_N, b.x_N)
    np.testing.assert_array_equal(a.y_N, b.y_N)
    for n in a.config.optimizer_names:
        for field in ("mse_EHS", "diverged_at_HS", "pred_EHN"):
            x, y = getattr(a, field)[n], getattr(b, field)[n]
            assert x.dtype == y.dtype and x.shape == y.shape, (field, n)
            np.testing.assert_array_equal(x, y, err_msg=f"{field}/{n}")
        assert a.grid[n].keys() == b.grid[n].keys()
        for k in a.grid[n]:  # run_study may hold float32 values: the loaded ones are the config's
            np.testing.assert_allclose(a.grid[n][k], b.grid[n][k], rtol=1e-7)


def test_diverged_runs_round_trip_exactly(saved):
    result, out = saved
    div_HS = result.diverged_at_HS["sgd"]
    assert (div_HS[1] >= 0).all() and (div_HS[0] == -1).all()  # lr 50 diverged, lr 0.01 did not
    assert np.isposinf(result.mse_EHS["sgd"][-1, 1]).all()
    back, _ = load_result(out)
    assert_same_arrays(back, result)
    for opt in result.config.optimizers:  # hyperparameters come back at the user's exact values
        assert {k: tuple(v) for k, v in back.grid[opt.name].items()} == opt.grid()


def copy_of(good: Path, out: Path) -> Path:
    """A byte-for-byte copy of a saved result directory (the "previous result" a save replaces)."""
    out.mkdir()
    for name, data in snapshot(good).items():
        (out / name).write_bytes(data)
    return out


def test_failed_write_of_results_json_keeps_the_previous_result(saved, tmp_path):
    """Every other file fits under the limit; results.json (padded) does not: it fails midway."""
    _, good = saved
    out = copy_of(good, tmp_path / "run")
    before = snapshot(out)
    others = max(len(data) for name, data in before.items() if name != "results.json")
    limit = others + 4096
    save_under_limit(good, out, limit, pad=2 * limit)
    assert snapshot(out)["results.json"] == before["results.json"]
    assert sorted(snapshot(out)) == sorted(before)  # no partial or temporary file left
    assert_same_arrays(load_result(out)[0], load_result(good)[0])


def test_failed_write_of_arrays_keeps_the_previous_result(saved, tmp_path):
    _, good = saved
    out = copy_of(good, tmp_path / "run")
    before = snapshot(out)
    save_under_limit(good, out, len(before["arrays.npz"]) // 2)
    assert snapshot(out) == before  # nothing replaced, nothing left behind
    assert_same_arrays(load_result(out)[0], load_result(good)[0])


def test_crash_before_the_arrays_are_in_place_leaves_no_results_json(saved, tmp_path):
    """results.json marks a complete directory, so it is written last: a run that stops while
    writing the arrays (here: they exceed the limit, results.json would not) leaves none."""
    _, good = saved
    sizes = {name: len(data) for name, data in snapshot(good).items()}
    limit = sizes["results.json"] + 1024
    assert sizes["arrays.npz"] > 2 * limit, sizes  # else this test proves nothing
    out = tmp_path / "fresh"
    out.mkdir()
    save_under_limit(good, out, limit)
    assert not (out / "results.json").exists()
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]

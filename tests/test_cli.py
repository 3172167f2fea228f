"""compare.py end to end (small), its flags, and bad input: one line, exit 2, no traceback."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import compare  # noqa: E402

FAST = ["--iters", "40", "--eval-every", "20", "--n-data", "256", "--batch-size", "16"]
FLAGS = ["--optimizers", "--lr", "--iters", "--batch-size", "--hidden", "--n-data", "--seed",
         "--seeds", "--eval-every", "--out", "--no-plots", "--framework", "--overwrite", "--dtype"]


def run_script(*args, check=True):
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "compare.py"), *args],
                          capture_output=True, text=True, cwd=ROOT)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def test_help_documents_every_flag():
    out = run_script("--help").stdout
    for flag in FLAGS:
        assert flag in out, flag


def test_compare_writes_results_and_figures(tmp_path):
    out = tmp_path / "run"
    proc = run_script(*FAST, "--seeds", "2", "--out", str(out))
    assert str(out) in proc.stdout and "Total parameters: 4,353" in proc.stdout
    doc = json.loads((out / "results.json").read_text())
    for key in ("config", "versions", "final_mse", "history", "timing", "eval_steps"):
        assert key in doc
    for key in ("jax", "jaxlib", "flax", "optax", "numpy", "python", "device"):
        assert key in doc["versions"]
    assert set(doc["final_mse"]) == {"sgd", "momentum", "adam"}
    assert all(len(v) == 2 and all(math.isfinite(x) for x in v) for v in doc["final_mse"].values())
    assert sorted(map(int, doc["history"])) == [0, 20, 40]
    assert doc["timing"]["compile_s"] > 0 and doc["timing"]["train_s"] > 0
    for fig in ("snapshots.png", "final_fit.png", "mse_curves.png"):
        assert (out / fig).stat().st_size > 1000
    assert not list(out.glob(".*tmp"))  # no temporary files left behind


@pytest.mark.parametrize(
    "argv, flag",
    [
        (["--optimizers", "sgd,adamz"], "--optimizers"),
        (["--lr", "0"], "--lr"),
        (["--lr", "nan"], "--lr"),
        (["--lr", "inf"], "--lr"),
        (["--iters", "0"], "--iters"),
        (["--batch-size", "0"], "--batch-size"),
        (["--batch-size", "20000"], "--batch-size"),
        (["--hidden", ""], "--hidden"),
        (["--hidden", "64,0"], "--hidden"),
        (["--hidden", "64,x"], "--hidden"),
        (["--eval-every", "0"], "--eval-every"),
        (["--n-data", "0"], "--n-data"),
        (["--seeds", "0"], "--seeds"),
        (["--target", "cubic"], "--target"),
        (["--dtype", "float16"], "--dtype"),
        (["--iters", "ten"], "--iters"),
    ],
)
def test_bad_flag_one_line_exit_2(argv, flag, usage_error, tmp_path):
    err = usage_error(compare, [*argv, "--out", str(tmp_path / "o")])
    assert flag in err, err
    assert not (tmp_path / "o").exists()  # refused before creating anything


def test_non_empty_out_refused_unless_overwrite(tmp_path, usage_error):
    (tmp_path / "keep.txt").write_text("precious")
    err = usage_error(compare, ["--out", str(tmp_path)])
    assert "--out" in err and "--overwrite" in err
    assert (tmp_path / "keep.txt").read_text() == "precious"


def test_out_that_is_a_file_refused(tmp_path, usage_error):
    f = tmp_path / "file"
    f.write_text("x")
    assert "--out" in usage_error(compare, ["--out", str(f)])


def test_out_below_a_file_refused(tmp_path, usage_error):
    f = tmp_path / "file"
    f.write_text("x")
    assert "writable" in usage_error(compare, ["--out", str(f / "sub")])


def test_unwritable_out_refused(tmp_path, usage_error):
    ro = tmp_path / "ro"
    ro.mkdir(mode=0o500)
    try:
        probe = ro / "probe"
        try:
            probe.write_text("")
            pytest.skip("running with permissions that ignore directory modes (root)")
        except PermissionError:
            pass
        assert "--out" in usage_error(compare, ["--out", str(ro / "sub")])
    finally:
        ro.chmod(0o700)


bad_ints = st.one_of(st.integers(max_value=0), st.sampled_from(["x", "1.5", ""]))
bad_floats = st.one_of(st.floats(max_value=0.0), st.sampled_from(["nan", "inf", "-inf", "abc"]))
bad_hidden = st.one_of(
    st.lists(st.integers(max_value=0), min_size=1, max_size=3).map(lambda v: ",".join(map(str, v))),
    st.sampled_from(["", ",", "64,,64", "a", "64;64"]),
)
bad_names = st.text("abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=8).filter(
    lambda s: s not in {"sgd", "momentum", "adam"}
)
BAD = {
    "--iters": bad_ints, "--batch-size": bad_ints, "--eval-every": bad_ints, "--n-data": bad_ints,
    "--seeds": bad_ints, "--lr": bad_floats, "--hidden": bad_hidden, "--optimizers": bad_names,
    "--target": bad_names, "--seed": st.integers(max_value=-1),
}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(flag=st.sampled_from(sorted(BAD)), data=st.data())
def test_random_bad_input_property(flag, data, usage_error, tmp_path):
    value = str(data.draw(BAD[flag]))
    err = usage_error(compare, [f"{flag}={value}", "--out", str(tmp_path / "never")])
    assert flag in err, (flag, value, err)
    assert not (tmp_path / "never").exists()

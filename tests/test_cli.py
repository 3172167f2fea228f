"""compare.py end to end (small), its flags, and bad input: one line, exit 2, no traceback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jaxopt_cmp.optimizers import OPTIMIZERS
from jaxopt_cmp.results import load_result
from jaxopt_cmp.targets import TARGETS

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import compare  # noqa: E402

FAST = ["--iters", "40", "--eval-every", "20", "--n-data", "256", "--batch-size", "16"]
TINY = "--iters 20 --eval-every 10 --n-data 128 --batch-size 16 --hidden 8 --no-plots".split()
FLAGS = [
    "--optimizers",
    "--lr",
    "--iters",
    "--batch-size",
    "--hidden",
    "--n-data",
    "--seed",
    "--seeds",
    "--eval-every",
    "--out",
    "--no-plots",
    "--framework",
    "--overwrite",
    "--dtype",
]


def run_script(*args, check=True, script="compare.py"):
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / script), *args], capture_output=True, text=True, cwd=ROOT
    )
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def test_help_documents_every_flag(capsys):
    with pytest.raises(SystemExit) as exc:
        compare.parse_args(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for flag in FLAGS:
        assert flag in out, flag


def test_compare_writes_results_and_figures(tmp_path):
    out = tmp_path / "run"
    proc = run_script(*FAST, "--seeds", "2", "--out", str(out))
    assert str(out) in proc.stdout and "Total parameters: 4,353" in proc.stdout
    doc = json.loads((out / "results.json").read_text())
    for key in ("config", "versions", "final_mse", "history", "timing", "eval_steps"):
        assert key in doc
    for key in ("jax", "jaxlib", "flax", "optax", "numpy", "python", "device", "placement"):
        assert key in doc["versions"]
    where = doc["versions"]["placement"]  # where it ran, in the final table too
    assert f"(one compiled program; {where})" in proc.stdout
    if doc["versions"]["device_count"] == "2":  # the scripts give XLA one device per core
        assert where == "seeds split over 2 devices"
    res, _ = load_result(out)  # the arrays, not the summary's layout
    assert {n: m.shape for n, m in res.mse_EHS.items()} == {n: (3, 1, 2) for n in ("sgd", "momentum", "adam")}
    assert all(np.isfinite(m).all() for m in res.mse_EHS.values())
    np.testing.assert_array_equal(res.eval_steps, [0, 20, 40])
    assert doc["timing"]["compile_s"] >= 0 and doc["timing"]["train_s"] > 0  # 0: the compilation cache hit
    for fig in ("snapshots.png", "final_fit.png", "mse_curves.png"):
        assert (out / fig).stat().st_size > 1000
    assert not list(out.glob(".*tmp"))  # no temporary files left behind


# Flags keep their meaning after validation: the saved arrays are those of the values given.


def test_compare_lr_flag_is_the_lr_trained(tmp_path):
    out = tmp_path / "run"
    compare.main([*TINY, "--optimizers", "sgd,adam", "--lr", "0.05", "--seeds", "2", "--out", str(out)])
    res, _ = load_result(out)
    for opt in res.config.optimizers:
        assert opt.grid()["lr"] == (0.05,), opt
        np.testing.assert_allclose(res.grid[opt.name]["lr"], [0.05], rtol=1e-7)
        assert res.mse_EHS[opt.name].shape == (3, 1, 2)


def test_compare_dtype_float64_writes_float64_results(tmp_path):
    """A subprocess: float64 switches on JAX's x64 mode for the whole process."""
    out = tmp_path / "run"
    run_script(*TINY, "--optimizers", "adam", "--dtype", "float64", "--out", str(out))
    assert_float64(load_result(out)[0], "adam")


def test_study_lrs_and_dtype_flags_are_what_is_trained(tmp_path):
    out = tmp_path / "study"
    lrs = (0.003, 0.03, 0.3)
    flags = ["--optimizers", "sgd,adam", "--lrs", ",".join(map(str, lrs)), "--seeds", "2", "--dtype", "float64"]
    run_script(*TINY, *flags, "--out", str(out), script="study.py")
    res, _ = load_result(out)
    for opt in res.config.optimizers:
        assert opt.grid()["lr"] == lrs, opt
        np.testing.assert_allclose(res.grid[opt.name]["lr"], lrs, rtol=1e-7)
        mse_EHS = res.mse_EHS[opt.name]
        assert mse_EHS.shape == (3, 3, 2)
        assert len({float(m) for m in mse_EHS[-1, :, 0]}) == 3, mse_EHS[-1]  # three lrs, three outcomes
        assert_float64(res, opt.name)


def assert_float64(res, name: str) -> None:
    assert res.config.train.dtype == "float64"
    arrays = {"x_N": res.x_N, "y_N": res.y_N, "mse_EHS": res.mse_EHS[name], "pred_EHN": res.pred_EHN[name]}
    assert {k: a.dtype for k, a in arrays.items()} == {k: np.dtype("float64") for k in arrays}


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
# Every valid name excluded: "lion" is a valid --optimizers value and "sin" a valid --target.
bad_names = st.text("abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=8).filter(
    lambda s: s not in OPTIMIZERS and s not in TARGETS
)
BAD = {
    "--iters": bad_ints,
    "--batch-size": bad_ints,
    "--eval-every": bad_ints,
    "--n-data": bad_ints,
    "--n-val": bad_ints,
    "--n-test": bad_ints,
    "--seeds": bad_ints,
    "--lr": bad_floats,
    "--hidden": bad_hidden,
    "--optimizers": bad_names,
    "--target": bad_names,
    "--seed": st.integers(max_value=-1),
}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(flag=st.sampled_from(sorted(BAD)), data=st.data())
def test_random_bad_input_property(flag, data, usage_error, tmp_path):
    value = str(data.draw(BAD[flag]))
    err = usage_error(compare, [f"{flag}={value}", "--out", str(tmp_path / "never")])
    assert flag in err, (flag, value, err)
    assert not (tmp_path / "never").exists()

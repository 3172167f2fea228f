"""Unattended sweeps (issue 9): bad values of every kind end as one clear line before anything
compiles, output directories have one writer, memory is budgeted, values keep their meaning."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from jaxopt_cmp.budget import ONCE, check_budget, estimate_bytes
from jaxopt_cmp.checks import ConfigError
from jaxopt_cmp.config import DataConfig, ModelConfig, OptimizerConfig, StudyConfig, TrainConfig, seed_study
from jaxopt_cmp.data import Data, load_data_file
from jaxopt_cmp.io import claim_out_dir, unique_run_dir
from jaxopt_cmp.results import OUTPUTS, ResultsError, load_result, save_result
from jaxopt_cmp.study import prepare_study, run_study

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import compare  # noqa: E402
import study  # noqa: E402

TINY = "--iters 20 --eval-every 10 --n-data 128 --batch-size 16 --hidden 8".split()


def tiny(**kw) -> StudyConfig:
    return seed_study(**{"iters": 20, "eval_every": 10, "n_data": 128, "batch_size": 16, "hidden": (8,), **kw})


# --- resources: refused before compiling, with the estimate -------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["--iters", str(2**31 - 1), "--eval-every", "1"],  # 2e9 evaluations of history
        ["--n-data", str(10**9)],
        ["--hidden", "100000,100000"],  # 1e10 parameters: XLA aborted natively before
        ["--hidden", "100000", "--max-memory", "4"],  # ~8 GB of evaluation activations
        ["--seeds", str(10**7)],
    ],
)
def test_configs_over_the_memory_budget_are_refused_with_the_estimate(usage_error, argv, tmp_path):
    err = usage_error(compare, [*argv, "--out", str(tmp_path / "o"), "--no-plots"])
    assert "--max-memory=" in err and "needs about" in err and "GB" in err


def test_the_library_refuses_a_config_over_the_memory_budget():
    """The scripts check first (with their figures); the library refuses on its own too, before
    compiling: 8,001 evaluations of 3 optimizers need 1.5 GB (issue 30)."""
    cfg = seed_study(iters=8000, eval_every=1, n_data=100, hidden=(8,))
    with pytest.raises(ConfigError, match=r"needs about .* \(evaluations 1\.54 GB"):
        prepare_study(cfg, max_bytes=0.3e9)


def test_iteration_count_is_bounded_by_the_int32_step_counter(usage_error, tmp_path):
    err = usage_error(compare, ["--iters", str(10**12), "--out", str(tmp_path / "o")])
    assert err.startswith("compare.py: error: --iters=1000000000000 is not allowed")


def test_max_memory_flag_refuses_a_small_study():
    cfg = tiny(seeds=4)
    need = sum(estimate_bytes(cfg).values())
    check_budget(cfg, need * 1.01)
    with pytest.raises(ConfigError, match="needs about"):
        check_budget(cfg, need * 0.99)
    state = need - sum(estimate_bytes(cfg)[k] for k in ONCE)  # what every lane holds a copy of
    with pytest.raises(ConfigError, match="2 copies, one per lane"):  # a study in lanes: one copy per lane
        check_budget(cfg, need + 0.99 * state, copies=2)


def test_memory_estimate_grows_with_the_evaluations_only_in_history_and_outputs():
    """Batches are drawn inside each step, so only the history and the arrays each evaluation
    returns (issue 30) depend on the evaluations."""
    few, many = (estimate_bytes(seed_study(iters=200_000, eval_every=e, seeds=16)) for e in (200_000, 1000))
    grow = ("history", "evaluations")
    assert {k: v for k, v in few.items() if k not in grow} == {k: v for k, v in many.items() if k not in grow}
    assert all(few[k] < many[k] for k in grow)


# --- one writer per output directory ---------------------------------------------------------


def test_a_claimed_directory_refuses_a_second_writer(tmp_path):
    with claim_out_dir(tmp_path / "o"):
        with pytest.raises(ConfigError, match="another run is writing"):
            claim_out_dir(tmp_path / "o", overwrite=True)
    claim_out_dir(tmp_path / "o").release()  # released: free again (the lock file is gone)


def test_second_process_into_the_same_directory_fails_with_one_line(tmp_path, usage_error):
    """Another process holds the directory; this one (compare.py's main, as run) is refused."""
    out = tmp_path / "o"
    code = (
        f"from jaxopt_cmp.io import claim_out_dir; import time; d = claim_out_dir({str(out)!r}); "
        "print('ok', flush=True); time.sleep(60)"
    )
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ok"
        assert "another run is writing" in usage_error(compare, [*TINY, "--overwrite", "--out", str(out)])
    finally:
        holder.kill()


def test_default_directory_names_differ_between_processes(tmp_path):
    a = unique_run_dir(tmp_path, "compare")
    code = f"from jaxopt_cmp.io import unique_run_dir; print(unique_run_dir({str(tmp_path)!r}, 'compare'))"
    b = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert str(a) != b and a.parent == Path(b).parent


def test_overwrite_removes_the_previous_runs_outputs_only(tmp_path):
    out = tmp_path / "o"
    out.mkdir()
    for name in ("results.json", "snapshots.png", "fits.gif", "notes.txt"):
        (out / name).write_text("old")
    with pytest.raises(ConfigError, match="not empty"):
        claim_out_dir(out)
    with claim_out_dir(out, overwrite=True, outputs=OUTPUTS):
        assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == ["notes.txt"]


def test_interrupt_after_saving_says_results_were_written(tmp_path, monkeypatch, capsys):
    out = tmp_path / "o"

    def interrupted(result, out_dir, data=None):
        raise KeyboardInterrupt

    monkeypatch.setattr(compare, "write_figures", interrupted)
    monkeypatch.setattr(os, "_exit", lambda code: (_ for _ in ()).throw(SystemExit(code)))
    with pytest.raises(SystemExit) as exc:
        compare._cli.run_main(compare.PROG, lambda: compare.main([*TINY, "--out", str(out)]))
    assert exc.value.code == 130
    err = capsys.readouterr().err
    assert f"results were written to {out / 'results.json'}" in err and "no new results.json" not in err
    compare._cli.State.results = None


# --- values keep their meaning ------------------------------------------------------------------


def test_seed_range_is_bounded_to_what_jax_keys_hold(usage_error, tmp_path):
    err = usage_error(compare, ["--seed", str(2**32), "--out", str(tmp_path / "o")])
    assert "--seed=4294967296" in err and "[0, 4294967295]" in err
    StudyConfig(seed=2**32 - 1)
    with pytest.raises(ConfigError):
        StudyConfig(seed=2**64)


def test_float64_without_x64_is_refused_not_silently_float32():
    if jax.config.jax_enable_x64:
        pytest.skip("x64 already on in this process")
    with pytest.raises(ConfigError, match="x64"):
        prepare_study(tiny(dtype="float64"))


@pytest.mark.parametrize("lr, ok64", [(1e-320, False), (1e308, True), (1e39, True), (1e-40, True)])
def test_hyperparameters_must_survive_the_cast_to_the_run_dtype(lr, ok64):
    """lr 1e-320 is 0 (or subnormal) and 1e39 inf in float32: refused, not trained as 0 / inf."""
    with pytest.raises(ConfigError, match="float32"):
        tiny(optimizers=("sgd",), lr=lr)
    if ok64:
        tiny(optimizers=("sgd",), lr=lr, dtype="float64")  # representable there


@pytest.mark.parametrize(
    "content, suffix, match",
    [
        ("1,2\n3,1e39\n", ".csv", "inf value"),  # finite in float64, inf in float32
        ("", ".csv", "no rows"),
        (None, ".NPZ", "complex"),
        ("a,b\nc,d\n", ".CSV", "two numeric columns"),
    ],
)
def test_user_data_is_checked_by_kind_and_after_the_cast(tmp_path, content, suffix, match):
    path = tmp_path / f"d{suffix}"
    if content is None:
        np.savez(path, x=np.arange(4.0), y=np.arange(4.0) * 1j)
        path = next(tmp_path.glob("d*"))
    else:
        path.write_text(content)
    with pytest.raises(ConfigError, match=match):
        load_data_file(str(path), "float32")


def test_uppercase_suffixes_are_recognised(tmp_path):
    np.savez(tmp_path / "d.npz", x=np.linspace(-1, 1, 32), y=np.zeros(32))
    (tmp_path / "d.npz").rename(tmp_path / "D.NPZ")
    assert load_data_file(str(tmp_path / "D.NPZ")).x.shape == (32, 1)


def test_empty_npz_names_the_data_flag(usage_error, tmp_path):
    np.savez(tmp_path / "e.npz", x=np.zeros(0), y=np.zeros(0))
    err = usage_error(compare, ["--data", str(tmp_path / "e.npz"), "--out", str(tmp_path / "o")])
    assert err.startswith("compare.py: error: --data=")


def test_library_checks_user_data_like_the_cli():
    x = np.linspace(-1, 1, 128)
    y = np.sin(x)
    y[3] = np.nan
    with pytest.raises(ConfigError, match="NaN"):
        run_study(tiny(), data=Data(x[:, None], y[:, None]))


def test_study_lrs_errors_name_the_lrs_flag(usage_error, tmp_path):
    err = usage_error(study, ["--lrs", "0.1,-1", "--out", str(tmp_path / "o")])
    assert err.startswith("study.py: error: --lrs=")


# --- API strictness: what a numpy user passes is accepted, the rest refused -----------------


def test_numpy_scalars_are_accepted_as_plain_values():
    cfg = StudyConfig(
        optimizers=[OptimizerConfig.make("sgd", lr=np.float32(0.01))],
        train=TrainConfig(iters=np.int64(20), eval_every=np.int32(10), batch_size=16),
        data=DataConfig(n_data=np.int64(128)),
        seeds=np.int64(2),
    )
    assert type(cfg.train.iters) is int and type(cfg.seeds) is int and type(cfg.optimizers[0].hparams[0][1][0]) is float
    json.dumps(cfg.train.__dict__)


def test_optimizer_names_and_a_single_config_are_accepted():
    assert StudyConfig(optimizers=["adam"]).optimizer_names == ("adam",)
    assert StudyConfig(optimizers=OptimizerConfig.make("sgd")).optimizer_names == ("sgd",)
    with pytest.raises(ConfigError):
        StudyConfig(optimizers=[3])


def test_model_and_flags_that_cannot_run_are_refused():
    with pytest.raises(ConfigError, match="xdim"):
        prepare_study(tiny(xdim=2))
    with pytest.raises(ConfigError, match="ydim"):
        ModelConfig(ydim=2)
    with pytest.raises(ConfigError, match="record_predictions"):
        StudyConfig(record_predictions="yes")


# --- saved results: anything inconsistent is a ResultsError ----------------------------------


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    out = tmp_path_factory.mktemp("saved")
    save_result(run_study(tiny(seeds=2)), out)
    return out


def _edit_arrays(src: Path, dst: Path, key: str, value) -> Path:
    import shutil

    shutil.copytree(src, dst)
    with np.load(dst / "arrays.npz") as z:
        arrays = dict(z)
    arrays[key] = value
    np.savez(dst / "arrays.npz", **arrays)
    return dst


@pytest.mark.parametrize(
    "key, value",
    [
        ("mse_EHS/adam", np.zeros((3, 1, 5))),  # wrong seed count
        ("mse_EHS/sgd", np.zeros((2, 1, 2))),  # wrong eval count
        ("pred_EHN/adam", np.zeros((3, 1, 7))),  # wrong data size
        ("x_N", np.zeros(5)),
    ],
)
def test_arrays_disagreeing_with_the_config_are_refused(saved, tmp_path, key, value):
    with pytest.raises(ResultsError, match="inconsistent"):
        load_result(_edit_arrays(saved, tmp_path / "bad", key, value))


def test_a_file_or_a_directory_named_results_json_is_a_results_error(saved, tmp_path):
    with pytest.raises(ResultsError):
        load_result(saved / "results.json")
    (tmp_path / "results.json").mkdir()
    with pytest.raises(ResultsError):
        load_result(tmp_path)


# --- the environment: one line, non-zero, files intact -----------------------------------------


def test_full_disk_is_one_line(tmp_path, monkeypatch, capsys):
    import jaxopt_cmp.results as results

    def full(path, payload):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(results, "atomic_write_bytes", full)
    with pytest.raises(SystemExit) as exc:
        compare._cli.run_main(compare.PROG, lambda: compare.main([*TINY, "--no-plots", "--out", str(tmp_path / "o")]))
    last = capsys.readouterr().err.strip().splitlines()[-1]  # after the progress bar
    assert exc.value.code == 1 and last.startswith("compare.py: error:") and "no space left on device" in last


def test_too_long_output_name_is_a_usage_error(usage_error, tmp_path):
    err = usage_error(compare, ["--out", str(tmp_path / ("x" * 300)), *TINY])
    assert "--out=" in err and "name too long" in err


def test_closed_pipe_ends_quietly(tmp_path):
    """``compare.py | head -1``: the reader is gone before the tables are printed."""
    args = " ".join([*TINY, "--no-plots", "--out", str(tmp_path / "o")])
    cmd = f"{sys.executable} scripts/compare.py {args} | head -1"
    proc = subprocess.run(["bash", "-o", "pipefail", "-c", cmd], capture_output=True, text=True, cwd=ROOT)
    assert "Traceback" not in proc.stderr and "Exception ignored" not in proc.stderr, proc.stderr
    assert proc.stdout.startswith("output directory") and proc.returncode == 1

"""``scripts/validate.py`` and ``torch_ref/validation.py``: the quick run passes and writes its
report; a wrong mapping fails it; bad flags exit 2 with one line. (Its TOST: tests/test_stats.py.)"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import validate  # noqa: E402

from torch_ref import optimizers as topt  # noqa: E402
from torch_ref import parity, validation  # noqa: E402

QUICK_NAMES = ["nadam", "lion"]  # a reimplementation and a reference implementation


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("validate")
    args = ["--quick", "--optimizers", ",".join(QUICK_NAMES), "--out", str(out), "--overwrite"]
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "validate.py"), *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
    )
    return proc, out


def test_quick_run_passes_and_writes_json_and_markdown(quick_run):
    proc, out = quick_run
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert sorted(p.name for p in out.iterdir()) == ["validation.json", "validation.md"]  # no temp files
    report = json.loads((out / "validation.json").read_text())
    assert report["schema"] == validation.SCHEMA and report["passed"] is True
    assert report["matmul_precision"] == "highest"
    assert {"jax", "optax", "torch", "device"} <= set(report["versions"])
    assert [m["dtype"] for m in report["model"]] == ["float64", "float32"]
    rows = report["optimizers"]
    assert [r["name"] for r in rows] == QUICK_NAMES
    for r in rows:
        assert r["steps"] == validation.QUICK["steps"] and r["passed"] and r["streams"] == len(parity.F32_STREAMS)
        assert r["f64_max_deviation"] <= parity.F64_TOL and r["f32_gap"] <= parity.K_F32 * r["f32_floor"]
        assert 1 <= r["f32_drift_ratio"] <= parity.K_DRIFT
        assert r["parity"] in ("reimplementation", "reference") and r["torch"] and r["note"]
    study = report["study"]
    assert study["seeds"] == validation.QUICK["seeds"] and [r["name"] for r in study["rows"]] == QUICK_NAMES
    for r in study["rows"]:
        assert len(r["jax_final_mse"]) == len(r["torch_final_mse"]) == study["seeds"]
        assert 1 / 1.25 < r["ci90"][0] <= r["ratio"] <= r["ci90"][1] < 1.25 and r["p_value"] < 0.05
    text = (out / "validation.md").read_text()
    assert text.startswith("# JAX vs PyTorch validation\n\nPASSED")
    assert "| optimizer | torch counterpart | parity |" in text  # the README table
    assert all(f"| `{n}` |" in text for n in QUICK_NAMES) and "## Whole runs" in text
    assert "PASSED" in proc.stdout and str(out / "validation.json") in proc.stdout


def test_a_wrong_mapping_fails_the_run_with_status_1(monkeypatch, tmp_path, capsys):
    """Negative control: torch's Adam handed eps 1e-6 for the registry's 1e-8."""
    kwargs = lambda lr, beta1, beta2, eps: {"lr": lr, "betas": (beta1, beta2), "eps": 100 * eps}
    wrong = topt.TorchOptimizerDef("adam", topt.torch.optim.Adam, kwargs)
    monkeypatch.setitem(topt.TORCH_OPTIMIZERS, "adam", wrong)
    status = validate.main(["--quick", "--optimizers", "adam", "--skip-study", "--out", str(tmp_path)])
    assert status == 1
    report = json.loads((tmp_path / "validation.json").read_text())
    (row,) = report["optimizers"]
    assert report["passed"] is False and report["study"] is None
    assert not row["f64_passed"] and row["f64_max_deviation"] > 1e-6  # measured 1e-4 (1e6 x the tolerance)
    assert "FAILED: adam" in capsys.readouterr().err
    assert "**FAIL**" in (tmp_path / "validation.md").read_text()


@pytest.mark.parametrize(
    "argv, flag",
    [
        (["--steps", "0"], "--steps"),
        (["--optimizers", "adam,nope"], "--optimizers"),
        (["--seeds", "1"], "--seeds"),
        (["--margin", "1"], "--margin"),
        (["--tolerance-scale", "-1"], "--tolerance-scale"),
        (["--batch-size", "600", "--quick"], "--batch-size"),
        (["--no-such-flag"], "--no-such-flag"),
        (["--max-memory", "0"], "--max-memory"),
        # Issue 20: 200,000 steps passed 6 GB in 22 s; the estimate (1 x 200,000 x 4,353 x 12 B
        # per framework, ~21 GB) is refused against a 1 GB budget before any work.
        (["--steps", "200000", "--optimizers", "adam", "--max-memory", "1"], "--max-memory"),
    ],
)
def test_bad_flags_exit_2_with_one_line(argv, flag, tmp_path, usage_error):
    err = usage_error(validate, [*argv, "--out", str(tmp_path / "out")])
    assert flag in err
    assert not (tmp_path / "out").exists()  # stopped before any work

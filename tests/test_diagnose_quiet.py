"""Diagnostics of diverged runs are reported without numpy warnings on stderr (issue 30, item 14):
the library never prints, and a diverged run's inf/NaN history is summarised as null, not warned
about."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from jaxopt_cmp.config import seed_study
from jaxopt_cmp.diagnostics import run_diagnostics
from jaxopt_cmp.diagnostics_report import diagnostics_figures, diagnostics_summary, findings_markdown


@pytest.fixture(scope="module")
def diverged():
    """sgd at lr 50 diverges on every seed; adam at lr 0.01 does not (two grid points each)."""
    cfg = seed_study(optimizers=("sgd", "adam"), lr=[50.0, 0.01], iters=20, eval_every=10, n_data=128,
                     batch_size=16, hidden=(8,), seeds=2, record_predictions=False)  # fmt: skip
    return run_diagnostics(cfg, spectrum_at=1, subsample=128, lanczos_iters=4)


def test_a_diverged_run_is_reported_without_warnings(diverged):
    mse = diverged.runs["sgd"].mse_EHS
    assert not np.isfinite(mse[-1, 0]).any() and np.isfinite(diverged.runs["adam"].mse_EHS[-1]).all()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        summary = diagnostics_summary(diverged)
        text = findings_markdown(summary)
        figures = diagnostics_figures(diverged)
    assert summary["optimizers"]["sgd"][0]["history"]["drop_per_step"][-1] is None  # inf - inf: null
    assert "sgd" in text and figures
    assert np.geterr()["invalid"] == "warn"  # the caller's numpy settings are left as they were

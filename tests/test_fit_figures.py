"""Fit figures of problems whose inputs are not 1-D (jaxopt_cmp.suite_figures.fit_figures, drawn by
compare.py, study.py and suite.py): what each panel shows is the model the study selected, on the
set it names. Checked by reading the drawn arrays back and recomputing the study's own numbers
from them: a 2-D map's error panel must give the test MSE the study recorded for that optimizer,
grid point and seed 0; a scatter must give the held-out test MSE (live) or the training MSE
(loaded, from saved predictions). float32 runs; the figures' means are over <= 310 values in
another order than the engine's, so they agree to ~1e-6 relative: rtol 1e-4 leaves room and
still fails for any other grid point, seed or set (their MSEs differ by far more)."""

from __future__ import annotations

import numpy as np
import pytest

from jaxopt_cmp import figures
from jaxopt_cmp.config import OptimizerConfig
from jaxopt_cmp.problems import get_problem
from jaxopt_cmp.results import load_result, save_result
from jaxopt_cmp.study import run_study
from tests.test_cli import run_script

SIZES = dict(iters=20, eval_every=10, seeds=2, hidden=(8,), batch_size=16)


def _study(name: str):
    opts = (OptimizerConfig.make("sgd", lr=[0.01, 0.5]), OptimizerConfig.make("adam", lr=[0.5, 0.01]))
    problem = get_problem(name)
    extra = {} if problem.tabular else dict(n_data=64, n_val=16, n_test=16)
    cfg = problem.study(optimizers=opts, **SIZES, **extra)
    data = problem.load(cfg)
    return run_study(cfg, data=data), data


@pytest.fixture(scope="module")
def franke():
    return _study("franke")


@pytest.fixture(scope="module")
def diabetes():
    return _study("diabetes")


def _best(result) -> dict[str, int]:
    """Not grid point 0 for either optimizer: a figure that ignores ``best`` draws another model."""
    return {"sgd": 1, "adam": 1}


def test_franke_maps_show_the_selected_models_on_the_test_grid(franke):
    result, _ = franke
    figs = figures.study_figures(result, _best(result))
    assert "surface_maps.png" in figs and not {"snapshots_best.png", "final_fit.png"} & set(figs)
    axes = figs["surface_maps.png"].axes
    cols = len(result.config.optimizer_names) + 1
    target = axes[0].images[0].get_array().ravel()
    assert len(target) == 16  # the 4 x 4 test grid, not the 64 training points
    for o, name in enumerate(result.config.optimizer_names, start=1):
        err = np.asarray(axes[cols + o].images[0].get_array().ravel(), np.float64)
        recorded = result.heldout("test", name)[-1, _best(result)[name], 0]
        np.testing.assert_allclose(np.mean(err**2), recorded, rtol=1e-4)
        pred = np.asarray(axes[o].images[0].get_array().ravel(), np.float64)
        np.testing.assert_allclose(pred - target, err, atol=1e-6)


def test_tabular_scatter_is_the_test_rows_of_the_selected_models(diabetes):
    result, data = diabetes
    figs = figures.compare_figures(result, data)
    assert "predicted_vs_actual.png" in figs and "final_fit.png" not in figs
    for ax, name in zip(figs["predicted_vs_actual.png"].axes, result.config.optimizer_names, strict=True):
        actual, pred = np.asarray(ax.collections[0].get_offsets(), np.float64).T
        assert len(actual) == 88  # diabetes' 20% test rows
        np.testing.assert_allclose(np.mean((pred - actual) ** 2), result.heldout("test", name)[-1, 0, 0], rtol=1e-4)
    assert "88 test rows" in figs["predicted_vs_actual.png"].texts[0].get_text()


def test_a_loaded_study_draws_its_saved_predictions(franke, tmp_path):
    result, _ = franke
    save_result(result, tmp_path)
    loaded, _ = load_result(tmp_path)
    figs = figures.study_figures(loaded, _best(loaded))
    assert "surface_maps.png" not in figs  # inputs past the first column are not saved
    for ax, name in zip(figs["predicted_vs_actual.png"].axes, loaded.config.optimizer_names, strict=True):
        actual, pred = np.asarray(ax.collections[0].get_offsets(), np.float64).T
        assert len(actual) == 64
        np.testing.assert_allclose(np.mean((pred - actual) ** 2), loaded.mse_EHS[name][-1, 1, 0], rtol=1e-4)


def test_1d_fit_figures_refuse_other_inputs(franke):
    result, _ = franke
    for draw in (figures.plot_final_fit, figures.plot_snapshots):
        with pytest.raises(ValueError, match="xdim 2"):
            draw(result)


def test_compare_script_draws_the_figure_that_suits_the_problem(tmp_path):
    # study.py and suite.py draw through the same figures.fit_figures (suite: tests/test_suite.py)
    common = ("--iters", "20", "--eval-every", "10", "--hidden", "8", "--n-test", "16", "--n-val", "16")
    run_script("--problem", "franke", "--n-data", "64", *common, "--out", str(tmp_path / "c"), script="compare.py")
    written = {p.name for p in (tmp_path / "c").iterdir()}
    assert "surface_maps.png" in written and not {"snapshots.png", "final_fit.png", "fits.gif"} & written

"""Hyperparameters are checked as they will run (issue 30, item 2): a value that rounds to a
bound of its interval in the run's dtype (``momentum=0.999999999`` is 1.0 in float32) is refused,
whether a grid gives it, a search draws it or a registered default holds it."""

from __future__ import annotations

import sys
from pathlib import Path

import optax
import pytest

from jaxopt_cmp.checks import ConfigError
from jaxopt_cmp.config import OptimizerConfig, seed_study
from jaxopt_cmp.optimizers import OPTIMIZERS, POSITIVE, UNIT, register_optimizer

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import study  # noqa: E402

TINY = {"iters": 4, "eval_every": 2, "n_data": 64, "batch_size": 8, "hidden": (4,)}


@pytest.mark.parametrize(
    ("name", "key", "value"), [("momentum", "momentum", 0.999999999), ("adam", "beta2", 0.99999999)]
)
def test_a_grid_value_that_rounds_to_a_bound_is_refused(name, key, value):
    opt = OptimizerConfig.make(name, lr=[0.1, 0.01], **{key: value})
    with pytest.raises(ConfigError, match=rf"^{key}=.* runs as 1\.0 in float32; expected .* \[0\.0, 1\.0\)"):
        seed_study(optimizers=(opt,), **TINY)
    cfg = seed_study(optimizers=(opt,), dtype="float64", **TINY)  # 1 - 1e-9 is below 1 in float64
    assert dict(cfg.optimizers[0].hparams)[key] == (value, value)


def test_a_default_that_rounds_to_a_bound_is_refused():
    name = "w30_rounded_default"
    try:
        build = lambda lr, momentum: optax.sgd(lr, momentum)
        register_optimizer(name, build, {"lr": 0.1, "momentum": 0.999999999}, {"lr": POSITIVE, "momentum": UNIT})
        with pytest.raises(ConfigError, match=rf"^{name} default momentum=.* runs as 1\.0 in float32"):
            seed_study(optimizers=(name,), **TINY)
    finally:
        OPTIMIZERS.pop(name, None)


def test_a_search_space_that_rounds_to_a_bound_is_one_line_before_compiling(usage_error, tmp_path):
    argv = [
        "--optimizers", "adam", "--search", "random", "--trials", "2", "--space", "beta2=1-loguniform(1e-10,1e-9)",
        "--iters", "4", "--eval-every", "2", "--n-data", "64", "--batch-size", "8", "--hidden", "4",
        "--seeds", "1", "--no-plots", "--out", str(tmp_path / "o"),
    ]  # fmt: skip
    err = usage_error(study, argv)
    assert "beta2=" in err and "runs as 1.0 in float32" in err
    assert not (tmp_path / "o").exists()

"""A saved result is what was saved, in any process (issue 30, item 4): loading it takes no
hyperparameter from today's registry, even where a default was re-registered since."""

from __future__ import annotations

import numpy as np
import optax
import pytest

from jaxopt_cmp.config import OptimizerConfig, seed_study
from jaxopt_cmp.optimizers import OPTIMIZERS, POSITIVE, UNIT, register_optimizer
from jaxopt_cmp.results import load_result, save_result
from jaxopt_cmp.study import run_study

NAME = "w30_saved_defaults"


def _register(momentum: float, replace: bool = False, **extra) -> None:
    build = lambda lr, momentum: optax.sgd(lr, momentum)
    if extra:
        build = lambda lr, momentum, dampening: optax.sgd(lr, momentum)
    defaults = {"lr": 0.1, "momentum": momentum, **extra}
    bounds = {k: POSITIVE if k == "lr" else UNIT for k in defaults}
    register_optimizer(NAME, build, defaults, bounds, replace=replace)


@pytest.fixture
def saved(tmp_path):
    _register(0.5)
    cfg = seed_study(optimizers=(OptimizerConfig.make(NAME, lr=[0.1, 0.05]),), iters=4, eval_every=2, n_data=64,
                     batch_size=8, hidden=(4,))  # fmt: skip
    result = run_study(cfg)
    save_result(result, tmp_path)
    yield result, tmp_path
    OPTIMIZERS.pop(NAME, None)


def test_a_re_registered_default_does_not_change_a_loaded_result(saved):
    result, out = saved
    _register(0.95, replace=True)
    back, _ = load_result(out)
    assert back.config.optimizers[0].grid()["momentum"] == (0.5, 0.5)
    assert back.grid[NAME]["momentum"].tolist() == [0.5, 0.5]
    again = run_study(back.config)  # trains what was saved, not today's default
    np.testing.assert_array_equal(again.mse_EHS[NAME], result.mse_EHS[NAME])


def test_an_unchanged_registry_loads_the_config_that_was_saved(saved):
    result, out = saved
    assert load_result(out)[0].config == result.config


def test_a_registry_row_with_other_hyperparameters_still_loads(saved):
    _, out = saved
    _register(0.95, replace=True, dampening=0.0)
    back, _ = load_result(out)  # loaded as saved (like an unregistered optimizer), not refused
    assert dict(back.config.optimizers[0].hparams) == {"lr": (0.1, 0.05), "momentum": (0.5, 0.5)}
    assert {k: v.tolist() for k, v in back.grid[NAME].items()} == {"lr": [0.1, 0.05], "momentum": [0.5, 0.5]}

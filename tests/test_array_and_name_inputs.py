"""The library takes what a notebook user passes (issue 30, item 13): an array is a grid axis like
a list, and one optimizer's name is that optimizer, not its letters."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from jaxopt_cmp.checks import ConfigError
from jaxopt_cmp.config import OptimizerConfig, seed_study


@pytest.mark.parametrize("make", [np.asarray, lambda v: np.asarray(v, np.float64)[:, None][:, 0], list, tuple])
def test_an_array_is_a_grid_axis_like_a_list(make):
    lrs = np.logspace(-4, -1, 4)
    opt = OptimizerConfig.make("adam", lr=make(lrs), beta1=0.8)
    assert opt.grid()["lr"] == tuple(lrs.tolist()) and opt.grid()["beta1"] == (0.8,) * 4


def test_a_jax_array_is_a_grid_axis_and_a_bad_one_is_named():
    assert OptimizerConfig.make("sgd", lr=jnp.array([0.5, 0.25])).grid()["lr"] == (0.5, 0.25)
    with pytest.raises(ConfigError, match=r"^lr="):
        OptimizerConfig.make("sgd", lr=np.array([0.1, -1.0]))


def test_one_name_is_one_optimizer():
    cfg = seed_study(optimizers="adam", lr=np.array([1e-3, 1e-2]), iters=4, eval_every=2)
    assert cfg.optimizer_names == ("adam",) and cfg.optimizers[0].grid()["lr"] == (1e-3, 1e-2)
    with pytest.raises(ConfigError, match=r"^optimizer='nope' is not allowed"):
        seed_study(optimizers="nope")

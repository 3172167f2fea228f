"""Config validation (the layer every script and the library share) and user-supplied data."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxopt_cmp.checks import ConfigError
from jaxopt_cmp.config import (
    DataConfig,
    ModelConfig,
    OptimizerConfig,
    StudyConfig,
    TrainConfig,
    study_from_dict,
    to_dict,
)
from jaxopt_cmp.data import data_from_arrays, load_data_file
from jaxopt_cmp.optimizers import OPTIMIZERS
from jaxopt_cmp.study import run_study
from jaxopt_cmp.targets import TARGETS


def test_defaults_are_the_seed_study():
    cfg = StudyConfig()
    assert cfg.optimizer_names == ("sgd", "momentum", "adam")
    assert all(o.grid()["lr"] == (0.01,) for o in cfg.optimizers)
    assert cfg.optimizers[1].grid()["momentum"] == (0.9,)
    assert (cfg.data.n_data, cfg.model.hidden, cfg.train.iters, cfg.train.batch_size) == (10_000, (64, 64), 10_000, 64)


def test_round_trip_through_dict():
    cfg = StudyConfig(optimizers=(OptimizerConfig.make("adam", lr=[1e-3, 1e-2], beta1=[0.8, 0.9]),), seeds=3)
    assert study_from_dict(to_dict(cfg)) == cfg
    assert hash(cfg) == hash(study_from_dict(to_dict(cfg)))  # usable as a static jit argument


# Each entry: a function building a config from one drawn bad value, and the setting it must name.
BAD = {
    "iters": (st.integers(max_value=0), lambda v: TrainConfig(iters=v)),
    "batch_size": (st.integers(max_value=0), lambda v: TrainConfig(batch_size=v)),
    "eval_every": (st.integers(max_value=0), lambda v: TrainConfig(eval_every=v)),
    "n_data": (st.integers(max_value=0), lambda v: DataConfig(n_data=v)),
    "seeds": (st.integers(max_value=0), lambda v: StudyConfig(seeds=v)),
    "seed": (st.integers(max_value=-1), lambda v: StudyConfig(seed=v)),
    "hidden": (st.lists(st.integers(max_value=0), max_size=3), lambda v: ModelConfig(hidden=tuple(v))),
    "lr": (
        st.one_of(st.floats(max_value=0), st.sampled_from([math.nan, math.inf])),
        lambda v: OptimizerConfig.make("sgd", lr=v),
    ),
    "momentum": (
        st.one_of(st.floats(min_value=1.0), st.floats(max_value=-1e-9), st.just(math.nan)),
        lambda v: OptimizerConfig.make("momentum", momentum=v),
    ),
    "beta1": (
        st.one_of(st.floats(min_value=1.0), st.floats(max_value=-1e-9)),
        lambda v: OptimizerConfig.make("adam", beta1=v),
    ),
    "beta2": (
        st.one_of(st.floats(min_value=1.0), st.floats(max_value=-1e-9)),
        lambda v: OptimizerConfig.make("adam", beta2=v),
    ),
    "optimizer": (
        st.text(min_size=1, max_size=6).filter(lambda s: s not in OPTIMIZERS),  # "lion" is valid
        lambda v: OptimizerConfig.make(v),
    ),
    "target": (st.text(max_size=6).filter(lambda s: s not in TARGETS), lambda v: DataConfig(target=v)),
    "dtype": (st.text(max_size=8).filter(lambda s: s not in {"float32", "float64"}), lambda v: TrainConfig(dtype=v)),
}


@settings(max_examples=200, deadline=None)
@given(setting=st.sampled_from(sorted(BAD)), data=st.data())
def test_random_bad_configs_raise_config_error_naming_setting(setting, data):
    strategy, build = BAD[setting]
    value = data.draw(strategy)
    with pytest.raises(ConfigError) as exc:
        build(value)
    assert exc.value.setting == setting, (setting, value, exc.value)
    assert "expected" in str(exc.value)


def test_make_uses_a_single_value_at_every_grid_point():
    """The README's notebook example: one momentum for a two-point lr grid."""
    cfg = OptimizerConfig.make("momentum", lr=[1e-2, 3e-2], momentum=0.9)
    assert cfg.grid_size == 2
    assert cfg.grid() == {"lr": (1e-2, 3e-2), "momentum": (0.9, 0.9)}
    three = OptimizerConfig.make("adam", beta1=[0.8, 0.85, 0.9], lr=1e-3, eps=1e-6)
    assert three.grid()["lr"] == (1e-3,) * 3 and three.grid()["eps"] == (1e-6,) * 3
    assert OptimizerConfig.make("adam", lr=1e-3).grid()["lr"] == (1e-3,)
    with pytest.raises(ConfigError, match="momentum"):  # a broadcast value is still checked
        OptimizerConfig.make("momentum", lr=[1e-2, 3e-2], momentum=1.5)


def test_batch_larger_than_data_and_duplicate_optimizers():
    with pytest.raises(ConfigError, match="batch_size"):
        StudyConfig(data=DataConfig(n_data=32), train=TrainConfig(batch_size=64))
    with pytest.raises(ConfigError, match="at most once"):
        StudyConfig(optimizers=(OptimizerConfig.make("sgd"), OptimizerConfig.make("sgd")))
    with pytest.raises(ConfigError, match="one length"):
        OptimizerConfig.make("adam", lr=[1e-3, 1e-2], beta1=[0.9])
    with pytest.raises(ConfigError, match="hyperparameter"):
        OptimizerConfig.make("sgd", momentum=0.9)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_or_inf_in_user_data_refused(bad):
    x = np.linspace(-1, 1, 50)
    y = np.sin(x)
    y[7] = bad
    with pytest.raises(ConfigError, match="NaN/inf"):
        data_from_arrays(x, y)
    x2 = x.copy()
    x2[0] = bad
    with pytest.raises(ConfigError, match="x holds 1"):
        data_from_arrays(x2, np.sin(x))


def test_user_data_shapes_and_files(tmp_path):
    with pytest.raises(ConfigError, match="expected x"):
        data_from_arrays(np.zeros(10), np.zeros(9))
    (tmp_path / "three.csv").write_text("1,2,3\n4,5,6\n")
    with pytest.raises(ConfigError, match="two numeric columns"):
        load_data_file(str(tmp_path / "three.csv"))
    with pytest.raises(ConfigError, match="existing"):
        load_data_file(str(tmp_path / "missing.npz"))


def test_user_data_is_what_every_seed_fits(tmp_path):
    x = np.linspace(-2, 2, 128)
    np.savez(tmp_path / "d.npz", x=x, y=np.abs(x))
    data = load_data_file(str(tmp_path / "d.npz"))
    cfg = StudyConfig(data=DataConfig(n_data=128), seeds=2, train=TrainConfig(iters=20, batch_size=16, eval_every=10))
    res = run_study(cfg, data=data)
    np.testing.assert_array_equal(res.x_N, x.astype(np.float32))
    np.testing.assert_array_equal(res.y_N, np.abs(x).astype(np.float32))
    with pytest.raises(ConfigError, match="n_data"):
        run_study(StudyConfig(data=DataConfig(n_data=100)), data=data)

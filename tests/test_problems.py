"""The problem registry (jaxopt_cmp.problems): every problem's data shapes, determinism and test
set, torch_ref's mirror of the generated data, the diabetes split and standardisation, the
2-D path through the engine against torch_ref, and bad names refused with one line."""

from __future__ import annotations

import sys
from dataclasses import replace

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from jaxopt_cmp import problems
from jaxopt_cmp.checks import ConfigError, MissingExtra
from jaxopt_cmp.config import StudyConfig, TrainConfig
from jaxopt_cmp.data import make_data, make_test, make_val
from jaxopt_cmp.problems import PROBLEMS, get_problem
from jaxopt_cmp.study import check_runnable
from jaxopt_cmp.targets import TARGETS
from tests.test_engine_parity import assert_parity, run_both
from torch_ref import data as tdata

GENERATED = [n for n, p in PROBLEMS.items() if not p.tabular]


def test_registry_holds_the_issue_problems_each_with_a_reason():
    assert list(PROBLEMS) == ["seed", "sin", "abs", "multiscale", "step", "chirp", "franke", "diabetes"]
    for p in PROBLEMS.values():
        assert p.reason.endswith(".") and len(p.reason) > 30, p.name


def test_seed_problem_is_the_seed_study_bit_for_bit():
    cfg = PROBLEMS["seed"].study()
    assert cfg == StudyConfig() and PROBLEMS["seed"].load(cfg) is None
    x, y = make_data(jax.random.key(3), cfg.data)
    x0, y0 = make_data(jax.random.key(3), StudyConfig().data)
    np.testing.assert_array_equal(np.asarray(y), np.asarray(y0))
    np.testing.assert_array_equal(np.asarray(x), np.asarray(x0))


@pytest.mark.parametrize("name", GENERATED)
def test_generated_data_shapes_determinism_and_test_set(name):
    cfg = PROBLEMS[name].study(n_data=300, n_val=50)
    d = cfg.model.xdim
    x, y = make_data(jax.random.key(1), cfg.data)
    assert x.shape == (300, d) and y.shape == (300, 1)
    assert np.all((np.asarray(x) >= cfg.data.x_low) & (np.asarray(x) <= cfg.data.x_high))
    again = make_data(jax.random.key(1), cfg.data)
    np.testing.assert_array_equal(np.asarray(y), np.asarray(again.y))
    assert not np.array_equal(np.asarray(y), np.asarray(make_data(jax.random.key(2), cfg.data).y))
    # Noise of the stated size around the target.
    resid = np.asarray(y - TARGETS[cfg.data.target](x))
    assert abs(resid.std() / cfg.data.noise_std - 1) < 0.2
    assert make_val(jax.random.key(1), cfg.data).x.shape == (50, d)
    # Test set: the noise-free target on a grid that reaches both ends of the range.
    test = make_test(cfg.data, jnp.float64 if jax.config.jax_enable_x64 else jnp.float32)
    assert test.x.shape == (cfg.data.n_test, d) and test.y.shape == (cfg.data.n_test, 1)
    np.testing.assert_array_equal(np.asarray(test.y), np.asarray(TARGETS[cfg.data.target](test.x)))
    assert np.asarray(test.x).min() == cfg.data.x_low and np.asarray(test.x).max() == cfg.data.x_high
    assert np.std(np.asarray(test.y)) > 0.05  # not a flat function
    # torch_ref: the same test set, and data of the same shapes and distribution of x.
    tx, ty = tdata.make_test(cfg.data, torch.float32)
    np.testing.assert_allclose(tx.numpy(), np.asarray(test.x), rtol=0, atol=0)
    np.testing.assert_allclose(ty.numpy(), np.asarray(test.y), atol=2e-6)
    gx, gy = tdata.make_data(torch.Generator().manual_seed(0), cfg.data)
    assert tuple(gx.shape) == (300, d) and tuple(gy.shape) == (300, 1)


def test_franke_test_set_is_a_full_grid():
    cfg = PROBLEMS["franke"].study()
    x = np.asarray(make_test(cfg.data).x)
    assert x.shape == (1600, 2)
    assert len(np.unique(x[:, 0])) == len(np.unique(x[:, 1])) == 40
    # Another n_test: rounded down to a square grid (31 x 31 = 961 <= 1000), on both sides.
    cfg = PROBLEMS["franke"].study(n_test=1000)
    assert make_test(cfg.data).x.shape == (961, 2) and tuple(tdata.make_test(cfg.data)[0].shape) == (961, 2)


def test_generated_width_must_match_the_target():
    cfg = PROBLEMS["franke"].study(xdim=1)
    with pytest.raises(ConfigError, match="xdim=1 .* expected 2"):
        check_runnable(cfg, None)


def test_diabetes_split_and_standardisation():
    p = PROBLEMS["diabetes"]
    cfg = p.study()
    assert (cfg.data.n_data, cfg.model.xdim) == (310, 10)
    data = p.load(cfg)
    assert data.x.shape == (442, 10) and data.y.shape == (442, 1)
    from jaxopt_cmp.data import split_user_data

    train, val, test = split_user_data(data, cfg.data, cfg.seed)
    assert (len(train.x), len(val.x), len(test.x)) == (310, 44, 88)
    np.testing.assert_allclose(train.x.mean(axis=0), 0, atol=1e-12)
    np.testing.assert_allclose(train.x.std(axis=0), 1, atol=1e-12)
    np.testing.assert_allclose([train.y.mean(), train.y.std()], [0, 1], atol=1e-12)
    assert abs(test.y.mean()) > 1e-6  # held-out rows did not set the statistics
    np.testing.assert_array_equal(p.load(cfg).x, data.x)  # deterministic
    other = split_user_data(p.load(p.study(seed=1)), p.study(seed=1).data, 1)[2]
    assert not np.array_equal(other.y, test.y)  # the seed sets the split


def test_missing_extra_names_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn", None)
    with pytest.raises(MissingExtra) as err:
        PROBLEMS["diabetes"].study()
    assert str(err.value) == 'problem diabetes needs sklearn, which is not installed: pip install -e ".[suite]"'


def test_unknown_problem_is_refused():
    with pytest.raises(ConfigError, match="problem='nope' is not allowed: expected one of seed, sin"):
        get_problem("nope")
    assert problems.get_problem("chirp") is PROBLEMS["chirp"]


def test_franke_trains_like_torch_ref_step_by_step():
    """The 2-D generated path through the whole engine (data, test grid, 2-column batches)
    against torch_ref fed the same inputs, float64."""
    small = {"n_data": 64, "n_val": 16, "n_test": 16, "hidden": (8,), "optimizers": ("adam",), "lr": 1e-2}
    cfg = replace(PROBLEMS["franke"].study(**small), train=TrainConfig(12, 8, 3, "float64"))
    engine, torch_result, feeds = run_both(cfg)
    assert feeds[0].x.shape == (64, 2)
    assert_parity(engine, torch_result, feeds)


def load_script(name):
    import importlib.util

    from tests.test_cli import ROOT

    spec = importlib.util.spec_from_file_location(f"{name}_script", ROOT / "scripts" / f"{name}.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    return script


def test_problem_flag_builds_the_problem_study_with_changed_flags_on_top():
    compare = load_script("compare")
    args = compare.parse_args(["--problem", "franke", "--iters", "30", "--hidden", "8", "--activation", "silu"])
    cfg, data = compare._cli.build_config(args, {n: {"lr": 1e-2} for n in ("sgd", "momentum", "adam")}, 1, True)
    assert data is None
    want = PROBLEMS["franke"].study(iters=30, hidden=(8,), activation="silu", optimizers=("sgd", "momentum", "adam"))
    assert cfg == replace(want, optimizers=cfg.optimizers) and cfg.data.n_test == 1600  # not --n-test's 2000
    args = compare.parse_args(["--problem", "diabetes", "--seed", "3"])
    cfg, data = compare._cli.build_config(args, {}, 2, False)
    assert (cfg.train.batch_size, cfg.seed, cfg.seeds) == (32, 3, 2)
    np.testing.assert_array_equal(data.x, PROBLEMS["diabetes"].load(cfg).x)


@pytest.mark.parametrize(
    ("argv", "line"),
    [
        (["--problem", "nope"], "--problem=nope is not allowed: expected one of seed, sin"),
        (["--problem", "sin", "--target", "abs"], "--target=abs is not allowed: expected the default with --problem"),
        (["--problem", "diabetes", "--n-data", "50"], "--n-data=50 is not allowed: expected the default with"),
    ],
)
def test_problem_flag_bad_input_is_one_line(argv, line, usage_error, tmp_path):
    assert line in usage_error(load_script("compare"), [*argv, "--out", str(tmp_path / "o")])

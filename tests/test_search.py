"""Search spaces (jaxopt_cmp.search): parsing, product grids, random and Sobol trials."""

import json
import math

import numpy as np
import pytest
import scipy.stats

from jaxopt_cmp import search
from jaxopt_cmp.checks import ConfigError
from jaxopt_cmp.search import Dist


def test_axes_parse_to_the_users_points():
    assert search.parse_axis("lr=1e-4:1:5log") == ("lr", (1e-4, 1e-3, 1e-2, 1e-1, 1.0))
    assert search.parse_axis("lr=0.1:0.5:5")[1] == pytest.approx((0.1, 0.2, 0.3, 0.4, 0.5), rel=1e-15)
    assert search.parse_axis("momentum=0.8,0.9,0.99") == ("momentum", (0.8, 0.9, 0.99))
    assert search.parse_axis("lr=0.3") == ("lr", (0.3,))
    assert search.parse_space("beta2=uniform(0.9,0.9999)") == ("beta2", Dist("uniform", (0.9, 0.9999)))


def test_product_grid_is_every_combination_once():
    opt = search.product("momentum", {"lr": [0.1, 0.2, 0.3], "momentum": [0.8, 0.9]})
    assert opt.grid_size == 6
    grid = opt.grid()
    pairs = list(zip(grid["lr"], grid["momentum"]))
    assert sorted(pairs) == sorted((a, b) for a in (0.1, 0.2, 0.3) for b in (0.8, 0.9))
    assert len(set(pairs)) == 6


@pytest.mark.parametrize(
    "flag, text, words",
    [
        ("--grid", "lr", "NAME=VALUES"),
        ("--grid", "lr=1e-4:1:xlog", "a:b:n"),
        ("--grid", "lr=0:1:3log", "a > 0"),
        ("--grid", "lr=0.1,abc", "'abc' is not a number"),
        ("--grid", "lr=1:2:1", "n >= 2"),
        ("--space", "lr=loguniform(0,1)", "0 < low < high"),
        ("--space", "lr=loguniform(1,0.1)", "low < high"),
        ("--space", "lr=uniform(0.5,0.5)", "low < high"),
        ("--space", "lr=normal(0,1)", "loguniform(low,high)"),
        ("--space", "lr=uniform(1)", "two numbers"),
        ("--space", "lr=loguniform(1e-5,inf)", "finite"),
    ],
)
def test_bad_axes_and_spaces_name_flag_value_and_what_is_allowed(flag, text, words):
    parse = search.parse_axis if flag == "--grid" else search.parse_space
    with pytest.raises(ConfigError) as e:
        parse(text)
    assert e.value.setting == flag and e.value.value == text and words in str(e.value)
    assert "\n" not in str(e.value)


def test_bad_trials_method_and_unknown_hyperparameter_are_refused():
    space = {"lr": Dist("loguniform", (1e-5, 1.0))}
    with pytest.raises(ConfigError, match=r"--trials=0 .*integer"):
        search.sample(space, "random", 0, 0)
    with pytest.raises(ConfigError, match=r"--search='grid' .*random, sobol"):
        search.sample(space, "grid", 4, 0)
    with pytest.raises(ConfigError, match=r"sgd hyperparameter='beta2'"):
        search.search("sgd", {"beta2": Dist("uniform", (0.9, 0.999))}, "random", 4, 0)


@pytest.mark.parametrize("method", ["random", "sobol"])
def test_loguniform_trials_are_loguniform_by_ks_test(method):
    low, high = 1e-5, 1.0
    lr = np.array(search.sample({"lr": Dist("loguniform", (low, high))}, method, 1000, seed=11)["lr"])
    assert np.all((lr >= low) & (lr < high))
    p = scipy.stats.kstest(np.log(lr), scipy.stats.uniform(math.log(low), math.log(high) - math.log(low)).cdf).pvalue
    assert p > 1e-3
    # and not uniform on the raw scale (the test has the power to tell)
    assert scipy.stats.kstest(lr, scipy.stats.uniform(low, high - low).cdf).pvalue < 1e-6


def test_sobol_and_random_trials_are_reproducible_per_seed_and_optimizer():
    space = {"lr": Dist("loguniform", (1e-5, 1.0)), "momentum": Dist("uniform", (0.5, 0.99))}
    for method in ("random", "sobol"):
        a = search.sample(space, method, 7, seed=3)  # 7: not a power of 2, no warning escapes
        assert a == search.sample(space, method, 7, seed=3)
        assert a != search.sample(space, method, 7, seed=4)
    assert search.trial_seed(0, "adam") == search.trial_seed(0, "adam") != search.trial_seed(0, "sgd")
    assert search.trial_seed(0, "adam") != search.trial_seed(1, "adam")
    choice = search.sample({"warmup": Dist("choice", (0.0, 100.0, 500.0))}, "random", 300, 0)["warmup"]
    assert set(choice) == {0.0, 100.0, 500.0}


def test_drawn_trial_values_are_trained_and_saved_exactly(tmp_path):
    from jaxopt_cmp.config import seed_study
    from jaxopt_cmp.results import save_result
    from jaxopt_cmp.study import run_study

    space = {"lr": Dist("loguniform", (1e-3, 1e-1)), "momentum": Dist("uniform", (0.5, 0.99))}
    opt = search.search("momentum", space, "sobol", 3, root_seed=5)
    drawn = search.sample(space, "sobol", 3, search.trial_seed(5, "momentum"))
    cfg = seed_study(optimizers=(opt,), iters=10, eval_every=10, hidden=(4,), n_data=256, batch_size=16, seeds=2)
    result = run_study(cfg)
    save_result(result, tmp_path)
    doc = json.loads((tmp_path / "results.json").read_text())
    text = json.dumps(doc)
    for key, values in drawn.items():
        for v in values:
            assert repr(v) in text, (key, v)  # the float64 drawn, digit for digit
    from jaxopt_cmp.results import load_result

    for key, values in drawn.items():
        assert result.grid["momentum"][key].tolist() == list(values)  # what was trained
        assert load_result(tmp_path)[0].grid["momentum"][key].tolist() == list(values)  # what is read back

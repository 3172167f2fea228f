"""The problem suite (jaxopt_cmp.suite, scripts/suite.py): performance profiles and the ranking
against hand-computed examples, problems of equal shapes sharing one compiled loop, the script
end to end at a tiny size, and bad input refused with one line before compiling."""

from __future__ import annotations

import csv
import importlib.util
import json
import math
import sys

import numpy as np
import pytest

from jaxopt_cmp import study as jstudy
from jaxopt_cmp import suite
from tests.test_cli import ROOT, run_script

INF = math.inf


def test_performance_profile_matches_a_hand_computed_example():
    # Problem 0: optimizer 0 fastest (100), 1 twice as slow, 2 never; problem 1: optimizer 1
    # fastest (150), 0 at 2x, 2 at 4x; problem 2: nobody reaches the target.
    steps_PO = np.array([[100, 200, INF], [300, 150, 600], [INF, INF, INF]])
    np.testing.assert_array_equal(suite.performance_ratios(steps_PO)[:2], [[1, 2, INF], [2, 1, 4]])
    assert np.all(np.isinf(suite.performance_ratios(steps_PO)[2]))
    rho = suite.performance_profile(steps_PO, taus=[1.0, 1.99, 2.0, 3.9, 4.0])
    third = 1 / 3
    np.testing.assert_allclose(
        rho,
        [
            [third, third, 2 * third, 2 * third, 2 * third],
            [third, third, 2 * third, 2 * third, 2 * third],
            [0, 0, 0, 0, third],
        ],
    )
    # A target met at step 0 counts as one step, never a division by zero.
    np.testing.assert_array_equal(suite.performance_ratios(np.array([[0, 3]])), [[1, 3]])


def test_target_and_steps_to_reach():
    final_OS = np.array([[1.0, 3.0, 100.0], [2.0, 2.0, 2.0], [10.0, 20.0, 15.0]])  # medians 3, 2, 15
    assert suite.problem_target(final_OS) == 3.0
    curve_OE = np.array([[5.0, 3.0, 1.0], [5.0, 5.0, 5.0], [2.0, 9.0, 9.0]])
    np.testing.assert_array_equal(suite.steps_to_reach(curve_OE, np.array([0, 10, 20]), 3.0), [10, INF, 0])


def test_ranking_is_the_geometric_mean_of_error_ratios():
    # Two problems, two optimizers, two identical seeds: errors p0 (1, 4), p1 (6, 3), ratios to
    # each problem's best p0 (1, 4), p1 (2, 1) -> geometric means sqrt(2) and 2; every bootstrap
    # resample is the same, so is the interval.
    final_POS = np.array([[[1.0, 1.0], [4.0, 4.0]], [[6.0, 6.0], [3.0, 3.0]]])
    rank = suite.ranking(final_POS, n_boot=50)
    np.testing.assert_allclose([r.estimate for r in rank], [math.sqrt(2), 2.0])
    np.testing.assert_allclose([(r.low, r.high) for r in rank], [(math.sqrt(2),) * 2, (2.0, 2.0)])
    # Seeds that disagree widen the interval; a diverged seed makes the ratio infinite.
    noisy = final_POS * np.array([1.0, 3.0])
    wide = suite.ranking(noisy, n_boot=200)[1]
    assert wide.low < wide.high
    diverged = final_POS.copy()
    diverged[0, 1, 0] = INF
    assert math.isinf(suite.ranking(diverged, n_boot=10)[1].estimate)


def outcome(problem, finals):
    """An Outcome of optimizers adam, momentum, sgd with the given final test MSEs per seed."""
    names = ("adam", "momentum", "sgd")
    final_OS = np.asarray(finals, np.float64)
    curve_OE = np.stack([np.full(3, 9.0), np.median(final_OS, axis=1)], axis=1)[:, [0, 1]]
    return suite.Outcome(problem, names, np.array([0, 10]), np.zeros(3, int), np.ones(3), curve_OE, final_OS)


def test_seed_ordering_and_profiles_of_outcomes():
    holds = outcome("a", [[1, 1.2, 0.9], [2, 2.1, 1.9], [3, 3.2, 2.9]])
    breaks = outcome("b", [[2, 2.1, 1.9], [1, 1.2, 0.9], [3, 3.2, 2.9]])
    assert suite.seed_ordering(holds).holds and not suite.seed_ordering(breaks).holds
    assert suite.seed_ordering(holds).medians == (1.0, 2.0, 3.0)
    p = suite.profiles([holds, breaks], n_boot=20)
    np.testing.assert_array_equal(p.target_P, [2.0, 2.0])
    np.testing.assert_array_equal(p.steps_PO, [[10, 10, INF], [10, 10, INF]])
    text = suite.summary_text(p, [holds, breaks])
    table = text[text.index("seed ordering") :]
    rows = [line.split()[:2] for line in table.splitlines() if line[:2] in ("a ", "b ")]
    assert rows == [["a", "yes"], ["b", "no"]]


def test_problems_of_equal_shapes_share_one_compiled_loop():
    studies = suite.suite_studies(
        ("sin", "step"), ("sgd",), (0.1,), {"iters": 4, "eval_every": 2, "seeds": 1, "batch_size": 8},
        {"n_data": 32, "n_val": 8, "n_test": 16},
        hidden=(4,),
    )  # fmt: skip
    loops = lambda: sum(1 for k in jstudy._COMPILED if k[0] == "chunk")
    before = loops()
    results = [jstudy.run_study(cfg, data=data) for _, cfg, data in studies]
    assert loops() == before + 1
    assert not np.array_equal(results[0].test_mse_EHS["sgd"], results[1].test_mse_EHS["sgd"])


def test_suite_script_end_to_end(tmp_path):
    out = tmp_path / "suite"
    r = run_script(
        "--problems", "sin,diabetes", "--optimizers", "sgd,momentum,adam", "--lrs", "0.01,0.1",
        "--seeds", "2", "--iters", "20", "--eval-every", "10", "--n-data", "64", "--hidden", "8",
        "--out", str(out), script="suite.py",
    )  # fmt: skip
    assert "steps to target:" in r.stdout and "seed ordering adam < momentum < sgd" in r.stdout
    for name in ("sin", "diabetes"):
        doc = json.loads((out / name / "results.json").read_text())
        assert doc["config"]["model"]["hidden"] == [8] and doc["config"]["model"]["activation"] == "tanh"
        assert (out / name / "report.html").is_file() and (out / name / "summary.txt").is_file()
    assert (out / "diabetes" / "predicted_vs_actual.png").is_file() and (out / "sin" / "final_fit.png").is_file()
    rows = list(csv.DictReader((out / "profiles.csv").open()))
    assert len(rows) == 3 * len(suite.TAUS) and {r["optimizer"] for r in rows} == {"sgd", "momentum", "adam"}
    assert all(0 <= float(r["rho"]) <= 1 for r in rows)
    problems = list(csv.DictReader((out / "problems.csv").open()))
    assert [r["problem"] for r in problems[::3]] == ["sin", "diabetes"]
    for path in ("performance_profile.png", "summary.txt", "report.html"):
        assert (out / path).is_file(), path
    assert "wall" in (out / "summary.txt").read_text()


def load_script():
    spec = importlib.util.spec_from_file_location("suite_script", ROOT / "scripts" / "suite.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    return script


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["--problems", "sin,nope"], "--problems=nope is not allowed: expected one of seed, sin, abs"),
        (["--activation", "elu"], "--activation=elu is not allowed: expected one of tanh, relu, gelu, silu, sin"),
        (["--hidden", "0,8"], "--hidden=(0, 8) is not allowed: expected a non-empty list of positive integers"),
        (["--optimizers", "sgd,bogus"], "--optimizers=bogus is not allowed"),
        (["--lrs", "x"], "--lrs=x is not allowed: expected comma-separated float values"),
        (["--max-memory", "1e-9"], "--max-memory="),
        (["--iters", "0"], "--iters=0 is not allowed: expected an integer in [1,"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args, line, usage_error, tmp_path):
    out = tmp_path / "never"
    assert line in usage_error(load_script(), [*args, "--out", str(out)])
    assert not out.exists()  # refused before the output directory was claimed


def test_missing_extra_is_one_line(monkeypatch, usage_error):
    monkeypatch.setitem(sys.modules, "sklearn", None)
    err = usage_error(load_script(), ["--problems", "sin,diabetes"])
    assert err == 'suite.py: error: problem diabetes needs sklearn, which is not installed: pip install -e ".[suite]"'


def test_default_suite_is_the_one_the_readme_measures():
    """README (The problem suite): 8 problems x 6 optimizers x 3 lrs x 4 seeds, 1,500 steps
    evaluated every 100; generated problems 2,000 training and 500 validation points, 1-D test
    sets 500 points, franke's 40 x 40 grid; every study within the memory budget."""
    studies = suite.suite_studies()
    assert [n for n, _, _ in studies] == ["seed", "sin", "abs", "multiscale", "step", "chirp", "franke", "diabetes"]
    for name, cfg, data in studies:
        assert cfg.optimizer_names == ("sgd", "momentum", "adam", "adamw", "rmsprop", "nesterov")
        assert all(o.grid()["lr"] == (1e-3, 1e-2, 1e-1) for o in cfg.optimizers)
        assert (cfg.seeds, cfg.train.iters, cfg.train.eval_every) == (4, 1500, 100)
        if data is None:
            assert (cfg.data.n_data, cfg.data.n_val, cfg.data.n_test) == (2000, 500, 1600 if name == "franke" else 500)
        jstudy.check_runnable(cfg, data)

"""Issue 19 parts 2, 4, 5: registry default search spaces, the --grid/--search flags of the scripts
and scripts/tune.py end to end (tiny), with its bad input: one line, exit 2, no traceback."""

from __future__ import annotations

import csv
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.stats

from jaxopt_cmp.checks import ConfigError
from jaxopt_cmp.config import OptimizerConfig
from jaxopt_cmp.optimizers import OPTIMIZERS, POSITIVE, register_optimizer
from jaxopt_cmp.search import METHODS, default_space, parse_space, sample, swept, trial_seed

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import compare  # noqa: E402
import study  # noqa: E402
import tune as tune_script  # noqa: E402

TINY = "--iters 20 --eval-every 10 --n-data 128 --n-val 64 --n-test 64 --batch-size 16 --hidden 8 --no-plots"


def _range(kind: str, low: float, high: float) -> tuple[float, float]:
    return (1.0 - high, 1.0 - low) if kind == "1-loguniform" else (low, high)


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_default_space_draws_inside_bounds_and_holds_the_defaults(name):
    """Every registry row has a space over its own hyperparameters, lr included; every drawn trial
    is a valid grid point inside the space's range, and the registry default lies inside it (so
    "defaults vs tuned" compares a point the search could draw)."""
    space = default_space(name)
    row = OPTIMIZERS[name]
    assert "lr" in space and set(space) <= set(row.defaults)
    for method in METHODS:
        drawn = sample(space, method, 128, trial_seed(0, name))
        OptimizerConfig.make(name, **drawn)  # every value inside the optimizer's bounds
        for key, (kind, (low, high)) in space.items():
            a, b = _range(kind, low, high)
            v = np.asarray(drawn[key])
            assert np.all((v >= a) & (v <= b)), (name, key)
            assert a <= row.defaults[key] <= b, (name, key, row.defaults[key])


@pytest.mark.parametrize("method", METHODS)
def test_one_minus_loguniform_is_loguniform_in_the_distance_to_one(method):
    space = dict([parse_space("beta2=1-loguniform(1e-4,1e-1)")])
    v = np.asarray(sample(space, method, 2000, 7)["beta2"])
    u = (np.log(1.0 - v) - math.log(1e-4)) / (math.log(1e-1) - math.log(1e-4))
    assert scipy.stats.kstest(u, "uniform").pvalue > 1e-3
    assert np.all((v >= 0.9) & (v <= 0.9999))


def test_register_optimizer_space_default_and_unknown_names():
    import optax

    try:
        row = register_optimizer("t19_sgd", lambda lr: optax.sgd(lr), {"lr": 1e-2}, {"lr": POSITIVE})
        assert default_space(row.name) == {"lr": ("loguniform", (1e-4, 1.0))}
        with pytest.raises(ConfigError, match="space"):
            register_optimizer(
                "t19_bad", lambda lr: optax.sgd(lr), {"lr": 1e-2}, {"lr": POSITIVE}, space={"beta": "uniform(0,1)"}
            )
    finally:
        OPTIMIZERS.pop("t19_sgd", None)
        OPTIMIZERS.pop("t19_bad", None)


def test_swept_product_grid_and_search_values():
    grid = swept(["momentum"], grid=["lr=1e-2,1e-1", "momentum=0.8,0.9,0.99"])["momentum"]
    assert sorted(zip(grid["lr"], grid["momentum"])) == sorted((a, b) for a in (1e-2, 1e-1) for b in (0.8, 0.9, 0.99))
    drawn = swept(["adam", "sgd"], method="sobol", trials=4, root_seed=3)
    assert drawn["adam"] == sample(default_space("adam"), "sobol", 4, trial_seed(3, "adam"))
    assert set(drawn["sgd"]) == {"lr"}


BAD = [
    (study, "--grid lr=1e-4:1", ["--grid=", "a:b:n"]),
    (study, "--search random --space lr=loguniform(0,1)", ["--space=", "0 < low < high"]),
    (study, "--search random --space lr=loguniform(1,1e-3)", ["--space=", "low < high"]),
    (study, "--search random --space beta2=1-loguniform(0,0.1) --optimizers adam", ["--space=", "0 < low"]),
    (study, "--search random --space momentum=1-loguniform(0.01,2) --optimizers momentum", ["--space=", "<= 1"]),
    (study, "--search random --trials 0", ["--trials=0", "integer"]),
    (study, "--grid lr=1e-3,1e-2 --lrs 0.1", ["--grid=", "--lrs"]),
    (compare, "--grid lr=1e-3,1e-2 --lr 0.1", ["--grid=", "--lr"]),
    (study, "--grid lr=0.1 --search random", ["--grid=", "not both"]),
    (study, "--space lr=uniform(0.1,0.2)", ["--space=", "--search"]),
    (study, "--optimizers sgd,adam --search random --space momentum=uniform(0.8,0.9)", ["has no hyperparameter"]),
    (study, "--optimizers sgd --grid warmup=0,10", ["--grid=", "has no hyperparameter warmup"]),
    (study, "--optimizers momentum --grid momentum=0.5,1.5", ["--grid=", "momentum"]),
    (study, "--optimizers momentum --grid lr=1e-4:1:1001log --grid momentum=0:0.9:1000", ["at most 1,000,000"]),
    (study, "--optimizers momentum --grid lr=1e-4:1:50log --grid momentum=0:0.9:50 --max-memory 0.01", ["--grid="]),
    (tune_script, "--trials 0", ["--trials=0"]),
    (tune_script, "--grid lr=0.1,0.2", ["--grid=", "--space"]),
    (tune_script, "--schedule constant,bogus", ["bogus"]),
    (tune_script, "--optimizers sgd --space beta2=uniform(0.9,0.99)", ["--space=", "has no hyperparameter"]),
    (tune_script, "--schedule constant,constant", ["--schedule=", "once"]),
    (tune_script, "--optimizers sgd --schedule cosine --space warmup=choice(0,5)", None),
    (tune_script, "--optimizers sgd --schedule constant --trials 3000 --max-memory 0.01", ["--trials=3000", "memory"]),
]


@pytest.mark.parametrize("script, argv, words", BAD, ids=[f"{s.PROG} {a}" for s, a, _ in BAD])
def test_bad_search_flags_are_one_line_naming_flag_and_value(usage_error, tmp_path, script, argv, words):
    if words is None:  # accepted: the plan is built, nothing compiles (plan() only checks)
        tune_script.plan(tune_script.parse_args([*argv.split(), *TINY.split()]))
        return
    err = usage_error(script, [*argv.split(), *TINY.split(), "--out", str(tmp_path / "o")])
    for word in words:
        assert word in err, err
    assert not (tmp_path / "o").exists()  # refused before anything was written


def test_mean_predictor_mse_is_the_test_targets_variance():
    from jaxopt_cmp.config import seed_study
    from jaxopt_cmp.data import test_inputs
    from jaxopt_cmp.targets import TARGETS
    from jaxopt_cmp.tune import mean_predictor_mse

    cfg = seed_study(n_test=101)
    y = np.asarray(TARGETS[cfg.data.target](test_inputs(cfg.data)), np.float64)
    assert mean_predictor_mse(cfg) == pytest.approx(np.mean((y - y.mean()) ** 2), rel=1e-6)


def test_tune_end_to_end_writes_budget_answer_and_exact_trials(tmp_path, capsys, usage_error):
    """A tiny tune.py run: per-schedule study outputs, budget.csv equal to the budget curves
    recomputed from the saved runs (first N grid points; the last is the registry defaults, at
    their exact values), tune.json and the summary."""
    from jaxopt_cmp.results import load_result
    from jaxopt_cmp.tune import mean_predictor_mse
    from jaxopt_cmp.tuning import budget_curve, budget_rows

    out, n, names = tmp_path / "t", 3, ("sgd", "momentum")
    # |x| (a target 100 tiny steps learn, unlike the seed's): trials below and above the mean predictor
    argv = [*TINY.split(), "--target", "abs", "--iters", "100", "--eval-every", "50", "--optimizers", ",".join(names)]
    argv += ["--schedule", "constant", "--trials", str(n)]
    tune_script.main([*argv, "--seeds", "2", "--out", str(out)])
    printed = capsys.readouterr().out
    result, _ = load_result(out / "constant")
    fail = mean_predictor_mse(result.config)
    curves = {}
    clipped = 0
    for name in names:
        val, test = (np.asarray(result.heldout(kind, name)[-1], np.float64) for kind in ("val", "test"))
        bad = (result.diverged_at_HS[name] >= 0) | ~np.isfinite(val) | ~np.isfinite(test)
        clipped += int(np.sum(~bad[:n] & (test[:n] > fail)))
        val, test = np.where(bad, np.inf, val), np.where(bad, fail, np.minimum(test, fail))
        curves[(name, "constant")] = budget_curve(val[:n], test[:n], range(1, n + 1), fail)
    assert clipped  # a finite trial worse than predicting the mean, counted as that (the rule is exercised)
    assert all(np.all(c < fail) for c in curves.values())  # and trials that learned: the curves are not flat
    want = budget_rows(curves, range(1, n + 1))
    with open(out / "budget.csv") as f:
        got = list(csv.DictReader(f))
    assert [(r["optimizer"], r["schedule"], int(r["k"])) for r in got] == [
        (r["optimizer"], r["schedule"], r["k"]) for r in want
    ]
    for g, w in zip(got, want):
        for col in ("expected_test_mse", "lo", "hi"):
            assert float(g[col]) == pytest.approx(w[col], rel=1e-12, nan_ok=True)
    drawn = swept(names, method="random", trials=n, root_seed=0)
    with open(out / "constant" / "runs.csv") as f:
        for r in csv.DictReader(f):
            i, name = int(r["grid_index"]), r["optimizer"]
            for key in drawn[name]:
                want_v = drawn[name][key][i] if i < n else OPTIMIZERS[name].defaults[key]
                assert float(r[key]) == want_v, (name, i, key)
    answer = json.loads((out / "tune.json").read_text())
    assert answer["trials"] == n and answer["fail_mse"] == pytest.approx(fail) and answer["leaders"]
    assert set(answer["rankings"]) == {"1", str(n)}
    summary = (out / "summary.txt").read_text()
    words = (f"{n} random trials", "k = 1", f"k = {n}", "Lowest mean by budget", "defaults vs tuned", "predicting the")
    for text in words:
        assert text in summary and text in printed
    assert (out / "report.html").is_file() and (out / "constant" / "results.json").is_file()
    tune_script.main(["--from", str(out), "--out", str(tmp_path / "again"), "--no-plots"])  # no training
    assert (tmp_path / "again" / "budget.csv").read_text() == (out / "budget.csv").read_text()
    assert f"{n} random trials" in (tmp_path / "again" / "summary.txt").read_text()  # kept from tune.json
    assert "--trials" in usage_error(tune_script, ["--from", str(out), "--trials", "5"])


def test_tune_killed_mid_schedule_resumes_bit_identical(tmp_path, capsys, monkeypatch, usage_error):
    """tune.py SIGKILLed while training its second schedule (after that schedule's 2nd checkpoint),
    then ``--resume``: the finished schedule is loaded, the other resumes from its checkpoint, and
    every output equals an uninterrupted run's; another config's finished schedule is refused."""
    import os

    from conftest import assert_same_study
    from interrupt import kill_at

    from jaxopt_cmp.checkpoint import NAME, Checkpoint
    from jaxopt_cmp.io import read_npz

    argv = [*TINY.split(), "--iters", "80", "--optimizers", "sgd,adam", "--trials", "2", "--seeds", "2"]
    whole, out = tmp_path / "whole", tmp_path / "out"
    tune_script.main([*argv, "--checkpoint-every", "0", "--out", str(whole)])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    # 8 chunks a schedule, a save before each of the last 7: the 9th save is cosine's 2nd.
    command = [str(ROOT / "scripts" / "tune.py"), *argv, "--checkpoint-every", "1e-9", "--out", str(out)]
    kill_at("saved:9", tmp_path / "ready", command, tmp_path / "log", env, timeout_s=240)
    assert (out / "constant" / tune_script.PART).is_file() and not (out / "constant" / NAME).exists()
    assert (out / "cosine" / NAME).is_file() and not (out / "tune.json").exists()

    other = [*argv, "--trials", "3", "--out", str(out), "--resume"]
    capsys.readouterr()  # the uninterrupted run's output
    err = usage_error(tune_script, other)
    assert f"--resume={out / 'constant'} is not allowed: expected the same flags" in err
    # The kill lands after cosine's 2nd save, or a later one if that came first (training goes on)
    done = json.loads(bytes(read_npz(out / "cosine" / NAME)["meta"]).decode())["done"]
    assert 2 <= done < 8
    restored = []
    real = Checkpoint.restore
    monkeypatch.setattr(Checkpoint, "restore", lambda self, *a: restored.append(self.path) or real(self, *a))
    tune_script.main([*argv, "--checkpoint-every", "1e-9", "--out", str(out), "--resume"])
    printed = capsys.readouterr().out
    assert f"constant: finished earlier, loaded from {out / 'constant'}" in printed
    assert f"cosine: resuming at step {done * 10} from {out / 'cosine' / NAME}" in printed
    assert restored == [out / "cosine" / NAME]  # trained on from the checkpoint's state, not from step 0
    for schedule in ("constant", "cosine"):
        assert_same_study(out / schedule, whole / schedule)
        assert not (out / schedule / NAME).exists() and not list((out / schedule).glob(".*.tmp"))
    assert (out / "budget.csv").read_bytes() == (whole / "budget.csv").read_bytes()
    got, want = (json.loads((d / "tune.json").read_text()) for d in (out, whole))
    assert got.pop("timing")["loaded"] == ["constant"] and want.pop("timing")["loaded"] == []
    assert got == want

"""Held-out error (issue 19, part 3): validation MSE on points drawn like the data with their own
key, test MSE against the noise-free target on an even grid, user data split by seed, selection
of best grid points by validation MSE, and the files that carry them.

Each test guards one plausible bug: a test grid that is not the documented one or scores the
wrong set; a validation set drawn from the training data's key (the same points); scoring that
perturbs the training MSE; a user-data split that overlaps, is not seeded or changes what a
``--data`` run without fractions trains on; best grid points picked on training MSE; new
columns missing or old results refused.
"""

from __future__ import annotations

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxopt_cmp import report, stats
from jaxopt_cmp.checks import ConfigError
from jaxopt_cmp.config import DataConfig, seed_study
from jaxopt_cmp.data import Data, check_user_data, make_data, make_val, split_user_data
from jaxopt_cmp.results import StudyResult, load_result, save_result
from jaxopt_cmp.study import prepare_study, run_study, seed_keys

TINY = dict(hidden=(8,), iters=20, eval_every=10, batch_size=16)


CFG = seed_study(n_data=128, n_val=64, n_test=2000, seeds=2, optimizers=("sgd", "adam"), lr=[1e-2, 1e-1], **TINY)


@pytest.fixture(scope="module")
def generated():
    """Two optimizers x two lrs x two seeds on generated data: one compiled study for three tests."""
    return run_study(CFG)


def test_test_mse_of_the_zero_function_is_the_closed_form(generated):
    """With every weight zero the MLP outputs 0, so each recorded MSE is the mean square of its
    targets: the test MSE is mean(f(x)^2) over the documented grid, and for the seed target
    f = exp(-x^2) cos(10x) that mean is (n-1)/(n (b-a)) * integral_a^b f^2 dx (a Riemann sum on
    the grid; f^2 at +-3 is ~1e-8), with integral_R f^2 = sqrt(pi/2) (1 + exp(-50)) / 2 and
    the tails beyond +-3 below 1e-8. Validation and training MSE: mean(y^2) of their own sets.
    Float32 sums of 2,000 squares: 1e-5 relative (measured within 3e-7)."""
    prepared = prepare_study(CFG)  # the fixture's compiled program, reused
    carry = prepared.carry
    zero = {n: r._replace(params=jnp.zeros_like(r.params)) for n, r in carry.runs.items()}
    _, ev = prepared.chunk(carry._replace(runs=zero), np.int32(0), np.int32(0))
    key = seed_keys(CFG.seed, 1)[0]
    val_y = np.asarray(make_val(key, CFG.data).y, np.float64)
    train_y = np.asarray(make_data(jax.random.split(key, 3)[0], CFG.data).y, np.float64)
    x = np.linspace(-3.0, 3.0, 2000)
    closed = 1999 / (2000 * 6.0) * math.sqrt(math.pi / 2) * (1 + math.exp(-50)) / 2
    assert np.mean((np.exp(-(x**2)) * np.cos(10 * x)) ** 2) == pytest.approx(closed, rel=1e-8)
    for n in CFG.optimizer_names:  # every run of seed 0 (axes J, H, K)
        np.testing.assert_allclose(np.asarray(ev.test_JHK[n]), closed, rtol=1e-5)
        np.testing.assert_allclose(np.asarray(ev.val_JHK[n])[0, :, 0], np.mean(val_y**2), rtol=1e-5)
        np.testing.assert_allclose(np.asarray(ev.mse_JHK[n])[0, :, 0], np.mean(train_y**2), rtol=1e-5)


def test_val_set_has_its_own_key_and_is_shared_by_every_run_of_a_seed(generated):
    cfg = CFG
    keys = seed_keys(cfg.seed, cfg.seeds)
    # Training data keep the key split they always had (the first of three); the validation set
    # is drawn like them from fold_in(key, VAL_STREAM): other points, same noise.
    x_N = np.asarray(make_data(jax.random.split(keys[0], 3)[0], cfg.data).x[:, 0])
    np.testing.assert_array_equal(generated.x_N, x_N)
    val = make_val(keys[0], cfg.data)
    assert val.x.shape == (64, 1) and not np.isin(np.asarray(val.x), x_N).any()
    resid = np.asarray(val.y - jnp.exp(-(val.x**2)) * jnp.cos(10 * val.x))
    assert 0.02 < resid.std() < 0.04
    assert not np.array_equal(val.x, make_val(keys[1], cfg.data).x)
    # Step 0: every run of a seed starts from the same weights, so it scores the same on the
    # same validation set; the seeds' sets (and weights) differ.
    val0 = np.stack([generated.val_mse_EHS[n][0] for n in cfg.optimizer_names])  # (O, H, S)
    assert np.all(val0 == val0[:1, :1, :]) and val0[0, 0, 0] != val0[0, 0, 1]
    test_E = generated.test_mse_EHS["sgd"][:, 1, 0]
    assert np.all(np.isfinite(test_E)) and test_E[-1] < test_E[0]  # lr 0.1 learns something


def test_scoring_held_out_sets_leaves_training_mse_bit_identical(generated):
    """Seed 0's generated data fed back as user data without held-out rows (nothing else scored):
    seed 0 has the same initial weights and batches, so its training MSEs must equal bit for bit
    those of the run that also scored validation and test sets. Val and test are then NaN and
    selection falls back to training MSE."""
    cfg = generated.config
    data = Data(generated.x_N[:, None], generated.y_N[:, None])
    user = run_study(seed_study(n_data=128, source="user", seeds=2, optimizers=cfg.optimizers, **TINY), data=data)
    for n in cfg.optimizer_names:
        np.testing.assert_array_equal(user.mse_EHS[n][..., 0], generated.mse_EHS[n][..., 0], err_msg=n)
        assert np.all(np.isfinite(generated.val_mse_EHS[n])) and np.all(np.isnan(user.val_mse_EHS[n]))
        assert np.all(np.isnan(user.test_mse_EHS[n]))
    assert generated.selected_by == "validation MSE" and user.selected_by == "training MSE"
    assert "selected by training MSE" in report.study_table(stats.summarize(user, 1e-3), 1e-3)


def test_user_data_split_is_seeded_disjoint_and_sized():
    x = np.arange(103.0).reshape(-1, 1)
    data = Data(x, -x)
    cfg = DataConfig(n_data=72, source="f.csv", val_fraction=0.2, test_fraction=0.1)
    train, val, test = split_user_data(data, cfg, seed=5)
    assert (len(train.x), len(val.x), len(test.x)) == (72, 21, 10)  # round(20.6), round(10.3), the rest
    rows = np.concatenate([train.x, val.x, test.x])[:, 0]
    assert sorted(rows) == list(x[:, 0])  # disjoint, nothing lost
    for part in (train, val, test):
        assert np.all(np.diff(part.x[:, 0]) > 0) and np.array_equal(part.y, -part.x)  # file order, rows intact
    again = split_user_data(data, cfg, seed=5)
    assert all(np.array_equal(a.x, b.x) for a, b in zip((train, val, test), again))
    assert not np.array_equal(split_user_data(data, cfg, seed=6)[1].x, val.x)
    # Without fractions: the file's rows, in order, nothing held out (what --data always trained on).
    whole = split_user_data(data, DataConfig(n_data=103, source="f.csv"), seed=5)
    assert whole[0] is data and whole[1] is None and whole[2] is None
    # n_data counts the training rows.
    full = seed_study(n_data=72, source="f.csv", val_fraction=0.2, test_fraction=0.1, batch_size=16)
    check_user_data(data, full)
    with pytest.raises(ConfigError, match="expected 72, the supplied data's 103 rows less 31 held out"):
        check_user_data(data, seed_study(n_data=103, source="f.csv", val_fraction=0.2, test_fraction=0.1))
    with pytest.raises(ConfigError, match="val_fraction \\+ test_fraction < 1"):
        DataConfig(val_fraction=0.5, test_fraction=0.5)


def hand_made(val_prefers: int = 1) -> StudyResult:
    """Two lrs x 3 seeds: training MSE favours lr 0 (overfit), validation lr ``val_prefers``."""
    cfg = seed_study(optimizers=("adam",), lr=[1e-2, 1e-1], seeds=3, n_data=32, **TINY)
    e = len(cfg.train.eval_steps)
    train = np.broadcast_to(np.array([0.01, 0.02])[None, :, None], (e, 2, 3)).copy()
    val = np.broadcast_to(np.array([0.05, 0.03])[:: 1 if val_prefers else -1][None, :, None], (e, 2, 3)).copy()
    test = np.broadcast_to(np.array([0.06, 0.04])[None, :, None], (e, 2, 3)) * np.array([1.0, 1.1, 1.2])
    return StudyResult(
        config=cfg,
        eval_steps=np.asarray(cfg.train.eval_steps),
        grid={"adam": {"lr": np.array([1e-2, 1e-1])}},
        mse_EHS={"adam": train},
        diverged_at_HS={"adam": np.full((2, 3), -1, np.int32)},
        params_HS={},
        pred_EHN={},
        x_N=np.zeros(32, np.float32),
        y_N=np.zeros(32, np.float32),
        val_mse_EHS={"adam": val},
        test_mse_EHS={"adam": test},
    )


def test_best_grid_point_is_selected_by_validation_mse_and_reports_its_test_mse():
    result = hand_made()
    assert stats.best_index(result.mse_EHS["adam"][-1]) == 0  # training MSE would pick lr 0.01
    (s,) = stats.summarize(result, 1e-3)
    assert s.best == 1 and s.hparams["lr"] == 0.1 and s.selected_by == "validation MSE"
    assert s.val_median == 0.03 and s.test_median == pytest.approx(0.044) and s.median == 0.02
    table = report.study_table([s], 1e-3)
    assert "selected by validation MSE" in table and "0.044" in table
    assert "best grid point (by validation MSE)" in str(result.summary())


def test_files_carry_val_and_test_mse_and_old_results_still_load(tmp_path):
    result = hand_made()
    save_result(result, tmp_path / "new")
    doc = json.loads((tmp_path / "new" / "results.json").read_text())
    assert doc["schema"] == "jaxopt_cmp.results/3" and doc["selected_by"] == "validation MSE"
    assert doc["final_test_mse"]["adam"] == result.test_mse_EHS["adam"][-1].tolist()
    runs = (tmp_path / "new" / "runs.csv").read_text().splitlines()
    assert "final_mse,final_val_mse,final_test_mse" in runs[0]
    assert runs[1].split(",")[-5:-2] == ["0.01", "0.05", "0.06"]  # lr 0.01, seed 0
    history = (tmp_path / "new" / "history.csv").read_text().splitlines()
    assert history[0].endswith("mse,val_mse,test_mse") and history[1].endswith("0.01,0.05,0.06")
    loaded, _ = load_result(tmp_path / "new")
    for kind in ("val", "test"):
        np.testing.assert_array_equal(loaded.heldout(kind, "adam"), result.heldout(kind, "adam"))
    # Schema 2 (before held-out error): no val/test arrays; they read NaN, selection by training.
    old = tmp_path / "new"
    doc["schema"] = "jaxopt_cmp.results/2"
    (old / "results.json").write_text(json.dumps(doc))
    with np.load(old / "arrays.npz") as z:
        np.savez(old / "arrays.npz", **{k: v for k, v in z.items() if not k.startswith(("val_", "test_"))})
    loaded, _ = load_result(old)
    assert loaded.val_mse_EHS == {} and np.all(np.isnan(loaded.heldout("test", "adam")))
    assert loaded.selected_by == "training MSE" and stats.summarize(loaded, 1e-3)[0].best == 0


@pytest.mark.parametrize(
    "argv, says",
    [
        (["--val-fraction", "0.2"], "--val-fraction=0.2 is not allowed: applies to --data only"),
        (["--n-test", "0"], "--n-test=0 is not allowed: expected an integer"),
        (["--data", "D", "--n-val", "50"], "--n-val=50 is not allowed: applies to generated data"),
        (["--data", "D", "--val-fraction", "0.5", "--test-fraction", "0.5"], "val_fraction + test_fraction < 1"),
        (["--data", "D", "--val-fraction", "-0.1"], "--val-fraction=-0.1 is not allowed: expected a finite number"),
        (["--data", "D", "--val-fraction", "0.5", "--test-fraction", "0.3"], "at least --batch-size=64 of the 100"),
    ],
)
def test_held_out_flags_refuse_bad_values_in_one_line(argv, says, usage_error, tmp_path):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
    import compare

    x = np.linspace(-1, 1, 100)
    np.savez(tmp_path / "d.npz", x=x, y=np.sin(3 * x))
    argv = [str(tmp_path / "d.npz") if a == "D" else a for a in argv]
    err = usage_error(compare, [*argv, "--out", str(tmp_path / "never")])
    assert says in err, err
    assert not (tmp_path / "never").exists()

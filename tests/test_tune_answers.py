"""tune.py answers only what it can (issue 30, items 8 and 12): user data without a validation
and a test set is refused before training, and pairs that tie for the lowest mean are named as a
tie, never as a leader."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from jaxopt_cmp import tune

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import tune as tune_script  # noqa: E402

PAIRS = [("sgd", "constant"), ("adam", "constant"), ("adam", "cosine")]


def curves(means_PK) -> dict:
    """Budget curves ``K x S`` (2 seeds) whose means over seeds are ``means_PK[p]``, one per pair."""
    return {pair: np.repeat(np.asarray(m, float)[:, None], 2, axis=1) for pair, m in zip(PAIRS, means_PK)}


def summary(curve) -> str:
    rows = [dict(optimizer=o, schedule=s, defaults=1.0, tuned=1.0, tuned_lo=1.0, tuned_hi=1.0, tuned_wins=0.5, p=1.0)
            for o, s in PAIRS]  # fmt: skip
    return tune.summary_text(tune.answer(curve, rows, 2, 2, 1.0))


def test_every_pair_tied_names_no_leader():
    curve = curves([[np.inf, np.inf]] * 3)
    [run] = tune.leaders(curve)
    assert run["optimizer"] is None and run["schedule"] is None and len(run["tied"]) == 3
    text = summary(curve)
    assert "k = 1..2: no leader, every pair ties -- no single leader at any budget." in text


def test_a_tie_of_some_pairs_then_a_leader():
    curve = curves([[1.0, 1.0], [1.0, 0.5], [2.0, 2.0]])
    runs = tune.leaders(curve)
    assert [(r["from_k"], r["to_k"], r["optimizer"], r["tied"]) for r in runs] == [
        (1, 1, None, [["sgd", "constant"], ["adam", "constant"]]),
        (2, 2, "adam", []),
    ]
    assert "k = 1..1: no leader, a tie of sgd (constant), adam (constant); k = 2..2: adam (constant)" in summary(curve)


def test_one_leader_at_every_budget():
    runs = tune.leaders(curves([[3.0, 2.0], [1.0, 0.5], [2.0, 2.0]]))
    assert runs == [dict(from_k=1, to_k=2, optimizer="adam", schedule="constant", tied=[])]


@pytest.mark.parametrize(
    ("fractions", "named"),
    [([], "--val-fraction=0.0"), (["--val-fraction", "0.2"], "--test-fraction=0.0"),
     (["--test-fraction", "0.2"], "--val-fraction=0.0")],
)  # fmt: skip
def test_user_data_without_heldout_sets_is_refused_before_training(fractions, named, usage_error, tmp_path):
    path = tmp_path / "d.csv"
    x = np.linspace(-1, 1, 80)
    np.savetxt(path, np.stack([x, np.sin(3 * x)], axis=1), delimiter=",")
    argv = ["--data", str(path), *fractions, "--optimizers", "sgd", "--schedule", "constant", "--trials", "2",
            "--seeds", "1", "--iters", "4", "--eval-every", "2", "--batch-size", "8", "--hidden", "4", "--no-plots",
            "--out", str(tmp_path / "o")]  # fmt: skip
    err = usage_error(tune_script, argv)
    assert f"{named} is not allowed: expected > 0 with --data" in err
    assert not (tmp_path / "o").exists()

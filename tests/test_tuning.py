"""Tuning budgets (jaxopt_cmp.tuning): the closed form of Dodge et al. 2019 against brute force."""

import itertools
import math

import numpy as np
import pytest

from jaxopt_cmp import tuning


def brute_force(val, test, k, fail_mse=math.inf):
    """Every ordered k-tuple of trials (with replacement) is equally likely; the kept trial is the one
    with the lowest validation MSE (non-finite = +inf), ties uniform among the drawn tied trials."""
    val = np.where(np.isfinite(val), val, math.inf)
    test = np.where(np.isfinite(val) & np.isfinite(test), test, fail_mse)
    n, total = len(val), 0.0
    for draw in itertools.product(range(n), repeat=k):
        best = min(val[i] for i in draw)
        kept = [test[i] for i in draw if val[i] == best]
        total += np.mean(kept)
    return total / n**k


@pytest.mark.parametrize("n", [1, 2, 3, 5])
def test_closed_form_equals_enumeration_with_ties_and_divergence(n):
    rng = np.random.default_rng(n)
    for case in range(4):
        val = rng.choice([0.1, 0.2, 0.3, 0.5], size=n) if case % 2 else rng.random(n)  # ties in odd cases
        test = rng.random(n)
        if case == 3 and n > 1:
            val[0], test[0] = math.nan, math.inf  # a diverged trial
        ks = range(1, 5)
        fail = 7.0
        got = tuning.expected_best(val, test, ks, fail_mse=fail)
        want = [brute_force(val, test, k, fail) for k in ks]
        np.testing.assert_allclose(got, want, rtol=1e-12)


def test_selection_probabilities_sum_to_one_and_favour_the_best():
    for n, k in [(1, 1), (5, 1), (5, 3), (64, 16)]:
        p = tuning.selection_probs(n, k)
        assert math.isclose(p.sum(), 1.0, rel_tol=1e-12)
        assert np.all(np.diff(p) <= 1e-15)  # rank 1 at least as likely as rank 2, ...
    np.testing.assert_allclose(tuning.selection_probs(4, 1), 0.25)  # k = 1: a uniform draw


def test_diverged_trial_makes_the_default_expectation_infinite():
    got = tuning.expected_best([0.1, math.inf], [0.2, math.nan], [1, 8])
    assert np.all(np.isinf(got))  # all k draws diverged has probability (1/2)^k > 0
    np.testing.assert_allclose(tuning.expected_best([0.1, math.inf], [0.2, math.nan], [1], fail_mse=1.0), [0.6])


def test_budget_rows_ranking_and_report_ks():
    ks = [1, 2, 4]
    rng = np.random.default_rng(0)
    val, test = rng.random((4, 6)), rng.random((4, 6))
    curves = {
        ("adam", "constant"): tuning.budget_curve(val, test, ks),
        ("sgd", "constant"): tuning.budget_curve(val, test + 1.0, ks),
    }
    rows = tuning.budget_rows(curves, ks)
    assert [(r["optimizer"], r["k"]) for r in rows] == [
        ("adam", 1),
        ("adam", 2),
        ("adam", 4),
        ("sgd", 1),
        ("sgd", 2),
        ("sgd", 4),
    ]
    for r in rows:
        assert r["lo"] <= r["expected_test_mse"] <= r["hi"]
    same = tuning.budget_curve(val, val, ks)  # test = validation: more budget never hurts
    assert np.all(np.diff(same, axis=0) <= 0)
    rank = tuning.ranking(curves, ks, 4)
    assert [r["optimizer"] for r in rank] == ["adam", "sgd"]
    assert rank[0]["win_rate"] == 1.0 and rank[0]["p"] == pytest.approx(2 * 0.5**6)
    assert tuning.report_ks(64) == (1, 4, 16, 64) and tuning.report_ks(3) == (1, 3)


def test_tuning_budget_figure_draws_one_line_per_optimizer_and_schedule():
    from jaxopt_cmp.study_figures import tuning_budget_figure

    ks = [1, 2, 4]
    rng = np.random.default_rng(1)
    val, test = rng.random((4, 5)) + 0.1, rng.random((4, 5)) + 0.1
    curves = {
        ("adam", "constant"): tuning.budget_curve(val, test, ks),
        ("adam", "cosine"): tuning.budget_curve(val, test * 2, ks),
        ("sgd", "constant"): tuning.budget_curve(np.where(val > 0.5, np.inf, val), test, ks),
    }
    fig = tuning_budget_figure(tuning.budget_rows(curves, ks))
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels[:2] == ["adam (constant)", "adam (cosine)"] and labels[2] == "sgd (constant), 3 budgets inf"
    np.testing.assert_allclose(ax.lines[1].get_ydata(), curves[("adam", "cosine")].mean(axis=1))
    assert ax.get_xscale() == ax.get_yscale() == "log"

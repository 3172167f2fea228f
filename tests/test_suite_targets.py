"""The suite's target when most optimizers diverged (issue 30, item 1): a diverged run never
reaches a target, and a problem without one (at least half of the optimizers diverged at every
lr, so the median is inf) is named in the summary and left out of the performance profile."""

from __future__ import annotations

import math

import numpy as np

from jaxopt_cmp import suite

INF = math.inf


def outcome(problem, finals):
    """An Outcome of adam, momentum, sgd whose curves step from 9 (or inf) to the final median."""
    final_OS = np.asarray(finals, np.float64)
    start = np.where(np.isfinite(final_OS).all(axis=1), 9.0, INF)
    curve_OE = np.stack([start, np.median(final_OS, axis=1)], axis=1)
    names = ("adam", "momentum", "sgd")
    return suite.Outcome(problem, names, np.array([0, 10]), np.zeros(3, int), np.ones(3), curve_OE, final_OS)


def test_diverged_runs_never_reach_an_infinite_target():
    curve_OE = np.array([[INF, INF], [5.0, 1.0]])
    np.testing.assert_array_equal(suite.steps_to_reach(curve_OE, np.array([0, 10]), INF), [INF, INF])
    np.testing.assert_array_equal(suite.steps_to_reach(curve_OE, np.array([0, 10]), np.nan), [INF, INF])


def test_a_problem_without_target_is_named_and_not_scored():
    fine = outcome("sin", [[1, 1, 1], [2, 2, 2], [3, 3, 3]])
    lost = outcome("abs", [[1, 1, 1], [INF, INF, INF], [INF, INF, INF]])
    p = suite.profiles([fine, lost], n_boot=10)
    assert p.target_P[0] == 2.0 and math.isinf(p.target_P[1])
    assert np.all(np.isinf(p.steps_PO[1]))
    # rho over the one scored problem: adam and momentum reach it at step 10, sgd never.
    np.testing.assert_array_equal(p.rho_OT[:, 0], [1.0, 1.0, 0.0])
    text = suite.summary_text(p, [fine, lost])
    assert "no target on abs: at least half of the optimizers diverged at every lr" in text
    steps_table = text[text.index("steps to target:") : text.index("no target on")]
    assert [line.split()[:2] for line in steps_table.splitlines() if line.startswith("abs ")] == [["abs", "none"]]


def test_no_problem_with_a_target_leaves_the_profile_undefined():
    lost = outcome("abs", [[1, 1, 1], [INF, INF, INF], [INF, INF, INF]])
    p = suite.profiles([lost, lost._replace(problem="sin")], n_boot=10)
    assert np.all(np.isnan(p.rho_OT))
    assert "(the performance profile is undefined)" in suite.summary_text(p, [lost])

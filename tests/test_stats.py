"""Study statistics on hand-made arrays with known answers."""

from __future__ import annotations

import math

import numpy as np

from jaxopt_cmp.stats import best_index, bootstrap_mean_ci, sign_test, steps_to_target


def test_best_index_ranks_diverged_last():
    final_HS = np.array([[0.5, 0.4, 0.6], [0.1, np.inf, np.inf], [0.2, 0.3, 0.25]])
    assert best_index(final_HS) == 2


def test_steps_to_target_first_hit_or_minus_one():
    steps = np.array([0, 10, 20, 30])
    mse_ES = np.array([[1.0, 1.0], [0.5, 1.0], [0.05, 0.9], [0.01, 0.8]])
    np.testing.assert_array_equal(steps_to_target(mse_ES, steps, 0.1), [20, -1])


def test_sign_test_exact_values():
    a, b = np.zeros(8), np.ones(8)
    frac, p = sign_test(a, b)
    assert frac == 1.0 and math.isclose(p, 2 / 2**8)
    # 6 wins of 8: p = 2 * (1 + 8 + 28) / 256
    a6 = np.array([0, 0, 0, 0, 0, 0, 2, 2.0])
    frac, p = sign_test(a6, np.ones(8))
    assert frac == 0.75 and math.isclose(p, 2 * 37 / 256)
    assert sign_test(np.ones(4), np.ones(4)) == (0.0, 1.0)  # all ties: no evidence


def test_bootstrap_ci_covers_mean_and_ignores_inf():
    v = np.array([1.0, 2.0, 3.0, 4.0, np.inf])
    mean, lo, hi = bootstrap_mean_ci(v)
    assert mean == 2.5 and 1.0 <= lo < 2.5 < hi <= 4.0
    assert bootstrap_mean_ci(v) == bootstrap_mean_ci(v)  # seeded, deterministic
    assert all(math.isnan(x) for x in bootstrap_mean_ci(np.array([np.inf])))

"""A tuning budget is a whole number of draws, at least one (issue 30, item 11): k = 0, negative
or fractional budgets are refused, not answered with 0.0 or a number that means nothing."""

from __future__ import annotations

import numpy as np
import pytest

from jaxopt_cmp import tuning
from jaxopt_cmp.checks import ConfigError


@pytest.mark.parametrize("k", [0, -1, 2.5, 1.0, True, "2"])
def test_a_budget_that_is_not_a_whole_number_of_draws_is_refused(k):
    with pytest.raises(ConfigError, match=r"^k=.* is not allowed: expected an integer >= 1"):
        tuning.expected_best([0.1, 0.2], [0.3, 0.4], [1, k])
    with pytest.raises(ConfigError, match=r"^k="):
        tuning.selection_probs(2, k)


def test_whole_budgets_beyond_n_are_answered():
    got = tuning.expected_best([0.1, 0.2], [0.3, 0.4], [np.int64(1), 2, 5])
    np.testing.assert_allclose(got, [0.35, 0.3 * 0.75 + 0.4 * 0.25, 0.3 * (1 - 0.5**5) + 0.4 * 0.5**5])

"""Study statistics on hand-made arrays with known answers, and against the hand-written versions
they replace (exact sign test, percentile bootstrap, Welch TOST via betainc and bisection).

Each summary test guards one plausible bug (tests/mutation lists them): bootstrap on medians, best
grid point by mean, hyperparameters of grid point 0, seeds paired off by one, an optimizer whose
every run diverged, and final MSEs so large that their sum overflows.
"""

from __future__ import annotations

import math
import warnings

import jax
import numpy as np
import pytest
import scipy.stats

from jaxopt_cmp.config import seed_study
from jaxopt_cmp.results import StudyResult
from jaxopt_cmp.stats import (
    best_index,
    bootstrap_mean_ci,
    equivalence_test,
    min_seeds,
    min_sign_test_p,
    paired_comparisons,
    recommended_seeds,
    seed_note,
    sign_test,
    steps_to_target,
    summarize,
    t_mean_ci,
)

# ---------------------------------------------------------------------------------------------
# The hand-written versions the scipy ones replace (verbatim but for names), as oracles


def old_sign_test_p(wins: int, losses: int) -> float:
    n, k = wins + losses, min(wins, losses)
    return min(1.0, 2 * sum(math.comb(n, i) for i in range(k + 1)) / 2**n)


def old_bootstrap(v: np.ndarray, level=0.95, n_boot=4000, seed=0):
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, v.size, (n_boot, v.size))].mean(axis=1)
    tail = 100 * (1 - level) / 2
    return float(v.mean()), float(np.percentile(means, tail)), float(np.percentile(means, 100 - tail))


def old_t_sf(t: float, df: float) -> float:
    with jax.enable_x64(True):
        tail = 0.5 * float(jax.scipy.special.betainc(df / 2, 0.5, df / (df + t * t)))
    return tail if t >= 0 else 1 - tail


def old_t_quantile(q: float, df: float) -> float:
    low, high = 0.0, 1e3
    for _ in range(200):
        mid = (low + high) / 2
        low, high = (mid, high) if old_t_sf(mid, df) > 1 - q else (low, mid)
    return (low + high) / 2


def old_tost(a_S, b_S, margin=1.25, alpha=0.05):
    la, lb = np.log(a_S), np.log(b_S)
    d = lb.mean() - la.mean()
    va, vb = la.var(ddof=1) / len(la), lb.var(ddof=1) / len(lb)
    se = math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / (len(la) - 1) + vb**2 / (len(lb) - 1))
    delta = math.log(margin)
    p = max(old_t_sf((d + delta) / se, df), old_t_sf((delta - d) / se, df))
    q = old_t_quantile(1 - alpha, df)
    return math.exp(d), math.exp(d - q * se), math.exp(d + q * se), p, p < alpha


def test_sign_test_p_equals_the_old_exact_formula_for_every_outcome():
    for n in range(1, 26):
        for wins in range(n + 1):
            frac, p = sign_test(np.r_[np.zeros(wins), np.ones(n - wins)], np.full(n, 0.5))
            assert frac == wins / n and p == pytest.approx(old_sign_test_p(wins, n - wins), rel=1e-12, abs=0)


@pytest.mark.parametrize("n, spread", [(4, 0.1), (8, 1.0), (32, 0.3)])
def test_percentile_bootstrap_is_close_to_the_old_one(n, spread):
    """Another resampling stream, so equal to Monte-Carlo error: 4,000 resamples put each bound
    within ~3% of the interval's width of the old one (allowed: 10%)."""
    v = np.exp(np.random.default_rng(n).normal(-3, spread, n))
    new, old = bootstrap_mean_ci(v), old_bootstrap(v)
    assert new.estimate == pytest.approx(old[0], rel=1e-12)
    width = old[2] - old[1]
    assert abs(new.low - old[1]) < 0.1 * width and abs(new.high - old[2]) < 0.1 * width


@pytest.mark.parametrize("seed, n_a, n_b, sd_b", [(0, 4, 4, 1.0), (1, 16, 16, 0.1), (2, 6, 12, 0.4), (3, 32, 32, 0.15)])
def test_tost_equals_the_old_implementation(seed, n_a, n_b, sd_b):
    rng = np.random.default_rng(seed)
    a, b = np.exp(rng.normal(-3, 0.2, n_a)), np.exp(rng.normal(-3.05, sd_b, n_b))
    new, old = equivalence_test(a, b), old_tost(a, b)
    assert new[:4] == pytest.approx(old[:4], rel=1e-9) and new.equivalent == old[4]


# ---------------------------------------------------------------------------------------------
# The functions on known answers


def test_best_index_ranks_diverged_last():
    final_HS = np.array([[0.5, 0.4, 0.6], [0.1, np.inf, np.inf], [0.2, 0.3, 0.25], [np.nan, np.nan, 0.01]])
    assert best_index(final_HS) == 2  # NaN (a run that produced no number) ranks as diverged


def test_best_index_uses_the_median_not_the_mean():
    """Grid point 1 has the lower median (one bad seed), grid point 0 the lower mean."""
    final_HS = np.array([[0.5, 0.5, 0.5], [0.1, 0.2, 2.0]])
    assert final_HS.mean(axis=1).argmin() == 0
    assert best_index(final_HS) == 1


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
    assert sign_test([0.1, np.inf, np.inf], [0.2, 0.3, np.inf]) == (1 / 3, 1.0)  # inf vs inf: a tie


def test_bootstrap_ci_covers_mean_and_ignores_inf():
    v = np.array([1.0, 2.0, 3.0, 4.0, np.inf])
    mean, lo, hi = bootstrap_mean_ci(v)
    assert mean == 2.5 and 1.0 <= lo < 2.5 < hi <= 4.0
    assert bootstrap_mean_ci(v) == bootstrap_mean_ci(v)  # seeded, deterministic
    w = np.exp(np.random.default_rng(0).normal(0, 1, 10))
    assert bootstrap_mean_ci(w, seed=1) != bootstrap_mean_ci(w)  # the seed is used
    assert all(math.isnan(x) for x in bootstrap_mean_ci(np.array([np.inf])))
    one = bootstrap_mean_ci(np.array([3.0, np.inf]))  # one finite value: a mean, no interval
    assert one.estimate == 3.0 and math.isnan(one.low) and math.isnan(one.high)
    bca = bootstrap_mean_ci(v, method="BCa")
    assert bca.estimate == 2.5 and 1.0 <= bca.low < 2.5 < bca.high <= 4.0


def test_bootstrap_ci_is_of_the_mean_not_the_median():
    """One bad seed in nine: the mean (12) lies far above the median (1); the bootstrap of
    medians would give [1, 1], an interval that misses the mean it is printed beside."""
    v = np.array([1.0] * 8 + [100.0])
    mean, lo, hi = bootstrap_mean_ci(v)
    assert mean == 12.0 and lo <= mean <= hi and hi > 30  # 97.5% of resampled means: 3 bad seeds, 34


def test_t_interval_is_the_textbook_one_and_wider_than_the_bootstrap_at_few_seeds():
    v = np.array([0.040, 0.052, 0.047, 0.061, np.inf])
    t = t_mean_ci(v)
    finite = v[:4]
    half = scipy.stats.t.ppf(0.975, 3) * finite.std(ddof=1) / 2
    assert t == pytest.approx((finite.mean(), finite.mean() - half, finite.mean() + half), rel=1e-12)
    boot = bootstrap_mean_ci(v)
    assert (boot.high - boot.low) < 0.7 * (t.high - t.low)  # 4 seeds: about half (the seed note says so)


def test_seed_counts_a_sign_test_needs():
    assert [min_sign_test_p(n) for n in (1, 4, 5, 6)] == [1.0, 0.125, 0.0625, 0.03125]
    assert min_seeds() == 6 and min_seeds(0.01) == 8
    assert seed_note(6) == "" and seed_note(32) == ""
    assert "cannot reach p < 0.05" in seed_note(4) and ">= 6 seeds" in seed_note(4) and "0.125" in seed_note(4)
    # The recommendation, checked by enumerating every outcome with the old exact formula.
    n = recommended_seeds(0.8)

    def power(n):
        return sum(
            scipy.stats.binom.pmf(wins, n, 0.8) for wins in range(n + 1) if old_sign_test_p(wins, n - wins) < 0.05
        )

    assert power(n) >= 0.8 > power(n - 1)


# ---------------------------------------------------------------------------------------------
# Summaries of a hand-made study

LRS = (1e-3, 1e-2, 1e-1)


def make_result(finals: dict[str, np.ndarray]) -> StudyResult:
    """A study whose optimizers end at ``finals[name]`` (H x S); the middle evaluation at twice that."""
    names = tuple(finals)
    seeds = next(iter(finals.values())).shape[1]
    cfg = seed_study(optimizers=names, lr=list(LRS), seeds=seeds, iters=10, eval_every=5)
    finals = {n: np.asarray(f, np.float64) for n, f in finals.items()}
    return StudyResult(
        config=cfg,
        eval_steps=np.array([0, 5, 10]),
        grid={n: {"lr": np.array(LRS), "other": np.array([0.5, 0.6, 0.7])} for n in names},
        mse_EHS={n: np.stack([np.ones_like(f), 2 * f, f]) for n, f in finals.items()},
        diverged_at_HS={n: np.where(np.isfinite(f), -1, 5) for n, f in finals.items()},
        params_HS={},
        pred_EHN={},
        x_N=np.zeros(0),
        y_N=np.zeros(0),
    )


def test_summary_reports_the_best_grid_points_hyperparameters():
    finals = np.array([[0.3] * 4, [0.2] * 4, [0.05, 0.06, 0.04, 0.05]])
    (s,) = summarize(make_result({"adam": finals}), target=0.2)
    assert s.best == 2 and s.hparams == {"lr": LRS[2], "other": 0.7}
    assert s.median == 0.05 and s.mean == pytest.approx(0.05) and s.n_seeds == s.finite_at_best == 4
    assert s.ci_low <= s.mean <= s.ci_high and s.t_low < s.ci_low and s.ci_high < s.t_high
    assert s.steps_to_target_median == 5 and s.reached == 4  # 2 x 0.05 <= 0.2 at step 5
    assert s.sign_test_min_p == 0.125 and s.note() == seed_note(4) != ""


def test_paired_comparisons_pair_each_seed_with_itself():
    """``b`` ends 1e-3 above ``a`` on every seed, but seeds differ by 1e-2: paired seed i with
    seed i+1, ``a`` would win only on the last seed (1/8)."""
    a_S = 0.01 * np.arange(1, 9)
    finals = {"sgd": np.stack([a_S, a_S + 1]), "adam": np.stack([a_S + 1, a_S + 1e-3])}  # best: 0 and 1
    result = make_result({n: np.vstack([f, f[:1] + 2]) for n, f in finals.items()})
    summaries = summarize(result, target=0.01)
    assert [s.best for s in summaries] == [0, 1]
    (pair,) = paired_comparisons(result, summaries)
    assert pair == ("sgd", "adam", 1.0, 2 / 2**8)
    assert pair.better == "sgd" and pair.p_value == 2 / 2**8


def test_an_optimizer_whose_every_run_diverged_is_summarized_and_ranked_last():
    finite = np.full((3, 6), 0.1) * np.arange(1, 7)
    result = make_result({"sgd": np.full((3, 6), np.inf), "adam": finite})
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # not even a RuntimeWarning
        dead, alive = summarize(result, target=0.2)
        pairs = paired_comparisons(result, [dead, alive])
    assert dead.best == 0 and dead.median == math.inf and dead.finite_at_best == 0
    assert all(math.isnan(x) for x in (dead.mean, dead.ci_low, dead.ci_high, dead.t_low, dead.t_high))
    assert dead.diverged_at_best == 6 and dead.diverged_total == dead.runs_total == 18
    assert math.isnan(dead.steps_to_target_median) and dead.reached == 0
    assert pairs == [("adam", "sgd", 1.0, 2 / 2**6)]
    assert not equivalence_test(finite[0], np.full(6, np.inf)).equivalent


def test_huge_finite_final_mse_does_not_overflow():
    """Eight finals of 1e307 .. 8e307 (their sum overflows float64): a finite mean and intervals."""
    huge = 1e307 * np.arange(1, 9)
    result = make_result({"sgd": np.tile(huge, (3, 1)), "adam": np.tile(0.01 * np.arange(1, 9), (3, 1))})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s, other = summarize(result, target=0.1)
        pairs = paired_comparisons(result, [s, other])
    assert s.mean == pytest.approx(4.5e307, rel=1e-12) and s.diverged_at_best == 0
    assert all(np.isfinite([s.ci_low, s.ci_high, s.t_low, s.t_high]))
    assert s.t_low < s.ci_low < s.mean < s.ci_high < s.t_high
    assert pairs == [("adam", "sgd", 1.0, 2 / 2**8)]
    near_max = 1.7e308 * (1 - 0.01 * np.arange(8))
    assert equivalence_test(near_max, near_max / 1.01).equivalent  # logs of huge values are ordinary numbers


# ---------------------------------------------------------------------------------------------
# The equivalence test (TOST)


def test_equivalence_needs_evidence_not_just_no_difference():
    rng = np.random.default_rng(0)
    same = lambda n, sd, shift=0.0: np.exp(rng.normal(shift, sd, n))
    close = equivalence_test(same(16, 0.1), same(16, 0.1))
    assert close.equivalent and close.p_value < 0.05 and 0.8 < close.ci_low < close.ci_high < 1.25
    # The same distribution, too noisy for 4 seeds: a t-test finds no difference, yet that is no
    # evidence of equivalence, and the TOST says so.
    a, b = same(4, 1.0), same(4, 1.0)
    assert scipy.stats.ttest_ind(np.log(a), np.log(b), equal_var=False).pvalue > 0.05
    noisy = equivalence_test(a, b)
    assert not noisy.equivalent and noisy.p_value > 0.05
    # A real 1.5x difference, precisely measured: not equivalent.
    far = equivalence_test(same(16, 0.05), same(16, 0.05, np.log(1.5)))
    assert not far.equivalent and far.ratio == pytest.approx(1.5, rel=0.05)
    # Diverged runs (inf) cannot be shown equivalent; identical runs are, without a warning.
    assert not equivalence_test(np.array([0.1, np.inf, 0.1]), np.array([0.1, 0.1, 0.1])).equivalent
    assert equivalence_test(np.full(3, 0.1), np.full(3, 0.1)) == (1.0, 1.0, 1.0, 0.0, True)

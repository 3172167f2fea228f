"""Study statistics on scipy.stats: best grid point, intervals, time-to-target, paired and
equivalence tests, and what a number of seeds can and cannot show.

All functions take host arrays named by axes (H grid, S seeds, E evals). Diverged runs carry a
final MSE of +inf (NaN is treated the same): they rank last, are counted, and are left out of
means and intervals, never silently turned into numbers. Finite values up to float64's maximum
are averaged without overflow (each interval is computed on the values over their largest).

- :func:`bootstrap_mean_ci`: percentile (or BCa) bootstrap of the mean, ``scipy.stats.bootstrap``
  with a local seeded generator; :func:`t_mean_ci`: the Student-t interval, reported beside it
  (with few seeds the percentile bootstrap is too narrow: at 4 seeds about half the t width);
- :func:`sign_test`: exact two-sided sign test, ``scipy.stats.binomtest``; with ``n`` seeds its
  p-value cannot go below ``2^(1-n)`` (:func:`min_sign_test_p`, :func:`seed_note`);
- :func:`equivalence_test`: Welch TOST on log values (``scipy.stats.ttest_ind``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import scipy.stats

from jaxopt_cmp.results import StudyResult

LEVEL = 0.95  # every interval of a summary
N_BOOT = 4000
ALPHA = 0.05  # the significance level the seed-count notes speak of


class Interval(NamedTuple):
    """A point estimate and its interval (NaN where the values cannot give one)."""

    estimate: float
    low: float
    high: float


NO_VALUES = Interval(math.nan, math.nan, math.nan)


@dataclass(frozen=True)
class OptimizerSummary:
    """One optimizer at its best grid point: lowest median final MSE over seeds on the metric
    ``selected_by`` ("validation MSE"; "training MSE" when the study has no validation set).

    ``mean``/``ci_low``/``ci_high``: mean of the finite final training MSEs and its bootstrap interval;
    ``t_low``/``t_high``: the Student-t interval of the same mean; ``finite_at_best``: how many
    seeds those use. ``sign_test_min_p``: the smallest p a paired sign test over ``n_seeds``
    seeds can give; :meth:`note` says in words what that means.
    """

    name: str
    best: int
    hparams: dict[str, float]
    mean: float
    ci_low: float
    ci_high: float
    median: float
    diverged_at_best: int
    diverged_total: int
    runs_total: int
    steps_to_target_median: float  # nan when fewer than half of the seeds reach the target
    reached: int
    n_seeds: int
    t_low: float = math.nan
    t_high: float = math.nan
    finite_at_best: int = 0
    sign_test_min_p: float = 1.0
    selected_by: str = "training MSE"
    val_median: float = math.nan  # final validation MSE, median over seeds (NaN: no validation set)
    test_median: float = math.nan  # final test MSE at the selected point: the number to report
    test_mean: float = math.nan
    test_ci_low: float = math.nan  # bootstrap interval of test_mean
    test_ci_high: float = math.nan

    def note(self, alpha: float = ALPHA) -> str:
        """:func:`seed_note` for this summary's seeds ("" when they are enough)."""
        return seed_note(self.n_seeds, alpha)


class PairedComparison(NamedTuple):
    """Optimizer ``better`` (lower median) against ``worse``, paired by seed: the fraction of
    seeds where ``better`` ended lower, and the exact two-sided sign-test p-value."""

    better: str
    worse: str
    fraction: float
    p_value: float


class Equivalence(NamedTuple):
    """Welch TOST on ``log b - log a``: ``ratio`` = exp(mean difference) (b's geometric mean over
    a's), its ``1 - 2 alpha`` interval, the TOST p-value and whether the ratio lies within the margin."""

    ratio: float
    ci_low: float
    ci_high: float
    p_value: float
    equivalent: bool


# ---------------------------------------------------------------------------------------------
# Intervals of the mean


def _finite_scaled(values) -> tuple[np.ndarray, float]:
    """The finite values over a power of two near their largest magnitude (exact), and that power."""
    v = np.asarray(values, np.float64).ravel()
    v = v[np.isfinite(v)]
    scale = float(np.ldexp(1.0, np.frexp(np.max(np.abs(v)))[1] - 1)) if v.size and np.any(v) else 1.0
    return v / scale, scale


def _unscale(interval: tuple[float, float, float], scale: float) -> Interval:
    with np.errstate(over="ignore"):  # a bound beyond float64's range is reported as inf
        return Interval(*(float(np.float64(x) * scale) for x in interval))


def bootstrap_mean_ci(
    values, level: float = LEVEL, n_boot: int = N_BOOT, seed: int = 0, method: str = "percentile"
) -> Interval:
    """Bootstrap interval of the mean of the finite values (``scipy.stats.bootstrap``, ``method``
    "percentile" or "BCa", a local generator seeded by ``seed``). One value: no interval (NaN)."""
    v, scale = _finite_scaled(values)
    if v.size == 0:
        return NO_VALUES
    mean = float(np.mean(v))
    if v.size == 1 or np.all(v == v[0]):  # no spread: the bootstrap has nothing to resample
        return _unscale((mean, math.nan, math.nan) if v.size == 1 else (mean, mean, mean), scale)
    res = scipy.stats.bootstrap(
        (v,), np.mean, n_resamples=n_boot, confidence_level=level, method=method, rng=np.random.default_rng(seed)
    )
    return _unscale((mean, res.confidence_interval.low, res.confidence_interval.high), scale)


def t_mean_ci(values, level: float = LEVEL) -> Interval:
    """Student-t interval of the mean of the finite values: ``mean +- t_{n-1} s / sqrt(n)``."""
    v, scale = _finite_scaled(values)
    if v.size == 0:
        return NO_VALUES
    mean = float(np.mean(v))
    if v.size == 1:
        return _unscale((mean, math.nan, math.nan), scale)
    half = scipy.stats.t.ppf((1 + level) / 2, v.size - 1) * np.std(v, ddof=1) / math.sqrt(v.size)
    return _unscale((mean, mean - half, mean + half), scale)


# ---------------------------------------------------------------------------------------------
# Tests across seeds, and what a number of seeds can show


def sign_test(a_S, b_S) -> tuple[float, float]:
    """Paired across seeds: (fraction of seeds where a < b, exact two-sided sign-test p-value).

    Ties (equal values, e.g. both diverged) are dropped from the test, as usual for a sign test.
    """
    a_S, b_S = np.asarray(a_S, np.float64), np.asarray(b_S, np.float64)
    wins, losses = int(np.sum(a_S < b_S)), int(np.sum(a_S > b_S))
    if wins + losses == 0:
        return 0.0, 1.0
    return wins / a_S.size, float(scipy.stats.binomtest(wins, wins + losses, 0.5).pvalue)


def min_sign_test_p(n_seeds: int) -> float:
    """The smallest two-sided sign-test p over ``n_seeds`` pairs (every seed one way): 2^(1-n)."""
    return min(1.0, 2.0 ** (1 - n_seeds)) if n_seeds > 0 else 1.0


def min_seeds(alpha: float = ALPHA) -> int:
    """The fewest seeds with which a two-sided sign test can reach ``p < alpha`` at all."""
    return next(n for n in range(1, 64) if min_sign_test_p(n) < alpha)


def recommended_seeds(win_rate: float = 0.8, alpha: float = ALPHA, power: float = 0.8) -> int:
    """The fewest seeds with which a two-sided sign test at ``alpha`` detects, with probability
    ``power``, an optimizer that ends lower on a fraction ``win_rate`` of seeds (20 at the defaults)."""
    for n in range(1, 1000):
        k = np.arange(n + 1)
        rejected = 2 * scipy.stats.binom.cdf(k, n, 0.5) < alpha  # losses <= k reject (and, mirrored, wins)
        if rejected.any():
            k_max = int(k[rejected][-1])
            hit = scipy.stats.binom.cdf(k_max, n, 1 - win_rate) + scipy.stats.binom.cdf(k_max, n, win_rate)
            if hit >= power:
                return n
    raise ValueError(f"no seed count up to 1000 reaches power {power} at win_rate {win_rate}")


def seed_note(n_seeds: int, alpha: float = ALPHA) -> str:
    """What ``n_seeds`` seeds cannot show, in one sentence ("" when a sign test can reach
    ``p < alpha``), with the seed counts to use instead."""
    if min_sign_test_p(n_seeds) < alpha:
        return ""
    return (
        f"{n_seeds} seed{'s' * (n_seeds != 1)}: a paired sign test cannot reach p < {alpha:g} (its smallest p is "
        f"{min_sign_test_p(n_seeds):.3g}) and the bootstrap interval is too narrow; use >= {min_seeds(alpha)} seeds, "
        f"{recommended_seeds(alpha=alpha)} to detect an optimizer that wins on 80% of seeds (power 0.8)."
    )


def equivalence_test(a_S, b_S, margin: float = 1.25, alpha: float = ALPHA) -> Equivalence:
    """Two one-sided Welch t-tests that the ratio of geometric means ``b/a`` lies in
    ``[1/margin, margin]`` (H0: outside). Equivalent when both reject at ``alpha``: the
    ``1 - 2 alpha`` interval of the ratio lies inside the margin. Needs finite positive values."""
    with np.errstate(divide="ignore", invalid="ignore"):
        la, lb = np.log(np.asarray(a_S, np.float64)), np.log(np.asarray(b_S, np.float64))
    if not (np.all(np.isfinite(la)) and np.all(np.isfinite(lb))) or min(len(la), len(lb)) < 2:
        return Equivalence(math.nan, math.nan, math.nan, 1.0, False)
    d, delta = lb.mean() - la.mean(), math.log(margin)
    if la.var(ddof=1) + lb.var(ddof=1) == 0:  # no spread: equivalent exactly when inside
        inside = abs(d) < delta
        return Equivalence(math.exp(d), math.exp(d), math.exp(d), 0.0 if inside else 1.0, inside)
    welch = lambda shift, side: scipy.stats.ttest_ind(lb + shift, la, equal_var=False, alternative=side)
    p = max(welch(delta, "greater").pvalue, welch(-delta, "less").pvalue)
    ci = welch(0.0, "two-sided").confidence_interval(1 - 2 * alpha)
    return Equivalence(math.exp(d), math.exp(ci.low), math.exp(ci.high), float(p), bool(p < alpha))


# ---------------------------------------------------------------------------------------------
# A study's summary


def best_index(final_HS: np.ndarray) -> int:
    """Grid point with the lowest median final MSE over seeds (diverged or NaN = +inf); pass the
    validation MSE (:func:`selection_HS`) to select as the study's summaries do."""
    final_HS = np.asarray(final_HS, np.float64)
    return int(np.argmin(np.median(np.where(np.isnan(final_HS), np.inf, final_HS), axis=1)))


def steps_to_target(mse_ES: np.ndarray, eval_steps: np.ndarray, target: float) -> np.ndarray:
    """Per seed, the first evaluated step with MSE <= target, or -1 if never reached."""
    hit_ES = mse_ES <= target
    first_S = np.argmax(hit_ES, axis=0)
    return np.where(hit_ES.any(axis=0), np.asarray(eval_steps)[first_S], -1)


def selection_HS(result: StudyResult, name: str) -> np.ndarray:
    """The final MSEs that select ``name``'s best grid point: validation MSE, or training MSE when
    the study has no validation set (:attr:`StudyResult.selected_by`)."""
    chosen = result.heldout("val", name) if result.selected_by == "validation MSE" else result.mse_EHS[name]
    return np.asarray(chosen[-1], np.float64)


def _median(values) -> float:
    v = np.asarray(values, np.float64)
    return float(np.median(np.where(np.isnan(v), np.inf, v))) if not np.all(np.isnan(v)) else math.nan


def summarize_optimizer(result: StudyResult, name: str, target: float) -> OptimizerSummary:
    """:class:`OptimizerSummary` of optimizer ``name`` of ``result``."""
    mse_EHS = result.mse_EHS[name]
    final_HS = np.asarray(mse_EHS[-1], np.float64)
    h = best_index(selection_HS(result, name))
    test_S = np.asarray(result.heldout("test", name)[-1, h], np.float64)
    test_boot = bootstrap_mean_ci(test_S) if not np.all(np.isnan(test_S)) else NO_VALUES
    boot, t = bootstrap_mean_ci(final_HS[h]), t_mean_ci(final_HS[h])
    steps_S = steps_to_target(mse_EHS[:, h], result.eval_steps, target)
    reached = int(np.sum(steps_S >= 0))
    most_reach = reached and 2 * reached >= steps_S.size
    div_HS = result.diverged_at_HS[name] >= 0
    n_seeds = int(final_HS.shape[1])
    return OptimizerSummary(
        name=name,
        best=h,
        hparams={k: float(v[h]) for k, v in result.grid[name].items()},
        mean=boot.estimate,
        ci_low=boot.low,
        ci_high=boot.high,
        median=float(np.median(np.where(np.isnan(final_HS[h]), np.inf, final_HS[h]))),
        diverged_at_best=int(div_HS[h].sum()),
        diverged_total=int(div_HS.sum()),
        runs_total=int(div_HS.size),
        steps_to_target_median=float(np.median(np.where(steps_S < 0, np.inf, steps_S))) if most_reach else math.nan,
        reached=reached,
        n_seeds=n_seeds,
        t_low=t.low,
        t_high=t.high,
        finite_at_best=int(np.isfinite(final_HS[h]).sum()),
        sign_test_min_p=min_sign_test_p(n_seeds),
        selected_by=result.selected_by,
        val_median=_median(result.heldout("val", name)[-1, h]),
        test_median=_median(test_S),
        test_mean=test_boot.estimate,
        test_ci_low=test_boot.low,
        test_ci_high=test_boot.high,
    )


def summarize(result: StudyResult, target: float) -> list[OptimizerSummary]:
    """One :class:`OptimizerSummary` per optimizer of the study, in config order."""
    return [summarize_optimizer(result, name, target) for name in result.config.optimizer_names]


def paired_comparisons(result: StudyResult, summaries: list[OptimizerSummary]) -> list[PairedComparison]:
    """Every pair of optimizers at their best grid points, paired by seed (lower median first)."""
    finals = {s.name: result.mse_EHS[s.name][-1, s.best] for s in summaries}
    out = []
    for i, a in enumerate(summaries):
        for b in summaries[i + 1 :]:
            first, second = (a, b) if a.median <= b.median else (b, a)
            frac, p = sign_test(finals[first.name], finals[second.name])
            out.append(PairedComparison(first.name, second.name, frac, p))
    return out

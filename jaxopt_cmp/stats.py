"""Study statistics: best grid point, confidence intervals, time-to-target, paired comparisons.

All functions take host arrays named by axes (H grid, S seeds, E evals); diverged runs carry a
final MSE of +inf, so they rank last and are counted, never silently dropped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from jaxopt_cmp.results import StudyResult


@dataclass(frozen=True)
class OptimizerSummary:
    """One optimizer at its best grid point (lowest median final MSE over seeds)."""

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


def best_index(final_HS: np.ndarray) -> int:
    """Grid point with the lowest median final MSE over seeds (diverged = +inf)."""
    return int(np.argmin(np.median(final_HS, axis=1)))


def bootstrap_mean_ci(values: np.ndarray, level: float = 0.95, n_boot: int = 4000, seed: int = 0):
    """Percentile-bootstrap CI of the mean of the finite values (a local, seeded generator)."""
    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return math.nan, math.nan, math.nan
    if v.size == 1:
        return float(v[0]), float(v[0]), float(v[0])
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, v.size, (n_boot, v.size))].mean(axis=1)
    tail = 100 * (1 - level) / 2
    return float(v.mean()), float(np.percentile(means, tail)), float(np.percentile(means, 100 - tail))


def steps_to_target(mse_ES: np.ndarray, eval_steps: np.ndarray, target: float) -> np.ndarray:
    """Per seed, the first evaluated step with MSE <= target, or -1 if never reached."""
    hit_ES = mse_ES <= target
    first_S = np.argmax(hit_ES, axis=0)
    return np.where(hit_ES.any(axis=0), np.asarray(eval_steps)[first_S], -1)


def sign_test(a_S: np.ndarray, b_S: np.ndarray) -> tuple[float, float]:
    """Paired across seeds: (fraction of seeds where a < b, exact two-sided sign-test p-value).

    Ties (equal values, e.g. both diverged) are dropped from the test, as usual for a sign test.
    """
    a_S, b_S = np.asarray(a_S), np.asarray(b_S)
    wins, losses = int(np.sum(a_S < b_S)), int(np.sum(a_S > b_S))
    n = wins + losses
    if n == 0:
        return 0.0, 1.0
    k = min(wins, losses)
    p = min(1.0, 2 * sum(math.comb(n, i) for i in range(k + 1)) / 2**n)
    return wins / a_S.size, p


def summarize(result: StudyResult, target: float) -> list[OptimizerSummary]:
    rows = []
    for name in result.config.optimizer_names:
        mse_EHS = result.mse_EHS[name]
        final_HS = mse_EHS[-1]
        h = best_index(final_HS)
        mean, lo, hi = bootstrap_mean_ci(final_HS[h])
        steps_S = steps_to_target(mse_EHS[:, h], result.eval_steps, target)
        reached = steps_S[steps_S >= 0]
        most_reach = reached.size and 2 * reached.size >= steps_S.size
        div_HS = result.diverged_at_HS[name] >= 0
        rows.append(OptimizerSummary(
            name=name,
            best=h,
            hparams={k: float(v[h]) for k, v in result.grid[name].items()},
            mean=mean, ci_low=lo, ci_high=hi,
            median=float(np.median(final_HS[h])),
            diverged_at_best=int(div_HS[h].sum()),
            diverged_total=int(div_HS.sum()),
            runs_total=int(div_HS.size),
            steps_to_target_median=float(np.median(np.where(steps_S < 0, np.inf, steps_S))) if most_reach else math.nan,
            reached=int(reached.size),
            n_seeds=int(final_HS.shape[1]),
        ))
    return rows


def paired_comparisons(result: StudyResult, summaries: list[OptimizerSummary]):
    """Every ordered pair (a, b) of optimizers at their best grid points, paired by seed."""
    finals = {s.name: result.mse_EHS[s.name][-1, s.best] for s in summaries}
    out = []
    for i, a in enumerate(summaries):
        for b in summaries[i + 1:]:
            first, second = (a, b) if a.median <= b.median else (b, a)
            frac, p = sign_test(finals[first.name], finals[second.name])
            out.append((first.name, second.name, frac, p))
    return out

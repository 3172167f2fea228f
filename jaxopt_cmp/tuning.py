"""Tuning budgets: the expected test error after k random trials, selection by validation.

Dodge et al. 2019 ("Show your work"): draw k of an optimizer's N trials at random with
replacement, keep the one with the lowest validation MSE, report its test MSE. In closed form, with
the trials sorted by validation MSE, the trial of rank i (1-based) is kept with probability
``((N-i+1)/N)^k - ((N-i)/N)^k``. Per seed, then the mean over seeds with a bootstrap band
(:func:`jaxopt_cmp.stats.bootstrap_mean_ci`), and paired sign tests over seeds between optimizers.

Ties in validation MSE: tied trials form one group, kept with the group's probability (the same
formula over the group's rank range); which of the group's drawn trials is kept is then uniform, so
the group contributes the mean of its test MSEs (exact by symmetry). Diverged trials: a non-finite
validation MSE (inf or NaN) ranks last (as +inf); their test MSE (non-finite, or any value) is
replaced by ``fail_mse`` (default +inf, i.e. the expectation is inf while a diverged trial can be
kept, which it can at every k when any trial diverged: all k draws diverged has probability
``(d/N)^k > 0``). Pass a finite ``fail_mse`` (e.g. the MSE of predicting the mean of the data, "it
learned nothing") to keep the curve finite; it is stated where it is used.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from jaxopt_cmp.checks import check_int
from jaxopt_cmp.stats import bootstrap_mean_ci, sign_test

REPORT_KS = (1, 4, 16)  # plus N: the budgets the summary ranks at


def selection_probs(n: int, k: int) -> np.ndarray:
    """P(the trial of rank i = 1..n by validation is kept among k draws with replacement)."""
    n, k = check_int("n", n), check_int("k", k)
    i = np.arange(1, n + 1, dtype=np.float64)
    return ((n - i + 1) / n) ** k - ((n - i) / n) ** k


def expected_best(val_N, test_N, ks: Sequence[int], fail_mse: float = math.inf) -> np.ndarray:
    """Expected test MSE of the trial kept by validation among k random draws, for each k in ``ks``
    (one seed; ``val_N``, ``test_N``: the N trials' validation and test MSE). Ties and diverged
    trials as in the module's docstring. A budget ``k`` is a whole number of draws, >= 1."""
    ks = [check_int("k", k) for k in ks]
    val = np.asarray(val_N, np.float64).ravel()
    test = np.asarray(test_N, np.float64).ravel()
    if val.shape != test.shape or val.size == 0:
        raise ValueError(f"expected validation and test MSE of the same N >= 1 trials, got {val.shape}, {test.shape}")
    n = val.size
    diverged = ~np.isfinite(val)
    val = np.where(diverged, math.inf, val)
    test = np.where(diverged | ~np.isfinite(test), fail_mse, test)
    order = np.argsort(val, kind="stable")
    val, test = val[order], test[order]
    starts = np.flatnonzero(np.r_[True, val[1:] != val[:-1]])  # first rank (0-based) of each tie group
    ends = np.r_[starts[1:], n]
    group_test = np.array([np.mean(test[a:b]) for a, b in zip(starts, ends)])
    out = []
    for k in ks:
        p = ((n - starts) / n) ** k - ((n - ends) / n) ** k  # P(the kept trial is in this group)
        with np.errstate(invalid="ignore"):  # 0 * inf: a group that cannot be kept adds 0 (below)
            terms = np.where(p > 0, p * group_test, 0.0)
        out.append(float(np.sum(terms)))
    return np.asarray(out)


def budget_curve(val_NS, test_NS, ks: Sequence[int], fail_mse: float = math.inf) -> np.ndarray:
    """:func:`expected_best` for every seed: ``len(ks) x S`` (inputs: trials x seeds)."""
    val_NS, test_NS = np.asarray(val_NS, np.float64), np.asarray(test_NS, np.float64)
    return np.stack([expected_best(val_NS[:, s], test_NS[:, s], ks, fail_mse) for s in range(val_NS.shape[1])], 1)


def budget_rows(curves: Mapping[tuple[str, str], np.ndarray], ks: Sequence[int]) -> list[dict]:
    """``budget.csv`` rows (optimizer, schedule, k, expected_test_mse, lo, hi): the mean over seeds
    of each ``(optimizer, schedule)``'s ``len(ks) x S`` curve with its bootstrap band (seeded, so the
    file is reproducible). A non-finite mean (a diverged trial with ``fail_mse`` inf) is written as inf."""
    rows = []
    for (opt, schedule), curve_KS in curves.items():
        for j, k in enumerate(ks):
            values = curve_KS[j]
            if not np.all(np.isfinite(values)):
                mean, lo, hi = math.inf, math.nan, math.nan
            else:
                mean, lo, hi = bootstrap_mean_ci(values)
            rows.append(dict(optimizer=opt, schedule=schedule, k=int(k), expected_test_mse=mean, lo=lo, hi=hi))
    return rows


def report_ks(n: int) -> tuple[int, ...]:
    """The budgets the summary ranks at: 1, 4, 16 (those <= N) and N."""
    return tuple(sorted({k for k in REPORT_KS if k <= n} | {n}))


def ranking(curves: Mapping[tuple[str, str], np.ndarray], ks: Sequence[int], k: int) -> list[dict]:
    """The ``(optimizer, schedule)`` pairs ordered by mean expected test MSE at budget ``k`` (ties
    keep the mapping's order), each with the paired sign test over seeds against the next one:
    ``win_rate`` (fraction of seeds where it is lower) and ``p``."""
    j = list(ks).index(k)
    means = {key: float(np.mean(c[j])) for key, c in curves.items()}
    order = sorted(curves, key=lambda key: means[key])
    rows = []
    for a, b in zip(order, order[1:] + [None]):
        win, p = sign_test(curves[a][j], curves[b][j]) if b is not None else (math.nan, math.nan)
        rows.append(dict(optimizer=a[0], schedule=a[1], k=k, mean=means[a], vs=b, win_rate=win, p=p))
    return rows

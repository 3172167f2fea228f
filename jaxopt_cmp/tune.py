"""The tuning protocol of issue 19: does the ranking of optimizers survive schedules and equal tuning?

Per schedule, one study: every optimizer gets N trials drawn from its default search space
(:func:`jaxopt_cmp.search.default_space`, the same trials under every schedule: paired) plus one
more grid point, the last (index N), at its registry defaults; every grid point runs on every seed.
From the saved results: the budget curves of :mod:`jaxopt_cmp.tuning` (expected test MSE of the
trial kept by validation MSE among k random trials, k = 1..N, per seed), the ranking at each
reported budget with paired sign tests over seeds, where the leader changes, and "defaults vs
tuned" (the registry defaults beside the best of the N trials by validation).

A diverged trial counts as the test MSE of predicting the test targets' mean
(:func:`mean_predictor_mse`: "it learned nothing"), and so does a trial that ended finite but
worse than that (test MSE clipped at it): a momentum trial at lr 0.05 and momentum 0.92 ended
at a test MSE of 13,000 without overflowing, and at k = 1 such trials, not the optimizer's
typical result, decided the mean. Selection still uses each trial's own validation MSE. The
summary states the value.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from jaxopt_cmp.checks import ConfigError
from jaxopt_cmp.config import StudyConfig
from jaxopt_cmp.data import Data
from jaxopt_cmp.io import format_table
from jaxopt_cmp.optimizers import OPTIMIZERS
from jaxopt_cmp.results import StudyResult
from jaxopt_cmp.schedules import DEFAULTS as SCHEDULE_DEFAULTS
from jaxopt_cmp.search import swept
from jaxopt_cmp.stats import bootstrap_mean_ci, sign_test
from jaxopt_cmp.tuning import budget_curve, ranking, report_ks

DEFAULT_OPTIMIZERS = ("sgd", "momentum", "nesterov", "adam", "adamw", "rmsprop")
DEFAULT_SCHEDULES = ("constant", "cosine")
DEFAULT_TRIALS = 64
DEFAULT_SEEDS = 4

Curves = dict[tuple[str, str], np.ndarray]  # (optimizer, schedule) -> K x S expected test MSE, k = 1..N


def trial_hparams(
    names: Sequence[str], schedule: str, trials: int, method: str = "random", root_seed: int = 0, space=()
) -> dict[str, dict[str, tuple[float, ...]]]:
    """Per optimizer, the N trials of ``space`` (``--space`` texts; each optimizer's default space
    when empty) followed by one grid point at the registry defaults: N + 1 grid points."""
    drawn = swept(names, schedule, space=space, method=method, trials=trials, root_seed=root_seed)
    out = {}
    for name in names:
        defaults = {**SCHEDULE_DEFAULTS, **OPTIMIZERS[name].defaults}  # a searched warmup too
        out[name] = {k: (*v, float(defaults[k])) for k, v in drawn[name].items()}
    return out


def check_heldout(cfg: StudyConfig) -> None:
    """Tuning keeps trials by validation MSE and answers in test MSE: user data (``--data``) must
    hold out both, or every trial would be trained for budgets that all read inf."""
    for key in ("val_fraction", "test_fraction"):
        if cfg.data.source and getattr(cfg.data, key) == 0:
            why = "expected > 0 with --data: tuning selects trials by validation MSE and reports test MSE"
            raise ConfigError(key, getattr(cfg.data, key), why)


def mean_predictor_mse(cfg: StudyConfig, data: Data | None = None) -> float:
    """Test MSE of predicting the test targets' mean: the score of a trial that learned nothing,
    given to diverged trials (inf when there is no test set)."""
    from jaxopt_cmp.data import make_test, split_user_data

    test = make_test(cfg.data) if data is None else split_user_data(data, cfg.data, cfg.seed)[2]
    if test is None or len(test.y) == 0:
        return math.inf
    return float(np.var(np.asarray(test.y, np.float64)))


def _final_val_test(result: StudyResult, name: str, fail_mse: float) -> tuple[np.ndarray, np.ndarray]:
    """Final validation and test MSE, ``H x S``: validation +inf and test ``fail_mse`` where the run
    diverged; test at most ``fail_mse``."""
    val = np.asarray(result.heldout("val", name)[-1], np.float64)
    test = np.asarray(result.heldout("test", name)[-1], np.float64)
    diverged = (result.diverged_at_HS[name] >= 0) | ~np.isfinite(val) | ~np.isfinite(test)
    return np.where(diverged, np.inf, val), np.where(diverged, fail_mse, np.minimum(test, fail_mse))


def curves(results: Mapping[str, StudyResult], trials: int, fail_mse: float) -> Curves:
    """``(optimizer, schedule) -> K x S`` budget curves (k = 1..``trials``) over the first
    ``trials`` grid points of each schedule's study (the defaults point is not a trial)."""
    out = {}
    for schedule, result in results.items():
        for name in result.mse_EHS:
            val, test = _final_val_test(result, name, fail_mse)
            out[(name, schedule)] = budget_curve(val[:trials], test[:trials], range(1, trials + 1), fail_mse)
    return out


def defaults_vs_tuned(results: Mapping[str, StudyResult], trials: int, fail_mse: float) -> list[dict]:
    """Per (optimizer, schedule): mean test MSE over seeds at the registry defaults (grid point
    ``trials``) and of the best of the N trials by validation, with the paired sign test."""
    rows = []
    for schedule, result in results.items():
        for name in result.mse_EHS:
            val, test = _final_val_test(result, name, fail_mse)
            best = np.argmin(val[:trials], axis=0)  # all diverged: index 0, whose test is fail_mse
            tuned = test[best, np.arange(test.shape[1])]
            default = test[trials]
            win, p = sign_test(tuned, default)
            rows.append(
                dict(
                    optimizer=name,
                    schedule=schedule,
                    defaults=float(np.mean(default)),
                    tuned=float(np.mean(tuned)),
                    tuned_lo=bootstrap_mean_ci(tuned).low,
                    tuned_hi=bootstrap_mean_ci(tuned).high,
                    tuned_wins=win,
                    p=p,
                )
            )
    return rows


def leaders(curve: Curves) -> list[dict]:
    """The (optimizer, schedule) with the lowest mean expected test MSE, as runs of budgets:
    ``[{"from_k", "to_k", "optimizer", "schedule", "tied"}, ...]``; more than one run: the ranking
    flips. Where several pairs share the lowest mean there is no leader: ``optimizer`` and
    ``schedule`` are None and ``tied`` lists the pairs (``[]`` when one pair leads)."""
    keys = list(curve)
    n = next(iter(curve.values())).shape[0]
    means = np.array([[np.mean(curve[key][j]) for key in keys] for j in range(n)])  # K x pairs
    runs = []
    for k, row in enumerate(means, start=1):
        tied = [keys[i] for i in np.flatnonzero(row == np.min(row))]
        lead = tied[0] if len(tied) == 1 else (None, None)
        entry = dict(optimizer=lead[0], schedule=lead[1], tied=[] if len(tied) == 1 else [list(t) for t in tied])
        if runs and {q: runs[-1][q] for q in entry} == entry:
            runs[-1]["to_k"] = k
        else:
            runs.append(dict(from_k=k, to_k=k, **entry))
    return runs


def _lead_text(run: dict, pairs: int) -> str:
    if not run["tied"]:
        return f"{run['optimizer']} ({run['schedule']})"
    if len(run["tied"]) == pairs:
        return "no leader, every pair ties"
    return "no leader, a tie of " + ", ".join(f"{o} ({s})" for o, s in run["tied"])


def rankings(curve: Curves) -> dict[int, list[dict]]:
    """The ranking at each reported budget (1, 4, 16 and N), each row with its mean's bootstrap
    band over seeds and the paired sign test against the next row."""
    n = next(iter(curve.values())).shape[0]
    ks = list(range(1, n + 1))
    out = {}
    for k in report_ks(n):
        rows = ranking(curve, ks, k)
        for r in rows:
            interval = bootstrap_mean_ci(curve[(r["optimizer"], r["schedule"])][k - 1])
            r["lo"], r["hi"] = interval.low, interval.high
            r["vs"] = None if r["vs"] is None else f"{r['vs'][0]} ({r['vs'][1]})"
        out[k] = rows
    return out


def answer(curve: Curves, dvt: list[dict], trials: int, seeds: int, fail_mse: float) -> dict:
    """The JSON-ready answer: settings, rankings at each reported budget, leader runs, defaults vs tuned."""
    return dict(
        trials=trials,
        seeds=seeds,
        fail_mse=fail_mse,
        selection="validation MSE (final evaluation); reported: test MSE against the noise-free target",
        rankings={str(k): rows for k, rows in rankings(curve).items()},
        leaders=leaders(curve),
        defaults_vs_tuned=dvt,
    )


def _g(v: float) -> str:
    return f"{v:.4g}" if math.isfinite(v) else "n/a"


def summary_text(ans: Mapping) -> str:
    """The printed summary of :func:`answer`."""
    lines = [
        f"Tuning budget: {ans['trials']} {ans.get('search', 'drawn')} trials per optimizer and schedule, "
        f"{ans['seeds']} seeds, every trial on every seed; kept by validation MSE, reported: expected test MSE "
        "(mean over seeds [95% bootstrap band]).",
        f"Diverged trials, and trials whose test MSE is worse, count as {_g(ans['fail_mse'])}: the test MSE of "
        "predicting the test targets' mean.",
    ]
    for k, rows in ans["rankings"].items():
        table = [
            [i + 1, f"{r['optimizer']} ({r['schedule']})", f"{_g(r['mean'])} [{_g(r['lo'])}, {_g(r['hi'])}]"]
            + ([r["vs"], f"{r['win_rate']:.2f}", f"{r['p']:.3g}"] if r["vs"] else ["", "", ""])
            for i, r in enumerate(rows)
        ]
        header = ["rank", f"k = {k}", "expected test MSE", "vs next", "seeds lower", "sign-test p"]
        lines += ["", format_table(header, table)]
    runs, pairs = ans["leaders"], len(ans["defaults_vs_tuned"])
    lead = "; ".join(f"k = {r['from_k']}..{r['to_k']}: {_lead_text(r, pairs)}" for r in runs)
    verdict = (
        "no single leader at any budget"
        if all(r["tied"] for r in runs)
        else "the leader changes (the ranking flips)"
        if len(runs) > 1
        else "the same leader at every budget"
    )
    lines += ["", f"Lowest mean by budget: {lead} -- {verdict}."]
    table = [
        [f"{r['optimizer']} ({r['schedule']})", _g(r["defaults"]), f"{_g(r['tuned'])} [{_g(r['tuned_lo'])}, "
         f"{_g(r['tuned_hi'])}]", f"{r['tuned_wins']:.2f}", f"{r['p']:.3g}"]
        for r in ans["defaults_vs_tuned"]
    ]  # fmt: skip
    header = ["defaults vs tuned", "at registry defaults", "best of N by validation", "seeds tuned lower", "p"]
    lines += ["", format_table(header, table), "(test MSE, mean over seeds)"]
    return "\n".join(lines)

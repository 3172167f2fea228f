"""The problem suite (issue 22): every problem x optimizers x lr grid x seeds, summarised by
performance profiles (Dolan and More 2002, as AlgoPerf uses them) and a cross-problem ranking.

Per problem, each optimizer is taken at its best learning rate (lowest median final
*validation* MSE over seeds, :func:`jaxopt_cmp.stats.best_index`) and scored on the test set:

- **target** (:func:`problem_target`): the median over optimizers of their median final test MSE
  -- about half the optimizers reach it, whatever the problem's scale; none (inf) where at least
  half of them diverged at every lr: such a problem is named in the summary, nobody reaches its
  target and it is left out of the performance profile;
- **steps to target** (:func:`steps_to_reach`): the first evaluated step at which the median
  test MSE over seeds is at or below the target (inf: never);
- **performance profile** (:func:`performance_profile`): ratio ``r[p, o] = steps[p, o] /
  min_o steps[p, o]`` and ``rho_o(tau)`` = the fraction of problems with ``r[p, o] <= tau``, for
  tau in [1, 4] (Dolan and More's rho at the steps metric);
- **ranking** (:func:`ranking`): per optimizer the geometric mean over problems of its test
  error divided by the best optimizer's on that problem (each error the geometric mean over
  seeds of the final test MSE), with a percentile bootstrap interval over seeds (seeds resampled
  jointly for every problem and optimizer, seeded).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from jaxopt_cmp.config import StudyConfig
from jaxopt_cmp.data import Data
from jaxopt_cmp.problems import PROBLEMS, get_problem
from jaxopt_cmp.results import StudyResult
from jaxopt_cmp.stats import LEVEL, Interval, best_index, bootstrap_mean_ci, selection_HS

DEFAULT_OPTIMIZERS = ("sgd", "momentum", "adam", "adamw", "rmsprop", "nesterov")
DEFAULT_LRS = (1e-3, 1e-2, 1e-1)
TAUS = np.linspace(1.0, 4.0, 61)
N_BOOT = 2000


# The default suite's sizes (README: The problem suite), chosen to run in minutes on 2 cores;
# generated problems only: their training, validation and (1-D) test set sizes.
DEFAULT_SIZES = {"iters": 1500, "eval_every": 100, "seeds": 4}
GENERATED_SIZES = {"n_data": 2000, "n_val": 500}
ONE_D_SIZES = {"n_test": 500}


def suite_studies(
    problems: tuple[str, ...] = tuple(PROBLEMS),
    optimizers: tuple[str, ...] = DEFAULT_OPTIMIZERS,
    lrs: tuple[float, ...] = DEFAULT_LRS,
    sizes: dict | None = None,
    generated: dict | None = None,
    **model,
) -> list[tuple[str, StudyConfig, Data | None]]:
    """``(problem, config, data)`` of every suite study, all checked (a missing extra, an
    unknown problem or a bad setting raises before anything compiles). ``sizes`` (default
    :data:`DEFAULT_SIZES`) apply to every problem, ``generated`` (default :data:`GENERATED_SIZES`
    and, for 1-D targets, :data:`ONE_D_SIZES`) to generated ones; ``model`` (``hidden``,
    ``activation``) replaces each problem's default model."""
    out = []
    for name in problems:
        p = get_problem(name)
        settings = {**DEFAULT_SIZES, **(sizes or {}), **model}
        if not p.tabular:
            one_d = {**GENERATED_SIZES, **(ONE_D_SIZES if p.settings.get("xdim", 1) == 1 else {})}
            settings.update(one_d if generated is None else generated)
        cfg = p.study(optimizers=optimizers, lr=list(lrs), record_predictions=True, **settings)
        out.append((name, cfg, p.load(cfg)))
    return out


class Outcome(NamedTuple):
    """One problem's result reduced to what the suite compares, per optimizer (axis O, config
    order): the best grid point, its lr, the median test MSE over seeds at every evaluation
    ``(O, E)``, and the final test MSE per seed ``(O, S)``."""

    problem: str
    names: tuple[str, ...]
    eval_steps: np.ndarray
    best_O: np.ndarray
    lr_O: np.ndarray
    curve_OE: np.ndarray
    final_OS: np.ndarray


def outcome(problem: str, result: StudyResult) -> Outcome:
    names = result.config.optimizer_names
    best, curves, finals = [], [], []
    for n in names:
        h = best_index(selection_HS(result, n))
        test_ES = np.asarray(result.heldout("test", n)[:, h], np.float64)
        test_ES = np.where(np.isnan(test_ES), np.inf, test_ES)
        best.append(h)
        curves.append(np.median(test_ES, axis=1))
        finals.append(test_ES[-1])
    lr = np.array([result.grid[n]["lr"][h] for n, h in zip(names, best, strict=True)])
    steps = np.asarray(result.eval_steps)
    return Outcome(problem, names, steps, np.array(best), lr, np.array(curves), np.array(finals))


def problem_target(final_OS: np.ndarray) -> float:
    """The median over optimizers of each optimizer's median final test MSE over seeds."""
    return float(np.median(np.median(final_OS, axis=1)))


def steps_to_reach(curve_OE: np.ndarray, eval_steps: np.ndarray, target: float) -> np.ndarray:
    """Per optimizer the first evaluated step whose (median) test MSE is <= ``target``; inf if none,
    and for every optimizer when there is no target (not finite: a diverged run never reaches it)."""
    hit_OE = np.isfinite(target) & (np.asarray(curve_OE) <= target)
    first = np.asarray(eval_steps, np.float64)[np.argmax(hit_OE, axis=1)]
    return np.where(hit_OE.any(axis=1), first, np.inf)


def performance_ratios(steps_PO: np.ndarray) -> np.ndarray:
    """``steps / fastest`` per problem (row); inf where an optimizer never reached the target or
    no optimizer did. A target met at step 0 counts as 1 step (no division by zero)."""
    steps_PO = np.maximum(np.asarray(steps_PO, np.float64), 1.0)
    best_P = np.min(steps_PO, axis=1, keepdims=True)
    with np.errstate(invalid="ignore"):
        ratio = steps_PO / best_P
    return np.where(np.isfinite(ratio), ratio, np.inf)


def performance_profile(steps_PO: np.ndarray, taus=TAUS) -> np.ndarray:
    """``rho_OT[o, t]``: the fraction of problems on which optimizer ``o`` reached the target
    within ``taus[t]`` x the fastest optimizer's steps."""
    ratio_PO = performance_ratios(steps_PO)
    return np.mean(ratio_PO[:, :, None] <= np.asarray(taus)[None, None, :], axis=0)


def _log_error_PO(final_POS: np.ndarray, seeds_idx: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return np.mean(np.log(final_POS[:, :, seeds_idx]), axis=2)


def ranking(final_POS: np.ndarray, n_boot: int = N_BOOT, seed: int = 0, level: float = LEVEL) -> list[Interval]:
    """Per optimizer: the geometric mean over problems of (its error / the best optimizer's
    error on that problem), errors the geometric mean over seeds of the final test MSE; and a
    percentile bootstrap interval, resampling seed indices (the same for every problem and
    optimizer) ``n_boot`` times with ``numpy.random.default_rng(seed)``. 1 = best everywhere."""
    final_POS = np.asarray(final_POS, np.float64)
    n_seeds = final_POS.shape[2]

    def score(idx):
        log_PO = _log_error_PO(final_POS, idx)
        with np.errstate(invalid="ignore"):
            rel = log_PO - np.min(log_PO, axis=1, keepdims=True)
        return np.exp(np.mean(np.where(np.isnan(rel), np.inf, rel), axis=0))

    point = score(np.arange(n_seeds))
    rng = np.random.default_rng(seed)
    boots = np.array([score(rng.integers(0, n_seeds, n_seeds)) for _ in range(n_boot)])
    tail = (1 - level) / 2 * 100
    with np.errstate(invalid="ignore"):  # inf - inf between infinite resamples
        low, high = np.nan_to_num(np.percentile(boots, [tail, 100 - tail], axis=0), nan=np.inf)
    return [Interval(float(p), float(lo), float(hi)) for p, lo, hi in zip(point, low, high, strict=True)]


class Ordering(NamedTuple):
    """Whether ``a < b < c`` by median final test MSE on one problem, with each one's mean and
    bootstrap interval (:func:`jaxopt_cmp.stats.bootstrap_mean_ci`)."""

    problem: str
    holds: bool
    medians: tuple[float, ...]
    intervals: tuple[Interval, ...]


def seed_ordering(out: Outcome, order: tuple[str, ...] = ("adam", "momentum", "sgd")) -> Ordering | None:
    """The seed study's finding (Adam < momentum < SGD on test MSE) checked on one problem; None
    if one of the three was not run."""
    if not set(order) <= set(out.names):
        return None
    rows = [out.final_OS[out.names.index(n)] for n in order]
    medians = tuple(float(np.median(r)) for r in rows)
    intervals = tuple(bootstrap_mean_ci(r) for r in rows)
    return Ordering(out.problem, all(a < b for a, b in zip(medians, medians[1:])), medians, intervals)


class Profiles(NamedTuple):
    """The suite's cross-problem summary: per problem its target and each optimizer's steps."""

    problems: tuple[str, ...]
    names: tuple[str, ...]
    target_P: np.ndarray
    steps_PO: np.ndarray
    taus: np.ndarray
    rho_OT: np.ndarray
    rank: list[Interval]


def profiles(outcomes: list[Outcome], taus=TAUS, n_boot: int = N_BOOT) -> Profiles:
    """Performance profiles and ranking of ``outcomes`` (the same optimizers and seed count each).
    The profile is over the problems with a target (rho NaN if none has one)."""
    names = outcomes[0].names
    if any(o.names != names or o.final_OS.shape != outcomes[0].final_OS.shape for o in outcomes):
        raise ValueError("profiles: every problem needs the same optimizers and seeds")
    target_P = np.array([problem_target(o.final_OS) for o in outcomes])
    steps_PO = np.array([steps_to_reach(o.curve_OE, o.eval_steps, t) for o, t in zip(outcomes, target_P, strict=True)])
    final_POS = np.stack([o.final_OS for o in outcomes])
    rank = ranking(final_POS, n_boot)
    problems = tuple(o.problem for o in outcomes)
    scored = np.isfinite(target_P)
    rho_OT = performance_profile(steps_PO[scored], taus) if scored.any() else np.full((len(names), len(taus)), np.nan)
    return Profiles(problems, names, target_P, steps_PO, np.asarray(taus), rho_OT, rank)


def profile_rows(p: Profiles) -> list[dict]:
    """``profiles.csv``: one row per optimizer and tau."""
    return [
        {"optimizer": n, "tau": float(t), "rho": float(p.rho_OT[o, i])}
        for o, n in enumerate(p.names)
        for i, t in enumerate(p.taus)
    ]


def steps_rows(p: Profiles, outcomes: list[Outcome]) -> list[dict]:
    """``problems.csv``: per problem and optimizer the best lr, final test MSE (median over
    seeds), the problem's target, the steps to reach it and the ratio to the fastest."""
    ratio_PO = performance_ratios(p.steps_PO)
    rows = []
    for i, out in enumerate(outcomes):
        for o, n in enumerate(p.names):
            rows.append(
                {
                    "problem": out.problem,
                    "optimizer": n,
                    "lr": float(out.lr_O[o]),
                    "test_mse_median": float(np.median(out.final_OS[o])),
                    "target": float(p.target_P[i]),
                    "steps_to_target": float(p.steps_PO[i, o]),
                    "ratio": float(ratio_PO[i, o]),
                }
            )
    return rows


def fmt(v: float) -> str:
    return "inf" if math.isinf(v) else f"{v:.3g}"


def problem_text(out: Outcome) -> str:
    """One problem's lines of a summary: why it is in the suite, each optimizer's best lr and test MSE."""
    lines = [f"{out.problem}: {PROBLEMS[out.problem].reason}"]
    for o, n in enumerate(out.names):
        lines.append(f"{n}: best lr {out.lr_O[o]:g}, final test MSE median {fmt(float(np.median(out.final_OS[o])))}")
    return "\n".join(lines)


def _no_target_lines(p: Profiles) -> list[str]:
    missing = [name for name, t in zip(p.problems, p.target_P) if not math.isfinite(t)]
    if not missing:
        return []
    left = (
        "the performance profile is undefined"
        if len(missing) == len(p.problems)
        else "left out of the performance profile"
    )
    return [f"no target on {', '.join(missing)}: at least half of the optimizers diverged at every lr ({left})"]


def summary_text(p: Profiles, outcomes: list[Outcome]) -> str:
    """The suite's tables: steps to target per problem, the ranking, and the seed's ordering."""
    from jaxopt_cmp.io import format_table

    lines = [
        f"{len(p.problems)} problems x {len(p.names)} optimizers; target per problem = median over optimizers "
        "of the median final test MSE (best lr by validation)",
        "steps to target:",
        format_table(
            ["problem", "target", *p.names],
            [
                [name, fmt(t) if math.isfinite(t) else "none", *(fmt(s) for s in p.steps_PO[i])]
                for i, (name, t) in enumerate(zip(p.problems, p.target_P))
            ],
        ),
        *_no_target_lines(p),
        "test error / best optimizer's, geometric mean over problems (95% bootstrap over seeds):",
        format_table(
            ["optimizer", "ratio", "interval"],
            [[n, fmt(r.estimate), f"[{fmt(r.low)}, {fmt(r.high)}]"] for n, r in zip(p.names, p.rank)],
        ),
    ]
    rows = []
    for out in outcomes:
        o = seed_ordering(out)
        if o is not None:
            cells = [f"{fmt(i.estimate)} [{fmt(i.low)}, {fmt(i.high)}]" for i in o.intervals]
            rows.append([out.problem, "yes" if o.holds else "no", *cells])
    if rows:
        lines += [
            "seed ordering adam < momentum < sgd (by median final test MSE); mean test MSE [95% bootstrap]:",
            format_table(["problem", "holds", "adam", "momentum", "sgd"], rows),
        ]
    return "\n".join(lines)

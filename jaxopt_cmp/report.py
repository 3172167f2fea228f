"""Plain-text tables of a :class:`StudyResult` and its statistics.

Importing this module imports no matplotlib; the figures are in :mod:`jaxopt_cmp.figures`.
Diverged runs (+inf MSE) read "diverged", never "inf" or "nan".
"""

from __future__ import annotations

import math

import numpy as np

from jaxopt_cmp.io import format_table  # noqa: F401  (a name the scripts use)
from jaxopt_cmp.results import StudyResult


def fmt_mse(value: float) -> str:
    """An MSE in 4 significant digits; +inf (a diverged run) as "diverged", NaN as "n/a"."""
    value = float(value)
    if math.isnan(value):
        return "n/a"
    return f"{value:.4g}" if math.isfinite(value) else "diverged"


def settings_text(result: StudyResult, h: dict[str, int] | None = None) -> str:
    """The settings of a run in one line (figure titles): iterations, batch, seeds, points and,
    when every optimizer ran at one and the same lr, that lr."""
    cfg = result.config
    text = f"{cfg.train.iters:,} iterations, batch {cfg.train.batch_size}, {cfg.seeds} seed"
    text += f"{'s' * (cfg.seeds > 1)}, {np.size(result.y_N):,} points"
    lrs = {_lr(result, n, h) for n in cfg.optimizer_names}
    if len(lrs) == 1 and None not in lrs and all(o.grid_size == 1 for o in cfg.optimizers):
        text += f", lr {lrs.pop():.3g}"
    return text


def _lr(result: StudyResult, name: str, h: dict[str, int] | None) -> float | None:
    lr_H = result.grid.get(name, {}).get("lr")
    return None if lr_H is None else float(lr_H[(h or {}).get(name, 0)])


def run_label(result: StudyResult, name: str, h: dict[str, int] | None = None) -> str:
    """``name`` (and its schedule unless constant), with its lr at grid point ``h[name]`` when a
    grid or ``h`` makes lrs differ."""
    lr = _lr(result, name, h)
    varies = h is not None or any(o.grid_size > 1 for o in result.config.optimizers)
    schedule = next((o.schedule for o in result.config.optimizers if o.name == name), "constant")
    label = name if schedule == "constant" else f"{name} {schedule}"
    return f"{label} (lr {lr:.3g})" if varies and lr is not None else label


def param_table(rows, total: int) -> str:
    body = [
        [i, name, shape, np.array2string(np.asarray(vals), precision=3, separator=" ")]
        for i, (name, shape, vals) in enumerate(rows)
    ]
    return format_table(["#", "name", "shape", "first values"], body) + f"\nTotal parameters: {total:,}"


def final_table(result: StudyResult) -> str:
    """Per optimizer (grid point 0): final training (full-data) MSE over seeds, validation and test
    MSE (median; "n/a" without a held-out set), diverged count and, when timed separately (torch),
    train time; a jointly trained run's total time is given once below."""
    per_opt = result.timing.get("per_optimizer_s") or {}
    names = result.config.optimizer_names
    timed = all(n in per_opt for n in names)
    rows = []
    for name in names:
        final_S = np.asarray(result.mse_EHS[name][-1, 0], np.float64)
        n_bad = int(np.sum(~np.isfinite(final_S)))
        spread = f" [{fmt_mse(final_S.min())}, {fmt_mse(final_S.max())}]" if final_S.size > 1 else ""
        median = np.median(np.where(np.isnan(final_S), np.inf, final_S))
        held = [fmt_mse(_median(result.heldout(kind, name)[-1, 0])) for kind in ("val", "test")]
        row = [name, f"{fmt_mse(median)}{spread}", *held, f"{n_bad}/{final_S.size}"]
        rows.append(row + [f"{per_opt[name]:.2f}"] if timed else row)
    what = "median [min, max] over seeds" if result.config.seeds > 1 else "seed 0"
    header = ["optimizer", f"final train MSE ({what})", "val MSE", "test MSE", "diverged"]
    header += ["train s"] if timed else []
    table = format_table(header, rows)
    train_s = result.timing.get("train_s")
    if not timed and train_s is not None:
        where = result.versions.get("placement", "one device")
        which = f"for all {len(names)} optimizers " if len(names) > 1 else ""
        table += f"\ntrain {train_s:.2f} s {which}(one compiled program; {where})"
    return table


def _median(values) -> float:
    """Median over seeds with NaN as +inf (diverged); NaN when every value is NaN (not recorded)."""
    v = np.asarray(values, np.float64)
    return math.nan if np.all(np.isnan(v)) else float(np.median(np.where(np.isnan(v), np.inf, v)))


def _interval(low: float, high: float) -> str:
    return f"[{fmt_mse(low)}, {fmt_mse(high)}]" if np.isfinite(low) and np.isfinite(high) else ""


def study_table(summaries, target: float) -> str:
    """Per optimizer (:class:`jaxopt_cmp.stats.OptimizerSummary`): best hyperparameters (selected
    by validation MSE, or training MSE without a validation set: the header says which), the
    selected point's test MSE (median over seeds) and final training MSE mean with its 95%
    bootstrap and Student-t intervals, divergences, time-to-target; then what the number of seeds
    cannot show (``note()``), once."""
    rows = []
    for s in summaries:
        hp = ", ".join(f"{k}={v:.3g}" for k, v in s.hparams.items() if k == "lr" or len(s.hparams) <= 2)
        ttt = f"{s.steps_to_target_median:.0f}" if np.isfinite(s.steps_to_target_median) else "not reached"
        mean = "all diverged" if not np.isfinite(s.mean) and s.diverged_at_best else fmt_mse(s.mean)
        rows.append([
            s.name,
            hp,
            fmt_mse(s.test_median),
            f"{mean} {_interval(s.ci_low, s.ci_high)}".rstrip(),
            _interval(s.t_low, s.t_high) or "-",
            f"{s.diverged_at_best}/{s.n_seeds} (grid: {s.diverged_total}/{s.runs_total})",
            f"{ttt} ({s.reached}/{s.n_seeds} seeds)",
        ])  # fmt: skip
    by = summaries[0].selected_by if summaries else "validation MSE"
    header = [
        "optimizer",
        f"best (selected by {by})",
        "test MSE (median)",
        "final train MSE mean [95% bootstrap CI]",
        "[95% t-interval]",
        "diverged",
    ]
    notes = dict.fromkeys(s.note() for s in summaries if s.note())
    rule = f"best: the grid point with the lowest median final {by} over seeds; its test MSE is the number to report"
    table = format_table(header + [f"steps to MSE<={target:.3g}"], rows)
    return "\n".join([table, rule, *(f"note: {n}" for n in notes)])


def paired_table(pairs) -> str:
    """Sign tests between optimizers at their best grid points, paired by seed."""
    rows = [[f"{a} < {b}", f"{frac:.0%}", f"{p:.2g}"] for a, b, frac, p in pairs]
    return format_table(["paired by seed (best lr each)", "seeds where true", "sign-test p"], rows)

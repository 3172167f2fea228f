"""Study-level figures (returned, never shown): the tuning-budget curves of :mod:`jaxopt_cmp.tuning`."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib
import numpy as np

from jaxopt_cmp.render import Figure  # displays itself in a notebook (_repr_png_)


def tuning_budget_figure(rows: Sequence[dict]) -> Figure:
    """Expected test MSE of the trial selected by validation vs the number of trials k (log axes),
    one line per (optimizer, schedule) with its bootstrap band over seeds, from
    :func:`jaxopt_cmp.tuning.budget_rows`. Non-finite means (diverged trials kept with ``fail_mse``
    inf) are left out of the line; the legend says how many budgets were left out."""
    fig = Figure(figsize=(7, 4.5), dpi=100)
    ax = fig.add_subplot()
    keys = list(dict.fromkeys((r["optimizer"], r["schedule"]) for r in rows))
    # One color per optimizer, one line style per schedule: 12 lines stay apart (the default color
    # cycle repeats after 10)
    names, kinds = (list(dict.fromkeys(k[i] for k in keys)) for i in (0, 1))
    palette = [f"C{i}" for i in range(10)] if len(names) <= 10 else list(matplotlib.colormaps["tab20"].colors)
    colors = {n: palette[i % len(palette)] for i, n in enumerate(names)}
    styles = {s: ("-", "--", ":", "-.")[i % 4] for i, s in enumerate(kinds)}
    for opt, schedule in keys:
        mine = [r for r in rows if (r["optimizer"], r["schedule"]) == (opt, schedule)]
        k = np.array([r["k"] for r in mine], float)
        mean = np.array([r["expected_test_mse"] for r in mine], float)
        lo = np.array([r["lo"] for r in mine], float)
        hi = np.array([r["hi"] for r in mine], float)
        ok = np.isfinite(mean) & (mean > 0)
        missing = int(np.sum(~ok))
        label = f"{opt} ({schedule})" + (f", {missing} budgets inf" if missing else "")
        (line,) = ax.plot(k[ok], mean[ok], marker=".", ms=3, color=colors[opt], ls=styles[schedule], label=label)
        band = ok & np.isfinite(lo) & np.isfinite(hi) & (lo > 0)
        ax.fill_between(k[band], lo[band], hi[band], color=line.get_color(), alpha=0.2, linewidth=0)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("tuning budget k (trials drawn at random, kept by validation MSE)")
    ax.set_ylabel("expected test MSE (mean over seeds, 95% band)")
    ax.legend(fontsize=7, ncol=2 if len(keys) > 6 else 1)
    fig.tight_layout()
    return fig

"""Results: :class:`StudyResult` (host arrays named by axes), tidy tables, saving and loading.

A result directory holds ``arrays.npz`` (every array), ``runs.csv`` (one row per optimizer x
grid point x seed), ``history.csv`` (long form: one row per run and evaluation step) and
``results.json`` (config, versions, summary, schema). Beside each training (full-data) MSE the
files hold the validation and test MSE (NaN where the run had no held-out set: user data without
``val_fraction``/``test_fraction``, or results saved before schema 3). Every file is written to a temporary name
and renamed into place; ``results.json`` is written last and marks a complete directory.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from jaxopt_cmp.checks import ConfigError, import_extra
from jaxopt_cmp.config import StudyConfig, study_from_dict, to_dict
from jaxopt_cmp.io import Table, atomic_write_bytes, atomic_write_npz, dumps, json_restore, read_npz  # noqa: F401  (re-exported)

SCHEMA = "jaxopt_cmp.results/3"  # 3: validation and test MSE
OLD_SCHEMAS = ("jaxopt_cmp.results/1", "jaxopt_cmp.results/2")
REQUIRED = ("schema", "framework", "config", "versions", "eval_steps", "final_mse", "timing")
# Every file any script may write into its directory (removed by --overwrite before a new run of
# any of them, so no other script's stale files survive next to the new ones).
OUTPUTS = (
    "results.json",
    "arrays.npz",
    "runs.csv",
    "history.csv",
    "snapshots.png",
    "final_fit.png",
    "mse_curves.png",
    "fits.gif",
    "lr_sensitivity.png",
    "best_curves.png",
    "snapshots_best.png",
    "surface_maps.png",
    "predicted_vs_actual.png",
    "diagnostics.json",
    "diagnostics.md",
    "diagnostics.npz",
    "diag_sharpness.png",
    "diag_steps.png",
    "diag_spectra.png",
    "diag_error_regions.png",
    "diag_error_bands.png",
    "validation.json",
    "validation.md",
    "summary.txt",
    "report.html",
    "budget.csv",  # tune.py (its per-schedule studies are subdirectories)
    "tuning_budget.png",
    "tune.json",
)


class ResultsError(ValueError):
    """A results directory is missing, incomplete, from another tool or from another version."""


@dataclass(repr=False)
class StudyResult:
    """Host (numpy) arrays of a finished study, named by axes (E evals, H grid, S seeds, N data).

    ``grid[name][hp]`` holds every hyperparameter's values at the user's exact values (float64).
    ``x_N``/``y_N`` are seed 0's data and ``pred_EHN`` seed 0's predictions (empty when the config
    does not record them), for plots (a shard's: its first seed's). ``diverged_at_HS`` is -1 for
    runs that stayed finite.
    ``mse_EHS`` is the training (full-data) MSE; ``val_mse_EHS``/``test_mse_EHS`` the validation and
    test MSE (read them through :meth:`heldout`: NaN where there was no held-out set).
    """

    config: StudyConfig
    eval_steps: np.ndarray
    grid: dict[str, dict[str, np.ndarray]]
    mse_EHS: dict[str, np.ndarray]
    diverged_at_HS: dict[str, np.ndarray]
    params_HS: dict[str, object]
    pred_EHN: dict[str, np.ndarray]
    x_N: np.ndarray
    y_N: np.ndarray
    timing: dict[str, float] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    val_mse_EHS: dict[str, np.ndarray] = field(default_factory=dict)
    test_mse_EHS: dict[str, np.ndarray] = field(default_factory=dict)
    shard: dict = field(default_factory=dict)  # which part of a larger study (jaxopt_cmp.shards); {}: whole

    @property
    def final_mse_HS(self) -> dict[str, np.ndarray]:
        return {n: m[-1] for n, m in self.mse_EHS.items()}

    def heldout(self, kind: str, name: str) -> np.ndarray:
        """``kind`` "val" or "test": that MSE of optimizer ``name`` ``(E, H, S)``, NaN if not recorded."""
        saved = {"val": self.val_mse_EHS, "test": self.test_mse_EHS}[kind]
        return saved[name] if name in saved else np.full(np.shape(self.mse_EHS[name]), np.nan)

    @property
    def selected_by(self) -> str:
        """The metric that picks best grid points: "validation MSE", or "training MSE" when no
        run has a validation MSE (user data without held-out rows, results older than schema 3)."""
        has_val = any(not np.all(np.isnan(self.heldout("val", n))) for n in self.mse_EHS)
        return "validation MSE" if has_val else "training MSE"

    def __repr__(self) -> str:
        cfg = self.config
        grids = ", ".join(f"{o.name}[{o.grid_size}]" for o in cfg.optimizers)
        medians = ", ".join(f"{n} {_median(m[-1]):.4g}" for n, m in self.mse_EHS.items())
        return (
            f"StudyResult({grids} x {cfg.seeds} seed(s), {cfg.train.iters} iters; "
            f"median final MSE at grid point 0: {medians})"
        )

    def summary(self, target: float | None = None) -> Table:
        """Per optimizer at its best grid point (lowest median final MSE on the validation set, or
        the training data without one: :attr:`selected_by`): hyperparameters, test MSE median,
        training MSE median and mean with its 95% bootstrap CI, diverged runs, steps to ``target``.
        Prints as text; renders as HTML in a notebook."""
        from jaxopt_cmp import stats

        rows = []
        for s in stats.summarize(self, default_target(self.config) if target is None else target):
            hp = ", ".join(f"{k}={v:.3g}" for k, v in s.hparams.items())
            ttt = f"{s.steps_to_target_median:.0f}" if math.isfinite(s.steps_to_target_median) else "not reached"
            rows.append(
                [
                    s.name,
                    hp,
                    f"{s.test_median:.4g}",
                    f"{s.median:.4g}",
                    f"{s.mean:.4g} [{s.ci_low:.4g}, {s.ci_high:.4g}]",
                    f"{s.diverged_at_best}/{s.n_seeds}",
                    ttt,
                ]
            )
        header = [
            "optimizer",
            f"best grid point (by {self.selected_by})",
            "test MSE median",
            "train MSE median",
            "train mean [95% CI]",
            "diverged",
            "steps to target",
        ]
        return Table(header, rows)

    def rows(self, target: float | None = None) -> Iterator[dict]:
        """One dict per run (optimizer x grid point x seed): the ``runs.csv`` rows."""
        target = default_target(self.config) if target is None else target
        hp_names = hparam_columns(self)
        schedule = {o.name: getattr(o, "schedule", "constant") for o in self.config.optimizers}
        first = self.config.seed_offset  # a shard's seeds keep their index in the whole study
        for name, mse_EHS in self.mse_EHS.items():
            div_HS = self.diverged_at_HS[name]
            val_HS, test_HS = self.heldout("val", name)[-1], self.heldout("test", name)[-1]
            for h in range(mse_EHS.shape[1]):
                hp = {k: (float(self.grid[name][k][h]) if k in self.grid[name] else None) for k in hp_names}
                for s in range(mse_EHS.shape[2]):
                    hit = np.nonzero(mse_EHS[:, h, s] <= target)[0]
                    yield {
                        "optimizer": name,
                        "grid_index": h,
                        "seed": first + s,
                        "schedule": schedule.get(name, "constant"),
                        **hp,
                        "final_mse": float(mse_EHS[-1, h, s]),
                        "final_val_mse": float(val_HS[h, s]),
                        "final_test_mse": float(test_HS[h, s]),
                        "diverged_at": int(div_HS[h, s]) if div_HS[h, s] >= 0 else None,
                        "steps_to_target": int(self.eval_steps[hit[0]]) if hit.size else None,
                    }

    def history_rows(self) -> Iterator[dict]:
        """One dict per run and evaluation step: the ``history.csv`` rows."""
        first = self.config.seed_offset
        for name, mse_EHS in self.mse_EHS.items():
            val_EHS, test_EHS = self.heldout("val", name), self.heldout("test", name)
            for h in range(mse_EHS.shape[1]):
                for s in range(mse_EHS.shape[2]):
                    for e, step in enumerate(self.eval_steps):
                        yield {
                            "optimizer": name,
                            "grid_index": h,
                            "seed": first + s,
                            "step": int(step),
                            "mse": float(mse_EHS[e, h, s]),
                            "val_mse": float(val_EHS[e, h, s]),
                            "test_mse": float(test_EHS[e, h, s]),
                        }

    def to_frame(self, target: float | None = None):
        """A pandas DataFrame of :meth:`rows` (pandas is imported only here: the notebook extra)."""
        pd = import_extra("pandas", "notebook", "StudyResult.to_frame()")
        return pd.DataFrame(list(self.rows(target)))

    def history_frame(self):
        """A pandas DataFrame of :meth:`history_rows` (long form)."""
        pd = import_extra("pandas", "notebook", "StudyResult.history_frame()")
        return pd.DataFrame(list(self.history_rows()))


def default_target(cfg: StudyConfig) -> float:
    """The time-to-target threshold: twice the noise variance (0.0018 for the seed study)."""
    return 2 * cfg.data.noise_std**2 if cfg.data.noise_std > 0 else 1e-3


def hparam_columns(result: StudyResult) -> list[str]:
    names: list[str] = []
    for g in result.grid.values():
        names += [k for k in g if k not in names]
    return names


def _median(a) -> float:
    a = np.asarray(a, float)
    return float(np.median(a)) if a.size else math.nan


def csv_text(rows: Iterator[dict], columns: list[str]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, columns, lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: ("" if v is None else repr(v) if isinstance(v, float) else v) for k, v in r.items()})
    return buf.getvalue()


def summary(result: StudyResult, framework: str = "jax") -> dict:
    """The JSON summary: config, versions, final training, validation and test MSE (optimizer ->
    grid point -> seed; NaN without a held-out set), the metric that selects best grid points,
    the training MSE history, divergence, exact grid values."""
    return {
        "schema": SCHEMA,
        "framework": framework,
        "config": to_dict(result.config),
        "versions": result.versions,
        "eval_steps": [int(s) for s in result.eval_steps],
        "grid": {n: {k: [float(x) for x in v] for k, v in g.items()} for n, g in result.grid.items()},
        "final_mse": {n: m[-1].tolist() for n, m in result.mse_EHS.items()},
        "final_val_mse": {n: result.heldout("val", n)[-1].tolist() for n in result.mse_EHS},
        "final_test_mse": {n: result.heldout("test", n)[-1].tolist() for n in result.mse_EHS},
        "selected_by": result.selected_by,
        "diverged_at": {n: d.tolist() for n, d in result.diverged_at_HS.items()},
        "history": {
            str(int(step)): {n: m[e].tolist() for n, m in result.mse_EHS.items()}
            for e, step in enumerate(result.eval_steps)
        },
        "timing": result.timing,
    } | ({"shard": result.shard} if result.shard else {})


def save_result(
    result: StudyResult, out: str | os.PathLike, framework: str = "jax", target: float | None = None
) -> Path:
    """Writes ``arrays.npz``, ``runs.csv``, ``history.csv``, then ``results.json`` into ``out``
    (each atomically; the JSON last, so it only ever describes files already in place), creating
    ``out`` if needed. Scripts claim ``out`` first (:func:`jaxopt_cmp.io.claim_out_dir`)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    arrays = {"eval_steps_E": result.eval_steps, "x_N": result.x_N, "y_N": result.y_N}
    for n in result.mse_EHS:
        arrays[f"mse_EHS/{n}"] = result.mse_EHS[n]
        arrays[f"diverged_at_HS/{n}"] = result.diverged_at_HS[n]
        arrays[f"val_mse_EHS/{n}"] = result.heldout("val", n)
        arrays[f"test_mse_EHS/{n}"] = result.heldout("test", n)
        if n in result.pred_EHN:
            arrays[f"pred_EHN/{n}"] = result.pred_EHN[n]
        for k, v in result.grid[n].items():
            arrays[f"grid_H/{n}/{k}"] = np.asarray(v, np.float64)
    atomic_write_npz(out / "arrays.npz", **arrays)
    columns = [
        "optimizer",
        "grid_index",
        "seed",
        "schedule",
        *hparam_columns(result),
        "final_mse",
        "final_val_mse",
        "final_test_mse",
        "diverged_at",
        "steps_to_target",
    ]
    atomic_write_bytes(out / "runs.csv", csv_text(result.rows(target), columns).encode())
    history_columns = ["optimizer", "grid_index", "seed", "step", "mse", "val_mse", "test_mse"]
    history = csv_text(result.history_rows(), history_columns)
    atomic_write_bytes(out / "history.csv", history.encode())
    path = out / "results.json"
    atomic_write_bytes(path, dumps(summary(result, framework)).encode())
    return path


def update_timing(out: str | os.PathLike, timing: dict) -> None:
    """Rewrites ``results.json``'s ``timing`` (e.g. with the figures' time, known only after it)."""
    doc = _read_doc(Path(out))
    doc["timing"] = timing
    atomic_write_bytes(Path(out) / "results.json", dumps(doc).encode())


def _read_doc(out: Path) -> dict:
    if not out.is_dir():
        raise ResultsError(f"{out}: not a directory (expected a run's output directory)")
    path = out / "results.json"
    try:
        doc = json_restore(json.loads(path.read_text()))
    except FileNotFoundError:
        raise ResultsError(f"{out}: no results.json (not a finished jaxopt_cmp run)") from None
    except (IsADirectoryError, PermissionError, UnicodeDecodeError, json.JSONDecodeError, OSError) as err:
        raise ResultsError(f"{path}: unreadable or not valid JSON ({type(err).__name__})") from None
    if not isinstance(doc, dict) or doc.get("schema") not in (SCHEMA, *OLD_SCHEMAS):
        found = doc.get("schema") if isinstance(doc, dict) else type(doc).__name__
        raise ResultsError(f"{path}: schema {found!r} is not {SCHEMA!r} (older or foreign file)")
    missing = [k for k in REQUIRED if k not in doc]
    if missing:
        raise ResultsError(f"{path}: missing keys {', '.join(missing)}")
    return doc


def _check_shapes(result: StudyResult) -> None:
    """Arrays must have the shapes the config implies (a mixed or edited directory is refused)."""
    cfg = result.config
    e, s, n = len(cfg.train.eval_steps), cfg.seeds, cfg.data.n_data
    if tuple(result.eval_steps) != cfg.train.eval_steps:
        raise ValueError(f"eval_steps {len(result.eval_steps)} do not match the config's {e}")
    for o in cfg.optimizers:
        want = {"mse_EHS": (e, o.grid_size, s), "diverged_at_HS": (o.grid_size, s)}
        for key in ("val_mse_EHS", "test_mse_EHS"):
            if o.name in getattr(result, key):
                want[key] = (e, o.grid_size, s)
        if o.name in result.pred_EHN:
            want["pred_EHN"] = (e, o.grid_size, n)
        for key, shape in want.items():
            got = getattr(result, key)[o.name].shape
            if got != shape:
                raise ValueError(f"{key}/{o.name} has shape {got}, the config implies {shape}")
        for k, v in result.grid[o.name].items():
            if v.shape != (o.grid_size,):
                raise ValueError(f"grid {o.name}/{k} has shape {v.shape}, expected ({o.grid_size},)")
    if result.x_N.shape != (n,) or result.y_N.shape != (n,):
        raise ValueError(f"x_N/y_N have shapes {result.x_N.shape}/{result.y_N.shape}, expected ({n},)")


def load_result(out: str | os.PathLike) -> tuple[StudyResult, dict]:
    """Reads a directory written by :func:`save_result` (this schema or an older one: without
    validation and test MSE, which then read NaN); a clear
    ``ResultsError`` for anything missing, foreign or inconsistent. Optimizers need not be
    registered: the saved grid carries every hyperparameter."""
    out = Path(out)
    doc = _read_doc(out)
    try:
        arrays = read_npz(out / "arrays.npz")
        bad = [k for k, v in arrays.items() if v.dtype.kind not in "biuf"]
        if bad:
            raise ValueError(f"arrays {', '.join(bad)} are not numeric")
        grids = doc.get("grid") or {}
        old = doc["schema"] == OLD_SCHEMAS[0]  # schema 1 named the steps "eval_steps" and saved no grid
        cfg = study_from_dict(doc["config"], None if old else grids)
        names = cfg.optimizer_names
        per = lambda prefix: {n: arrays[f"{prefix}/{n}"] for n in names}
        held = lambda prefix: {n: arrays[f"{prefix}/{n}"] for n in names if f"{prefix}/{n}" in arrays}
        # The saved grid, not today's registry defaults: the values these runs actually used.
        grid = {
            o.name: {k: np.asarray(v, np.float64) for k, v in (grids.get(o.name) or o.grid()).items()}
            for o in cfg.optimizers
        }
        result = StudyResult(
            config=cfg,
            eval_steps=arrays["eval_steps" if old else "eval_steps_E"],
            grid=grid,
            mse_EHS=per("mse_EHS"),
            diverged_at_HS=per("diverged_at_HS"),
            params_HS={},
            pred_EHN={n: arrays[f"pred_EHN/{n}"] for n in names if f"pred_EHN/{n}" in arrays},
            x_N=arrays["x_N"],
            y_N=arrays["y_N"],
            timing=doc["timing"],
            versions=doc["versions"],
            val_mse_EHS=held("val_mse_EHS"),
            test_mse_EHS=held("test_mse_EHS"),
            shard=doc.get("shard") or {},
        )
        _check_shapes(result)
    except (KeyError, TypeError, ConfigError, OSError, ValueError, AttributeError, EOFError) as err:
        raise ResultsError(f"{out}: config or arrays.npz incomplete or inconsistent ({err})") from None
    return result, doc

"""Saving and loading results: ``results.json`` (summary, schema-checked) + ``arrays.npz``.

Every file is written to a temporary name in the same directory and renamed into place, so an
interrupted run never leaves a half-written file; ``results.json`` is written last and marks a
complete result directory.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from jaxopt_cmp.checks import ConfigError
from jaxopt_cmp.config import StudyConfig, study_from_dict, to_dict


@dataclass
class StudyResult:
    """Host (numpy) arrays of a finished study, named by axes (E evals, H grid, S seeds, N data).

    ``x_N``/``y_N`` are seed 0's data and ``pred_EHN`` seed 0's predictions (empty when the config
    does not record them), for plots. ``diverged_at_HS`` is -1 for runs that stayed finite.
    """

    config: StudyConfig
    eval_steps: np.ndarray
    grid: dict[str, dict[str, np.ndarray]]
    mse_EHS: dict[str, np.ndarray]
    diverged_at_HS: dict[str, np.ndarray]
    params_HS: dict[str, object] = field(repr=False)
    pred_EHN: dict[str, np.ndarray] = field(repr=False)
    x_N: np.ndarray = field(repr=False)
    y_N: np.ndarray = field(repr=False)
    timing: dict[str, float] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)

    @property
    def final_mse_HS(self) -> dict[str, np.ndarray]:
        return {n: m[-1] for n, m in self.mse_EHS.items()}


SCHEMA = "jaxopt_cmp.results/1"
REQUIRED = ("schema", "framework", "config", "versions", "eval_steps", "final_mse", "history", "timing")


class ResultsError(ValueError):
    """A results directory is missing, incomplete, from another tool or from another version."""


def prepare_out_dir(path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Creates ``path`` (or accepts it empty, or non-empty with ``overwrite``) and checks writing."""
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise ConfigError("out", str(out), "expected a directory path, not a file")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise ConfigError("out", str(out), "directory exists and is not empty (pass --overwrite)")
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out, prefix=".write-test-"):
            pass
    except OSError as err:
        raise ConfigError("out", str(out), f"expected a writable directory ({err.strerror})") from None
    return out


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: Path, payload: bytes) -> None:
    """Writes ``payload`` to a temporary sibling, fsyncs it and renames it over ``path``."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual file mode
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def summary(result: StudyResult, framework: str = "jax") -> dict:
    """The JSON summary: config, versions, final MSE and MSE history per optimizer and seed.

    With a one-point grid (``compare.py``) ``final_mse[name]`` is a list over seeds; with a grid
    it is a list over grid points of lists over seeds, and ``grid`` gives the values.
    """
    squeeze = lambda a: a[0] if all(o.grid_size == 1 for o in result.config.optimizers) else a
    final = {n: squeeze(m[-1]).tolist() for n, m in result.mse_EHS.items()}
    history = {
        str(int(step)): {n: squeeze(m[e]).tolist() for n, m in result.mse_EHS.items()}
        for e, step in enumerate(result.eval_steps)
    }
    return {
        "schema": SCHEMA,
        "framework": framework,
        "config": to_dict(result.config),
        "versions": result.versions,
        "eval_steps": [int(s) for s in result.eval_steps],
        "grid": {n: {k: v.tolist() for k, v in g.items()} for n, g in result.grid.items()},
        "final_mse": final,
        "diverged_at": {n: squeeze(d).tolist() for n, d in result.diverged_at_HS.items()},
        "history": history,
        "timing": result.timing,
    }


def save_result(result: StudyResult, out: Path, framework: str = "jax") -> Path:
    """Writes ``arrays.npz`` then ``results.json`` into ``out``; returns the JSON path."""
    arrays = {"eval_steps": result.eval_steps, "x_N": result.x_N, "y_N": result.y_N}
    for n in result.mse_EHS:
        arrays[f"mse_EHS/{n}"] = result.mse_EHS[n]
        arrays[f"diverged_at_HS/{n}"] = result.diverged_at_HS[n]
        if n in result.pred_EHN:
            arrays[f"pred_EHN/{n}"] = result.pred_EHN[n]
        for k, v in result.grid[n].items():
            arrays[f"grid/{n}/{k}"] = v
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    atomic_write_bytes(out / "arrays.npz", buf.getvalue())
    path = out / "results.json"
    text = json.dumps(summary(result, framework), indent=1, allow_nan=True)
    atomic_write_bytes(path, text.encode())
    return path


def load_result(out: str | os.PathLike) -> tuple[StudyResult, dict]:
    """Reads a directory written by :func:`save_result`; a clear ``ResultsError`` otherwise."""
    out = Path(out)
    path = out / "results.json"
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise ResultsError(f"{out}: no results.json (not a finished jaxopt_cmp run)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ResultsError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
        found = doc.get("schema") if isinstance(doc, dict) else type(doc).__name__
        raise ResultsError(f"{path}: schema {found!r} is not {SCHEMA!r} (older or foreign file)")
    missing = [k for k in REQUIRED if k not in doc]
    if missing:
        raise ResultsError(f"{path}: missing keys {', '.join(missing)}")
    try:
        cfg = study_from_dict(doc["config"])
        with np.load(out / "arrays.npz") as z:
            arrays = dict(z)
        names = cfg.optimizer_names
        per = lambda prefix: {n: arrays[f"{prefix}/{n}"] for n in names}
        result = StudyResult(
            config=cfg,
            eval_steps=arrays["eval_steps"],
            grid={o.name: {k: arrays[f"grid/{o.name}/{k}"] for k in o.grid()} for o in cfg.optimizers},
            mse_EHS=per("mse_EHS"),
            diverged_at_HS=per("diverged_at_HS"),
            params_HS={},
            pred_EHN={n: arrays[f"pred_EHN/{n}"] for n in names if f"pred_EHN/{n}" in arrays},
            x_N=arrays["x_N"],
            y_N=arrays["y_N"],
            timing=doc["timing"],
            versions=doc["versions"],
        )
    except (KeyError, TypeError, ConfigError, OSError, ValueError) as err:
        raise ResultsError(f"{out}: config or arrays.npz incomplete or unreadable ({err!r})") from None
    return result, doc

"""Memory a study needs, estimated from its config before anything is compiled, and the check
that refuses a config over the budget with the estimate in the message."""

from __future__ import annotations

import math

from jaxopt_cmp import runtime
from jaxopt_cmp.checks import ConfigError
from jaxopt_cmp.config import ModelConfig, StudyConfig

# Optimizer state slots per parameter (beyond the parameters themselves); 3 covers the registry's
# largest (AMSGrad and centred RMSprop with momentum keep up to three per-parameter arrays).
STATE_SLOTS = 3
# Live copies of a run's flat vectors inside a step: parameters, gradients, updates, new state.
STEP_COPIES = 3
# What one evaluation costs beyond its numbers (issue 30), measured on the 2-core CPU with
# --eval-every 1 (4,000 and 8,000 evaluations): each evaluation returns its outputs as arrays (per
# optimizer the training, validation and test MSE and, if recorded, seed 0's predictions), all held
# until the run ends, 12-13 KB each when the study spans devices (lanes or a seed mesh; 1.5 KB on
# one device), whatever their size; budgeted at 16 KB. The snapshot grid draws one panel per
# evaluation: 0.44 MB each while it is drawn and saved (8,001 panels: 3.5 GB); budgeted at 0.45 MB.
# (fits.gif draws at most 200 frames, within the process's baseline.)
EVAL_ARRAY_BYTES = 16_000
SNAPSHOT_PANEL_BYTES = 450_000
# Parts held once whatever the lanes (the others: one copy per lane).
ONCE = ("evaluations", "figures")


def n_params(cfg: StudyConfig | ModelConfig) -> int:
    """Parameters of the MLP of a study (or of a model config)."""
    m = cfg.model if isinstance(cfg, StudyConfig) else cfg
    widths = [m.xdim, *m.hidden, m.ydim]
    return sum((a + 1) * b for a, b in zip(widths, widths[1:]))


def heldout_sizes(cfg: StudyConfig) -> tuple[int, int]:
    """``(n_val, n_test)`` points: the config's for generated data; for user data (whose row
    count only the data knows) the fractions' share of ``n_data / (1 - val - test)`` rows."""
    d = cfg.data
    if not d.source:
        return d.n_val, d.n_test
    rows = d.n_data / (1 - d.val_fraction - d.test_fraction)
    return math.ceil(d.val_fraction * rows), math.ceil(d.test_fraction * rows)


def estimate_bytes(cfg: StudyConfig, figures: bool = False) -> dict[str, int]:
    """Bytes by purpose: runs (parameters and optimizer state), data (every seed's training and
    validation sets, and the test set), evaluation activations (training, validation and test
    sets of one grid point of one seed group at a time), history (training, validation and test
    MSE at every evaluation and seed 0's predictions), all in the run dtype; evaluations (the
    arrays each evaluation returns, :data:`EVAL_ARRAY_BYTES` each) and, with ``figures`` (the
    scripts draw them), the snapshot grid's panels, one per evaluation of a 1-D fit."""
    item = 8 if cfg.train.dtype == "float64" else 4
    runs = sum(o.grid_size for o in cfg.optimizers) * cfg.seeds
    width = sum(cfg.model.hidden)
    n, e = cfg.data.n_data, cfg.train.n_evals
    n_val, n_test = heldout_sizes(cfg)
    row = (cfg.model.xdim + cfg.model.ydim) * item
    return {
        "runs": runs * n_params(cfg) * (1 + STATE_SLOTS + STEP_COPIES) * item,
        "data": cfg.seeds * (n + n_val) * row + n_test * row,
        "evaluation": 2 * cfg.seeds * (n + n_val + n_test) * width * item,
        "steps": 2 * runs * cfg.train.batch_size * width * item,
        "history": 3 * e * runs * item + (e * runs // max(cfg.seeds, 1) * n * item if cfg.record_predictions else 0),
        "evaluations": e * len(cfg.optimizers) * (3 + cfg.record_predictions) * EVAL_ARRAY_BYTES,
        "figures": e * SNAPSHOT_PANEL_BYTES if figures and cfg.record_predictions and cfg.model.xdim == 1 else 0,
    }


def available_bytes() -> float:
    """Memory this process may use: the device's limit on accelerators, else the host's available
    memory (``MemAvailable``)."""
    import jax

    stats = jax.devices()[0].memory_stats() if jax.default_backend() != "cpu" else None
    if stats and "bytes_limit" in stats:
        return float(stats["bytes_limit"])
    return runtime.host_available_bytes()


def _gb(b: float) -> str:
    return f"{b / 1e9:.3g} GB"


def check_budget(cfg: StudyConfig, max_bytes: float | None = None, copies: int = 1, figures: bool = False) -> None:
    """Raises ``ConfigError`` (setting ``max_memory``) when the estimate exceeds ``max_bytes``
    (default 80% of :func:`available_bytes`). ``copies``: how many copies of the study's state
    are held (a study in lanes keeps one per lane, :mod:`jaxopt_cmp.lanes`); ``figures``: the
    caller draws the fit figures (:func:`estimate_bytes`)."""
    parts = {k: v * (1 if k in ONCE else copies) for k, v in estimate_bytes(cfg, figures).items()}
    note = f"; {copies} copies, one per lane" if copies > 1 else ""
    check_parts(parts, max_bytes, "study", "reduce seeds, grid, data size, width or evaluations", note)


def check_parts(parts: dict[str, float], max_bytes: float | None, what: str, advice: str, note: str = "") -> None:
    """Raises ``ConfigError`` (setting ``max_memory``) when the sum of ``parts`` (bytes by purpose)
    exceeds ``max_bytes`` (default 80% of :func:`available_bytes`), naming the largest parts."""
    limit = 0.8 * available_bytes() if max_bytes is None else float(max_bytes)
    total = sum(parts.values())
    if not math.isfinite(total) or total > limit:
        detail = ", ".join(f"{k} {_gb(v)}" for k, v in sorted(parts.items(), key=lambda kv: -kv[1]) if v)
        raise ConfigError(
            "max_memory",
            _gb(limit),
            f"this {what} needs about {_gb(total)} ({detail}{note}); {advice}, or raise --max-memory",
        )

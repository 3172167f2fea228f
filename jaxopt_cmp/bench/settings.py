"""What the benchmark runs: its settings (presets per mode) and what a model-step costs."""

from __future__ import annotations

import os
from dataclasses import dataclass, fields

import numpy as np

from jaxopt_cmp.checks import ConfigError, check_int, check_real
from jaxopt_cmp.config import ModelConfig, OptimizerConfig, StudyConfig, seed_study

SCHEMA = "jaxopt_cmp.bench/1"
JAX, EAGER, BATCHED, FUNC, COMPILE = "jax", "torch-eager", "torch-batched", "torch-func", "torch-compile"
MATMUL = "matmul"  # the ceiling, measured in every repeat beside the implementations
# A second jax worker: the largest S of the seeds table, timed in every repeat of every grid row,
# so each grid row's ratio to it is taken repeat by repeat under the same load.
JAX_REF = "jax-ref"
SEED = seed_study(record_predictions=False)  # the seed study, as compare.py runs it by default
OPTIMIZERS = SEED.optimizer_names
# Throughput runs fit 1,000 points, not 10,000: a model-step's cost does not depend on n_data, but
# each full-data evaluation inside a compiled jax run does (about 100 model-steps' time per model at
# 10,000 points: 1.3M tanh), and at S=512 two of them would take most of the benchmark's time.
THROUGHPUT_N_DATA = 1_000
THREADS_MARGIN = 1.2  # torch uses more threads only if a step is at least this much faster
# Grid throughput (issue 19: tuning studies are seeds x trials): S seeds x H lr grid points per optimizer.
GRID_SEEDS = 4
GRID_LRS = (1e-4, 1e-2)  # the grid's lr range (log-spaced): no run diverges, so every run costs the same

# Per-mode defaults of every setting a flag can leave out.
PRESETS = {
    "full": {
        "iters": SEED.train.iters,
        "seeds_list": (1, 8, 32, 128, 512),
        "grid_list": (64, 128, 256, 512),  # grid points per optimizer at GRID_SEEDS seeds: 256..2,048 runs each
        "scaling_iters": (1000, 2000, 4000),
        "repeats": 3,
        "target_s": 1.0,
        "ceiling_size": 4096,
        "fast_seed_iters": 1000,  # torch-batched/func/compile's seed study (at most ``iters``)
        "jax_model_steps": 40_000,  # about this many model-steps in jax's longer throughput run
    },
    "quick": {
        "iters": 1000,
        "seeds_list": (8, 128),
        "grid_list": (64,),
        "scaling_iters": (4000,),
        "repeats": 2,
        "target_s": 0.3,
        "ceiling_size": 2048,
        "fast_seed_iters": 500,
        "jax_model_steps": 20_000,
    },
}


@dataclass(frozen=True)
class Settings:
    """Everything the parent and the workers need to know (picklable; built by :func:`make_settings`)."""

    mode: str
    iters: int
    eval_every: int
    fast_seed_iters: int
    seeds_list: tuple[int, ...]
    grid_list: tuple[int, ...]
    scaling_iters: tuple[int, ...]
    repeats: int
    target_s: float
    jax_model_steps: int
    jax_min_iters: int
    torch_threads: tuple[int, ...]
    torch_compile: bool
    compare: bool
    ceiling_size: int
    seed: int = 0


def make_settings(mode: str = "full", torch_threads: str | int = "auto", **given) -> Settings:
    """``mode``'s preset with the ``given`` settings that are not None; every value checked.

    ``torch_threads`` is ``"auto"`` (the faster of 1 and all cores, measured per workload) or a
    thread count. Raises ``ConfigError`` naming the setting.
    """
    if mode not in PRESETS:
        raise ConfigError("mode", mode, f"expected one of {', '.join(PRESETS)}")
    names = {f.name for f in fields(Settings)} - {"mode", "torch_threads", "jax_min_iters"}
    unknown = sorted(set(given) - names)
    if unknown:
        raise ConfigError("setting", unknown[0], "expected a field of Settings")
    values = {"eval_every": SEED.train.eval_every, "torch_compile": False, "compare": True, **PRESETS[mode]}
    values.update({k: v for k, v in given.items() if v is not None})
    for name in ("seeds_list", "grid_list", "scaling_iters"):
        for v in values[name]:
            check_int(name, v)
    values["seeds_list"] = tuple(sorted(set(values["seeds_list"])))
    values["grid_list"] = tuple(sorted(set(values["grid_list"])))
    values["scaling_iters"] = tuple(values["scaling_iters"])
    values["fast_seed_iters"] = min(values["iters"], values["fast_seed_iters"])
    s = Settings(mode=mode, torch_threads=thread_candidates(torch_threads), jax_min_iters=128, **values)
    for name in ("iters", "eval_every", "repeats", "fast_seed_iters", "jax_model_steps"):
        check_int(name, getattr(s, name))
    check_int("ceiling_size", s.ceiling_size, low=16)
    check_real("target_s", s.target_s, 0.0, 3600.0, low_open=True)
    return s


def thread_candidates(text: str | int, cores: int | None = None) -> tuple[int, ...]:
    """The torch thread counts to measure: ``auto`` is 1 and every core, else the one count."""
    text = str(text).strip()
    if text == "auto":
        return tuple(sorted({1, cores or os.cpu_count() or 1}))
    if text.isdigit() and int(text) >= 1:
        return (int(text),)
    raise ConfigError("torch_threads", text, "expected auto or an integer >= 1")


def flops_per_model_step(model_cfg: ModelConfig, batch_size: int) -> int:
    """Forward ``2 B sum(fan_in fan_out)`` over the dense layers plus a backward of twice that."""
    widths = (model_cfg.xdim, *model_cfg.hidden, model_cfg.ydim)
    forward = 2 * batch_size * sum(a * b for a, b in zip(widths[:-1], widths[1:]))
    return 3 * forward


def workload(seeds: int, iters: int, eval_every: int, n_data: int, seed: int = 0, grid: int = 1) -> StudyConfig:
    """The seed study with S seeds, ``iters`` steps and ``n_data`` points; no predictions kept. With
    ``grid`` > 1 each optimizer runs ``grid`` lrs log-spaced over :data:`GRID_LRS` (its other
    hyperparameters the seed's)."""
    optimizers = SEED.optimizers
    if grid > 1:
        lrs = [float(v) for v in np.geomspace(*GRID_LRS, grid)]
        optimizers = tuple(
            OptimizerConfig.make(o.name, **{**{k: v[0] for k, v in o.grid().items()}, "lr": lrs}) for o in optimizers
        )
    return seed_study(
        optimizers=optimizers,
        seeds=seeds,
        iters=iters,
        eval_every=eval_every,
        n_data=n_data,
        seed=seed,
        record_predictions=False,
    )


def described(s: Settings) -> dict:
    """The settings as bench.json records them, with the fixed facts of the problem."""
    from dataclasses import asdict

    model, batch = SEED.model, SEED.train.batch_size
    widths = "-".join(str(w) for w in (model.xdim, *model.hidden, model.ydim))
    return {
        **asdict(s),
        "optimizers": list(OPTIMIZERS),
        "lr": SEED.optimizers[0].grid()["lr"][0],
        "seed_study_n_data": SEED.data.n_data,
        "throughput_n_data": THROUGHPUT_N_DATA,
        "grid_seeds": GRID_SEEDS,
        "grid_lrs": list(GRID_LRS),
        "batch_size": batch,
        "model": f"{widths} tanh MLP",
        "flops_per_model_step": flops_per_model_step(model, batch),
    }

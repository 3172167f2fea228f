"""Eager training: one step, and a whole study with ``jaxopt_cmp.study.run_study``'s result schema.

A *run* is one optimizer at one hyperparameter point on one seed, as in ``jaxopt_cmp.train``.
Every run of a seed shares that seed's data, initial weights and minibatch stream, and all runs
advance together step by step (the seed notebook's loop: each optimizer steps on the same batch).
A seed's inputs come from its own generators, or from outside (:class:`SeedFeed`: the JAX side's
data, weights and batch indices, so a test can run the very problem the engine ran).
"""

from __future__ import annotations

import math
import platform
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch

from jaxopt_cmp.config import StudyConfig
from jaxopt_cmp.results import StudyResult
from jaxopt_cmp.schedules import DEFAULTS as SCHEDULE_DEFAULTS
from torch_ref.convert import params_from_torch, params_to_torch
from torch_ref.data import batch_indices, make_data, make_test
from torch_ref.model import MLP, make_model, mse
from torch_ref.optimizers import make_optimizer, make_scheduler

# Stream ids of a seed's generators, one per purpose like the JAX side's key split.
DATA, INIT, BATCH, VAL = range(4)


def train_step(model: MLP, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor) -> float:
    """One minibatch update (forward, MSE, zero_grad, backward, step); the pre-update loss."""
    loss = mse(model(x), y)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss.item()


def seed_generator(seed: int, index: int, purpose: int) -> torch.Generator:
    """A generator for one purpose (data, init, batches) of study seed ``index``.

    ``SeedSequence`` is numpy's stateless hash of the entropy tuple (no global RNG): the streams
    of ``(seed, index, purpose)`` are independent and do not depend on how many seeds run.
    """
    state = np.random.SeedSequence((seed, index, purpose)).generate_state(1, np.uint64)[0]
    return torch.Generator().manual_seed(int(state))


@contextmanager
def single_threaded() -> Iterator[None]:
    """Runs torch ops on one intra-op thread inside the block, then restores the setting.

    The seed MLP's ops (64 x 64 matmuls) are far too small for intra-op threads to pay off, and
    on a busy machine OpenMP's barriers made each step ~100x slower (measured on 2 cores with
    one taken: 62 ms vs 0.6 ms per Adam step).
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@dataclass
class _Run:
    """One run's mutable state; ``diverged_at`` is -1 until the first non-finite step."""

    model: MLP
    optimizer: torch.optim.Optimizer
    diverged_at: int = -1
    scheduler: object = None  # a torch.optim.lr_scheduler, stepped after each optimizer.step()


class SeedFeed(NamedTuple):
    """One seed's inputs given from outside: data ``x (N, xdim)``, ``y (N, 1)``, Flax-layout
    initial ``params`` (numpy), and ``idx_TB``, the minibatch indices of every step; ``val`` and
    ``test``: the held-out sets ``(x, y)`` to score on (None: that MSE is NaN). Arrays must
    already be in the study's dtype (refused otherwise: a silent cast would hide the precision)."""

    x: np.ndarray
    y: np.ndarray
    params: dict
    idx_TB: np.ndarray
    val: tuple[np.ndarray, np.ndarray] | None = None
    test: tuple[np.ndarray, np.ndarray] | None = None


@dataclass
class _Seed:
    x: torch.Tensor
    y: torch.Tensor
    batches: Callable[[int], torch.Tensor]  # step t -> that step's minibatch indices
    runs: dict[str, list[_Run]]
    val: tuple[torch.Tensor, torch.Tensor] | None = None
    test: tuple[torch.Tensor, torch.Tensor] | None = None


def _guarded_step(run: _Run, x: torch.Tensor, y: torch.Tensor, t: int) -> None:
    """``train_step`` unless diverged; a non-finite loss or update freezes the previous weights.

    Same test as ``jaxopt_cmp.train.make_step``: the loss and the sum of all new parameters.
    """
    if run.diverged_at >= 0:
        return
    params = list(run.model.parameters())
    before = [p.detach().clone() for p in params]
    loss = train_step(run.model, run.optimizer, x, y)
    if run.scheduler is not None:
        run.scheduler.step()
    with torch.no_grad():
        total = sum(p.sum() for p in params).item()
        if not (math.isfinite(loss) and math.isfinite(total)):
            for p, old in zip(params, before, strict=True):
                p.copy_(old)
            run.diverged_at = t


def initial_model(cfg: StudyConfig, seed_index: int = 0) -> MLP:
    """The initial weights every run of study seed ``seed_index`` starts from."""
    dtype = getattr(torch, cfg.train.dtype)
    return make_model(cfg.model, dtype, seed_generator(cfg.seed, seed_index, INIT))


class _DrawnBatches:
    """Step ``t``'s minibatch: ``generator``'s next draw. Steps must be asked for in order, each
    once (the stream has no random access), so a loop that asks for the wrong step fails here."""

    def __init__(self, generator: torch.Generator, n_data: int, batch_size: int):
        self.generator, self.n_data, self.batch_size, self.next_step = generator, n_data, batch_size, 0

    def __call__(self, t: int) -> torch.Tensor:
        if t != self.next_step:
            raise RuntimeError(f"batch of step {t} asked for; the generator's next is step {self.next_step}")
        self.next_step += 1
        return batch_indices(self.generator, self.n_data, self.batch_size)


def _fed_inputs(cfg: StudyConfig, feed: SeedFeed, dtype: torch.dtype):
    """``(x, y, initial model, batches)`` of a :class:`SeedFeed`, after checking it fits ``cfg``."""
    np_dtype = np.dtype(cfg.train.dtype)
    shapes = {"x": (cfg.data.n_data, cfg.model.xdim), "y": (cfg.data.n_data, 1)}
    for name, shape in shapes.items():
        a = getattr(feed, name)
        if a.shape != shape or a.dtype != np_dtype:
            raise ValueError(f"SeedFeed.{name}: {a.shape} {a.dtype}; expected {shape} {np_dtype}")
    idx = np.asarray(feed.idx_TB)
    if idx.shape != (cfg.train.iters, cfg.train.batch_size) or idx.dtype.kind not in "iu":
        raise ValueError(f"SeedFeed.idx_TB: {idx.shape} {idx.dtype}; expected integers (iters, batch_size)")
    if idx.size and not 0 <= idx.min() <= idx.max() < cfg.data.n_data:
        raise ValueError(f"SeedFeed.idx_TB: indices outside [0, {cfg.data.n_data})")
    for name in ("val", "test"):
        held = getattr(feed, name)
        if held is not None and any(np.asarray(a).dtype != np_dtype or np.ndim(a) != 2 for a in held):
            raise ValueError(f"SeedFeed.{name}: expected (x, y), each 2-D {np_dtype}")
    init = params_to_torch(feed.params, make_model(cfg.model, dtype))
    x, y = (torch.from_numpy(np.array(a)) for a in (feed.x, feed.y))  # copies
    idx_TB = torch.from_numpy(idx.astype(np.int64))
    held = lambda pair: None if pair is None else tuple(torch.from_numpy(np.array(a)) for a in pair)
    return x, y, init, lambda t: idx_TB[t], held(feed.val), held(feed.test)


def _make_seed(cfg: StudyConfig, index: int, dtype: torch.dtype, feed: SeedFeed | None = None) -> _Seed:
    if feed is None:
        x, y = make_data(seed_generator(cfg.seed, index, DATA), cfg.data, dtype)
        init = initial_model(cfg, index)
        batches = _DrawnBatches(seed_generator(cfg.seed, index, BATCH), cfg.data.n_data, cfg.train.batch_size)
        val = make_data(seed_generator(cfg.seed, index, VAL), cfg.data, dtype, cfg.data.n_val)
        test = make_test(cfg.data, dtype)
    else:
        x, y, init, batches, val, test = _fed_inputs(cfg, feed, dtype)
    runs = {}
    for opt in cfg.optimizers:
        grid = opt.grid()
        runs[opt.name] = []
        for h in range(opt.grid_size):
            model = make_model(cfg.model, dtype)
            model.load_state_dict(init.state_dict())
            hp = {k: v[h] for k, v in grid.items() if k not in SCHEDULE_DEFAULTS}
            optimizer = make_optimizer(opt.name, model.parameters(), **hp)
            sched = {k: v[h] for k, v in grid.items() if k in SCHEDULE_DEFAULTS}
            scheduler = make_scheduler(optimizer, opt.schedule, cfg.train.iters, **sched)
            runs[opt.name].append(_Run(model, optimizer, scheduler=scheduler))
    return _Seed(x, y, batches, runs, val, test)


def _stack_params(tree_HS: list[list[dict]]) -> dict:
    """``[h][s]`` Flax-layout dicts -> one dict of ``(H, S, ...)`` arrays."""
    first = tree_HS[0][0]
    return {
        layer: {leaf: np.stack([np.stack([p[layer][leaf] for p in row]) for row in tree_HS]) for leaf in first[layer]}
        for layer in first
    }


def versions() -> dict[str, str]:
    return {
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "device": "cpu",
    }


def _evaluate(seeds: list[_Seed], e: int, scores: dict, pred_EHN: dict | None) -> None:
    """Training (full-data), validation and test MSE of every run into row ``e`` of
    ``scores["mse" | "val" | "test"][name]`` (and seed 0's predictions, if recorded).

    As in the JAX engine, a diverged run, or one whose loss overflows, scores +inf (never NaN);
    a seed without a held-out set scores NaN on it.
    """

    def score(run: _Run, data):
        if data is None:
            return math.nan, None
        pred = run.model(data[0])
        loss = mse(pred, data[1]).item()
        return (loss if run.diverged_at < 0 and math.isfinite(loss) else math.inf), pred

    with torch.no_grad():
        for s, seed in enumerate(seeds):
            for name, runs in seed.runs.items():
                for h, run in enumerate(runs):
                    scores["mse"][name][e, h, s], pred = score(run, (seed.x, seed.y))
                    scores["val"][name][e, h, s] = score(run, seed.val)[0]
                    scores["test"][name][e, h, s] = score(run, seed.test)[0]
                    if pred_EHN is not None and s == 0:
                        pred_EHN[name][e, h] = pred[:, 0].numpy()


def _train(cfg: StudyConfig, seeds: list[_Seed], scores, pred_EHN, progress) -> dict:
    """All runs advance together, step by step; returns the seconds spent per optimizer."""
    eval_steps = cfg.train.eval_steps
    step_s = dict.fromkeys(cfg.optimizer_names, 0.0)  # eager, so each share can be timed
    _evaluate(seeds, 0, scores, pred_EHN)
    for t in range(cfg.train.iters):
        for seed in seeds:
            idx = seed.batches(t)
            x, y = seed.x[idx], seed.y[idx]
            for name, runs in seed.runs.items():
                tic = time.perf_counter()
                for run in runs:
                    _guarded_step(run, x, y, t)
                step_s[name] += time.perf_counter() - tic
        if t + 1 in eval_steps:
            _evaluate(seeds, eval_steps.index(t + 1), scores, pred_EHN)
            if progress is not None:
                progress(t + 1)
    return step_s


def run_study(
    cfg: StudyConfig,
    progress: Callable[[int], None] | None = None,
    feeds: Sequence[SeedFeed] | None = None,
) -> StudyResult:
    """Every (optimizer, grid point, seed) of ``cfg``, eagerly; same schema as the JAX engine.

    Seed ``i`` draws its data, validation set, initial weights and batches from generators derived from
    ``(cfg.seed, i)``: the two frameworks' random streams differ, so results agree in
    distribution, not value. With ``feeds`` (one :class:`SeedFeed` per seed) seed ``i`` trains
    ``feeds[i]``'s data from its weights on its batches instead: given the JAX engine's, the two
    agree step by step (``tests/test_engine_parity.py``). ``progress(step)`` is called after each
    evaluation with the number of steps done. ``timing["per_optimizer_s"]`` is the time spent in
    each optimizer's steps.
    """
    dtype = getattr(torch, cfg.train.dtype)
    np_dtype = np.dtype(cfg.train.dtype)
    E, S, N = len(cfg.train.eval_steps), cfg.seeds, cfg.data.n_data
    if feeds is not None and len(feeds) != S:
        raise ValueError(f"feeds: {len(feeds)} given; expected one per seed ({S})")
    sizes = {o.name: o.grid_size for o in cfg.optimizers}
    scores = {kind: {n: np.zeros((E, h, S), np_dtype) for n, h in sizes.items()} for kind in ("mse", "val", "test")}
    pred_EHN = None  # seed 0's predictions only, as the JAX engine keeps them
    if cfg.record_predictions:
        pred_EHN = {n: np.zeros((E, h, N), np_dtype) for n, h in sizes.items()}

    with single_threaded():
        start = time.perf_counter()
        seeds = [_make_seed(cfg, i, dtype, None if feeds is None else feeds[i]) for i in range(S)]
        step_s = _train(cfg, seeds, scores, pred_EHN, progress)
        train_s = time.perf_counter() - start

    names = cfg.optimizer_names
    runs_HS = {n: [[seed.runs[n][h] for seed in seeds] for h in range(sizes[n])] for n in names}
    return StudyResult(
        config=cfg,
        eval_steps=np.asarray(cfg.train.eval_steps),
        # Hyperparameters at the user's exact values (float64) whatever the run's dtype, as the engine.
        grid={o.name: {k: np.asarray(v, np.float64) for k, v in o.grid().items()} for o in cfg.optimizers},
        mse_EHS=scores["mse"],
        val_mse_EHS=scores["val"],
        test_mse_EHS=scores["test"],
        diverged_at_HS={n: np.array([[r.diverged_at for r in row] for row in runs_HS[n]], np.int32) for n in names},
        params_HS={n: _stack_params([[params_from_torch(r.model) for r in row] for row in runs_HS[n]]) for n in names},
        pred_EHN=pred_EHN or {},
        x_N=seeds[0].x[:, 0].numpy(),
        y_N=seeds[0].y[:, 0].numpy(),
        timing={"compile_s": 0.0, "train_s": train_s, "per_optimizer_s": step_s},
        versions=versions(),
    )

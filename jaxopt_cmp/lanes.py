"""Optimizers side by side on several devices, for studies whose seeds cannot be split over them.

A study's seed axis is its natural parallel axis (:func:`jaxopt_cmp.study.seed_mesh`). When the
seeds of a group do not divide over the devices (the seed study: one seed), the optimizers are
split into *lanes* instead, one lane per device: still one compiled program, run under
``shard_map`` over a 1-D ``"lanes"`` mesh. Every device holds a copy of the whole carry (leading
axis L) but advances and evaluates only its own lane's optimizers (``lax.switch`` on its lane
index, once per chunk); the results are read from each optimizer's owner. Runs are the same as in
one lane: each optimizer trains in a loop of its own on batches that depend only on (batch key,
step), wherever it runs.

Measured on the 2-core CPU (the seed study, 10,000 steps): training 0.64-0.74 s in two lanes
(sgd, adam | momentum) against 0.95 s on one core.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jaxopt_cmp.config import StudyConfig
from jaxopt_cmp.train import Carry, Evaluation

AXIS = "lanes"


class LanePlan(NamedTuple):
    """Optimizer names per lane, and the mesh of the lanes' devices (lane ``i`` on device ``i``)."""

    lanes: tuple[tuple[str, ...], ...]
    mesh: Mesh

    def owner(self, name: str) -> int:
        return next(i for i, lane in enumerate(self.lanes) if name in lane)

    def sharding(self) -> NamedSharding:
        """Of an array whose leading axis is the lane axis (every leaf of a laned carry)."""
        return NamedSharding(self.mesh, PartitionSpec(AXIS))

    def key(self) -> tuple:
        """What a compiled program depends on: the split and the devices."""
        return self.lanes, tuple(d.id for d in self.mesh.devices.flat)


def plan_lanes(cfg: StudyConfig, devices: list | None = None) -> LanePlan | None:
    """Lanes over ``devices`` (default: this process's own, also under several processes, where
    each then trains every seed itself), or None when there is one device or one optimizer.
    Optimizers go, most runs first, onto the least-loaded lane; ties keep the config's order (the
    seed study: sgd and adam on device 0, momentum on device 1)."""
    devices = jax.local_devices() if devices is None else devices
    n_lanes = min(len(devices), len(cfg.optimizers))
    if n_lanes < 2:
        return None
    load = [0] * n_lanes
    lanes: list[list[str]] = [[] for _ in range(n_lanes)]
    for o in sorted(cfg.optimizers, key=lambda o: -o.grid_size):  # stable sort
        i = load.index(min(load))
        lanes[i].append(o.name)
        load[i] += o.grid_size
    order = {n: k for k, n in enumerate(cfg.optimizer_names)}
    lanes_t = tuple(tuple(sorted(lane, key=order.get)) for lane in lanes)
    return LanePlan(lanes_t, Mesh(np.array(devices[:n_lanes]), (AXIS,)))


def _stack(tree):
    return jax.tree_util.tree_map(lambda x: x[None], tree)


def _unstack(tree):
    return jax.tree_util.tree_map(lambda x: x[0], tree)


def lane_fns(plan: LanePlan, init: Callable, chunk: Callable) -> tuple[Callable, Callable]:
    """``(init, chunk)`` of :func:`jaxopt_cmp.train.make_study_fns` run in lanes: the same
    signatures, with a leading lane axis L on every leaf of the carry and the evaluation (see
    :func:`pick`). Every device computes ``init`` itself (the same values: it is deterministic)."""
    spread = PartitionSpec(AXIS)

    def init_local(*args):
        return _stack(init(*args))

    def chunk_local(carry_L, t0, length):
        carry = _unstack(carry_L)
        # Another lane's entries of the evaluation (never read): NaN of the shapes it would have.
        dtype = carry.data.x.dtype
        mse_blank = {n: jnp.full(r.diverged_at.shape, jnp.nan, dtype) for n, r in carry.runs.items()}
        n_data = carry.data.x.shape[2]
        pred_blank = {n: jnp.full((r.diverged_at.shape[1], n_data), jnp.nan, dtype) for n, r in carry.runs.items()}

        def branch(names):
            def run(c):
                c, ev = chunk(c, t0, length, names)
                fill = lambda got, blank: {n: got[n] if n in got else b for n, b in blank.items()}
                pred = None if ev.pred_HN is None else fill(ev.pred_HN, pred_blank)
                scores = (fill(ev.mse_JHK, mse_blank), pred, fill(ev.val_JHK, mse_blank), fill(ev.test_JHK, mse_blank))
                return c, Evaluation(*scores)

            return run

        out = jax.lax.switch(jax.lax.axis_index(AXIS), [branch(lane) for lane in plan.lanes], carry)
        return _stack(out)

    smap = lambda f, in_specs: jax.shard_map(f, mesh=plan.mesh, in_specs=in_specs, out_specs=spread, check_vma=False)
    return smap(init_local, PartitionSpec()), smap(chunk_local, (spread, PartitionSpec(), PartitionSpec()))


def pick(plan: LanePlan, carry: Carry, evals: list[Evaluation]) -> tuple[Carry, list[Evaluation]]:
    """Host copies without the lane axis: each optimizer's runs and evaluations from its owner,
    the data and held-out sets (the same in every lane) from lane 0."""
    lane_of = lambda n: lambda x: x[plan.owner(n)]
    own = lambda d: {n: jax.tree_util.tree_map(lane_of(n), v) for n, v in d.items()}
    key = None if carry.batch_key is None else carry.batch_key[0]
    carry = Carry(own(carry.runs), _unstack(carry.data), key, _unstack(carry.val), _unstack(carry.test))
    evals = [
        Evaluation(own(ev.mse_JHK), None if ev.pred_HN is None else own(ev.pred_HN), own(ev.val_JHK), own(ev.test_JHK))
        for ev in evals
    ]
    return carry, evals

"""Training as pure functions: one step, one chunk of steps (``lax.scan``), a whole batched run.

A *run* is one optimizer at one hyperparameter point on one seed. The engine trains every run of
a study in one compiled function: runs of one optimizer are batched with ``vmap`` over
``(grid point H, seed S)``; all optimizers advance together inside one ``lax.scan`` so they see
the same minibatches at the same step. Full-data MSE is evaluated inside the compiled function at
``TrainConfig.eval_steps``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax.flatten_util import ravel_pytree

from jaxopt_cmp.config import StudyConfig
from jaxopt_cmp.data import Data, batch_indices, make_data
from jaxopt_cmp.model import Params, init_params, make_model, mse
from jaxopt_cmp.optimizers import make_optimizer


class RunState(NamedTuple):
    """The scan carry of one run. ``diverged_at`` is -1 until the first non-finite step."""

    params: Params
    opt_state: optax.OptState
    diverged_at: jax.Array


class SeedInputs(NamedTuple):
    """What one seed fixes for every optimizer and grid point: data, initial weights, batches."""

    data: Data
    params: Params
    batch_key: jax.Array


class StudyOutput(NamedTuple):
    """Arrays per optimizer name, named by their axes (E eval points, H grid, S seeds, N data).

    ``pred_EHN`` holds seed 0's full-data predictions, or is None when not recorded.
    """

    mse_EHS: dict[str, jax.Array]
    diverged_at_HS: dict[str, jax.Array]
    params_HS: dict[str, Params]
    pred_EHN: dict[str, jax.Array] | None


def dtype_of(cfg: StudyConfig):
    return jnp.dtype(cfg.train.dtype)


def seed_inputs(key: jax.Array, cfg: StudyConfig, data: Data | None = None) -> SeedInputs:
    """Splits a seed's key into data, init and batch keys (one purpose each).

    With user-supplied ``data`` every seed fits it; the seed still sets init and batches.
    """
    key_data, key_init, key_batch = jax.random.split(key, 3)
    dtype = dtype_of(cfg)
    if data is None:
        data = make_data(key_data, cfg.data, dtype)
    else:
        data = Data(data.x.astype(dtype), data.y.astype(dtype))
    return SeedInputs(data, init_params(key_init, cfg.model, dtype), key_batch)


def make_step(apply_fn: Callable, tx: optax.GradientTransformation):
    """``step(state, x_B1, y_B1, t) -> (state, loss)``: one minibatch update of one run.

    A run whose loss or new parameters are not finite is marked diverged at step ``t`` and keeps
    its last finite parameters and optimizer state from then on; its evaluations read +inf, so
    NaN never spreads into histories or summaries.
    """

    def loss_fn(params, x, y):
        return mse(apply_fn({"params": params}, x), y)

    def step(state: RunState, x, y, t):
        loss, grads = jax.value_and_grad(loss_fn)(state.params, x, y)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        total = sum(jnp.sum(p) for p in jax.tree_util.tree_leaves(params))
        alive = state.diverged_at < 0
        ok = alive & jnp.isfinite(loss) & jnp.isfinite(total)
        keep = lambda new, old: jnp.where(ok, new, old)
        return RunState(
            jax.tree_util.tree_map(keep, params, state.params),
            jax.tree_util.tree_map(keep, opt_state, state.opt_state),
            jnp.where(alive & ~ok, t, state.diverged_at).astype(jnp.int32),
        ), loss

    return step


def _chunks(eval_steps: tuple[int, ...]) -> tuple[int, int, int]:
    """(steps per full chunk, number of full chunks, length of a last shorter chunk or 0)."""
    size = eval_steps[1] - eval_steps[0]
    n_full = sum(1 for a, b in zip(eval_steps, eval_steps[1:]) if b - a == size)
    return size, n_full, eval_steps[-1] - eval_steps[n_full]


def make_study_fn(cfg: StudyConfig, progress: Callable[[int], None] | None = None, groups: int = 1):
    """``study(keys_S, hparams, data=None) -> StudyOutput``, to be jitted once by the caller.

    ``keys_S`` holds one key per seed; ``hparams[name][hp]`` is an ``(H,)`` array of that
    optimizer's grid; ``data``, if given, replaces the generated data of every seed. Only arrays
    flow in, so new seeds, grid values or data of the same shapes reuse the compilation.
    ``progress(step)``, if given, is called from the compiled run after each evaluation with the
    number of steps done (it may be called more than once per step on several devices).

    ``groups > 1`` trains the seeds in that many groups one after another (``lax.map``), group
    ``j`` holding seeds ``j, j + groups, ...``: the same results, but each step's working set
    stays cache-sized; ``progress`` then counts steps over all groups (``groups * iters``).
    """
    model = make_model(cfg.model, dtype_of(cfg))
    # Runs carry their parameters as one flat vector: the optimizer update and the divergence
    # mask then fuse into a few kernels instead of a few per layer array (Adam's update was 60%
    # of its step time on CPU with the pytree). Exact for elementwise optimizers (the registry).
    template = jax.eval_shape(lambda k: init_params(k, cfg.model, dtype_of(cfg)), jax.random.key(0))
    _, unravel = ravel_pytree(jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), template))
    apply_flat = lambda variables, x: model.apply({"params": unravel(variables["params"])}, x)
    names = cfg.optimizer_names
    steps = {n: make_step(apply_flat, make_optimizer(n)) for n in names}
    batch_size, n_data = cfg.train.batch_size, cfg.data.n_data
    record = cfg.record_predictions

    def init_runs(name, hp_H, params_S):
        def one(hp, params):
            tx = make_optimizer(name, **hp)
            flat = ravel_pytree(params)[0]
            return RunState(flat, tx.init(flat), jnp.int32(-1))

        return jax.vmap(jax.vmap(one, (None, 0)), (0, None))(hp_H, params_S)

    def evaluate(states, data_S):
        def one(state, x, y):
            pred = apply_flat({"params": state.params}, x)
            loss = mse(pred, y)
            # A diverged run (or one whose full-data loss overflows) scores +inf, never NaN.
            return jnp.where((state.diverged_at < 0) & jnp.isfinite(loss), loss, jnp.inf), pred[:, 0]

        def grid_point(states_S):
            mse_S, pred_SN = jax.vmap(one)(states_S, data_S.x, data_S.y)
            return mse_S, pred_SN[0]  # predictions of seed 0 only: all the plots need

        # One grid point at a time (lax.map), seeds vmapped: the full-data activations of every
        # run at once (H x S x N x width floats) would dominate a study's memory.
        out = {n: jax.lax.map(grid_point, states[n]) for n in names}
        return {n: m for n, (m, _) in out.items()}, ({n: p for n, (_, p) in out.items()} if record else None)

    def run_chunk(states, seeds: SeedInputs, t0, length):
        t_C = t0 + jnp.arange(length)
        idx_SCB = jax.vmap(lambda k: batch_indices(k, t_C, n_data, batch_size))(seeds.batch_key)
        gather = jax.vmap(lambda a, i: a[i])  # per seed: (N, 1)[(C, B)] -> (C, B, 1)
        x_CSB = jnp.swapaxes(gather(seeds.data.x, idx_SCB), 0, 1)
        y_CSB = jnp.swapaxes(gather(seeds.data.y, idx_SCB), 0, 1)

        def body(states, inputs):
            x_SB, y_SB, t = inputs
            new = {}
            for n in names:
                f = jax.vmap(jax.vmap(steps[n], (0, 0, 0, None)), (0, None, None, None))
                new[n], _ = f(states[n], x_SB, y_SB, t)
            return new, None

        states, _ = jax.lax.scan(body, states, (x_CSB, y_CSB, t_C))
        return states

    def chunk_then_eval(states, seeds, t0, length, done_before):
        states = run_chunk(states, seeds, t0, length)
        if progress is not None:
            jax.debug.callback(progress, done_before + t0 + length)
        return states, evaluate(states, seeds.data)

    def study_group(keys_S, hparams, data, done_before=0) -> StudyOutput:
        seeds = jax.vmap(lambda k: seed_inputs(k, cfg, data))(keys_S)
        states = {n: init_runs(n, hparams[n], seeds.params) for n in names}
        first = evaluate(states, seeds.data)
        size, n_full, rest = _chunks(cfg.train.eval_steps)

        def outer(states, t0):
            return chunk_then_eval(states, seeds, t0, size, done_before)

        states, stacked = jax.lax.scan(outer, states, size * jnp.arange(n_full))
        if rest:
            states, last = chunk_then_eval(states, seeds, size * n_full, rest, done_before)
        stack = lambda first, mid, *last: jnp.concatenate([first[None], mid, *(x[None] for x in last)])
        tail = (last,) if rest else ()
        merged = jax.tree_util.tree_map(stack, first, stacked, *tail)
        mse_EHS, pred = merged
        return StudyOutput(
            mse_EHS,
            {n: states[n].diverged_at for n in names},
            {n: jax.vmap(jax.vmap(unravel))(states[n].params) for n in names},
            pred,
        )

    def study(keys_S, hparams, data: Data | None = None) -> StudyOutput:
        if groups == 1:
            return study_group(keys_S, hparams, data)
        # Seed s = k * groups + j is member k of group j; lax.map over groups, then undo.
        keys_JxK = keys_S.reshape(-1, groups).T
        done = cfg.train.iters * jnp.arange(groups)
        out = jax.lax.map(lambda a: study_group(a[0], hparams, data, a[1]), (keys_JxK, done))
        # (groups, ..., K at `axis`, ...) -> (..., K * groups, ...), seed s = k * groups + j.
        seeds_last = lambda x, axis: jnp.moveaxis(x, 0, axis).reshape(*x.shape[1:axis], -1, *x.shape[axis + 1 :])
        return StudyOutput(
            {n: seeds_last(m, 3) for n, m in out.mse_EHS.items()},
            {n: seeds_last(d, 2) for n, d in out.diverged_at_HS.items()},
            {n: jax.tree_util.tree_map(lambda p: seeds_last(p, 2), ps) for n, ps in out.params_HS.items()},
            None if out.pred_EHN is None else {n: p[0] for n, p in out.pred_EHN.items()},
        )

    return study

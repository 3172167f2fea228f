"""Training as pure functions: one step, a chunk of steps, a whole batched study.

A *run* is one optimizer at one hyperparameter point on one seed. Every run of a study lives in
one compiled program: runs of one optimizer are batched with ``vmap`` over ``(grid point H,
seed)``, trained a seed group and a few grid points at a time on CPU (so a step's working set
stays cache-sized); every optimizer sees the same minibatches at the same step. The study is
two pure functions, each jitted once by the caller:

- ``init(keys_JK, hparams, data) -> Carry``: data, initial weights and optimizer states of every
  run;
- ``chunk(carry, t0, length) -> (Carry, Evaluation)``: ``length`` steps from step ``t0``, then the
  full-data evaluation (batches drawn a bounded number of steps at a time): training MSE, and
  MSE on the validation and test sets (:mod:`jaxopt_cmp.data`). ``length = 0`` is the evaluation
  at step 0: the evaluation is compiled into one program, not two.

The caller loops over the evaluation interval in Python (:mod:`jaxopt_cmp.study`): progress is
reported between chunks, so the compiled program has no host callback (JAX's persistent
compilation cache refuses those) and one executable serves any iteration count.

Axis letters used in names throughout the package (``mse_EHS`` is evals x grid x seeds):

====  ==============================================================
E     evaluation points (step 0, every ``eval_every``, the last step)
H     grid points of one optimizer's hyperparameter grid
S     seeds of a study (seed ``s`` uses ``fold_in(key(seed), s)``)
J, K  seed groups trained one after another, and seeds within a group
      (seed ``s = k * J + j``); J = 1 unless the study is large
N     data points; B minibatch rows; P flat parameters of one run
====  ==============================================================
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.flatten_util import ravel_pytree

from jaxopt_cmp.config import StudyConfig
from jaxopt_cmp.data import Data, batch_indices, make_data, make_test, make_val
from jaxopt_cmp.model import Params, init_params, make_model, mse
from jaxopt_cmp.optimizers import make_optimizer


class RunState(NamedTuple):
    """One run's loop state. ``diverged_at`` is -1 until the first non-finite step."""

    params: Params
    opt_state: optax.OptState
    diverged_at: jax.Array


class SeedInputs(NamedTuple):
    """What one seed fixes for every optimizer and grid point: data, initial weights, batches,
    and its validation set (None: user data without one)."""

    data: Data
    params: Params
    batch_key: jax.Array
    val: Data | None = None


class Carry(NamedTuple):
    """The loop state of a whole study: runs per optimizer name (axes J, H, K), the seeds' data,
    batch keys and validation sets (axes J, K), and the test set (no seed axis; None: user data
    without held-out rows, as ``val``)."""

    runs: dict[str, RunState]
    data: Data
    batch_key: jax.Array
    val: Data | None = None
    test: Data | None = None


class Evaluation(NamedTuple):
    """Full-data (training) MSE per optimizer ``(J, H, K)``; seed 0's predictions ``(H, N)`` or
    None; validation and test MSE ``(J, H, K)`` (NaN without a held-out set)."""

    mse_JHK: dict[str, jax.Array]
    pred_HN: dict[str, jax.Array] | None
    val_JHK: dict[str, jax.Array]
    test_JHK: dict[str, jax.Array]


def dtype_of(cfg: StudyConfig):
    return jnp.dtype(cfg.train.dtype)


def seed_inputs(key: jax.Array, cfg: StudyConfig, data: Data | None = None, val: Data | None = None) -> SeedInputs:
    """Splits a seed's key into data, init and batch keys (one purpose each); the validation set
    has a key of its own, ``fold_in(key, VAL_STREAM)``, so the split is the same as without one.

    With user-supplied ``data`` every seed fits it (and is scored on ``val``, which may be None);
    the seed still sets init and batches.
    """
    key_data, key_init, key_batch = jax.random.split(key, 3)
    dtype = dtype_of(cfg)
    cast = lambda d: None if d is None else Data(jnp.asarray(d.x, dtype), jnp.asarray(d.y, dtype))
    if data is None:
        data, val = make_data(key_data, cfg.data, dtype), make_val(key, cfg.data, dtype)
    else:
        data, val = cast(data), cast(val)
    return SeedInputs(data, init_params(key_init, cfg.model, dtype), key_batch, val)


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


def flat_model(cfg: StudyConfig):
    """``(apply_flat, unravel)``: the model applied to one flat parameter vector per run.

    Runs carry their parameters as one flat vector: the optimizer update and the divergence mask
    then fuse into a few kernels instead of a few per layer array (Adam's update was 60% of its
    step time on CPU with the pytree). Exact for elementwise optimizers (the registry).
    """
    model = make_model(cfg.model, dtype_of(cfg))
    unravel = unravel_params(cfg)
    return (lambda variables, x: model.apply({"params": unravel(variables["params"])}, x)), unravel


def unravel_params(cfg: StudyConfig) -> Callable:
    """``unravel(flat_...P) -> params`` with leaves ``(..., *shape)``: the inverse of
    ``ravel_pytree`` on the model's parameters, for any leading axes, on jax or numpy arrays (a
    finished study's parameters are unravelled on the host, compiling nothing)."""
    dtype = dtype_of(cfg)
    template = jax.eval_shape(lambda: init_params(jax.random.key(0), cfg.model, dtype))
    leaves, treedef = jax.tree_util.tree_flatten(template)
    ends = np.cumsum([int(np.prod(leaf.shape)) for leaf in leaves])

    def unravel(flat):
        # split, not slices: under autodiff its transpose is one concatenate, where slices' is a
        # sum of zero-padded copies (20% of a step's time at 8 seeds, measured)
        xp = np if isinstance(flat, np.ndarray) else jnp
        parts = xp.split(flat, ends[:-1], axis=-1)
        lead = flat.shape[:-1]
        return jax.tree_util.tree_unflatten(treedef, [p.reshape(*lead, *leaf.shape) for p, leaf in zip(parts, leaves)])

    return unravel


def exact_mean(a_N: jax.Array) -> jax.Array:
    """The mean of ``a_N`` by pairwise sums in a fixed order: the same bits whatever batch axes
    ``vmap`` adds. XLA:CPU's reduce rounds differently for different seed counts (seen at
    N = 2000: one ulp), and a shard of a study (:mod:`jaxopt_cmp.shards`) runs fewer seeds than
    the whole study; elementwise adds are exact per element, whatever the layout."""
    n, a = a_N.shape[0], a_N
    while a.shape[0] > 1:
        if a.shape[0] % 2:
            a = jnp.concatenate([a, jnp.zeros((1,), a.dtype)])
        a = a[0::2] + a[1::2]
    return a[0] / n


def make_study_fns(cfg: StudyConfig, seed_devices: int = 1):
    """``(init, chunk)``, the two pure functions of a study (module doc), to be jitted once.

    ``keys_JK`` holds one key per seed, grouped (axes J, K); ``hparams[name][hp]`` is an ``(H,)``
    array of that optimizer's grid (with a schedule, also its parameters and ``iters``, so a new
    iteration count does not recompile); ``data``, if not None, replaces the generated data of every
    seed. Only arrays flow in, so new seeds, grid values, data or iteration counts of the same
    shapes reuse the compilation. ``seed_devices``: the devices the seeds (K) are split over, for
    the size of the grid groups trained together (:func:`grid_group_size`).
    """
    apply_flat, _ = flat_model(cfg)
    names = cfg.optimizer_names
    kinds = {o.name: o.schedule for o in cfg.optimizers}  # static; "constant" is the unscheduled program
    steps = {n: make_step(apply_flat, make_optimizer(n, kinds[n])) for n in names}
    batch_size, n_data = cfg.train.batch_size, cfg.data.n_data

    def init_runs(name, hp_H, params_K):
        def one(hp, params):
            tx = make_optimizer(name, kinds[name], **hp)
            flat = ravel_pytree(params)[0]
            return RunState(flat, tx.init(flat), jnp.int32(-1))

        return jax.vmap(jax.vmap(one, (None, 0)), (0, None))(hp_H, params_K)

    def evaluate_group(runs, data_K, val_K, test, with_pred, names):
        def score(state, x, y):
            pred = apply_flat({"params": state.params}, x)
            loss = exact_mean((pred - y)[:, 0] ** 2)
            # A diverged run (or one whose full-data loss overflows) scores +inf, never NaN.
            return jnp.where((state.diverged_at < 0) & jnp.isfinite(loss), loss, jnp.inf), pred[:, 0]

        nan = jnp.full((), jnp.nan, dtype_of(cfg))  # no held-out set (user data without one)

        def one(state, x, y, val):
            loss, pred = score(state, x, y)
            val_loss = nan if val is None else score(state, val.x, val.y)[0]
            test_loss = nan if test is None else score(state, test.x, test.y)[0]
            return loss, pred, val_loss, test_loss

        def grid_point(states_K):
            mse_K, pred_KN, val_K_, test_K = jax.vmap(one)(states_K, data_K.x, data_K.y, val_K)
            return mse_K, (pred_KN[0] if with_pred else None), val_K_, test_K  # seed 0's predictions only

        # One grid point at a time (lax.map), seeds vmapped: the full-data activations of every
        # run at once (H x S x N x width floats) would dominate a study's memory.
        return {n: jax.lax.map(grid_point, runs[n]) for n in names}

    def evaluate(carry: Carry, names=names) -> Evaluation:
        record = cfg.record_predictions
        group = lambda c: evaluate_group(c[0], c[1], c[2], carry.test, record, names)
        per_group = jax.lax.map(group, (carry.runs, carry.data, carry.val))
        pick = lambda i: {n: out[i] for n, out in per_group.items()}
        pred = {n: p[0] for n, p in pick(1).items()} if record else None  # group 0: seed 0
        return Evaluation(pick(0), pred, pick(2), pick(3))

    draw = steps_per_draw(cfg.train.eval_every)

    def by_grid_groups(f, runs_HK):
        """``f`` over ``runs_HK`` a few grid points at a time (``lax.map``), so each loop's working
        set stays cache-sized as seed groups keep it (:func:`grid_group_size`); a last, smaller
        group takes the grid points left over. ``f`` is per-run: the results are those of one call."""
        h, k = jax.tree_util.tree_leaves(runs_HK)[0].shape[:2]
        g = grid_group_size(h, k // seed_devices)
        if g >= h:
            return f(runs_HK)
        full = h - h % g
        tree = jax.tree_util.tree_map
        head = tree(lambda a: a[:full].reshape(full // g, g, *a.shape[1:]), runs_HK)
        head = tree(lambda a: a.reshape(full, *a.shape[2:]), jax.lax.map(f, head))
        if full == h:
            return head
        return tree(lambda a, b: jnp.concatenate([a, b]), head, f(tree(lambda a: a[full:], runs_HK)))

    def steps_from(name, runs_HK, data_K, key_K, t0, end):
        """``draw`` steps of one optimizer's runs from ``t0`` (those at or past ``end`` leave the
        runs as they are): the batches of those steps are drawn at once, so memory is bounded by
        ``draw``, never by the evaluation interval."""
        t_C = t0 + jnp.arange(draw)
        idx_KCB = jax.vmap(lambda k: batch_indices(k, t_C, n_data, batch_size))(key_K)
        gather = jax.vmap(lambda a, i: a[i])  # per seed: (N, 1)[(C, B)] -> (C, B, 1)
        x_CKB = jnp.swapaxes(gather(data_K.x, idx_KCB), 0, 1)
        y_CKB = jnp.swapaxes(gather(data_K.y, idx_KCB), 0, 1)
        step_HK = jax.vmap(jax.vmap(steps[name], (0, 0, 0, None)), (0, None, None, None))

        def body(runs_HK, inputs):
            x_KB, y_KB, t = inputs
            new, _ = step_HK(runs_HK, x_KB, y_KB, t)
            keep = lambda a, b: jnp.where(t < end, a, b)
            return jax.tree_util.tree_map(keep, new, runs_HK), None

        return jax.lax.scan(body, runs_HK, (x_CKB, y_CKB, t_C))[0]

    def init(keys_JK, hparams, data: Data | None = None, val=None, test=None) -> Carry:
        """``data``: user data's training rows, ``val``/``test`` its held-out rows (or None)."""
        seeds = jax.vmap(jax.vmap(lambda k: seed_inputs(k, cfg, data, val)))(keys_JK)
        per_group = lambda f: jax.vmap(f)  # over J
        runs = {n: per_group(lambda p, n=n: init_runs(n, hparams[n], p))(seeds.params) for n in names}
        dtype = dtype_of(cfg)
        if data is None:
            test = make_test(cfg.data, dtype)
        elif test is not None:
            test = Data(jnp.asarray(test.x, dtype), jnp.asarray(test.y, dtype))
        return Carry(runs, seeds.data, seeds.batch_key, seeds.val, test)

    def chunk(carry: Carry, t0, length, names=names) -> tuple[Carry, Evaluation]:
        """``length`` steps of the runs of ``names`` (default: every optimizer), then their
        evaluation; the other optimizers' runs are returned as they were."""

        # Groups one after another (lax.map), each for the whole chunk: a large study's per-step
        # working set then stays cache-sized. Each optimizer in a loop of its own: the batches of
        # a step depend only on (batch key, step), so every optimizer still sees the same ones.
        # Measured on 2 CPU cores against one loop of all: the seed study on one core 0.95 s vs
        # 1.35 s, S = 512 44k vs 40k model-steps/s, S = 8 and two lanes at S = 1 the same.
        def group(c):
            runs, data, key = c
            trips = (length + draw - 1) // draw
            advance = lambda n: (
                lambda r: jax.lax.fori_loop(
                    0, trips, lambda i, r: steps_from(n, r, data, key, t0 + i * draw, t0 + length), r
                )
            )
            return {n: by_grid_groups(advance(n), runs[n]) for n in names}

        moved = jax.lax.map(group, ({n: carry.runs[n] for n in names}, carry.data, carry.batch_key))
        carry = carry._replace(runs={**carry.runs, **moved})
        return carry, evaluate(carry, names)

    return init, chunk


MAX_DRAW = 128
RUNS_PER_GROUP = 16


def grid_group_size(grid_points: int, seeds_per_device: int) -> int:
    """Grid points trained together on a device: all of them while the runs of a seed group's
    grid fit in twice :data:`RUNS_PER_GROUP`, else about that many runs at a time (at least one
    grid point). The rate falls by a third once a device steps 64+ runs at once on CPU (the
    per-step working set leaves the cache): :func:`jaxopt_cmp.study.seed_groups` for seeds."""
    if grid_points * seeds_per_device <= 2 * RUNS_PER_GROUP or jax.default_backend() != "cpu":
        return grid_points
    return max(1, RUNS_PER_GROUP // max(1, seeds_per_device))


def steps_per_draw(eval_every: int) -> int:
    """Steps whose batches are drawn together: at most :data:`MAX_DRAW` (bounded memory), and
    dividing an evaluation interval into equal parts, so at most a few steps per interval are
    computed and masked. Drawing per step instead cost ~30% of the seed study's time on CPU."""
    parts = -(-eval_every // MAX_DRAW)
    return -(-eval_every // parts)


def chunk_lengths(eval_steps: tuple[int, ...]) -> list[tuple[int, int]]:
    """``(t0, length)`` of each chunk between consecutive evaluation steps."""
    return [(a, b - a) for a, b in zip(eval_steps, eval_steps[1:])]

"""``run_study(StudyConfig) -> StudyResult``: every run of a study, compiled once.

Seeds and grid points are batch axes of one program; when several devices are visible the seed
axis is sharded across them with ``jax.sharding`` (results match one device). A study is compiled
once per *shape* (optimizer names and grid sizes, model, data size, batch, dtype, seed count) and
kept for the process: calling :func:`run_study` again with new learning rates, seeds or
iteration counts of the same shapes does not recompile.
"""

from __future__ import annotations

import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jaxopt_cmp import train as _train
from jaxopt_cmp.budget import check_budget
from jaxopt_cmp.checks import ConfigError
from jaxopt_cmp.config import StudyConfig
from jaxopt_cmp.data import Data, check_user_data, split_user_data
from jaxopt_cmp.distributed import check_same_on_every_process, shard_seeds, to_host
from jaxopt_cmp.driver import train
from jaxopt_cmp.io import versions
from jaxopt_cmp.lanes import LanePlan, lane_fns, pick, plan_lanes
from jaxopt_cmp.optimizers import OPTIMIZERS
from jaxopt_cmp.results import StudyResult
from jaxopt_cmp.targets import TARGETS, target_xdim
from jaxopt_cmp.train import Carry, Evaluation, flat_model, make_study_fns, steps_per_draw


class StudyOutput(NamedTuple):
    """Arrays per optimizer name (see :mod:`jaxopt_cmp.train` for the axis letters)."""

    mse_EHS: dict[str, np.ndarray]
    diverged_at_HS: dict[str, np.ndarray]
    params_HS: dict[str, object]
    pred_EHN: dict[str, np.ndarray] | None
    val_EHS: dict[str, np.ndarray]
    test_EHS: dict[str, np.ndarray]


def seed_keys(seed: int, n_seeds: int, offset: int = 0) -> jax.Array:
    """Seed ``i``'s key is ``fold_in(key(seed), offset + i)``: independent of how many seeds run,
    so seeds ``offset..offset + n_seeds - 1`` of a shard are those seeds of the whole study."""
    return _seed_keys(np.uint32(seed), np.int32(offset), n_seeds, None)  # one program per seed count


@partial(jax.jit, static_argnums=(2, 3))
def _seed_keys(seed: jax.Array, offset: jax.Array, n_seeds: int, groups: int | None) -> jax.Array:
    """The keys ``(S,)``, or grouped ``(J, K)`` as :func:`group_keys` groups them."""
    root = jax.random.key(seed)  # a uint32 seed gives the key of the same Python int (tested)
    keys_S = jax.vmap(lambda i: jax.random.fold_in(root, i))(offset + jnp.arange(n_seeds, dtype=jnp.int32))
    return keys_S if groups is None else _grouped(keys_S, groups)


def _grouped(keys_S: jax.Array, groups: int) -> jax.Array:
    """``(S,) -> (J, K)``, seed ``s = k * J + j`` in group ``j`` (:func:`ungroup` inverts it)."""
    return keys_S.reshape(-1, groups).T


def grid_arrays(cfg: StudyConfig) -> dict[str, dict[str, np.ndarray]]:
    """Every optimizer's grid, per hyperparameter an ``(H,)`` array in the run dtype (numpy: the
    compiled programs take them as they are)."""
    dtype = np.dtype(cfg.train.dtype)
    iters = lambda o: {} if o.schedule == "constant" else {"iters": np.full(o.grid_size, cfg.train.iters, dtype)}
    return {o.name: {k: np.asarray(v, dtype) for k, v in {**o.grid(), **iters(o)}.items()} for o in cfg.optimizers}


SEEDS_PER_DEVICE_GROUP = _train.RUNS_PER_GROUP  # one working-set budget for seed and grid groups


def seed_groups(n_seeds: int) -> int:
    """How many seed groups a study trains one after another (1: all seeds at once).

    Measured on a 2-core CPU: model-steps/s peak with ~16 seeds per device and fall by a third at
    64+ (the per-step working set leaves the cache), so large studies go in groups of that size.
    """
    per_device = n_seeds // jax.device_count() if n_seeds % jax.device_count() == 0 else n_seeds
    if jax.default_backend() != "cpu" or per_device <= 2 * SEEDS_PER_DEVICE_GROUP:
        return 1
    groups = per_device // SEEDS_PER_DEVICE_GROUP
    return groups if per_device % SEEDS_PER_DEVICE_GROUP == 0 else 1


def seed_mesh(n_seeds: int, groups: int) -> Mesh | None:
    """A 1-D mesh over every device when the seeds of a group (K) divide evenly over them."""
    devices = jax.devices()
    if len(devices) == 1 or (n_seeds // groups) % len(devices):
        return None
    return Mesh(np.array(devices), ("seeds",))


def layouts(mesh: Mesh | None) -> tuple | None:
    """Shardings of ``(Carry, Evaluation)`` as pytree prefixes: K (the seeds within a group) split
    over the mesh, seed 0's predictions and the test set (no seed axis) replicated; None on one
    device."""
    if mesh is None:
        return None
    split = lambda axis: NamedSharding(mesh, PartitionSpec(*([None] * axis), "seeds"))
    every = NamedSharding(mesh, PartitionSpec())
    return Carry(split(2), split(1), split(1), split(1), every), Evaluation(split(2), every, split(2), split(2))


def group_keys(keys_S: jax.Array, groups: int, mesh: Mesh | None) -> jax.Array:
    """``(S,) -> (J, K)``: group ``j`` holds seeds ``j, j + J, ...`` (seed ``s = k * J + j``), so a
    seed axis sharded in contiguous blocks stays sharded along K; then placed across devices."""
    return shard_seeds(_grouped(keys_S, groups), mesh, axis=1)


def ungroup(x_JK: np.ndarray, axis: int) -> np.ndarray:
    """Inverse of :func:`group_keys` for an array with J at axis 0 and K at ``axis``: K * J seeds."""
    x = np.moveaxis(x_JK, 0, axis)  # (..., K, J, ...)
    return x.reshape(*x.shape[: axis - 1], -1, *x.shape[axis + 1 :])


def check_runnable(cfg: StudyConfig, data: Data | None, max_bytes: float | None = None, copies: int = 1) -> None:
    """Everything that depends on the JAX setup or the data rather than the config alone."""
    if cfg.train.dtype == "float64" and not jax.config.jax_enable_x64:
        raise ConfigError(
            "dtype",
            "float64",
            "expected JAX's x64 mode on: call jax.config.update('jax_enable_x64', True) before making "
            "any array (the scripts do this for --dtype float64)",
        )
    want = target_xdim(cfg.data.target)
    if data is None and cfg.model.xdim != want:
        allowed = f"expected {want}, target {cfg.data.target}'s input dimension; other widths need user data"
        raise ConfigError("xdim", cfg.model.xdim, allowed)
    if data is not None:
        check_user_data(data, cfg)
    check_budget(cfg, max_bytes, copies)
    _warn_if_one_core(cfg)


class OneDeviceWarning(UserWarning):
    """A study could run its seeds on several CPU cores but JAX sees one device."""


def _warn_if_one_core(cfg: StudyConfig) -> None:
    from jaxopt_cmp.runtime import cpu_count

    parallel = cfg.seeds > 1 or len(cfg.optimizers) > 1  # seeds split, or optimizers in lanes
    if parallel and jax.device_count() == 1 and jax.default_backend() == "cpu" and cpu_count() > 1:
        runs = f"{cfg.seeds} seed(s) x {len(cfg.optimizers)} optimizer(s)"
        warnings.warn(
            f"JAX sees one CPU device but this machine has {cpu_count()} cores: the {runs} run on one core. "
            "Call jaxopt_cmp.use_all_cores() before JAX starts (a notebook's first cell) to use them all.",
            OneDeviceWarning,
            stacklevel=3,
        )


def _shape_key(cfg: StudyConfig, data: Data | None, plan: LanePlan | None) -> tuple:
    """Everything the compiled program depends on (values like lr, seed, iters: not): the config's
    shapes and dtype, and the functions the trace closes over, by identity (each optimizer's
    registry row, so ``register_optimizer(..., replace=True)`` recompiles; the target), and the
    user data's shapes."""
    rows = tuple(OPTIMIZERS.get(o.name) for o in cfg.optimizers)
    traced = (
        tuple((r.build, tuple(sorted(r.defaults.items()))) if r is not None else None for r in rows),
        TARGETS.get(cfg.data.target),
    )
    with_data = None if data is None else tuple(np.shape(a) for a in data)  # cast to the run dtype
    optimizers = tuple((o.name, o.schedule, tuple(sorted(o.grid())), o.grid_size) for o in cfg.optimizers)
    train = (cfg.train.batch_size, cfg.train.dtype, steps_per_draw(cfg.train.eval_every))
    return (
        optimizers,
        replace(cfg.data, source=""),
        cfg.model,
        train,
        cfg.seeds,
        cfg.record_predictions,
        with_data,
        seed_groups(cfg.seeds),
        _train.RUNS_PER_GROUP,  # the size of grid groups (train.grid_group_size)
        jax.device_count(),
        jax.default_backend(),
        bool(jax.config.read("jax_enable_x64")),  # the traced integer dtypes
        None if plan is None else plan.key(),
        traced,
    )


def _chunk_key(key: tuple, cfg: StudyConfig) -> tuple:
    """The training loop's part of shape key ``key``: the data only by its sizes and input width
    (the target, its range and noise are traced by ``init`` alone, the loop reads the data from
    the carry), so problems of equal shapes (sin, step, chirp, ...) share one compiled loop."""
    d = cfg.data
    sizes = (d.n_data, d.n_val, d.n_test, target_xdim(d.target), bool(d.source), d.val_fraction, d.test_fraction)
    return ("chunk", key[0], sizes, *key[2:-1], key[-1][0])


# shape key -> {"init", "chunk"}; ("chunk", ...) -> a compiled training loop, shared (_chunk_key)
_COMPILED: dict[tuple, dict] = {}


def _compile(cfg: StudyConfig, key: tuple, init_args: tuple, mesh: Mesh | None, plan: LanePlan | None) -> dict:
    """``{"init", "chunk"}`` compiled for shape key ``key``: both programs traced, then compiled side
    by side; a training loop compiled before for a study of equal shapes is shared (:func:`_chunk_key`).
    The chunk is lowered from the shapes ``init`` returns, so it need not wait for ``init`` to run."""
    init, chunk = make_study_fns(cfg, seed_devices=1 if mesh is None else mesh.devices.size)
    if plan is not None:
        init, chunk = lane_fns(plan, init, chunk)
        out = (plan.sharding(), plan.sharding())  # every leaf split along its lane axis
    else:
        out = layouts(mesh)
    traced = jax.jit(init, out_shardings=None if out is None else out[0]).trace(*init_args)
    lowered = {"init": traced.lower()}
    ckey = _chunk_key(key, cfg)
    if ckey not in _COMPILED:
        # Chunks keep the carry's layout (out = in), so one executable serves every chunk.
        in_chunk = None if out is None else (out[0], None, None)
        jitted = jax.jit(chunk, in_shardings=in_chunk, out_shardings=out, donate_argnums=0)
        lowered["chunk"] = jitted.lower(traced.out_info, np.int32(0), np.int32(1))
    compiled = compile_side_by_side(lowered)
    if "chunk" in compiled:
        _COMPILED[ckey] = compiled["chunk"]
    return {"init": compiled["init"], "chunk": _COMPILED[ckey]}


def compile_side_by_side(lowered: dict) -> dict:
    """Each lowered program compiled on a thread of its own (XLA compiles outside the GIL, so the
    programs overlap where XLA leaves cores idle: little on 2 cores, where it already uses both);
    the waits stay interruptible (Ctrl-C), the daemon threads never hold up an exit."""
    done: dict = {}

    def work(name, program):
        try:
            done[name] = program.compile()
        except BaseException as err:  # raised in the caller's thread below
            done[name] = err

    threads = [threading.Thread(target=work, args=item, daemon=True) for item in lowered.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        while thread.is_alive():
            thread.join(0.05)
    for value in done.values():
        if isinstance(value, BaseException):
            raise value
    return done


def _first(entry: dict, keys_JK, grid, extra: tuple) -> tuple[Carry, Evaluation]:
    """Every run set up, and the evaluation at step 0 (a chunk of no steps)."""
    return entry["chunk"](entry["init"](keys_JK, grid, *extra), np.int32(0), np.int32(0))


def _data_args(cfg: StudyConfig, data: Data | None) -> tuple:
    """``()`` or ``(train, val, test)`` in the run dtype, user data split by
    :func:`jaxopt_cmp.data.split_user_data` (val and test may be None): the optional last
    arguments of ``init``."""
    if data is None:
        return ()
    dtype = cfg.train.dtype
    cast = lambda d: None if d is None else Data(*(jnp.asarray(a, dtype) for a in d))
    return tuple(cast(d) for d in split_user_data(Data(np.asarray(data.x), np.asarray(data.y)), cfg.data, cfg.seed))


@dataclass
class PreparedStudy:
    """A study compiled and set up (data, initial weights, step-0 evaluation), ready to train.

    Built by :func:`prepare_study`; :meth:`run` trains it once (its state is consumed).
    ``timing`` holds ``compile_s`` (0 when the compiled program was reused) and ``setup_s``.
    """

    config: StudyConfig
    grid: dict
    carry: Carry
    first: Evaluation
    chunk: Callable
    timing: dict
    initial_flat: np.ndarray
    unravel: Callable
    user_data: bool
    plan: LanePlan | None = None
    placement: str = "one device"

    def initial_params(self):
        """Seed 0's initial parameters (every optimizer of seed 0 starts from them)."""
        return self.unravel(np.asarray(self.initial_flat))

    def run(self, progress: Callable[[int], None] | None = None, checkpoint=None) -> StudyResult:
        """Trains every run; ``progress(steps_done)`` is called after each evaluation interval.
        ``checkpoint`` (:class:`jaxopt_cmp.checkpoint.Checkpoint`) saves the state at evaluation
        boundaries; one that was loaded resumes from its boundary (bit-identical results)."""
        if self.carry is None:
            raise RuntimeError("this PreparedStudy has already run; prepare it again")
        carry, self.carry = self.carry, None
        start = time.perf_counter()
        evals = [self.first]
        if checkpoint is not None and checkpoint.state is not None:
            runs, evals = checkpoint.restore(carry.runs, self.first)
            carry = carry._replace(runs=runs)
            if progress is not None:
                progress(self.config.train.eval_steps[len(evals) - 1])
        carry, evals = train(self.chunk, carry, evals, self.config.train.eval_steps, progress, checkpoint)
        timing = {**self.timing, "train_s": time.perf_counter() - start}
        return to_result(self.config, carry, evals, self.grid, timing, self.unravel, self.plan, self.placement)


def prepare_study(cfg: StudyConfig, data: Data | None = None, *, max_bytes: float | None = None) -> PreparedStudy:
    """Checks, compiles (or reuses) and sets up ``cfg``; ``data`` replaces every seed's generated
    data (see :func:`jaxopt_cmp.data.data_from_arrays`). Refuses, before compiling, a config whose
    estimated memory exceeds ``max_bytes`` (default: most of the available memory)."""
    groups = seed_groups(cfg.seeds)
    mesh = seed_mesh(cfg.seeds, groups)
    plan = plan_lanes(cfg) if mesh is None else None
    check_runnable(cfg, data, max_bytes, 1 if plan is None else len(plan.lanes))
    check_same_on_every_process(cfg, data)
    key = _shape_key(cfg, data, plan)
    keys_JK = shard_seeds(_seed_keys(np.uint32(cfg.seed), np.int32(cfg.seed_offset), cfg.seeds, groups), mesh, axis=1)
    grid = grid_arrays(cfg)
    extra = _data_args(cfg, data)
    compile_s = 0.0
    if key not in _COMPILED:
        start = time.perf_counter()
        _COMPILED[key] = _compile(cfg, key, (keys_JK, grid, *extra), mesh, plan)
        compile_s = time.perf_counter() - start
    entry = _COMPILED[key]
    start = time.perf_counter()
    carry, first = jax.block_until_ready(_first(entry, keys_JK, grid, extra))
    setup_s = time.perf_counter() - start
    start = time.perf_counter()
    first_name = cfg.optimizer_names[0]
    initial_flat = to_host(carry.runs[first_name].params)
    initial_flat = (initial_flat if plan is None else initial_flat[plan.owner(first_name)])[0, 0, 0]
    setup_s += time.perf_counter() - start
    _, unravel = flat_model(cfg)
    return PreparedStudy(
        cfg,
        grid,
        carry,
        first,
        entry["chunk"],
        {"compile_s": compile_s, "setup_s": setup_s},
        initial_flat,
        unravel,
        data is not None,
        plan,
        placement(mesh, plan),
    )


def run_study(cfg: StudyConfig, progress: Callable[[int], None] | None = None, data: Data | None = None) -> StudyResult:
    """Compiles (or reuses) and runs every (optimizer, grid point, seed) of ``cfg``; times phases."""
    return prepare_study(cfg, data).run(progress)


def clear_cache() -> None:
    """Forgets the compiled studies kept for this process."""
    _COMPILED.clear()


def placement(mesh: Mesh | None, plan: LanePlan | None) -> str:
    """Where a study ran, in words (results keep it beside the versions)."""
    if mesh is not None:
        return f"seeds split over {mesh.size} devices"
    if plan is not None:
        lanes = " | ".join(", ".join(lane) for lane in plan.lanes)
        return f"optimizers in {len(plan.lanes)} lanes, one per device ({lanes})"
    return "one device"


def collect(cfg: StudyConfig, carry: Carry, evals: list[Evaluation], unravel, plan: LanePlan | None = None):
    """Host arrays with the seed axis restored (J, K -> S), and the final carry on the host. The
    whole tree is brought over at once (with several processes: one gather program, not one per
    array and evaluation)."""
    names = cfg.optimizer_names
    carry, evals = to_host((carry._replace(batch_key=None), evals))  # keys are not host data
    if plan is not None:
        carry, evals = pick(plan, carry, evals)
    per_eval = lambda field: {  # (E, J, H, K) -> (E, H, S)
        n: ungroup(np.moveaxis(np.stack([getattr(ev, field)[n] for ev in evals]), 1, 0), 3) for n in names
    }
    params = {n: unravel(ungroup(carry.runs[n].params, 2)) for n in names}
    pred = {n: np.stack([ev.pred_HN[n] for ev in evals]) for n in names} if cfg.record_predictions else None
    out = StudyOutput(
        per_eval("mse_JHK"),
        {n: ungroup(carry.runs[n].diverged_at, 2) for n in names},
        params,
        pred,
        per_eval("val_JHK"),
        per_eval("test_JHK"),
    )
    return out, carry


def to_result(cfg: StudyConfig, carry: Carry, evals, grid, timing, unravel, plan=None, where="") -> StudyResult:
    out, carry = collect(cfg, carry, evals, unravel, plan)
    return StudyResult(
        config=cfg,
        eval_steps=np.asarray(cfg.train.eval_steps),
        grid={o.name: {k: np.asarray(v, np.float64) for k, v in o.grid().items()} for o in cfg.optimizers},
        mse_EHS=out.mse_EHS,
        val_mse_EHS=out.val_EHS,
        test_mse_EHS=out.test_EHS,
        diverged_at_HS=out.diverged_at_HS,
        params_HS=out.params_HS,
        pred_EHN=out.pred_EHN or {},
        x_N=carry.data.x[0, 0, :, 0],  # seed 0: group 0, member 0
        y_N=carry.data.y[0, 0, :, 0],
        timing=timing,
        versions={**versions(), "placement": where},
    )


def compile_study(cfg: StudyConfig, progress: Callable[[int], None] | None = None, data: Data | None = None):
    """``(run, keys_S, grid, compile_s)`` for callers that time whole runs: ``run(keys_S, grid)``
    (or ``run(keys_S, grid, data)``) trains every run of ``cfg`` with those seeds' keys and grid
    values and returns a :class:`StudyOutput`; it reuses the compiled program each call."""
    prepared = prepare_study(cfg, data)
    entry = _COMPILED[_shape_key(cfg, data, prepared.plan)]
    chunk = entry["chunk"]

    def run(keys_S, grid, data=data):
        groups = seed_groups(keys_S.shape[0])
        keys_JK = group_keys(keys_S, groups, seed_mesh(keys_S.shape[0], groups))
        carry, first = _first(entry, keys_JK, grid, _data_args(cfg, data))
        carry, evals = train(chunk, carry, [first], cfg.train.eval_steps, progress)
        return collect(cfg, carry, evals, prepared.unravel, prepared.plan)[0]

    run.memory_analysis = chunk.memory_analysis  # the training loop's XLA buffers (bench.py reads it)
    return run, seed_keys(cfg.seed, cfg.seeds, cfg.seed_offset), prepared.grid, prepared.timing["compile_s"]

"""``run_study(StudyConfig) -> StudyResult``: every run of a study in one compiled call.

Seeds and grid points are batch axes of one ``jit``; when several devices are visible the seed
axis is sharded across them with ``jax.sharding`` (results match one device).
"""

from __future__ import annotations

import platform
import threading
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jaxopt_cmp.checks import ConfigError
from jaxopt_cmp.config import StudyConfig
from jaxopt_cmp.data import Data
from jaxopt_cmp.results import StudyResult
from jaxopt_cmp.train import StudyOutput, make_study_fn, seed_inputs


def seed_keys(seed: int, n_seeds: int) -> jax.Array:
    """Seed ``i``'s key is ``fold_in(key(seed), i)``: independent of how many seeds run."""
    root = jax.random.key(seed)
    return jax.vmap(lambda i: jax.random.fold_in(root, i))(jnp.arange(n_seeds))


def grid_arrays(cfg: StudyConfig) -> dict[str, dict[str, jax.Array]]:
    dtype = jnp.dtype(cfg.train.dtype)
    return {o.name: {k: jnp.asarray(v, dtype) for k, v in o.grid().items()} for o in cfg.optimizers}


def versions() -> dict[str, str]:
    import flax
    import jaxlib
    import optax

    return {
        "jax": jax.__version__,
        "jaxlib": jaxlib.__version__,
        "flax": flax.__version__,
        "optax": optax.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "device": jax.devices()[0].device_kind,
        "device_count": str(jax.device_count()),
        "platform": jax.default_backend(),
    }


def _shard_seeds(keys_S: jax.Array) -> jax.Array:
    """Places the seed axis across all devices when it divides evenly (else leaves it)."""
    devices = jax.devices()
    if len(devices) == 1 or keys_S.shape[0] % len(devices):
        return keys_S
    mesh = Mesh(np.array(devices), ("seeds",))
    return jax.device_put(keys_S, NamedSharding(mesh, PartitionSpec("seeds")))


SEEDS_PER_DEVICE_GROUP = 16


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


def progress_total(cfg: StudyConfig) -> int:
    """The step count ``progress`` reaches at the end of ``run_study(cfg, progress)``."""
    return cfg.train.iters * seed_groups(cfg.seeds)


def check_data(cfg: StudyConfig, data: Data | None) -> None:
    if data is not None and data.x.shape[0] != cfg.data.n_data:
        raise ConfigError("n_data", cfg.data.n_data, f"expected {data.x.shape[0]}, the supplied data's size")
    if data is not None and data.x.shape[1] != cfg.model.xdim:
        raise ConfigError("xdim", cfg.model.xdim, f"expected {data.x.shape[1]}, the supplied data's width")


def compile_study(cfg: StudyConfig, progress: Callable[[int], None] | None = None, data: Data | None = None):
    """``(compiled, keys_S, grid, compile_s)``: the study compiled for its shapes; call it as
    ``compiled(keys_S, grid)``, or ``compiled(keys_S, grid, data)`` when ``data`` (see
    :func:`jaxopt_cmp.data.data_from_arrays`) replaces the generated data of every seed."""
    check_data(cfg, data)
    keys_S, grid = _shard_seeds(seed_keys(cfg.seed, cfg.seeds)), grid_arrays(cfg)
    extra = () if data is None else (data,)
    start = time.perf_counter()
    study = make_study_fn(cfg, progress, seed_groups(cfg.seeds))
    compiled = jax.jit(study).lower(keys_S, grid, *extra).compile()
    return compiled, keys_S, grid, time.perf_counter() - start


def call_interruptibly(fn, *args, poll_s: float = 0.05):
    """``block_until_ready(fn(*args))`` on a daemon thread while this thread waits in short,
    interruptible joins: with host callbacks in the program the call runs synchronously, and
    Ctrl-C reaches Python only between bytecodes, so it would otherwise wait for the whole run."""
    box = {}

    def target():
        try:
            box["out"] = jax.block_until_ready(fn(*args))
        except BaseException as err:  # handed to the waiting thread
            box["err"] = err

    worker = threading.Thread(target=target, name="jaxopt_cmp-run", daemon=True)
    worker.start()
    while worker.is_alive():
        worker.join(poll_s)
    if "err" in box:
        raise box["err"]
    return box["out"]


def run_study(cfg: StudyConfig, progress: Callable[[int], None] | None = None, data: Data | None = None) -> StudyResult:
    """Compiles and runs every (optimizer, grid point, seed) of ``cfg``; times both phases."""
    compiled, keys_S, grid, compile_s = compile_study(cfg, progress, data)
    start = time.perf_counter()
    out: StudyOutput = call_interruptibly(compiled, keys_S, grid, *(() if data is None else (data,)))
    train_s = time.perf_counter() - start
    return to_result(cfg, out, grid, {"compile_s": compile_s, "train_s": train_s}, data)


def _to_host(x) -> np.ndarray:
    """A numpy copy; arrays spread over several hosts (jax.distributed) are gathered first."""
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
        from jax.experimental import multihost_utils

        return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(x)


def to_result(cfg: StudyConfig, out: StudyOutput, grid, timing, data: Data | None = None) -> StudyResult:
    host = lambda tree: jax.tree_util.tree_map(_to_host, tree)
    data = seed_inputs(seed_keys(cfg.seed, 1)[0], cfg, data).data
    return StudyResult(
        config=cfg,
        eval_steps=np.asarray(cfg.train.eval_steps),
        grid=host(grid),
        mse_EHS=host(out.mse_EHS),
        diverged_at_HS=host(out.diverged_at_HS),
        params_HS=host(out.params_HS),
        pred_EHN=host(out.pred_EHN) if out.pred_EHN is not None else {},
        x_N=np.asarray(data.x[:, 0]),
        y_N=np.asarray(data.y[:, 0]),
        timing=timing,
        versions=versions(),
    )

"""Several processes (``jax.distributed``): the seed axis over every process's devices, results
gathered back on every process.

Every process runs the same script with the same config and data, so each builds the same seed
keys, grid and data locally. The keys become one global array (:func:`shard_seeds`, each process
filling its own devices' shards); the grid and data go in as they are: JAX takes a host-local
input that is the same on every process as replicated, and :func:`check_same_on_every_process`
makes sure it is. Outputs come back to numpy on every process (:func:`to_host`). With one process
(one or several local devices) this is what the study always did.

When the seeds do not divide evenly over all devices the study gets no mesh: then every process
trains every seed on its own devices (the optimizers in lanes, :mod:`jaxopt_cmp.lanes`), with no
communication, and all hold the same result.

The library never starts the runtime: a script calls :func:`initialize` first, on every process.
"""

from __future__ import annotations

import errno
import hashlib
import json
import threading
import time
from collections.abc import Callable

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jaxopt_cmp.checks import ConfigError, check_int
from jaxopt_cmp.config import StudyConfig, to_dict


def initialize(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    *,
    cpu_collectives: str | None = "gloo",
    **kwargs,
) -> None:
    """Starts JAX's multi-process runtime; call it on every process before any other JAX call.

    With no arguments JAX reads the process layout from SLURM (``srun``), Open MPI (``mpirun``) or
    a TPU pod; otherwise give all three (``coordinator_address="host:port"`` of process 0).
    ``kwargs`` go to :func:`jax.distributed.initialize` (e.g. ``initialization_timeout``).

    This changes JAX's global state, which is why only the caller does it: it also sets
    ``jax_cpu_collectives_implementation`` to ``cpu_collectives`` (``"gloo"``, what XLA:CPU needs
    for collectives across processes; ``None`` leaves the setting alone).
    """
    if num_processes is not None:
        check_int("num_processes", num_processes)
    if process_id is not None:
        check_int("process_id", process_id, low=0)
        if num_processes is not None and process_id >= num_processes:
            raise ConfigError("process_id", process_id, f"expected 0 <= process_id < num_processes={num_processes}")
    if coordinator_address is not None:
        host, _, port = coordinator_address.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError("coordinator", coordinator_address, "expected HOST:PORT of process 0, e.g. node1:12345")
        if process_id == 0 and not port_free(host, int(port)):
            # gRPC's failure to bind the coordinator's port can crash the process (SIGSEGV, seen
            # under load) before JAX raises: check first.
            raise OSError(errno.EADDRINUSE, f"port {port} of {host} is in use")
    if cpu_collectives is not None:
        jax.config.update("jax_cpu_collectives_implementation", cpu_collectives)
    jax.distributed.initialize(coordinator_address, num_processes, process_id, **kwargs)


def port_free(host: str, port: int) -> bool:
    """Whether a server could listen on ``host:port`` now (``SO_REUSEADDR``, as gRPC binds)."""
    import socket

    with socket.socket(socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host.strip("[]"), port))
        except OSError:
            return False
    return True


def detect_launcher() -> str | None:
    """The launcher JAX's own cluster detection finds in the environment (``"slurm"`` for ``srun``,
    ``"ompi"`` for Open MPI's ``mpirun``, ...) when it started several processes, or None (a job of
    one task runs as one process, as without a launcher). Starts nothing; only non-opt-in detectors
    are asked, as :func:`jax.distributed.initialize` asks them with no arguments."""
    from jax._src import clusters

    for env in clusters.ClusterEnv._cluster_types:
        if not env.opt_in_only_method and env.is_env_present():
            try:
                several = env.get_process_count() > 1
            except Exception:  # a detector that cannot tell: let JAX decide
                several = True
            return env.name if several else None
    return None


def watch_peers(timeout_s: float, on_lost: Callable[[list[int]], None], poll_s: float = 0.5) -> Callable[[], None]:
    """Starts a daemon thread that calls ``on_lost(processes)`` (once) when another process has shown
    no sign of life for ``timeout_s`` seconds; ``on_lost`` decides what to do (the scripts print
    one line and exit). Every process's thread bumps a counter in JAX's coordination service (its
    key-value store) every ``poll_s`` seconds and reads the others'; a counter that stops moving
    names a lost process, and a store that cannot be reached names process 0, which hosts it.
    Returns ``stop``: it ends the thread and marks this process finished (a finished process is
    never named lost while the others finish their own work).

    ``stop`` also runs at interpreter exit (``atexit``, before JAX's own exit handler shuts the
    distributed client down): a daemon thread still inside a call into the client when Python
    finalizes aborts the process ("FATAL: exception not rethrown", signal 6, seen in CI after
    every result was written).

    Why the thread: JAX itself notices a killed process only by its missed heartbeats (default
    100 s) and then aborts every survivor with a C++ stack trace; a survivor waiting in a
    collective waits until then. Needs :func:`initialize` with several processes."""
    import atexit

    from jax._src import distributed as jax_distributed

    client, count, me = jax_distributed.global_state.client, jax.process_count(), jax.process_index()
    if client is None or count == 1:
        raise RuntimeError("watch_peers needs jax.distributed initialized with several processes")
    stopping = threading.Event()

    def target():
        start = time.monotonic()
        last = {p: (None, start) for p in range(count)}  # the counter seen, and when it last moved
        beat, unreachable_since, finished = 0, None, set()
        while not stopping.is_set():
            now = time.monotonic()
            try:
                beat += 1
                client.key_value_set(f"{_ALIVE}/{me}", str(beat), allow_overwrite=True)
                for key, value in client.key_value_dir_get(_ALIVE):
                    p = int(key.rsplit("/", 1)[1])
                    if value == _FINISHED:
                        finished.add(p)
                    elif last[p][0] != value:
                        last[p] = (value, now)
                unreachable_since = None
            except Exception:  # the coordination service is gone (or slow): process 0's
                unreachable_since = unreachable_since or now
                if now - unreachable_since >= timeout_s and not stopping.is_set():
                    on_lost([0])
                    return
            lost = sorted(p for p, (_, t) in last.items() if p != me and p not in finished and now - t >= timeout_s)
            if lost and not stopping.is_set():
                on_lost(lost)
                return
            stopping.wait(poll_s)

    thread = threading.Thread(target=target, name="jaxopt_cmp-peers", daemon=True)

    def stop() -> None:
        if stopping.is_set():
            return
        stopping.set()
        thread.join(timeout=poll_s + 10.0)  # one call into the client at most
        if not thread.is_alive():
            try:
                client.key_value_set(f"{_ALIVE}/{me}", _FINISHED, allow_overwrite=True)
            except Exception:  # the service is gone: the others are finishing too
                pass

    thread.start()
    atexit.register(stop)
    return stop


_ALIVE = "jaxopt_cmp/alive"
_FINISHED = "finished"


def is_main_process() -> bool:
    """True on the one process that writes files: process 0 (the only one without jax.distributed)."""
    return jax.process_index() == 0


def shard_seeds(keys: jax.Array, mesh: Mesh | None, axis: int = 0) -> jax.Array:
    """``keys`` (the same on every process) with the seed axis ``axis`` split over ``mesh``'s one
    axis: ``device_put`` with one process; with several each process fills only its own devices'
    shards (``device_put`` cannot reach other processes' devices). Unchanged without a mesh."""
    if mesh is None:
        return keys
    return place(keys, NamedSharding(mesh, PartitionSpec(*(None,) * axis, mesh.axis_names[0])))


def place(host, sharding: jax.sharding.Sharding) -> jax.Array:
    """``host`` (a numpy array, the same on every process) laid out as ``sharding``: ``device_put``
    when this process holds every device of it; otherwise each process fills only its own devices'
    shards (``device_put`` cannot reach other processes' devices)."""
    if sharding.is_fully_addressable:
        return jax.device_put(host, sharding)
    return jax.make_array_from_callback(np.shape(host), sharding, lambda index: host[index])


def _digest(tree) -> np.ndarray:
    """SHA-256 of a tree's structure, shapes, dtypes and bytes, as 8 uint32 (same shape everywhere)."""
    h = hashlib.sha256(str(jax.tree_util.tree_structure(tree)).encode())
    for leaf in jax.tree_util.tree_leaves(tree):
        a = np.ascontiguousarray(leaf)
        h.update(f"{a.shape}{a.dtype}".encode())
        h.update(a.tobytes())
    return np.frombuffer(h.digest(), np.uint32)


def check_same_on_every_process(cfg: StudyConfig, data=None) -> None:
    """ConfigError unless every process runs the same config on the same data (no-op with one).

    Processes started with different settings compile different programs whose collectives do
    not match (gloo then aborts every process with a C++ stack trace, after compiling); processes
    with different data would train their shards on it silently. One small all-gather instead.
    """
    if jax.process_count() == 1:
        return
    text = json.dumps(to_dict(cfg), sort_keys=True)
    named = (("config", f"seed={cfg.seed}, seeds={cfg.seeds}"), ("data", cfg.data.source or "(arrays)"))
    for differ, (setting, value) in zip(differ_from_process_0(np.frombuffer(text.encode(), np.uint8), data), named):
        if differ:
            raise ConfigError(setting, value, f"expected the same on every process; process(es) {differ} differ from 0")


def differ_from_process_0(*trees) -> list[list[int]]:
    """For each tree (bytes, shapes and structure, this process's own), the processes holding
    another than process 0's: one small all-gather, every process must call it. ``[]`` each
    with one process."""
    if jax.process_count() == 1:
        return [[] for _ in trees]
    from jax.experimental import multihost_utils

    all_PT8 = np.asarray(multihost_utils.process_allgather(np.stack([_digest(t) for t in trees])))
    return [
        [p for p in range(len(all_PT8)) if not np.array_equal(all_PT8[p, t], all_PT8[0, t])] for t in range(len(trees))
    ]


def process_0s(flag: bool) -> bool:
    """Process 0's ``flag`` on every process (a decision every process must act on alike, such as
    a checkpoint that every process takes part in); every process must call it. ``flag`` with one."""
    if jax.process_count() == 1:
        return bool(flag)
    from jax.experimental import multihost_utils

    return bool(multihost_utils.broadcast_one_to_all(np.bool_(flag)))


def _identity(tree):
    return tree


def to_host(tree):
    """Numpy copies of ``tree``'s leaves (a tree or one array), the same on every process.

    Leaves spread over several processes are gathered by one program for the whole tree (one
    compilation per call, where ``multihost_utils.process_allgather`` compiles one per leaf shape).
    """
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    spread = [i for i, x in enumerate(leaves) if isinstance(x, jax.Array) and not x.is_fully_addressable]
    named = [i for i in spread if isinstance(leaves[i].sharding, NamedSharding)]
    if named:
        everywhere = [NamedSharding(leaves[i].sharding.mesh, PartitionSpec()) for i in named]
        gathered = jax.jit(_identity, out_shardings=everywhere)([leaves[i] for i in named])
        for i, x in zip(named, gathered):
            leaves[i] = x.addressable_data(0)
    for i in set(spread) - set(named):
        from jax.experimental import multihost_utils

        leaves[i] = multihost_utils.process_allgather(leaves[i], tiled=True)
    return jax.tree_util.tree_unflatten(treedef, [np.asarray(x) for x in leaves])

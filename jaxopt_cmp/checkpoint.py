"""Checkpoints of a running study, for ``--resume``: :class:`Checkpoint`.

At an evaluation boundary (at most every ``every_s`` seconds) the study's whole training state is
written to one ``.npz``: every run's state (parameters, optimizer state, divergence step) and every
evaluation so far, with the number of chunks done and a digest of the config, the data, the
library's code and the versions (and device layout). Everything else of the carry (data, batch
keys, held-out sets) is a pure function of the config and is rebuilt by ``prepare_study``; the
batches of a step depend only on (batch key, step). So a resumed study computes, from the saved
boundary on, exactly what the uninterrupted one did: the results are bit-identical.

Under several processes (``jax.distributed``) every process takes part in every save, at the same
boundary: process 0's clock decides and the decision is broadcast (:meth:`Checkpoint.due`); the state, spread
over the processes' devices, is gathered (:func:`jaxopt_cmp.distributed.to_host`) and process 0
alone writes the file. On resume every process reads that same file (``out`` must be on a
filesystem every process sees), checks that they all read the same, and fills its own devices'
part of the state, laid out as the uninterrupted study's.

Why a plain ``.npz`` rather than Orbax: the state is small (the seed study's 432 runs: ~60 MB;
most studies a few MB), one process writes it, and :func:`jaxopt_cmp.io.atomic_write_bytes` (a
temporary sibling, fsync, rename) already makes a checkpoint interrupted while being written
invisible: the previous one stays in place. Orbax would add a dependency and an
asynchronous, multi-host machinery this one-writer file does not need.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import time
from pathlib import Path

import jax
import numpy as np

from jaxopt_cmp.config import StudyConfig, to_dict
from jaxopt_cmp.distributed import differ_from_process_0, is_main_process, place, process_0s, to_host
from jaxopt_cmp.io import atomic_write_bytes, read_npz, versions
from jaxopt_cmp.results import ResultsError

NAME = "checkpoint.npz"
FORMAT = "jaxopt_cmp.checkpoint/1"


class CheckpointError(ResultsError):
    """A checkpoint that cannot be resumed here: of another study, version or layout, or unreadable."""


def study_digest(cfg: StudyConfig, data=None) -> str:
    """sha256 of what a checkpoint's state depends on: config, data, code, versions, device layout."""
    from jaxopt_cmp.shards import code_digest

    h = hashlib.sha256(json.dumps([to_dict(cfg), versions(), code_digest()], sort_keys=True).encode())
    for a in () if data is None else (data.x, data.y):
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype}{a.shape}".encode() + a.tobytes())
    return h.hexdigest()


def _keyless(tree):
    """PRNG key leaves (a registered optimizer may hold one) as their raw uint32 data."""
    is_key = lambda x: isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)
    return jax.tree_util.tree_map(lambda x: jax.random.key_data(x) if is_key(x) else x, tree)


class Checkpoint:
    """``out/checkpoint.npz`` of one study (``digest``: :func:`study_digest`).

    :meth:`load` reads a saved one (refusing another study's); the training loop asks :meth:`due`
    at each evaluation boundary and calls :meth:`save`; :meth:`remove` once results are saved.
    ``every_s`` 0: never saves. Under several processes every process makes one and calls
    everything alike (:meth:`resume`, :meth:`due` and :meth:`save` are collectives); process 0
    alone writes and removes the file.
    """

    def __init__(self, out: str | os.PathLike, digest: str, every_s: float, clock=time.monotonic):
        self.path, self.digest, self.every_s, self.clock = Path(out) / NAME, digest, every_s, clock
        self.last = clock()
        self.state: tuple[int, list[np.ndarray], list[np.ndarray]] | None = None
        self.saves, self.save_s = 0, 0.0
        self._host_evals: list = []  # evaluations already brought to the host (they never change)

    def exists(self) -> bool:
        return self.path.exists()

    def load(self) -> int:
        """Reads the checkpoint into :attr:`state` (chunks done, run leaves, evaluation leaves);
        returns the chunks done. ``CheckpointError`` naming the file for another study's or a
        damaged one."""
        try:
            arrays = read_npz(self.path)
            meta = json.loads(bytes(arrays.pop("meta")).decode())
        except (OSError, ValueError, KeyError) as err:
            raise CheckpointError(f"{self.path}: unreadable checkpoint ({err})") from None
        if meta.get("format") != FORMAT or meta.get("digest") != self.digest:
            raise CheckpointError(
                f"{self.path}: a checkpoint of another config, data, code or version (or device layout); "
                "rerun with the same settings, or without --resume and with --overwrite to start again"
            )
        leaves = lambda kind: [arrays[f"{kind}/{i}"] for i in range(meta[kind])]
        self.state = meta["done"], leaves("runs"), leaves("evals")
        return meta["done"]

    def resume(self) -> int | None:
        """:meth:`load` if there is a checkpoint (the chunks done), else None. Under several
        processes every process reads the file, and all raise the same ``CheckpointError``, or
        one naming the processes that read another file (or none) than process 0."""
        try:
            done, error = (self.load() if self.exists() else None), None
            outcome = self.state
        except CheckpointError as err:
            done, error, outcome = None, err, str(err).replace(str(self.path), "")  # the same failure
        (differ,) = differ_from_process_0(outcome)
        if differ:
            raise CheckpointError(
                f"{self.path}: process(es) {differ} read another checkpoint (or none) than process 0; "
                "--out must be on a filesystem every process sees"
            )
        if error is not None:
            raise error
        return done

    def due(self) -> bool:
        """Whether to save at this boundary: ``every_s`` passed since the last save, on process 0's
        clock (the same answer on every process)."""
        return self.every_s > 0 and process_0s(self.clock() - self.last >= self.every_s)

    def save(self, done: int, runs, evals) -> None:
        """Writes ``done`` (chunks trained), every run's state and ``evals`` atomically (gathered
        from every process; process 0 writes)."""
        start = time.perf_counter()
        runs_leaves = jax.tree_util.tree_leaves(to_host(_keyless(runs)))
        self._host_evals += to_host(evals[len(self._host_evals) :])
        eval_leaves = jax.tree_util.tree_leaves(self._host_evals[: len(evals)])
        meta = {"format": FORMAT, "digest": self.digest, "done": done, "runs": len(runs_leaves)}
        meta["evals"] = len(eval_leaves)
        arrays = {"meta": np.frombuffer(json.dumps(meta).encode(), np.uint8)}
        arrays.update({f"runs/{i}": a for i, a in enumerate(runs_leaves)})
        arrays.update({f"evals/{i}": a for i, a in enumerate(eval_leaves)})
        if is_main_process():
            buf = io.BytesIO()
            np.savez(buf, **arrays)
            atomic_write_bytes(self.path, buf.getvalue())
        self.last = self.clock()
        self.saves += 1
        self.save_s += time.perf_counter() - start

    def restore(self, runs, first):
        """``(runs, evals)`` from :attr:`state`: the run leaves placed like ``runs`` (the fresh
        carry's, its shardings), the evaluations shaped like ``first`` (host arrays)."""
        done, run_leaves, eval_leaves = self.state
        fresh, treedef = jax.tree_util.tree_flatten(runs)
        shapes = [np.shape(a) for a in jax.tree_util.tree_leaves(_keyless(runs))]
        if shapes != [np.shape(b) for b in run_leaves]:
            raise CheckpointError(f"{self.path}: its run state does not fit this study")

        def put(like, saved):  # laid out as the fresh carry's leaf (each process fills its own devices)
            if jax.dtypes.issubdtype(like.dtype, jax.dtypes.prng_key):
                return jax.random.wrap_key_data(place(saved, like.sharding), impl=jax.random.key_impl(like))
            return place(saved, like.sharding)

        runs = jax.tree_util.tree_unflatten(treedef, [put(a, b) for a, b in zip(fresh, run_leaves)])
        evals = jax.tree_util.tree_unflatten(jax.tree_util.tree_structure([first] * (done + 1)), eval_leaves)
        return runs, evals

    def remove(self) -> None:
        """Deletes the checkpoint and the half-written ones of killed writers (their temporary
        siblings); on process 0 only."""
        if not is_main_process():
            return
        self.path.unlink(missing_ok=True)
        for part in self.path.parent.glob(f".{self.path.name}.*.tmp"):
            part.unlink(missing_ok=True)

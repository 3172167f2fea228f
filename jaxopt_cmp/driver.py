"""The host side of a study's training: compiled chunks dispatched ahead of the one waited for,
interruptible waits (Ctrl-C), progress after each evaluation interval, and checkpoints at
evaluation boundaries. :mod:`jaxopt_cmp.study` compiles the chunks; this module runs them."""

from __future__ import annotations

import threading
from collections.abc import Callable

import jax
import numpy as np

from jaxopt_cmp.train import Carry, Evaluation, chunk_lengths


def call_interruptibly(fn, *args, poll_s: float = 0.05):
    """``block_until_ready(fn(*args))`` on a daemon thread while this thread waits in short,
    interruptible joins: Ctrl-C reaches Python only between bytecodes, so waiting inside XLA
    would otherwise delay it until the call returns."""
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


AHEAD = 1  # chunks dispatched beyond the one running


def train(chunk: Callable, carry: Carry, evals: list[Evaluation], eval_steps, progress=None, checkpoint=None):
    """Every chunk of a study after the ``len(evals) - 1`` done (``evals``: the evaluations so far,
    from step 0) from ``carry``: ``(final carry, evaluations)``. Chunks are dispatched
    :data:`AHEAD` of the one being waited for, so the devices never wait for Python (a thread
    holding the GIL, a slow progress callback); waiting is interruptible (Ctrl-C). At a boundary
    where ``checkpoint.due()`` (:class:`jaxopt_cmp.checkpoint.Checkpoint`) every chunk dispatched is
    waited for and the state saved before the next chunk takes (donates) the carry."""
    evals, waiting, start = list(evals), [], len(evals)
    for t0, length in chunk_lengths(eval_steps)[start - 1 :]:
        if checkpoint is not None and len(evals) > start and checkpoint.due():  # a chunk trained since
            for ev, step in waiting:
                _wait(ev, step, progress)
            waiting = []
            checkpoint.save(len(evals) - 1, carry.runs, evals)
        carry, ev = chunk(carry, np.int32(t0), np.int32(length))
        evals.append(ev)
        waiting.append((ev, t0 + length))
        if len(waiting) > AHEAD:
            _wait(*waiting.pop(0), progress)
    for ev, step in waiting:
        _wait(ev, step, progress)
    return carry, evals


def _wait(ev: Evaluation, step: int, progress) -> None:
    call_interruptibly(lambda: ev)
    if progress is not None:
        progress(step)

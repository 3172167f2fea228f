"""Worker processes: one spawned process per implementation, driven over a pipe, one call at a time.

A worker is made in its process by ``importlib.import_module(module).make_worker(impl, settings)``,
so the parent never imports what a worker needs (torch, a big jax program) and each
implementation's peak RSS is its own. The protocol: the worker first sends ``("ok", info())``,
then answers each ``(command, kwargs)`` with ``("ok", worker.command(**kwargs))``, or with
``("error", traceback)`` and exits; ``("stop", {})`` ends it.
"""

from __future__ import annotations

import importlib
import multiprocessing
import traceback
from collections.abc import Mapping


def worker_main(module: str, impl: str, conn, settings) -> None:
    """A worker process: build the implementation, then answer ``(command, kwargs)`` until "stop"."""
    try:
        worker = importlib.import_module(module).make_worker(impl, settings)
        conn.send(("ok", worker.info()))
        while True:
            command, kwargs = conn.recv()
            if command == "stop":
                return
            conn.send(("ok", getattr(worker, command)(**kwargs)))
    except (EOFError, KeyboardInterrupt):
        return
    except BaseException:
        conn.send(("error", traceback.format_exc()))


class Pool:
    """``workers`` maps each implementation to the module that makes its worker; calls are
    synchronous, one at a time. ``info[impl]`` is what each worker reported when it started."""

    def __init__(self, workers: Mapping[str, str], settings):
        ctx = multiprocessing.get_context("spawn")
        self.conns, self.procs, self.info = {}, {}, {}
        try:
            for impl, module in workers.items():
                parent, child = ctx.Pipe()
                args = (module, impl, child, settings)
                proc = ctx.Process(target=worker_main, args=args, name=f"bench-{impl}", daemon=True)
                proc.start()
                self.conns[impl], self.procs[impl] = parent, proc
            for impl in workers:
                self.info[impl] = self._reply(impl)
        except BaseException:
            self.close()
            raise

    def _reply(self, impl: str):
        try:
            status, value = self.conns[impl].recv()
        except EOFError:
            self.procs[impl].join(timeout=10)
            raise RuntimeError(f"the {impl} worker died (exit code {self.procs[impl].exitcode})") from None
        if status == "error":
            raise RuntimeError(f"the {impl} worker failed:\n{value}")
        return value

    def call(self, impl: str, command: str, **kwargs):
        self.conns[impl].send((command, kwargs))
        return self._reply(impl)

    def close(self) -> None:
        """Asks every worker to stop, then waits for them (they shut down in parallel)."""
        for conn in self.conns.values():
            try:
                conn.send(("stop", {}))
            except OSError:
                pass
        for proc in self.procs.values():
            proc.join(timeout=10)

    def __enter__(self) -> Pool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

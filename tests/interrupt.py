"""Test helper: runs a script and stops it at a chosen moment, with no hook in the library (it
patches, in this process only, what the library calls). tests/test_resume.py uses it.

    python tests/interrupt.py at MOMENT READY SCRIPT ARGS...

runs ``SCRIPT ARGS...`` as ``__main__`` and creates the file READY at MOMENT, where the test sends
SIGKILL (under several processes, ``--process-id`` other than 0 in ARGS, each process runs this and
a worker's checkpoint clock stands still: only process 0's may decide when to save):

- ``compile``: when XLA is first asked to compile (``jax.stages.Lowered.compile``); it never returns.
- ``write:NAME:K``: during the K-th write of the file NAME: half of its bytes are in the file
  written (``jaxopt_cmp.io.atomic_write_bytes``: its temporary sibling), flushed to disk; the write
  never ends.
- ``saved:K``: after the K-th checkpoint save of the process (of any study: tune.py runs several)
  returned; training goes on (the kill lands mid-training).

A test calls :func:`kill_at` to start it and send the SIGKILL.

    python tests/interrupt.py twice ROOT SCRIPT ARGS... [-- ARGS...]...

runs, in this one process (compiled programs shared), for each group of ARGS ``i``: the study
uninterrupted into ``ROOT/<i>/whole``; the study checkpointing at every boundary into
``ROOT/<i>/resumed``, stopped (an exception) after its second save; the same ``--resume``\\ d.
"""

from __future__ import annotations

import os
import runpy
import signal
import subprocess
import sys
import time
from pathlib import Path

SLEEP_S = 600  # the test kills the process long before


def _ready(path: Path) -> None:
    path.touch()
    time.sleep(SLEEP_S)


def install(moment: str, ready: Path) -> None:
    """Patches this process so that ``moment`` creates ``ready`` (and, but for ``saved``, hangs)."""
    kind, _, rest = moment.partition(":")
    if kind == "compile":
        import jax

        jax.stages.Lowered.compile = lambda *a, **k: _ready(ready)
    elif kind == "write":
        name, count = rest.rsplit(":", 1)
        _on_write(name, int(count), ready)
    elif kind == "saved":
        from jaxopt_cmp.checkpoint import Checkpoint

        real, count, saves = Checkpoint.save, int(rest), [0]

        def save(self, *args):
            real(self, *args)
            saves[0] += 1
            if saves[0] == count:
                ready.touch()

        Checkpoint.save = save
    else:
        raise SystemExit(f"interrupt.py: unknown moment {moment!r}")


def kill_at(moment: str, ready: Path, command: list[str], log: Path, env: dict, timeout_s: float) -> str:
    """Runs ``command`` (a script and its arguments) under this helper, SIGKILLs it once it reaches
    ``moment`` (``ready`` appears); its output."""
    with open(log, "w") as fh:
        p = subprocess.Popen([sys.executable, __file__, "at", moment, str(ready), *command], env=env, stdout=fh,
                             stderr=subprocess.STDOUT)  # fmt: skip
    try:
        deadline = time.monotonic() + timeout_s
        while not ready.exists():
            assert p.poll() is None and time.monotonic() < deadline, f"{moment}: {log.read_text()[-2000:]}"
            time.sleep(0.01)
        p.send_signal(signal.SIGKILL)
        p.wait(timeout_s)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == -signal.SIGKILL
    return log.read_text()


def _on_write(name: str, count: int, ready: Path) -> None:
    """The ``count``-th file opened to write ``name`` (its temporary sibling ``.NAME.*.tmp`` in
    ``atomic_write_bytes``, opened by ``os.fdopen``; or ``name`` itself, by ``open``) gets half of
    its payload, then the write hangs."""
    import builtins
    import io

    seen = [0]

    class Half:
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return self.f.__exit__(*exc)

        def write(self, payload):
            self.f.write(payload[: len(payload) // 2])
            self.f.flush()
            os.fsync(self.f.fileno())
            _ready(ready)

    def hooked(real, where):
        def opener(file, mode="r", *args, **kwargs):
            f = real(file, mode, *args, **kwargs)
            opened = Path(where(file)).name
            if "w" in mode and (opened == name or opened.startswith(f".{name}.") and opened.endswith(".tmp")):
                seen[0] += 1
                if seen[0] == count:
                    return Half(f)
            return f

        return opener

    os.fdopen = hooked(os.fdopen, lambda fd: os.readlink(f"/proc/self/fd/{fd}"))
    builtins.open = io.open = hooked(io.open, lambda f: f if isinstance(f, (str, os.PathLike)) else "")


def stop_checkpoint_clock() -> None:
    """A worker of several processes whose checkpoint clock stands still (it never sees an interval
    pass): only process 0's clock may decide when every process saves."""
    from jaxopt_cmp.checkpoint import Checkpoint

    real = Checkpoint.__init__

    def init(self, *args, **kwargs):
        real(self, *args, **kwargs)
        self.clock, self.last = (lambda: 0.0), 0.0

    Checkpoint.__init__ = init


class Stop(Exception):
    """Ends a study after a checkpoint save, as a kill at that moment would (in-process)."""


def twice(root: Path, script: str, groups: list[list[str]]) -> None:
    from jaxopt_cmp.checkpoint import Checkpoint

    main = runpy.run_path(script)["main"]
    real = Checkpoint.save

    def save_twice(self, *args):
        real(self, *args)
        if self.saves == 2:
            raise Stop

    for i, argv in enumerate(groups):
        main([*argv, "--checkpoint-every", "0", "--out", str(root / str(i) / "whole")])
        resumed = ["--out", str(root / str(i) / "resumed")]
        Checkpoint.save = save_twice
        try:
            main([*argv, "--checkpoint-every", "1e-9", *resumed])
            raise SystemExit(f"interrupt.py: {argv} ended before its second checkpoint")
        except Stop:
            pass
        finally:
            Checkpoint.save = real
        main([*argv, *resumed, "--resume"])


if __name__ == "__main__":
    mode, *rest = sys.argv[1:]
    if mode == "at":
        moment, ready, script, *args = rest
        install(moment, Path(ready))
        if "--process-id" in args and args[args.index("--process-id") + 1] != "0":
            stop_checkpoint_clock()
        sys.argv = [script, *args]
        runpy.run_path(script, run_name="__main__")
    else:
        root, script, *args = rest
        groups = [[]]
        for a in args:
            groups.append([]) if a == "--" else groups[-1].append(a)
        twice(Path(root), script, groups)

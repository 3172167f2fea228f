"""Runs one command as N local processes of JAX's multi-process runtime::

    python -m jaxopt_cmp.launch -n 2 -- scripts/study.py --seeds 8 --out runs/two

Each process gets ``--coordinator localhost:PORT --num-processes N --process-id I`` appended (a
free port), and ``XLA_FLAGS`` asking for its share of the cores as XLA host devices (the cores
split evenly, at least one each), unless ``XLA_FLAGS`` already names a device count. A command
ending in ``.py`` runs with this Python. Ctrl-C (or SIGTERM) is passed on to every process; when
one process fails the others are stopped and the launcher exits with its status and one line.
No process outlives the launcher: the ones still running after ``--grace`` seconds are killed.
More processes than the machine holds (:func:`max_processes`: two per core, 0.5 GB each) are
refused in one line before any starts.

A launcher, not library code: it spawns processes and handles signals, which is its job.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time

DEVICE_FLAG = "--xla_force_host_platform_device_count"
# What one machine holds. Each process is a whole JAX runtime: 0.4 GB peak RSS measured for a tiny
# study.py process (launch -n 2, 2-core machine), so 0.5 GB is budgeted; and each starts by
# importing and compiling for seconds of CPU, so more than two per core only queue up behind each
# other (100 on 2 cores drove the load to ~500 and ended in JAX's C++ heartbeat aborts).
PROCESS_BYTES = 0.5e9
PROCESSES_PER_CORE = 2


def free_port() -> int:
    """A TCP port nothing listens on now (the coordinator binds it moments later)."""
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def process_env(n: int, env: dict | None = None) -> dict:
    """``env`` with one XLA host device per core of this process's share (``XLA_FLAGS`` kept if it
    already names a count)."""
    from jaxopt_cmp.runtime import cpu_count

    env = dict(os.environ if env is None else env)
    if DEVICE_FLAG not in env.get("XLA_FLAGS", ""):
        env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} {DEVICE_FLAG}={max(1, cpu_count() // n)}".strip()
    return env


def max_processes() -> tuple[int, str]:
    """How many processes this machine holds, and why: :data:`PROCESSES_PER_CORE` per core and
    :data:`PROCESS_BYTES` each within 80% of the available memory."""
    from jaxopt_cmp.runtime import cpu_count, host_available_bytes

    cores, memory = cpu_count(), 0.8 * host_available_bytes()
    by_cores, by_memory = PROCESSES_PER_CORE * cores, int(memory // PROCESS_BYTES)
    why = f"{cores} cores x {PROCESSES_PER_CORE}; {memory / 1e9:.3g} GB for {PROCESS_BYTES / 1e9:g} GB each"
    return max(1, min(by_cores, by_memory)), why


def commands(n: int, command: list[str], port: int) -> list[list[str]]:
    """The command of each process ``0..n-1``."""
    head = [sys.executable, *command] if command[0].endswith(".py") else list(command)
    return [
        [*head, "--coordinator", f"localhost:{port}", "--num-processes", str(n), "--process-id", str(i)]
        for i in range(n)
    ]


def _stop(procs: list[subprocess.Popen], sig: int, grace: float) -> None:
    """``sig`` to every running process group, then SIGKILL to what is left after ``grace`` s."""
    for p in procs:
        if p.poll() is None:
            _signal_group(p, sig)
    deadline = time.monotonic() + grace
    while any(p.poll() is None for p in procs) and time.monotonic() < deadline:
        time.sleep(0.05)
    for p in procs:
        if p.poll() is None:
            _signal_group(p, signal.SIGKILL)
        p.wait()


def _signal_group(p: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(p.pid, sig)
    except ProcessLookupError:
        pass


def launch(n: int, command: list[str], grace: float = 10.0) -> int:
    """Runs ``command`` as ``n`` processes; returns 0, or the status of the first one that failed
    (130 after Ctrl-C). Every process is ended before this returns."""
    port = free_port()
    env = process_env(n)
    interrupted: list[int] = []

    def forward(sig, _frame):
        interrupted.append(sig)

    old = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    procs: list[subprocess.Popen] = []
    try:
        # Own process groups: a terminal's Ctrl-C reaches only the launcher, which passes it on once.
        procs = [subprocess.Popen(c, env=env, start_new_session=True) for c in commands(n, command, port)]
        while True:
            if interrupted:
                _stop(procs, signal.SIGINT, grace)
                sys.stderr.write(f"launch: interrupted; stopped {n} processes\n")
                return 130
            failed = [(i, p.returncode) for i, p in enumerate(procs) if p.poll()]
            if failed:
                i, status = failed[0]
                _stop(procs, signal.SIGTERM, grace)
                why = f"killed by signal {-status}" if status < 0 else f"exited with status {status}"
                sys.stderr.write(f"launch: process {i} of {n} {why}; stopped the others\n")
                return status if status > 0 else 1
            if all(p.poll() == 0 for p in procs):
                return 0
            time.sleep(0.1)
    finally:
        _stop(procs, signal.SIGKILL, 0.0)
        for s, h in old.items():
            signal.signal(s, h)


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2 (no usage dump), as every script's bad input
        self.exit(2, f"{self.prog}: error: {message}\n")


def main(argv: list[str] | None = None) -> int:
    p = _Parser(prog="python -m jaxopt_cmp.launch", description=__doc__.splitlines()[0])
    p.add_argument("-n", "--num-processes", type=int, required=True, help="how many local processes")
    p.add_argument(
        "--grace", type=float, default=10.0, help="seconds a stopped process gets before SIGKILL (default: %(default)s)"
    )
    p.add_argument("command", nargs=argparse.REMAINDER, help="-- then the script and its arguments")
    args = p.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if args.num_processes < 1:
        p.error(f"-n={args.num_processes} is not allowed: expected at least 1 process")
    if not command:
        p.error("expected a command after --, e.g. -- scripts/study.py --seeds 8")
    if args.grace < 0:
        p.error(f"--grace={args.grace} is not allowed: expected seconds >= 0")
    most, why = max_processes()
    if args.num_processes > most:
        p.error(f"-n={args.num_processes} is not allowed: expected at most {most} processes on this machine ({why})")
    return launch(args.num_processes, command, args.grace)


if __name__ == "__main__":
    sys.exit(main())

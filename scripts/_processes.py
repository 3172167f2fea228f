"""The scripts' plumbing for work bigger than one process: process flags, starting JAX's
multi-process runtime (with a watchdog for lost peers), the output directory only process 0 writes
into, and a study's jobs: shards (``--shard``, ``--merge``) and checkpoints (``--resume``).
:mod:`_cli` re-exports what the scripts call."""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

from _cli import EXIT_FAILED, ConfigError, Parser, State, default_out


def add_process_args(p: Parser) -> None:
    """Flags for running one script as several processes (JAX's multi-process runtime)."""
    g = p.add_argument_group("several processes (README: Bigger than one machine)")
    g.add_argument(
        "--distributed",
        default="auto",
        choices=("auto", "off"),
        help="auto: start JAX's multi-process runtime when the three flags below are given or a launcher "
        "(srun, mpirun) is detected, else run as one process; off: always one process (default: %(default)s)",
    )
    g.add_argument("--coordinator", default=None, help="HOST:PORT of process 0 (with the two flags below)")
    g.add_argument("--num-processes", type=int, default=None, help="how many processes run this command")
    g.add_argument("--process-id", type=int, default=None, help="this process, 0..num-processes-1")
    g.add_argument(
        "--peer-timeout",
        type=float,
        default=60.0,
        help="seconds after which a process that never arrived or was lost stops the others with one line "
        "(default: %(default)s)",
    )


PROCESS_FLAGS = ("coordinator", "num_processes", "process_id")


def parse_shard(text: str, environ=os.environ) -> tuple[int, int]:
    """``--shard I/N`` -> ``(I, N)``; ``auto``: a SLURM job array's task (its index within the
    array, from ``SLURM_ARRAY_TASK_ID``, ``_MIN``, ``_STEP``) of ``SLURM_ARRAY_TASK_COUNT``."""
    if text == "auto":
        env = {k: environ.get(f"SLURM_ARRAY_TASK_{k}") for k in ("ID", "COUNT", "MIN", "STEP")}
        try:
            task, count = int(env["ID"]), int(env["COUNT"])
            first, step = int(env["MIN"] or 0), int(env["STEP"] or 1)
        except (TypeError, ValueError):
            found = f"SLURM_ARRAY_TASK_ID={env['ID']}, SLURM_ARRAY_TASK_COUNT={env['COUNT']}"
            raise ConfigError("shard", "auto", f"expected a SLURM job array's integer variables ({found})") from None
        return (task - first) // max(step, 1), count
    index, sep, count = text.partition("/")
    if not (sep and index.strip().isdigit() and count.strip().isdigit()):
        raise ConfigError("shard", text, "expected I/N (part I of N, I in 0..N-1) or auto")
    return int(index), int(count)


def start_processes(args, prog: str) -> None:
    """Starts JAX's multi-process runtime if the flags or a launcher ask for it (before any other
    JAX call). Process 0 goes on as a one-process run would; every other process prints one line,
    then prints nothing more, writes nothing (:func:`out_dir`) and draws no progress bar. A process
    lost later stops the survivors within ``--peer-timeout`` seconds with one line naming it."""
    from jaxopt_cmp import distributed
    from jaxopt_cmp.checks import check_real

    given = [f for f in PROCESS_FLAGS if getattr(args, f) is not None]
    if args.distributed == "off":
        if given:
            raise ConfigError("distributed", "off", f"--{given[0].replace('_', '-')} needs --distributed auto")
        return
    if given and len(given) < len(PROCESS_FLAGS):
        missing = "--" + next(f for f in PROCESS_FLAGS if f not in given).replace("_", "-")
        raise ConfigError(given[0], getattr(args, given[0]), f"expected {missing} too (all three, or none)")
    timeout = check_real("peer_timeout", args.peer_timeout, 0.0, 86_400.0, low_open=True)
    if not given and distributed.detect_launcher() is None:
        return  # one process, as always
    import jax

    where = args.coordinator or f"the coordinator {distributed.detect_launcher()} names"
    # JAX aborts a process whose peers never arrive with a C++ stack trace (after its
    # initialization_timeout); this timer ends it first, with one line.
    timer = threading.Timer(
        timeout,
        _exit_line,
        (
            prog,
            f"not every process connected to {where} within {timeout:g} s "
            "(--peer-timeout): a process did not start, or the port is in use",
        ),
    )
    timer.daemon = True
    timer.start()
    try:
        distributed.initialize(
            args.coordinator, args.num_processes, args.process_id,
            initialization_timeout=round(timeout) + 30,
            # JAX's own abort of the survivors of a lost process comes well after the watchdog's line.
            heartbeat_timeout_seconds=round(3 * timeout) + 30,
        )  # fmt: skip
    except ConfigError:
        raise
    except Exception as err:  # process 0 could not start the coordinator: "Failed to start RPC server"
        reason = (str(err).strip().splitlines() or [type(err).__name__])[-1][:200]
        # os._exit: a half-started runtime can crash Python's own shutdown (seen: SIGSEGV).
        _exit_line(prog, f"could not start or reach the coordinator {where} ({reason}); is the port in use?")
    finally:
        timer.cancel()
    me, count = jax.process_index(), jax.process_count()

    def on_lost(lost: list[int]) -> None:
        _exit_line(prog, f"process {me} of {count}: lost process(es) {lost} (no sign of life for {timeout:g} s, "
                   "--peer-timeout); stopping")  # fmt: skip

    distributed.watch_peers(timeout, on_lost)
    sys.excepthook = _lost_peer_hook(prog, timeout, sys.excepthook)
    if me != 0:
        print(f"{prog}: worker {me} of {count}; process 0 prints and writes the results", flush=True)
        State.worker = True
        args.no_plots = True
        os.environ["TQDM_DISABLE"] = "1"
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 (for the rest of the process)


def _lost_peer_hook(prog: str, timeout: float, default):
    """An uncaught JAX runtime error under several processes (gloo: "Connection reset by peer")
    most likely means a peer died: wait for the watchdog's line naming it instead of a traceback
    (it comes within ``timeout`` s), else end with the error's last line."""

    def hook(kind, err, tb):
        if "JaxRuntimeError" not in kind.__name__ and "XlaRuntimeError" not in kind.__name__:
            return default(kind, err, tb)
        time.sleep(timeout + 2.0)  # the watchdog thread exits the process before this ends
        reason = (str(err).strip().splitlines() or [kind.__name__])[-1][:300]
        _exit_line(prog, f"a collective across processes failed: {reason}")

    return hook


def _exit_line(prog: str, message: str) -> None:
    """One line on stderr and exit status 1 at once, from any thread (XLA may hold the others); a
    newline first ends a progress bar's line."""
    sys.stderr.write(f"\n{prog}: error: {message}\n")
    sys.stderr.flush()
    os._exit(EXIT_FAILED)


def out_dir(args, script: str, outputs: tuple[str, ...], overwrite: bool | None = None):
    """The output directory, claimed (``claim_out_dir``; ``overwrite`` default ``--overwrite``); a
    worker process gets a scratch directory that is removed at the end, so only process 0 writes
    into ``--out``."""
    if State.worker:
        import contextlib
        import tempfile
        from types import SimpleNamespace

        @contextlib.contextmanager
        def scratch():
            with tempfile.TemporaryDirectory(prefix=f"{script}-worker-") as tmp:
                yield SimpleNamespace(path=Path(tmp))

        return scratch()
    from jaxopt_cmp.io import claim_out_dir

    return claim_out_dir(args.out or default_out(script), args.overwrite if overwrite is None else overwrite, outputs)


def add_study_job_args(p: Parser) -> None:
    """study.py's flags for a study split into jobs (``--shard``, ``--merge``) or resumed (``--checkpoint-every``,
    ``--resume``)."""
    p.add_argument(
        "--shard",
        default=None,
        help="I/N: train only part I (0..N-1) of N disjoint blocks of the seeds, under their indices in the whole "
        "study, for --merge later; auto: a SLURM job array's task of SLURM_ARRAY_TASK_COUNT",
    )
    p.add_argument(
        "--merge",
        nargs="+",
        default=None,
        metavar="DIR",
        help="join the output directories of every part of one --shard study into --out (no training)",
    )
    add_checkpoint_args(p, "study")


def add_checkpoint_args(p: Parser, what: str) -> None:
    """``--checkpoint-every`` and ``--resume`` (``what``: the thing resumed, for the help)."""
    p.add_argument(
        "--checkpoint-every",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="save the training state into --out at the first evaluation boundary after every SECONDS "
        "(process 0's clock, under several processes), for --resume; 0: never (default: %(default)s)",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help=f"continue the {what} in --out from its checkpoint, or start it if it has none yet (same flags, same "
        "number of processes; bit-identical results; under several processes every one must see --out)",
    )


def study_shard(args, cfg):
    """``(config, shard record)``: the part ``--shard`` names (its seeds, under their global indices),
    or ``(cfg, {})``."""
    if args.shard is None:
        return cfg, {}
    from jaxopt_cmp.shards import shard_config, shard_record

    index, count = parse_shard(args.shard)
    return shard_config(cfg, index, count), shard_record(cfg, index, count)


def study_checkpoint(args, cfg, data, outputs: tuple[str, ...]):
    """``(checkpoint, outputs to clear)``: the study's :class:`~jaxopt_cmp.checkpoint.Checkpoint` in
    ``--out`` (:func:`checkpoint_in`), or None; names ``--out`` if it was not given. Without
    ``--resume`` an old checkpoint is cleared with the other outputs (``--overwrite``)."""
    from jaxopt_cmp.checkpoint import NAME

    check_checkpoint_args(args, "study")
    if args.resume:
        out = Path(args.out)
        if (out / "results.json").is_file() and not (out / NAME).is_file():
            raise ConfigError("resume", str(out), "expected an unfinished study's directory (it holds results.json)")
    args.out = args.out or str(default_out("study"))  # named now: the checkpoint lives there
    outputs = outputs if args.resume else (*outputs, NAME)
    return checkpoint_in(args.out, cfg, data, args), outputs


def check_checkpoint_args(args, what: str) -> float:
    """``--checkpoint-every`` checked (its seconds); ``--resume`` needs ``--out``."""
    from jaxopt_cmp.checks import check_real

    every = check_real("checkpoint_every", args.checkpoint_every, 0.0, float("inf"))
    if args.resume and not args.out:
        raise ConfigError("resume", "(no --out)", f"expected --out naming the {what}'s directory")
    return every


def checkpoint_in(out, cfg, data, args):
    """The :class:`~jaxopt_cmp.checkpoint.Checkpoint` of the study ``cfg`` in directory ``out`` (with
    ``--resume``, read if there is one; another study's is refused before compiling), or None: never
    saved (0 seconds without ``--resume``). Under several processes every process has one (each takes
    part in every save and reads the file on resume: ``out`` must be the same directory for all);
    process 0 writes."""
    from jaxopt_cmp.checkpoint import Checkpoint, study_digest

    if args.checkpoint_every == 0 and not args.resume:
        return None
    saver = Checkpoint(out, study_digest(cfg, data), args.checkpoint_every)
    if args.resume:
        saver.resume()
    return saver


def study_job_lines(args, saver, cfg, shard: dict) -> list[str]:
    """Where a study starts (with ``--resume``: its checkpoint's step, or step 0) and which part it is."""
    lines = []
    if saver is not None and saver.state is not None:
        lines.append(f"resuming at step {cfg.train.eval_steps[saver.state[0]]} from {saver.path}")
    elif args.resume:
        lines.append(f"no checkpoint in {args.out} yet: starting at step 0")
    if shard:
        last = cfg.seed_offset + cfg.seeds - 1
        lines.append(f"shard {shard['index']}/{shard['count']}: seeds {cfg.seed_offset}..{last} of {shard['seeds']}")
    return lines

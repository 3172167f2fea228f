"""Shared command-line plumbing for the scripts: flags, config building, errors, progress.

Bad input ends with one line on stderr naming the flag, the value and what is allowed, and exit
status 2, before anything compiles. Ctrl-C ends with a short message and status 130; a closed
pipe or a failing disk with one line and status 1.

Scripts call :func:`setup_process` first (before JAX is imported): one XLA host device per core.
"""

from __future__ import annotations

import argparse
import errno
import os
import signal
import sys
import threading
from pathlib import Path


class State:
    """What a run has written so far, for the message of an interrupted run."""

    results: Path | None = None
    worker: bool = False  # a process other than 0 of several: prints and writes nothing
    running: bool = False  # run_main has started: an interrupt unwinds (output directories close)
    interrupted: bool = False  # Ctrl-C arrived (kept even where a library swallowed the exception)


def _on_sigint(signum, frame) -> None:
    """Ctrl-C. Before :func:`run_main` nothing is written: one line, status 130, at once (a
    KeyboardInterrupt inside half-done imports printed a traceback or crashed the interpreter).
    After, the KeyboardInterrupt unwinds as usual; the flag stays set because a library can swallow
    the exception (jax's gc callback ignores it: a Ctrl-C during its import was lost and the run
    completed with status 0), and :func:`check_interrupted` raises it again."""
    State.interrupted = True
    if not State.running:
        sys.stderr.write(f"\n{Path(sys.argv[0]).name}: interrupted before starting; nothing was written\n")
        os._exit(130)
    raise KeyboardInterrupt


# Installed before anything heavy is imported: also where the parent ignores SIGINT (a background
# job, some CI runners), which would make Ctrl-C a no-op.
signal.signal(signal.SIGINT, _on_sigint)

from jaxopt_cmp.checks import ConfigError, MissingExtra, import_extra  # noqa: E402, F401  (import_extra: for the scripts)
from jaxopt_cmp.progress import ProgressBar as Progress  # noqa: E402, F401  (the scripts' bar: one home)
from jaxopt_cmp.runtime import use_all_cores  # noqa: E402

EXIT_USAGE, EXIT_FAILED, EXIT_INTERRUPTED = 2, 1, 130
# The flags that do not change what is trained: where it goes, whether figures are drawn, the
# compilation cache, how processes meet, what a re-render reads. Every other flag is a training flag
# (refused with --from and --merge, which train nothing): a new flag counts as one unless listed here.
NOT_TRAINING = (
    "help",
    "out",
    "overwrite",
    "no_plots",
    "cache_dir",
    "no_cache",
    "target_mse",
    "from_dir",
    "merge",
    "distributed",
    "coordinator",
    "num_processes",
    "process_id",
    "peer_timeout",
)


def training_flags_given(p: argparse.ArgumentParser, args) -> list[str]:
    """The training flags (every flag not in :data:`NOT_TRAINING`) given other than at their default."""
    return [
        a.option_strings[-1]
        for a in p._actions
        if a.option_strings and a.dest not in NOT_TRAINING and getattr(args, a.dest, None) != p.get_default(a.dest)
    ]


def setup_process() -> None:
    """One XLA host device per CPU core unless ``XLA_FLAGS`` says otherwise: studies shard their
    seed axis across devices, which is how XLA:CPU uses every core. Must run before JAX starts."""
    use_all_cores()


class Parser(argparse.ArgumentParser):
    """argparse with a one-line error (no usage dump) and exit status 2; remembers which flag
    sets which setting, so a ``ConfigError`` names the flag the user typed."""

    last: Parser | None = None  # the parser a script built most recently (for run_main)

    def __init__(self, *args, aliases: dict[str, str] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.aliases = {"optimizer": "optimizers", **(aliases or {})}
        Parser.last = self

    def error(self, message):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")

    def flag_of(self, setting: str) -> str | None:
        setting = self.aliases.get(setting, setting)
        for action in self._actions:
            if action.dest == setting and action.option_strings:
                return action.option_strings[-1]
        return None


def fail(prog: str, message: str, status: int = EXIT_USAGE) -> None:
    sys.stderr.write(f"{prog}: error: {message}\n")
    raise SystemExit(status)


def _names(kind: str) -> list[str]:
    if kind == "optimizers":
        from jaxopt_cmp.optimizers import OPTIMIZERS

        return list(OPTIMIZERS)
    from jaxopt_cmp.targets import TARGETS

    return sorted(TARGETS)


def add_common_args(p: Parser, optimizers: str) -> None:
    """Flags shared by compare.py and study.py (defaults: the seed study)."""
    p.add_argument(
        "--optimizers",
        default=optimizers,
        help=f"comma-separated registry names (default: %(default)s); one of: {', '.join(_names('optimizers'))}",
    )
    p.add_argument("--iters", type=int, default=10_000, help="training iterations per run (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=64, help="minibatch size (default: %(default)s)")
    p.add_argument("--hidden", default="64,64", help="hidden layer widths, comma-separated (default: %(default)s)")
    p.add_argument(
        "--activation",
        default="tanh",
        help="hidden-layer activation: tanh, relu, gelu (exact, erf), silu or sin (default: %(default)s)",
    )
    p.add_argument("--n-data", type=int, default=10_000, help="number of data points (default: %(default)s)")
    p.add_argument(
        "--target",
        default="seed",
        choices=_names("targets"),
        help="target function (default: %(default)s = exp(-x^2) cos 10x)",
    )
    p.add_argument(
        "--problem",
        default=None,
        help="a suite problem (README: The problem suite): its data, test set and model; data and model flags "
        "you give apply on top (default: the seed study, set by the flags)",
    )
    p.add_argument(
        "--data", default=None, help="fit your own data: .npz with arrays x, y or a 2-column .csv/.txt (sets --n-data)"
    )
    p.add_argument(
        "--n-val", type=int, default=2000, help="validation points, drawn like the data (default: %(default)s)"
    )
    p.add_argument(
        "--n-test",
        type=int,
        default=2000,
        help="test points: noise-free target on an even grid of [x_low, x_high] (default: %(default)s)",
    )
    p.add_argument(
        "--val-fraction",
        type=float,
        default=0.0,
        help="with --data: share of the rows held out for validation, seeded by --seed (default: %(default)s)",
    )
    p.add_argument(
        "--test-fraction",
        type=float,
        default=0.0,
        help="with --data: share of the rows held out for test (default: %(default)s)",
    )
    p.add_argument("--seed", type=int, default=0, help="root random seed, 0..2^32-1 (default: %(default)s)")
    p.add_argument(
        "--eval-every", type=int, default=500, help="full-data MSE every N iterations (default: %(default)s)"
    )
    p.add_argument("--dtype", default="float32", choices=("float32", "float64"), help="(default: %(default)s)")
    p.add_argument(
        "--max-memory",
        type=float,
        default=None,
        help="refuse a study whose estimated memory exceeds this many GB (default: 80%% of available)",
    )
    p.add_argument("--out", default=None, help="output directory (default: runs/<script>-<time>-<pid>)")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="allow a non-empty --out (a previous run's outputs there are removed first)",
    )
    p.add_argument("--no-plots", action="store_true", help="skip the figures (report.html is still written)")
    p.add_argument(
        "--cache-dir",
        default=None,
        help="JAX's persistent compilation cache (default: $JAXOPT_CMP_CACHE_DIR, "
        "$XDG_CACHE_HOME/jaxopt_cmp or ~/.cache/jaxopt_cmp)",
    )
    p.add_argument("--no-cache", action="store_true", help="do not use the persistent compilation cache")
    p.add_argument(
        "--schedule",
        default="constant",
        help="learning-rate schedule of every optimizer: constant, cosine, linear or step (default: %(default)s)",
    )
    p.add_argument("--warmup", type=int, default=None, help="linear warmup steps, < iters (default: 0)")
    p.add_argument(
        "--final-lr-fraction", type=float, default=None, help="cosine/linear: final lr / lr, in [0, 1] (default: 0)"
    )
    p.add_argument("--step-size", type=int, default=None, help="step: decay every N steps (default: 1000)")
    p.add_argument("--gamma", type=float, default=None, help="step: lr factor per decay, > 0 (default: 0.1)")


def parse_list(setting: str, text: str, kind=str) -> tuple:
    try:
        items = tuple(kind(t.strip()) for t in text.split(","))
    except ValueError:
        raise ConfigError(setting, text, f"expected comma-separated {kind.__name__} values") from None
    if not items or any(t == "" for t in items):
        raise ConfigError(setting, text, "expected a non-empty comma-separated list")
    return items


def build_config(args, optimizer_hparams: dict[str, dict], seeds: int, record_predictions: bool):
    """``(config, data)`` from parsed flags, both validated; ``data`` is None unless ``--data``
    (or a tabular ``--problem``). A value of a ``--grid``/``--space`` axis that the config refuses
    is named by that flag, not by the flag of the same name the user did not type."""
    from jaxopt_cmp.schedules import DEFAULTS

    for k in DEFAULTS:  # a schedule flag and a grid/search axis would set one value twice
        if getattr(args, k, None) is not None and any(k in hp for hp in optimizer_hparams.values()):
            allowed = "expected either the flag or a --grid/--space axis of that name, not both"
            raise ConfigError(k, getattr(args, k), allowed)
    try:
        return _build_config(args, optimizer_hparams, seeds, record_predictions)
    except ConfigError as err:
        swept = {k for hp in optimizer_hparams.values() for k in hp}
        if err.setting not in swept or not (getattr(args, "grid", None) or getattr(args, "search", None)):
            raise
        flag, text = ("grid", " ".join(args.grid)) if args.grid else ("space", " ".join(args.space) or "default space")
        raise ConfigError(flag, text, f"{err.setting}={err.value}: {err.allowed}") from None


def _build_config(args, optimizer_hparams: dict[str, dict], seeds: int, record_predictions: bool):
    if getattr(args, "problem", None):
        return problem_config(args, optimizer_hparams, seeds, record_predictions)
    from jaxopt_cmp.config import seed_study
    from jaxopt_cmp.data import load_data_file
    from jaxopt_cmp.targets import target_xdim

    heldout = heldout_settings(args)
    data = load_data_file(args.data, args.dtype) if args.data else None
    cfg = seed_study(
        optimizers=_optimizers(args, optimizer_hparams),
        target=args.target,
        n_data=args.n_data if data is None else user_train_rows(len(data.x), heldout, args.batch_size),
        source=args.data or "",
        **heldout,
        hidden=parse_list("hidden", args.hidden, int),
        activation=args.activation,
        xdim=target_xdim(args.target) if data is None else data.x.shape[1],
        iters=args.iters,
        batch_size=args.batch_size,
        eval_every=args.eval_every,
        dtype=args.dtype,
        seed=args.seed,
        seeds=seeds,
        record_predictions=record_predictions,
    )
    return cfg, data


def _optimizers(args, optimizer_hparams: dict[str, dict]) -> tuple:
    from jaxopt_cmp.config import OptimizerConfig
    from jaxopt_cmp.schedules import DEFAULTS  # the schedule parameters: one list, schedules.py's

    sched = {k: getattr(args, k) for k in DEFAULTS if getattr(args, k) is not None}
    return tuple(
        OptimizerConfig.make(n, schedule=args.schedule, **sched, **optimizer_hparams.get(n, {}))
        for n in parse_list("optimizers", args.optimizers)
    )


def problem_config(args, optimizer_hparams: dict[str, dict], seeds: int, record_predictions: bool):
    """``(config, data)`` of ``--problem``: the problem's settings, then the data and model flags
    the user changed from their defaults (a tabular problem's sizes come from its rows)."""
    from jaxopt_cmp.problems import get_problem

    problem = get_problem(args.problem)
    given = lambda k: getattr(args, k) != Parser.last.get_default(k)
    for k in ("data", "target", "val_fraction", "test_fraction", *(("n_data", "n_val", "n_test") * problem.tabular)):
        if given(k):
            raise ConfigError(k, getattr(args, k), f"expected the default with --problem {problem.name}, which sets it")
    settings = {k: getattr(args, k) for k in ("n_data", "n_val", "n_test", "batch_size", "activation") if given(k)}
    if given("hidden"):
        settings["hidden"] = parse_list("hidden", args.hidden, int)
    cfg = problem.study(
        optimizers=_optimizers(args, optimizer_hparams),
        iters=args.iters,
        eval_every=args.eval_every,
        dtype=args.dtype,
        seed=args.seed,
        seeds=seeds,
        record_predictions=record_predictions,
        **settings,
    )
    return cfg, problem.load(cfg)


def heldout_settings(args) -> dict:
    """The held-out flags as DataConfig settings (checked): ``--n-val``/``--n-test`` size generated
    data's sets, ``--val-fraction``/``--test-fraction`` split ``--data``'s rows; a flag that does
    not apply to the data at hand is refused rather than ignored."""
    from jaxopt_cmp.config import DataConfig

    settings = {k: getattr(args, k) for k in ("n_val", "n_test", "val_fraction", "test_fraction")}
    DataConfig(**settings)  # one line for a bad value, before anything is loaded
    default = DataConfig()
    misplaced = ("n_val", "n_test") if args.data else ("val_fraction", "test_fraction")
    for k in misplaced:
        if settings[k] != getattr(default, k):
            allowed = (
                "applies to generated data; with --data use --val-fraction/--test-fraction"
                if args.data
                else "applies to --data only; generated data uses --n-val/--n-test"
            )
            raise ConfigError(k, settings[k], allowed)
    return settings


def user_train_rows(rows: int, heldout: dict, batch_size: int) -> int:
    """Rows of ``--data`` left to train on after the held-out fractions; at least one batch."""
    from jaxopt_cmp.config import DataConfig
    from jaxopt_cmp.data import heldout_rows

    train, val, test = heldout_rows(rows, DataConfig(**heldout))
    if (val or test) and train < batch_size:
        raise ConfigError(
            "val_fraction",
            heldout["val_fraction"],
            f"expected fractions leaving at least --batch-size={batch_size} of the {rows} rows to train on "
            f"({val} validation and {test} test rows leave {train})",
        )
    return train


def max_bytes(args) -> float | None:
    if args.max_memory is None:
        return None
    from jaxopt_cmp.checks import check_real

    return check_real("max_memory", args.max_memory, 0.0, float("inf"), low_open=True) * 1e9


def check_memory(args, cfg) -> None:
    """The study with the fit figures this script draws (unless ``--no-plots``) within
    ``--max-memory``, before the output directory is claimed; ``prepare_study`` checks the study
    again, counting its lanes."""
    from jaxopt_cmp.budget import check_budget

    check_budget(cfg, max_bytes(args), figures=not args.no_plots)


def default_out(script: str) -> Path:
    from jaxopt_cmp.io import unique_run_dir

    return unique_run_dir("runs", script)


# The several-process plumbing lives in _processes (imported here, after what it uses is defined).
from _processes import PROCESS_FLAGS, add_process_args, out_dir, parse_shard, start_processes  # noqa: E402, F401


def setup_jax(args) -> None:
    """float64 runs need JAX's x64 mode; the persistent compilation cache unless ``--no-cache``."""
    import jax

    if args.dtype == "float64":
        jax.config.update("jax_enable_x64", True)
    if args.no_cache:  # none at all: JAX would otherwise use one JAX_COMPILATION_CACHE_DIR names
        jax.config.update("jax_enable_compilation_cache", False)
    else:
        from jaxopt_cmp.runtime import default_cache_dir, use_compilation_cache

        if args.cache_dir == "":  # Path("") is the cwd: the cache would land among the user's files
            raise ConfigError("cache_dir", "''", "expected a directory path (or --no-cache)")
        path = args.cache_dir or default_cache_dir()
        if not _writable_dir(path):
            if args.cache_dir:  # the user's choice: refused
                raise ConfigError(
                    "cache_dir", str(path), "expected a writable directory (pass --no-cache to run without)"
                )
            # The default location (a read-only home, say): run without the cache, as JAX would, in one line.
            print(f"note: no compilation cache: {path} is not writable (choose one with --cache-dir, or --no-cache)",
                  file=sys.stderr)  # fmt: skip
            return
        use_compilation_cache(path)


def _writable_dir(path) -> bool:
    """Whether ``path`` is (or can be made) a directory this process may write into."""
    try:
        Path(path).mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    return os.path.isdir(path) and os.access(path, os.W_OK | os.X_OK)


def import_in_background(*modules: str) -> None:
    """Imports ``modules`` on a daemon thread: started before training, the figures' imports
    (matplotlib, ~0.3 s of CPU) overlap it, on the core the lighter lane leaves idle."""
    import importlib

    def target():
        for m in modules:
            try:
                importlib.import_module(m)
            except Exception:  # the main thread's own import reports it, where it is needed
                return

    threading.Thread(target=target, name="jaxopt_cmp-imports", daemon=True).start()


def timing_line(timing: dict, framework: str = "jax") -> str:
    """``setup 0.41 s, compile 2.80 s`` (compile "reused" when nothing compiled); the tables give
    the training time."""
    if framework == "torch":
        return "eager torch: nothing to compile"
    compile_s = timing.get("compile_s", 0.0)
    compiled = f"{compile_s:.2f} s" if compile_s > 0 else "reused (compiled earlier in this process)"
    return f"setup {timing.get('setup_s', 0.0):.2f} s, compile {compiled}"


def write_pages(out: Path, summary: str | None = None) -> list[Path]:
    """``summary.txt`` (the statistics the script printed, when given) and then ``report.html``
    (:mod:`jaxopt_cmp.html_report`: every file of ``out`` on one offline page), written last."""
    from jaxopt_cmp.html_report import write_report
    from jaxopt_cmp.io import atomic_write_bytes

    paths = [] if summary is None else [atomic_write_bytes(Path(out) / "summary.txt", (summary + "\n").encode())]
    return paths + [write_report(out)]


def check_interrupted() -> None:
    """Raises KeyboardInterrupt if Ctrl-C arrived, even where the exception was swallowed: the
    scripts call it before they write results."""
    if State.interrupted:
        raise KeyboardInterrupt


def _interrupted(prog: str) -> None:
    done = (
        f"results were written to {State.results}; figures may be incomplete"
        if State.results
        else "no new results.json was written"
    )
    sys.stderr.write(f"\n{prog}: interrupted; {done}\n")
    sys.stdout.flush()
    sys.stderr.flush()
    # _exit also stops XLA's worker threads mid-run at once.
    os._exit(EXIT_INTERRUPTED)


def run_main(prog: str, main, parser: Parser | None = None) -> None:
    """Runs ``main()``; turns bad settings, Ctrl-C, a closed pipe and I/O errors into one line and
    an exit status (2 usage, 130 interrupted, 1 otherwise)."""
    from jaxopt_cmp.results import ResultsError

    signal.signal(signal.SIGINT, _on_sigint)
    State.running = True
    try:
        main()
        check_interrupted()  # swallowed after the scripts' last check: still status 130
    except ConfigError as err:
        parser = parser or Parser.last
        flag = parser.flag_of(err.setting) if parser is not None else None
        fail(prog, f"{flag or err.setting}={err.value} is not allowed: {err.allowed}")
    except (ResultsError, MissingExtra) as err:
        fail(prog, str(err))
    except KeyboardInterrupt:
        _interrupted(prog)
    except BrokenPipeError:
        # The reader went away (`| head -1`): stop quietly, and keep Python from complaining
        # about the closed stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise SystemExit(EXIT_FAILED) from None
    except OSError as err:
        where = f" {err.filename}" if err.filename else ""
        reason = "no space left on device" if err.errno == errno.ENOSPC else (err.strerror or str(err))
        fail(prog, f"could not write or read{where}: {reason}", EXIT_FAILED)

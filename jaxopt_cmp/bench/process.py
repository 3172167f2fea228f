"""Whole processes: ``compare.py`` timed from outside, with a cold and then a warm compilation cache.

Each pair of runs shares a fresh cache directory (``--cache-dir``): the first finds it empty
(cold), the second filled (warm). Where the script has no ``--cache-dir`` flag, it runs as it
is (kind ``default``) and the cold/warm figures are missing. The setup/compile/train/figures
breakdown is read from each run's ``results.json`` ``timing``; a key it lacks is None.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from jaxopt_cmp.bench.timing import summary

CACHE_FLAG = "--cache-dir"
TIMING_KEYS = ("setup_s", "compile_s", "train_s", "figures_s")
KINDS = ("cold", "warm")
# A study whose compile is the whole cost (40 steps of a 1-8-1 MLP): how long a small idea waits.
SMALL_ARGS = ("--hidden", "8", "--iters", "40", "--n-data", "128", "--no-plots")
DEFAULT = "default"  # the kind of a run when the script has no cache flag


def has_flag(script: Path, flag: str, run: Callable = subprocess.run) -> bool:
    """Whether ``script --help`` documents ``flag``."""
    proc = run([sys.executable, str(script), "--help"], capture_output=True, text=True)
    return proc.returncode == 0 and flag in proc.stdout


def read_timing(path: Path) -> dict[str, float | None]:
    """The ``TIMING_KEYS`` of a results.json's ``timing``; None for each one missing or not a number."""
    try:
        timing = json.loads(path.read_text()).get("timing")
    except (OSError, ValueError, AttributeError):
        timing = None
    timing = timing if isinstance(timing, dict) else {}
    number = lambda v: float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None
    return {k: number(timing.get(k)) for k in TIMING_KEYS}


def run_once(script: Path, out: Path, cache: Path | None, run: Callable = subprocess.run, args=()) -> dict:
    """One whole ``script [args] --out out [--cache-dir cache]``: wall seconds and its own timing."""
    cmd = [sys.executable, str(script), *args, "--out", str(out), *([CACHE_FLAG, str(cache)] if cache else [])]
    start = time.perf_counter()
    proc = run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        error = f"exit status {proc.returncode}: {proc.stderr.strip()[-500:]}"
        return {"wall_s": None, **dict.fromkeys(TIMING_KEYS), "error": error}
    return {"wall_s": wall, **read_timing(out / "results.json")}


def measure_compare(
    script: Path, pairs: int, eager_train_s: float | None, log, run: Callable = subprocess.run, args=()
) -> dict:
    """``pairs`` cold + warm runs of ``script`` with ``args`` (none: the seed study, 10,000 iterations,
    figures on), each beside the eager torch loop's training time ``eager_train_s`` measured in the
    same benchmark."""
    cached = has_flag(script, CACHE_FLAG, run)
    kinds = KINDS if cached else (DEFAULT,)
    runs = []
    with tempfile.TemporaryDirectory(prefix="bench-compare-") as tmp:
        for i in range(pairs):
            cache = Path(tmp) / f"cache{i}"
            cache.mkdir()
            for kind in kinds:
                record = run_once(script, Path(tmp) / f"run{i}-{kind}", cache if cached else None, run, args)
                runs.append({"kind": kind, **record})
                wall = "failed" if record["wall_s"] is None else f"{record['wall_s']:.1f} s"
                log(f"  compare.py run {i + 1} ({kind}): {wall}")
    command = " ".join(["python", f"scripts/{script.name}", *args, "--out <tmp>"])
    command += f" {CACHE_FLAG} <tmp cache>" if cached else ""
    return summarize(runs, eager_train_s, command)


def summarize(runs: list[dict], eager_train_s: float | None, command: str = "") -> dict:
    """Per kind of run (in order of appearance), summaries of wall time, each timing key and the
    wall time over ``eager_train_s``; a key a run lacks counts as missing."""
    ratio = lambda wall: wall / eager_train_s if wall is not None and eager_train_s else None
    kinds = {}
    for kind in dict.fromkeys(r["kind"] for r in runs):
        mine = [r for r in runs if r["kind"] == kind]
        kinds[kind] = {k: summary([r.get(k) for r in mine]) for k in ("wall_s", *TIMING_KEYS)}
        kinds[kind]["over_eager_train"] = summary([ratio(r.get("wall_s")) for r in mine])
    return {"command": command, "eager_train_s": eager_train_s, "runs": runs, "kinds": kinds}

"""Mutation check: apply each bug of ``mutants.toml`` to a copy of the repository, run its tests.

    python tests/mutation/run.py               # every mutant (sanity mutants first)
    python tests/mutation/run.py --only NAME   # one or more (comma-separated) mutants
    python tests/mutation/run.py --list        # the list, and which snippets no longer match

A mutant is KILLED when its tests fail on the mutated copy and pass on the unmutated copy,
SURVIVED when they pass on the mutated copy, STALE when its snippet is not in the file exactly
once (the code moved on: update the entry), and BASELINE-FAIL / NO-TESTS / BAD-SELECTION /
TIMEOUT when the verdict means nothing. The copy runs with ``PYTHONPATH`` at the copy and
without bytecode files; the sanity mutants prove the copy is what the tests import. The result
goes to ``tests/mutation/last_result.md``. Not part of the default pytest run (slow: minutes).
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


@dataclass(frozen=True)
class Mutant:
    """One bug: ``old`` -> ``new`` in ``file`` (plus the ``also`` edits), caught by ``tests``."""

    name: str
    owner: str
    source: str
    bug: str
    file: str
    old: str
    new: str
    tests: tuple[str, ...]
    also: tuple[tuple[str, str, str], ...] = ()

    @property
    def edits(self) -> tuple[tuple[str, str, str], ...]:
        return ((self.file, self.old, self.new), *self.also)

    @classmethod
    def from_toml(cls, d: dict) -> Mutant:
        also = tuple((e["file"], e["old"], e["new"]) for e in d.get("also", ()))
        return cls(**{**d, "tests": tuple(d["tests"]), "also": also})


def load_mutants(path: Path = HERE / "mutants.toml") -> tuple[list[Mutant], list[Mutant]]:
    """``(sanity, mutants)`` from the list; names must be unique."""
    doc = tomllib.loads(path.read_text())
    sanity, mutants = ([Mutant.from_toml(d) for d in doc.get(k, [])] for k in ("sanity", "mutant"))
    names = [m.name for m in sanity + mutants]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise SystemExit(f"{path}: duplicate mutant names {dup}")
    return sanity, mutants


COPIED = ("jaxopt_cmp", "torch_ref", "scripts", "tests", "examples", "pyproject.toml", "README.md")
IGNORED = shutil.ignore_patterns("__pycache__", ".pytest_cache", ".hypothesis", "runs", "*.pyc", "last_result.md")
PYTEST_RC = {0: "SURVIVED", 4: "BAD-SELECTION", 5: "NO-TESTS"}  # 1-3: failures, errors -> KILLED


def make_copy(root: Path) -> Path:
    dst = Path(tempfile.mkdtemp(prefix="jaxopt_cmp-mutation-"))
    for name in COPIED:
        src = root / name
        if src.is_dir():
            shutil.copytree(src, dst / name, ignore=IGNORED)
        else:
            shutil.copy2(src, dst / name)
    return dst


def stale_edits(root: Path, m: Mutant) -> list[str]:
    """Why each edit of ``m`` cannot apply to the tree at ``root`` (empty: all apply)."""
    problems = []
    for file, old, _ in m.edits:
        found = (root / file).read_text().count(old) if (root / file).exists() else 0
        if found != 1:
            problems.append(f"snippet found {found} times in {file}")
    return problems


def run_tests(copy: Path, tests: tuple[str, ...], timeout: float, stop_first: bool) -> tuple[int | None, str]:
    """``(pytest exit status or None on timeout, output)`` for ``tests`` run in ``copy``."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(copy), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    cmd = [sys.executable, "-m", "pytest", "-q", "-n", "0", "-p", "no:cacheprovider"]  # -n 0: one process
    cmd += [*(["-x"] if stop_first else []), *tests]
    try:
        proc = subprocess.run(cmd, cwd=copy, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None, ""
    return proc.returncode, proc.stdout + proc.stderr


def caught_by(output: str) -> str:
    """The first failing test named in pytest's short summary."""
    for line in output.splitlines():
        if line.startswith(("FAILED ", "ERROR ")):
            return line.split(" ", 1)[1].split(" - ")[0]
    return ""


class Checker:
    """Runs mutants in one copy per worker; unmutated runs of a selection are cached."""

    def __init__(self, copies: list[Path], timeout: float):
        self.free, self.timeout = list(copies), timeout
        self.lock = threading.Lock()
        self.baseline: dict[tuple[str, ...], int | None] = {}

    def baseline_passes(self, copy: Path, tests: tuple[str, ...]) -> bool:
        with self.lock:
            known = self.baseline.get(tests, "?")
        if known == "?":
            known, _ = run_tests(copy, tests, self.timeout, stop_first=True)
            with self.lock:
                self.baseline[tests] = known
        return known == 0

    def check(self, m: Mutant) -> dict:
        with self.lock:
            copy = self.free.pop()
        start = time.perf_counter()
        try:
            row = self._check_in(copy, m)
        finally:
            with self.lock:
                self.free.append(copy)
        row["seconds"] = time.perf_counter() - start
        return row

    def _check_in(self, copy: Path, m: Mutant) -> dict:
        problems = stale_edits(copy, m)
        if problems:
            return {"status": "STALE", "detail": "; ".join(problems)}
        originals = {file: (copy / file).read_text() for file, _, _ in m.edits}
        try:
            for file, old, new in m.edits:
                path = copy / file
                path.write_text(path.read_text().replace(old, new))
            rc, out = run_tests(copy, m.tests, self.timeout, stop_first=True)
        finally:
            for file, text in originals.items():
                (copy / file).write_text(text)
        if rc is None:
            return {"status": "TIMEOUT", "detail": f"over {self.timeout:.0f} s"}
        if rc in PYTEST_RC:
            tail = " ".join(out.strip().splitlines()[-1:]) if rc else ""
            return {"status": PYTEST_RC[rc], "detail": tail}
        if not self.baseline_passes(copy, m.tests):
            return {"status": "BASELINE-FAIL", "detail": "the tests fail without the mutation too"}
        return {"status": "KILLED", "detail": caught_by(out)}


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        names = [
            ln.split(":", 1)[1].strip()
            for ln in Path("/proc/cpuinfo").read_text().splitlines()
            if ln.startswith("model name")
        ]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    return f"{platform.node()} · {cpu} · {cores} cores · Python {platform.python_version()} · load {load}"


def write_report(rows: list[tuple[Mutant, dict]], started: str, seconds: float, jobs: int, subset: bool) -> Path:
    counts: dict[str, int] = {}
    for _, r in rows:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    lines = [
        "# Mutation check: last result",
        "",
        f"`python tests/mutation/run.py{' --only ...' if subset else ''}` · {started} · {machine()} · "
        f"{jobs} worker(s) · {seconds / 60:.1f} min",
        "",
        "Totals: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())),
        "",
        "| mutant | status | caught by / detail | s | owner | bug |",
        "|---|---|---|---|---|---|",
    ]
    for m, r in rows:
        bug = m.bug.replace("|", "/")
        lines.append(
            f"| `{m.name}` | {r['status']} | {r['detail'].replace('|', '/')} | {r['seconds']:.0f} | {m.owner} | {bug} |"
        )
    path = HERE / "last_result.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def list_mutants(mutants: list[Mutant]) -> None:
    for m in mutants:
        problems = stale_edits(ROOT, m)
        state = "STALE: " + "; ".join(problems) if problems else "ok"
        print(f"{m.name:40s} {m.owner:9s} {' '.join(m.tests):60s} {state}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", default="", help="comma-separated mutant names")
    p.add_argument("--list", action="store_true", help="list the mutants and whether their snippets still match")
    p.add_argument("--jobs", type=int, default=1, help="mutants checked at once, one repository copy each")
    p.add_argument("--timeout", type=float, default=600, help="seconds per pytest run (default: %(default)s)")
    p.add_argument("--keep", action="store_true", help="keep the repository copies")
    args = p.parse_args(argv)
    sanity, mutants = load_mutants()
    if args.list:
        list_mutants(sanity + mutants)
        return 0
    names = {n for n in args.only.split(",") if n}
    unknown = names - {m.name for m in sanity + mutants}
    if unknown:
        p.error(f"--only: no mutant named {', '.join(sorted(unknown))} (see --list)")
    chosen = [m for m in mutants if not names or m.name in names]
    started, t0 = time.strftime("%Y-%m-%d %H:%M:%S %Z"), time.perf_counter()
    copies = [make_copy(ROOT) for _ in range(max(1, args.jobs))]
    checker = Checker(copies, args.timeout)
    rows: list[tuple[Mutant, dict]] = []
    try:
        for m in sanity:  # the copy, not the working tree, must be what the tests import
            r = checker.check(m)
            rows.append((m, r))
            print(f"{r['status']:13s} {m.name}  {r['detail']}", flush=True)
            if r["status"] != "KILLED":
                print("the tests did not import the mutated copy: no verdict is meaningful", file=sys.stderr)
                return 3
        with ThreadPoolExecutor(max_workers=len(copies)) as pool:
            for m, r in zip(chosen, pool.map(checker.check, chosen)):
                rows.append((m, r))
                print(f"{r['status']:13s} {m.name}  {r['detail']}  ({r['seconds']:.0f} s)", flush=True)
    finally:
        if not args.keep:
            for c in copies:
                shutil.rmtree(c, ignore_errors=True)
    path = write_report(rows, started, time.perf_counter() - t0, len(copies), bool(names))
    print(f"wrote {path}")
    return 0 if all(r["status"] == "KILLED" for _, r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())

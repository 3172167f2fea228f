"""The README's code runs: every ```python block, as written, and every command it shows.

Python blocks run in order in one fresh interpreter (like a notebook: a block may use names an
earlier one defined), from a scratch directory, with nothing shrunk: a block that is too slow for
the suite must itself use small settings. Commands (lines of ```bash blocks and inline
`python ...` spans) run as written from a scratch directory holding a link to ``scripts/``,
unless :data:`NOT_RUN` lists them with the reason; a README command in neither place runs.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)
SHELL = ("bash", "sh", "shell", "console")
HANG_S = 900  # a hang guard, not a speed check (speed is measured by scripts/bench.py)

# Exact command text (comment stripped) -> why the suite does not run it.
NOT_RUN = {
    'python -m venv .venv && . .venv/bin/activate && pip install -e ".[torch]" && python scripts/compare.py': (
        "set-up: makes a virtual environment and installs (CI's own set-up runs the second one)"
    ),
    'python -m venv .venv && . .venv/bin/activate && pip install -e ".[test]" && python -m pytest -q': (
        "set-up + this very suite (it is what CI runs)"
    ),
    'python -m pytest -q -m "not slow"': "this very suite less its long tests (the test command runs everything)",
    "python scripts/compare.py": "the full seed study (10,000 iterations + figures); small runs: tests/test_cli.py",
    "python scripts/study.py": "the default study: 432 runs x 10,000 steps, minutes",
    "python scripts/study.py --seeds 64 --lrs 1e-3,3e-3,1e-2,3e-2 --optimizers adam,nadam": (
        "512 runs x 10,000 steps, minutes"
    ),
    "python scripts/study.py --from runs/study-XXXX": (
        "a placeholder directory; --from is run on a real study in tests/test_reliability.py"
    ),
    "python scripts/compare.py --out <tmp> --cache-dir <tmp cache>": "placeholders (bench.py runs it, cold and warm)",
    "python scripts/suite.py": "the default suite: 8 problems x 72 runs x 1,500 steps, about 10 minutes",
    "python scripts/bench.py": "the benchmark, about 30 minutes on 2 cores; a tiny one runs in tests/test_bench.py",
    "python scripts/bench.py --seeds-list 512 --grid-list 64,128,256,512 --no-compare --iters 2000 "
    "--scaling-iters 2000": (
        "the grid rows' measurement, 28 minutes; a tiny bench with a grid row runs in tests/test_bench.py"
    ),
    "python scripts/validate.py": "about 4 minutes; --quick runs in tests/test_validate.py",
    "python scripts/diagnose.py": (
        "the seed study with exact Hessian spectra, 1.5-3.5 minutes; small runs in tests/test_diagnostics.py"
    ),
    "python scripts/diagnose.py --seeds 4 --lr 3e-3": "4 seeds x 10,000 steps with spectra, minutes",
    "XLA_FLAGS=--xla_force_host_platform_device_count=2 python tests/multiprocess_worker.py --coordinator "
    "localhost:12345 --num-processes 2 --process-id 0 --out mp_out &": (
        "one of two processes that must run together (fixed port); tests/test_multiprocess.py runs this recipe"
    ),
    "XLA_FLAGS=--xla_force_host_platform_device_count=2 python tests/multiprocess_worker.py --coordinator "
    "localhost:12345 --num-processes 2 --process-id 1 --out mp_out": "the second process of the same recipe",
    "python -m jaxopt_cmp.launch -n 2 -- scripts/study.py --seeds 8 --out runs/two-processes": (
        "the default study's 10,000 steps over 2 processes, minutes; tests/test_launch.py launches a tiny one"
    ),
    "python scripts/study.py --seeds 4 --iters 40 --eval-every 20 --hidden 8 --n-data 128 --lrs 0.01,0.1 "
    "--no-plots --shard 1/2 --out runs/part1": "the second part, like the first (run); tests/test_shards.py runs both",
    "python scripts/study.py --merge runs/part0 runs/part1 --no-plots --out runs/merged": (
        "needs both parts' directories (each command runs in a scratch directory of its own); "
        "tests/test_shards.py merges them and compares with one run"
    ),
    "python scripts/study.py --seeds 2 --iters 400 --eval-every 20 --hidden 8 --n-data 128 --no-plots "
    "--out runs/resumable --resume": (
        "needs an interrupted study's checkpoint; tests/test_resume.py SIGKILLs a study and resumes it"
    ),
    "python tests/mutation/run.py": "the mutation check: tens of minutes (tests/mutation/last_result.md)",
    "python scripts/tune.py": "the README's measured tuning run, 50 minutes; tests/test_tune.py runs tune.py tiny",
    "python scripts/tune.py --optimizers sgd,momentum,adam --trials 16": (
        "the README's earlier tuning run, 28 minutes; tests/test_tune.py runs tune.py tiny"
    ),
}


def python_blocks() -> list[tuple[int, str]]:
    """``(line number, code)`` of every ```python block."""
    return [(README[: m.start()].count("\n") + 2, m.group(2)) for m in FENCE.finditer(README) if m.group(1) == "python"]


def commands() -> list[str]:
    """Every command the README shows: each line of a shell block and each inline `python ...`."""
    found = []
    for m in FENCE.finditer(README):
        if m.group(1) in SHELL:
            found += [line.split("  #")[0].split(" # ")[0].strip() for line in m.group(2).splitlines()]
    found += re.findall(r"(?<!`)`(python [^`]+)`(?!`)", README)
    return list(dict.fromkeys(c for c in found if c))


def scratch_env(tmp_path: Path) -> dict:
    """A scratch working directory with ``scripts`` linked in; this checkout's packages first."""
    (tmp_path / "scripts").symlink_to(ROOT / "scripts", target_is_directory=True)
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, "MPLBACKEND": "Agg"}


def test_readme_has_python_blocks_and_commands():
    assert python_blocks() and commands()  # the extraction below still finds what it looks for


def run_in_scratch(tmp_path: Path, *args: str) -> None:
    """Runs ``python *args`` from a scratch directory (see :func:`scratch_env`); asserts success."""
    proc = subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, cwd=tmp_path, env=scratch_env(tmp_path), timeout=HANG_S
    )
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_readme_python_blocks_run(tmp_path):
    runner = "\n".join(
        f"exec(compile({code!r}, 'README.md, python block at line {line}', 'exec'), ns)"
        for line, code in python_blocks()
    )
    run_in_scratch(tmp_path, "-c", "ns = {'__name__': '__main__'}\n" + runner)


def test_not_run_lists_only_commands_the_readme_shows():
    stale = sorted(set(NOT_RUN) - set(commands()))
    assert not stale, f"NOT_RUN names commands the README no longer shows: {stale}"


@pytest.mark.parametrize("command", [c for c in commands() if c not in NOT_RUN])
def test_readme_command_runs(command, tmp_path):
    argv = shlex.split(command)
    assert argv[0] == "python", f"{command!r}: run only python commands here, or list it in NOT_RUN"
    run_in_scratch(tmp_path, *argv[1:])

"""A core-only install: torch and pandas hidden from import, what needs them says in
one line which extra installs them; scripts exit 2 without a traceback, before any work. (That
compare.py's JAX path imports no torch: tests/test_notebook.py.)"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from jaxopt_cmp.checks import MissingExtra, import_extra

ROOT = Path(__file__).resolve().parents[1]
# Imported first by every Python started with this directory on its path: the optional
# dependencies are then "not installed": ``import torch`` raises ModuleNotFoundError and
# ``sys.modules`` has no entry, as after ``pip uninstall``. (Not ``sys.modules[name] = None``:
# scipy.stats probes ``sys.modules.get("torch")`` and breaks on a None that no real install has.)
HIDE = """import sys
class HideExtras:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in ("torch", "pandas"):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, HideExtras())
"""


@pytest.fixture
def core_only(tmp_path) -> dict:
    """The environment of a process that sees no torch and no pandas."""
    hider = tmp_path / "hide"
    hider.mkdir()
    (hider / "sitecustomize.py").write_text(HIDE)
    path = os.pathsep.join([str(hider), str(ROOT), os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "PYTHONPATH": path, "MPLBACKEND": "Agg"}


def run_script(env: dict, cwd: Path, *argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / argv[0]), *argv[1:]],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=300,
    )


def test_the_hider_hides(core_only, tmp_path):
    code = (
        "import sys, jaxopt_cmp, scipy.stats\n"
        "for name in ('torch', 'pandas'):\n"
        "    try:\n"
        "        __import__(name)\n"
        "    except ModuleNotFoundError as err:\n"
        "        print(err.name, name in sys.modules)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=core_only)
    assert proc.stdout.split() == ["torch", "False", "pandas", "False"], proc.stderr


@pytest.mark.parametrize(
    "argv, needed_by, extra",
    [
        (("validate.py", "--quick"), "validating against torch", "torch"),
        (
            ("compare.py", "--framework", "torch", "--iters", "10", "--eval-every", "5", "--out", "out"),
            "--framework torch",
            "torch",
        ),
    ],
    ids=["validate", "compare-torch"],
)
def test_scripts_name_the_extra_in_one_line(core_only, tmp_path, argv, needed_by, extra):
    proc = run_script(core_only, tmp_path, *argv)
    expected = f'{argv[0]}: error: {needed_by} needs {extra}, which is not installed: pip install -e ".[{extra}]"\n'
    assert (proc.returncode, proc.stderr) == (2, expected), proc.stderr[-2000:]
    assert not (tmp_path / "out").exists() and not (tmp_path / "runs").exists()  # before any work


def test_frames_name_the_notebook_extra(monkeypatch):
    from jaxopt_cmp.results import StudyResult

    # pandas is asked for before the result is read: an empty instance shows the message (the
    # frames themselves, with pandas, are checked in tests/test_notebook.py).
    result = StudyResult.__new__(StudyResult)
    monkeypatch.setitem(sys.modules, "pandas", None)
    for method in ("to_frame", "history_frame"):
        with pytest.raises(MissingExtra) as err:
            getattr(result, method)()
        assert str(err.value) == (
            f'StudyResult.{method}() needs pandas, which is not installed: pip install -e ".[notebook]"'
        )


def test_an_import_error_inside_an_installed_module_is_not_hidden(tmp_path, monkeypatch):
    (tmp_path / "broken_pkg.py").write_text("import not_a_module_anywhere\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ModuleNotFoundError, match="not_a_module_anywhere"):
        import_extra("broken_pkg", "x", "this test")

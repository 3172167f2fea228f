"""A ready ``progress(steps_done)`` callback for :func:`~jaxopt_cmp.study.run_study` (and
``PreparedStudy.run``, ``run_diagnostics``): a tqdm bar, a widget in a Jupyter kernel that has
ipywidgets (``pip install -e ".[notebook]"``), a text bar on stderr anywhere else.

The library itself never prints: a bar exists only where the caller makes one and passes it.
"""

from __future__ import annotations

import importlib.util
import sys


def in_jupyter_kernel() -> bool:
    """Whether this process is a Jupyter kernel (IPython running under ipykernel)."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    return shell is not None and "IPKernelApp" in shell.config


def _tqdm_class(notebook: bool | None):
    if notebook is None:
        notebook = in_jupyter_kernel() and importlib.util.find_spec("ipywidgets") is not None
    if notebook:
        from tqdm.notebook import tqdm
    else:
        from tqdm.std import tqdm
    return tqdm


class ProgressBar:
    """``progress(steps_done)`` drawing a bar of ``total`` steps; closes itself when it reaches
    ``total`` (and on :meth:`close` or leaving a ``with`` block). Steps are absolute counts, as
    the library reports them. ``notebook``: force the widget (True) or the text bar (False);
    by default the widget where it can be drawn. Made after compiling (``prepare_study(cfg)``
    then ``.run(progress=bar)``), its ETA counts training only."""

    def __init__(self, total: int, desc: str = "", notebook: bool | None = None, **tqdm_kw):
        tqdm = _tqdm_class(notebook)
        text = {} if tqdm.__module__ == "tqdm.notebook" else {"file": sys.stderr, "dynamic_ncols": True}
        self.total = int(total)
        self.bar = tqdm(total=self.total, desc=desc, unit="it", **{**text, **tqdm_kw})

    def __call__(self, steps_done) -> None:
        step = int(steps_done)
        if step > self.bar.n:
            self.bar.update(step - self.bar.n)
        if step >= self.total:
            self.close()

    def close(self) -> None:
        self.bar.close()  # tqdm's close is idempotent

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

"""Regression problems: a registry by name, as optimizers are (issue 22).

A :class:`Problem` fixes its data (a generated target with its range, noise and test set, or a
bundled tabular set), its default model and batch size; :meth:`Problem.study` builds a
:class:`jaxopt_cmp.config.StudyConfig` from them plus flat overrides (as
:func:`jaxopt_cmp.config.seed_study`), and :meth:`Problem.load` the user-data arrays of a tabular
problem (None for generated ones). ``PROBLEMS["seed"].study()`` is the seed study, bit for bit.

Generated problems share the seed's sizes (10,000 points, 2,000 validation, 2,000 test) and
noise (0.03): their test set is the noise-free target on an even grid. ``diabetes`` is
scikit-learn's bundled diabetes data (442 rows x 10 features; no download; the ``suite`` extra).
Its split is :func:`jaxopt_cmp.data.split_user_data`'s, seeded by the study's seed: 20% test
(88 rows), 10% validation (44), 310 to train; features and target are standardised with the
training rows' mean and standard deviation (so the held-out rows inform nothing).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from jaxopt_cmp.checks import check_choice, import_extra
from jaxopt_cmp.config import DataConfig, StudyConfig, seed_study
from jaxopt_cmp.data import Data, heldout_rows, split_user_data
from jaxopt_cmp.targets import target_xdim


@dataclass(frozen=True)
class Problem:
    """One regression problem. ``settings``: flat :func:`seed_study` settings it fixes (target,
    range, model, ...); ``rows``: a tabular problem's ``() -> (x, y)`` (raw, all rows)."""

    name: str
    reason: str  # one sentence: why the suite has it
    settings: dict = field(default_factory=dict)
    rows: Callable[[], tuple[np.ndarray, np.ndarray]] | None = None
    extra: str = ""  # the pyproject extra its rows need

    @property
    def tabular(self) -> bool:
        return self.rows is not None

    def study(self, **overrides) -> StudyConfig:
        """This problem's study: its settings, then ``overrides`` (``iters``, ``seeds``,
        ``optimizers``, ``lr``, ``hidden``, ``activation``, ...). A tabular problem's row counts
        come from its data (loaded here)."""
        settings = {**self.settings, **overrides}
        if self.tabular:
            x, _ = self.raw()
            held = DataConfig(**{k: settings[k] for k in ("val_fraction", "test_fraction")}, source=self.name)
            settings.update(n_data=heldout_rows(len(x), held)[0], xdim=x.shape[1], source=self.name)
        return seed_study(**settings)

    def raw(self) -> tuple[np.ndarray, np.ndarray]:
        if self.extra:
            import_extra("sklearn", self.extra, f"problem {self.name}")
        return self.rows()

    def load(self, cfg: StudyConfig) -> Data | None:
        """A tabular problem's rows, standardised with the training rows' statistics (the split
        of ``cfg``'s seed, as the study will make it); None for generated problems."""
        if not self.tabular:
            return None
        x, y = self.raw()
        data = Data(np.asarray(x, np.float64), np.asarray(y, np.float64).reshape(-1, 1))
        train, _, _ = split_user_data(data, cfg.data, cfg.seed)
        scale = lambda a, ref: (a - ref.mean(axis=0)) / ref.std(axis=0)
        return Data(scale(data.x, train.x), scale(data.y, train.y))


def _diabetes() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_diabetes

    bunch = load_diabetes(scaled=False)  # raw values; standardised by Problem.load
    return bunch.data, bunch.target


def _function(target: str, reason: str, **settings) -> Problem:
    return Problem(target, reason, {"target": target, "xdim": target_xdim(target), **settings})


PROBLEMS: dict[str, Problem] = {
    p.name: p
    for p in (
        Problem("seed", "The seed notebook's study, unchanged: exp(-x^2) cos 10x, a narrow oscillating bump."),
        _function("sin", "A smooth single frequency (sin 3x): the easy case every optimizer should solve."),
        _function("abs", "|x|: a kink, smooth elsewhere, which a smooth network can only round off."),
        _function(
            "multiscale",
            "Three sinusoids of falling weight (sin x + sin 5x / 2 + sin 15x / 4): spectral bias, low "
            "frequencies are learned first, so the last term separates optimizers that keep improving.",
        ),
        _function("step", "sign(x): a discontinuity, whose squared error concentrates at the jump."),
        _function("chirp", "sin(2 x^2) on [0, 3]: the frequency rises with x.", x_low=0.0, x_high=3.0),
        _function(
            "franke",
            "Franke's function on [0, 1]^2, a standard surface-fitting benchmark: two input dimensions.",
            x_low=0.0,
            x_high=1.0,
            n_test=1600,  # a 40 x 40 grid
        ),
        Problem(
            "diabetes",
            "Real tabular data (scikit-learn's bundled diabetes set, 442 x 10): noisy, few rows, "
            "where generalisation and not fitting decides.",
            {"val_fraction": 0.1, "test_fraction": 0.2, "batch_size": 32, "hidden": (32, 32)},
            _diabetes,
            extra="suite",
        ),
    )
}


def get_problem(name: str) -> Problem:
    check_choice("problem", name, list(PROBLEMS))
    return PROBLEMS[name]

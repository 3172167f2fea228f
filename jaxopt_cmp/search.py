"""Search spaces: Cartesian grids and random / quasi-random (Sobol) trials as grid points.

A *grid axis* is ``name=a:b:n`` (n points evenly spaced from a to b), ``name=a:b:nlog`` (n points
evenly spaced in log from a to b) or ``name=v1,v2,...``; several axes make their Cartesian product
(:func:`product`). A *space* is ``name=loguniform(a,b)``, ``name=1-loguniform(a,b)``
(``1 - x`` for x log-uniform: momentum and beta2, whose distance to 1 spans decades),
``name=uniform(a,b)`` or ``name=choice(v1,v2,...)``; every registry optimizer has a default space
(:func:`default_space`); :func:`sample` draws ``trials`` points from it, reproducibly from an
explicit seed (:func:`trial_seed`: the root seed and the optimizer's name; never the global RNG).
Random search uses a numpy ``Generator``; Sobol search uses ``scipy.stats.qmc.Sobol`` scrambled by
that generator. Either way the drawn float64 values are what the study trains and saves.
"""

from __future__ import annotations

import itertools
import math
import re
import warnings
import zlib
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import numpy as np
import scipy.stats.qmc

from jaxopt_cmp.checks import ConfigError, check_choice, check_int
from jaxopt_cmp.config import OptimizerConfig

METHODS = ("random", "sobol")
KINDS = ("loguniform", "1-loguniform", "uniform", "choice")
LOG_KINDS = ("loguniform", "1-loguniform")
MAX_TRIALS = 1_000_000

_NAME = r"([A-Za-z_][A-Za-z0-9_]*)"
_RANGE = re.compile(r"^\s*(?P<a>[^:]+):(?P<b>[^:]+):(?P<n>\d+)(?P<log>log)?\s*$")
_SPACE = re.compile(r"^\s*(?P<kind>[0-9a-z-]+)\((?P<args>[^()]*)\)\s*$")


class Dist(NamedTuple):
    """One axis of a search space: ``kind`` in :data:`KINDS`; ``args`` its bounds (low, high) or
    its choices."""

    kind: str
    args: tuple[float, ...]


def _number(flag: str, text: str, whole: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise ConfigError(flag, whole, f"{text.strip()!r} is not a number") from None
    if not math.isfinite(v):
        raise ConfigError(flag, whole, "expected finite numbers")
    return v


def _split(flag: str, text: str, example: str) -> tuple[str, str]:
    m = re.match(rf"^\s*{_NAME}\s*=(.*)$", text, re.S)
    if not m or not m.group(2).strip():
        raise ConfigError(flag, text, f"expected NAME=VALUES, e.g. {example}")
    return m.group(1), m.group(2)


def parse_axis(text: str, flag: str = "--grid") -> tuple[str, tuple[float, ...]]:
    """``'lr=1e-4:1:9log'`` -> ``('lr', (1e-4, ..., 1.0))``; ``'momentum=0.8,0.9'``; ``'lr=0:1:5'``."""
    name, rest = _split(flag, text, "lr=1e-4:1:9log, lr=0.1:0.5:5 or momentum=0.8,0.9,0.99")
    m = _RANGE.match(rest)
    if m:
        a, b = _number(flag, m["a"], text), _number(flag, m["b"], text)
        n = int(m["n"])
        if n < 2:
            raise ConfigError(flag, text, "expected a:b:n with n >= 2 points (one value: NAME=VALUE)")
        if n > MAX_TRIALS:  # refused before the points are made (1e10 of them would not fit)
            raise ConfigError(flag, text, f"expected a:b:n with n <= {MAX_TRIALS:,} (the largest product grid)")
        if m["log"]:
            if a <= 0 or b <= 0:
                raise ConfigError(flag, text, "expected a:b:nlog with a > 0 and b > 0")
            values = np.geomspace(a, b, n)
        else:
            values = np.linspace(a, b, n)
        values[0], values[-1] = a, b  # the user's end points exactly
        return name, tuple(float(v) for v in values)
    if ":" in rest:
        raise ConfigError(flag, text, "expected a:b:n or a:b:nlog (n a whole number of points)")
    return name, tuple(_number(flag, v, text) for v in rest.split(","))


def parse_space(text: str, flag: str = "--space") -> tuple[str, Dist]:
    """``'lr=loguniform(1e-5,1)'`` -> ``('lr', Dist('loguniform', (1e-05, 1.0)))``."""
    name, rest = _split(flag, text, "lr=loguniform(1e-5,1), beta2=uniform(0.9,0.9999) or warmup=choice(0,100)")
    m = _SPACE.match(rest)
    if not m or m["kind"] not in KINDS:
        raise ConfigError(
            flag, text, "expected loguniform(low,high), 1-loguniform(low,high), uniform(low,high) or choice(v1,v2,...)"
        )
    args = tuple(_number(flag, v, text) for v in m["args"].split(","))
    return name, check_dist(flag, text, Dist(m["kind"], args))


def check_dist(flag: str, shown, dist: Dist) -> Dist:
    """Refuses bounds that do not make a distribution (one line naming the flag and value)."""
    if dist.kind == "choice":
        if not dist.args:
            raise ConfigError(flag, shown, "expected choice(v1,v2,...) with at least one value")
        return dist
    if len(dist.args) != 2:
        raise ConfigError(flag, shown, f"expected {dist.kind}(low,high): two numbers")
    low, high = dist.args
    if dist.kind in LOG_KINDS and low <= 0:
        raise ConfigError(flag, shown, f"expected {dist.kind}(low,high) with 0 < low < high")
    if low >= high:
        raise ConfigError(flag, shown, f"expected {dist.kind}(low,high) with low < high")
    if dist.kind == "1-loguniform" and high > 1:  # 1 - x below 0: not a distance to 1
        raise ConfigError(flag, shown, "expected 1-loguniform(low,high) with 0 < low < high <= 1 (values 1 - x)")
    return dist


def product(name: str, axes: Mapping[str, Sequence[float]]) -> OptimizerConfig:
    """The Cartesian product of the axes as one grid (first axis slowest, like ``itertools.product``)."""
    return OptimizerConfig.make(name, **{k: list(v) for k, v in product_lists(axes).items()})


def product_lists(axes: Mapping[str, Sequence[float]]) -> dict[str, tuple[float, ...]]:
    """The Cartesian product of the axes as one value list per name (``{}`` for no axes)."""
    keys = list(axes)
    points = list(itertools.product(*(tuple(axes[k]) for k in keys)))
    return {k: tuple(p[i] for p in points) for i, k in enumerate(keys)}


def trial_seed(root_seed: int, name: str) -> int:
    """The seed of one optimizer's trials: from the root seed and the optimizer's name (crc32, stable
    across processes, unlike ``hash``), so adding an optimizer does not change another's trials."""
    return int(np.random.SeedSequence([int(root_seed), zlib.crc32(name.encode())]).generate_state(1)[0])


def unit_points(method: str, trials: int, dims: int, seed: int) -> np.ndarray:
    """``trials x dims`` points in [0, 1): i.i.d. uniform (random) or a scrambled Sobol sequence."""
    check_choice("--search", method, METHODS)
    trials = check_int("--trials", trials, 1, MAX_TRIALS)
    rng = np.random.default_rng(seed)
    if method == "random":
        return rng.random((trials, dims))
    with warnings.catch_warnings():  # trials not a power of 2: the first `trials` points, balance not exact
        warnings.filterwarnings("ignore", message=".*balance properties of Sobol.*")
        return scipy.stats.qmc.Sobol(dims, scramble=True, rng=rng).random(trials)


def sample(space: Mapping[str, Dist], method: str, trials: int, seed: int) -> dict[str, tuple[float, ...]]:
    """``trials`` points of ``space`` (axes in the mapping's order), as float64 value tuples."""
    keys = list(space)
    u = unit_points(method, trials, max(len(keys), 1), seed)
    out = {}
    for j, key in enumerate(keys):
        kind, args = space[key]
        if kind in LOG_KINDS:
            lo, hi = math.log(args[0]), math.log(args[1])
            v = np.exp(lo + u[:, j] * (hi - lo))
            v = 1.0 - v if kind == "1-loguniform" else v
        elif kind == "uniform":
            v = args[0] + u[:, j] * (args[1] - args[0])
        else:
            v = np.asarray(args, np.float64)[np.minimum((u[:, j] * len(args)).astype(int), len(args) - 1)]
        out[key] = tuple(float(x) for x in v)
    return out


def search(name: str, space: Mapping[str, Dist], method: str, trials: int, root_seed: int) -> OptimizerConfig:
    """``trials`` points of ``space`` for optimizer ``name`` as one grid (unknown hyperparameters
    and values outside the optimizer's bounds are refused by :class:`OptimizerConfig`)."""
    return OptimizerConfig.make(name, **sample(space, method, trials, trial_seed(root_seed, name)))


def default_space(name: str) -> dict[str, Dist]:
    """Optimizer ``name``'s default search space: its registry row's ``space``, parsed (the rows'
    spaces and where their form comes from: :mod:`jaxopt_cmp.optimizers`)."""
    from jaxopt_cmp.optimizers import OPTIMIZERS

    check_choice("optimizer", name, list(OPTIMIZERS))
    return dict(parse_space(f"{k}={v}", f"{name} space") for k, v in OPTIMIZERS[name].space.items())


def _tunable(name: str, schedule: str) -> list[str]:
    from jaxopt_cmp.optimizers import OPTIMIZERS
    from jaxopt_cmp.schedules import PARAMS

    return [*OPTIMIZERS[name].defaults, *PARAMS[schedule]]


def _named(flag: str, texts: Sequence[str], parse) -> dict:
    out = {}
    for text in texts:
        name, value = parse(text, flag)
        if name in out:
            raise ConfigError(flag, text, f"expected each name once ({name} is given twice)")
        out[name] = value
    return out


def swept(
    names: Sequence[str],
    schedule: str = "constant",
    *,
    grid: Sequence[str] = (),
    space: Sequence[str] = (),
    method: str | None = None,
    trials: int | None = None,
    root_seed: int = 0,
) -> dict[str, dict[str, tuple[float, ...]]]:
    """Per optimizer, the hyperparameter lists of the ``--grid`` / ``--search`` flags (texts as
    typed): the product of the ``grid`` axes, or ``trials`` points of ``space`` (each optimizer's
    :func:`default_space` when empty) drawn by ``method`` from :func:`trial_seed`. Every named
    hyperparameter must belong to every optimizer (schedule parameters too, with a schedule); values
    are checked against the optimizer's bounds. Anything else: ``ConfigError`` naming the flag."""
    if grid and method:
        raise ConfigError("grid", " ".join(grid), "expected either --grid or --search, not both")
    if not method and (space or trials is not None):
        flag, value = ("space", " ".join(space)) if space else ("trials", trials)
        raise ConfigError(flag, value, "applies to --search random or --search sobol only")
    if method:
        check_choice("search", method, METHODS)
        trials = check_int("trials", trials, 1, MAX_TRIALS)
    axes = _named("grid", grid, parse_axis)
    dists = _named("space", space, parse_space)
    size = math.prod(len(v) for v in axes.values())
    if size > MAX_TRIALS:
        raise ConfigError(
            "grid", " ".join(grid), f"expected a product grid of at most {MAX_TRIALS:,} points, got {size:,}"
        )
    flag, given = ("grid", axes) if grid else ("space", dists)
    out = {}
    for name in names:
        allowed = _tunable(name, schedule)
        for key in given:
            if key not in allowed:
                text = " ".join(grid or space)
                raise ConfigError(flag, text, f"{name} has no hyperparameter {key} (it has {', '.join(allowed)})")
        if grid:
            hp = product_lists(axes)
        elif method:
            hp = sample(dists or default_space(name), method, trials, trial_seed(root_seed, name))
        else:
            hp = {}
        try:
            OptimizerConfig.make(name, schedule, **hp)
        except ConfigError as err:
            what = " ".join(grid or space) or f"{name}'s default space"
            raise ConfigError(flag, what, f"{name}: {err.setting}={err.value}: {err.allowed}") from None
        out[name] = hp
    return out

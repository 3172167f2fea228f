"""Frozen, validated configuration: the static structure of a run or study.

Every setting a user can give is checked here, once, when the dataclass is built, so the library
API and every script share one set of rules and fail before anything compiles.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from jaxopt_cmp.activations import ACTIVATIONS
from jaxopt_cmp.checks import ConfigError, check_choice, check_int, check_real, is_int
from jaxopt_cmp.optimizers import OPTIMIZERS, check_hparams
from jaxopt_cmp.schedules import DEFAULTS as SCHEDULE_DEFAULTS
from jaxopt_cmp.schedules import check_schedule
from jaxopt_cmp.targets import TARGETS

DTYPES = ("float32", "float64")
MAX_INT32 = 2**31 - 1
MAX_SEED = 2**32 - 1


def check_representable(opt: OptimizerConfig, dtype: str) -> None:
    """Every grid value keeps its meaning in the run dtype: no overflow to inf, no underflow to 0
    (``lr=1e-320`` is 0 in float32 and would train nothing), and the value *as it runs* stays
    inside the hyperparameter's bounds (``momentum=0.999999999`` is 1.0 in float32); so does
    every registered default the grid does not sweep (a default ``eps=1e-320`` would run as 0)."""
    info = np.finfo(dtype)
    tiny, top = float(info.tiny), float(info.max)
    swept = dict(opt.hparams)
    row = OPTIMIZERS.get(opt.name)
    defaults, bounds = (row.defaults, row.bounds) if row is not None else ({}, {})
    named = [(key, key, values) for key, values in opt.hparams]
    named += [(f"{opt.name} default {key}", key, (v,)) for key, v in defaults.items() if key not in swept]
    for label, key, values in named:
        for v in values:
            if v != 0 and not (tiny <= abs(v) <= top):
                raise ConfigError(label, v, f"expected 0 or a magnitude in [{tiny:.3g}, {top:.3g}] ({dtype})")
            if key in bounds:
                _check_as_run(label, v, dtype, bounds[key])


def _check_as_run(label: str, v: float, dtype: str, interval) -> None:
    """``v`` rounded to ``dtype`` (the value the run uses) is inside ``interval``."""
    ran = float(np.asarray(v, dtype))
    low, high, low_open, high_open = interval
    try:
        check_real(label, ran, low, high, low_open=low_open, high_open=high_open)
    except ConfigError as err:
        raise ConfigError(label, v, f"it runs as {ran!r} in {dtype}; {err.allowed}") from None


@dataclass(frozen=True)
class DataConfig:
    """The regression data: ``y = target(x) + noise_std * N(0, 1)``, ``x ~ U[x_low, x_high]^d``
    (``d``: the target's input dimension, :data:`jaxopt_cmp.targets.XDIM`).

    Held-out sets (:mod:`jaxopt_cmp.data`): generated data gets ``n_val`` validation points drawn
    like the training data (their own key and noise) and a test grid of ``n_test`` evenly spaced
    points with the noise-free target (2-D targets: the ``m x m`` grid of ``m = isqrt(n_test)``).
    User data (``source``) is split instead: ``val_fraction`` and ``test_fraction`` of its rows are
    held out (seeded); ``n_data`` counts the training rows.
    """

    target: str = "seed"
    n_data: int = 10_000
    x_low: float = -3.0
    x_high: float = 3.0
    noise_std: float = 0.03
    source: str = ""  # "" = generated from ``target``; else where user-supplied data came from
    n_val: int = 2000
    n_test: int = 2000
    val_fraction: float = 0.0
    test_fraction: float = 0.0

    def __post_init__(self):
        check_choice("target", self.target, sorted(TARGETS))
        object.__setattr__(self, "n_data", check_int("n_data", self.n_data, high=MAX_INT32))
        object.__setattr__(self, "x_low", check_real("x_low", self.x_low, -1e6, 1e6))
        object.__setattr__(self, "x_high", check_real("x_high", self.x_high, self.x_low, 1e6, low_open=True))
        object.__setattr__(self, "noise_std", check_real("noise_std", self.noise_std, 0.0, 1e6))
        for name in ("n_val", "n_test"):
            object.__setattr__(self, name, check_int(name, getattr(self, name), high=MAX_INT32))
        for name in ("val_fraction", "test_fraction"):
            object.__setattr__(self, name, check_real(name, getattr(self, name), 0.0, 1.0, high_open=True))
        if self.val_fraction + self.test_fraction >= 1:
            allowed = f"expected val_fraction + test_fraction < 1 (val_fraction is {self.val_fraction})"
            raise ConfigError("test_fraction", self.test_fraction, allowed)


@dataclass(frozen=True)
class ModelConfig:
    """An MLP ``xdim -> hidden[0] -> ... -> ydim``, ``activation`` after each hidden layer
    (:mod:`jaxopt_cmp.activations`; tanh: the seed's network)."""

    xdim: int = 1
    hidden: tuple[int, ...] = (64, 64)
    ydim: int = 1
    activation: str = "tanh"

    def __post_init__(self):
        check_choice("activation", self.activation, tuple(ACTIVATIONS))
        object.__setattr__(self, "xdim", check_int("xdim", self.xdim))
        object.__setattr__(self, "ydim", check_int("ydim", self.ydim, high=1))
        hidden = tuple(self.hidden) if isinstance(self.hidden, (list, tuple)) else self.hidden
        if not isinstance(hidden, tuple) or not hidden or not all(is_int(h) and h >= 1 for h in hidden):
            raise ConfigError("hidden", self.hidden, "expected a non-empty list of positive integers")
        object.__setattr__(self, "hidden", tuple(int(h) for h in hidden))


@dataclass(frozen=True)
class TrainConfig:
    """The training loop: ``iters`` minibatch steps, full-data MSE every ``eval_every`` steps."""

    iters: int = 10_000
    batch_size: int = 64
    eval_every: int = 500
    dtype: str = "float32"

    def __post_init__(self):
        # Steps are counted in int32 inside the compiled run.
        for name in ("iters", "batch_size", "eval_every"):
            object.__setattr__(self, name, check_int(name, getattr(self, name), high=MAX_INT32))
        # np.dtype("float32") == "float32", but it is not a string: saved results could not name it.
        check_choice("dtype", self.dtype if isinstance(self.dtype, str) else repr(self.dtype), DTYPES)

    @property
    def n_evals(self) -> int:
        """Number of evaluation steps (computed without listing them)."""
        return self.iters // self.eval_every + 1 + (self.iters % self.eval_every != 0)

    @property
    def eval_steps(self) -> tuple[int, ...]:
        """Steps (updates done) at which the full-data MSE is recorded: 0, every interval, last."""
        steps = list(range(0, self.iters + 1, self.eval_every))
        if steps[-1] != self.iters:
            steps.append(self.iters)
        return tuple(steps)


def _axis(value) -> tuple | None:
    """A grid axis (list, tuple, or array of one or more dimensions) as a tuple; None for one value."""
    if isinstance(value, (list, tuple)):
        return tuple(value)
    return tuple(np.asarray(value).tolist()) if getattr(value, "ndim", 0) >= 1 else None


@dataclass(frozen=True)
class OptimizerConfig:
    """One optimizer and its hyperparameters.

    ``hparams`` holds ``(name, values)`` pairs; every ``values`` tuple has the same length H, the
    number of grid points (H = 1 for a single run). Hyperparameters not given take the registry's
    defaults. Build it with :meth:`make`.
    """

    name: str
    hparams: tuple[tuple[str, tuple[float, ...]], ...] = ()
    schedule: str = "constant"  # static (jaxopt_cmp.schedules); its parameters live in hparams

    @classmethod
    def make(cls, name: str, schedule: str = "constant", **hparams: float | Sequence[float]) -> OptimizerConfig:
        """``make("momentum", lr=[1e-2, 3e-2], momentum=0.9)``: lists are the grid (all of one
        length H); a single value is used at every grid point. ``schedule="cosine", warmup=[0, 500]``:
        the schedule's parameters are grid axes like lr (:mod:`jaxopt_cmp.schedules`). A 1-d array
        (numpy, jax) is a list."""
        lists = {k: axis for k, v in hparams.items() if (axis := _axis(v)) is not None}
        h = max((len(v) for v in lists.values()), default=1) or 1  # unequal lengths: refused below
        pairs = tuple((k, lists[k] if k in lists else (v,) * h) for k, v in sorted(hparams.items()))
        return cls(name, pairs, schedule)

    def __post_init__(self):
        if not isinstance(self.hparams, (tuple, list)):
            raise ConfigError(f"{self.name} hyperparameters", self.hparams, "expected (name, values) pairs")
        pairs = dict(self.hparams)
        sched = {k: pairs.pop(k) for k in SCHEDULE_DEFAULTS if k in pairs}
        check_schedule(self.schedule, {})
        for k, values in sched.items():
            if not values:
                raise ConfigError(k, values, "expected at least one value")
            for v in values:
                check_schedule(self.schedule, {k: v})
        check_hparams(self.name, pairs)
        if len({len(v) for v in dict(self.hparams).values()}) > 1:
            raise ConfigError(f"{self.name} grid", dict(self.hparams), "expected every swept value list of one length")
        object.__setattr__(self, "hparams", tuple((k, tuple(float(x) for x in v)) for k, v in self.hparams))

    @property
    def grid_size(self) -> int:
        return len(self.hparams[0][1]) if self.hparams else 1

    @classmethod
    def saved(
        cls, name: str, grid: Mapping[str, Sequence[float]], schedule: str = "constant", given: Mapping | None = None
    ) -> OptimizerConfig:
        """A config read back from saved results, whose ``grid`` holds every hyperparameter's values
        as they ran. Where today's registry takes exactly these hyperparameters, it is a checked
        config: ``given`` (the saved config's own pairs; default none) plus every value
        that today's defaults would change, so it trains what was saved in any process. Otherwise
        (not, or no longer so, registered) it is checked only for being finite numbers of one grid
        length, so the results still load and re-render; it cannot be trained."""
        grid = {k: tuple(v) for k, v in grid.items()}
        if name in OPTIMIZERS:
            try:
                return cls._pinned(name, grid, schedule, given or {})
            except ConfigError:
                pass
        pairs = tuple((k, tuple(check_real(k, x, -math.inf, math.inf) for x in v)) for k, v in sorted(grid.items()))
        if len({len(v) for _, v in pairs}) > 1:
            raise ConfigError(f"{name} grid", dict(grid), "expected every swept value list of one length")
        opt = object.__new__(cls)
        object.__setattr__(opt, "name", str(name))
        object.__setattr__(opt, "hparams", pairs)
        object.__setattr__(opt, "schedule", str(schedule))
        return opt

    @classmethod
    def _pinned(cls, name: str, grid: Mapping, schedule: str, given: Mapping) -> OptimizerConfig:
        now = cls(name, tuple((k, tuple(v)) for k, v in sorted(given.items())), schedule).grid()
        if set(now) != set(grid):
            raise ConfigError(f"{name} grid", sorted(grid), f"today's {name} takes {', '.join(sorted(now))}")
        ran = {k: tuple(float(x) for x in v) for k, v in grid.items()}
        pinned = {**dict(given), **{k: v for k, v in ran.items() if now[k] != v}}
        return cls(name, tuple((k, tuple(v)) for k, v in sorted(pinned.items())), schedule)

    def grid(self) -> dict[str, tuple[float, ...]]:
        """Every hyperparameter (defaults included) as a length-H tuple of the user's values."""
        h = self.grid_size
        defaults = OPTIMIZERS[self.name].defaults if self.name in OPTIMIZERS else {}
        full = {k: (float(v),) * h for k, v in defaults.items()}
        if self.schedule != "constant":
            full.update({k: (float(v),) * h for k, v in SCHEDULE_DEFAULTS.items()})
        full.update(dict(self.hparams))
        return full


def _default_optimizers() -> tuple[OptimizerConfig, ...]:
    return tuple(OptimizerConfig.make(n, lr=1e-2) for n in ("sgd", "momentum", "adam"))


@dataclass(frozen=True)
class StudyConfig:
    """Everything a run needs: optimizers (each with an H-point grid) x ``seeds`` seeds.

    Seed ``i`` of a study uses ``fold_in(key(seed), seed_offset + i)``, which sets its data noise,
    initial weights and batch stream; every optimizer and grid point of that seed shares them
    (paired). ``seed_offset`` (the global index of this study's first seed, 0 unless it is one
    shard of a larger study: :mod:`jaxopt_cmp.shards`) makes a shard's seeds the same seeds as in
    the whole study.
    """

    optimizers: tuple[OptimizerConfig, ...] = field(default_factory=_default_optimizers)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    seed: int = 0
    seeds: int = 1
    record_predictions: bool = True
    seed_offset: int = 0

    def __post_init__(self):
        opts = self.optimizers
        opts = (opts,) if isinstance(opts, (str, OptimizerConfig)) else opts
        if not isinstance(opts, (list, tuple)) or not all(isinstance(o, (str, OptimizerConfig)) for o in opts):
            raise ConfigError("optimizers", opts, "expected a list of OptimizerConfig or registry names")
        object.__setattr__(
            self, "optimizers", tuple(OptimizerConfig.make(o) if isinstance(o, str) else o for o in opts)
        )
        for section, kind in (("data", DataConfig), ("model", ModelConfig), ("train", TrainConfig)):
            if not isinstance(getattr(self, section), kind):
                raise ConfigError(section, getattr(self, section), f"expected a {kind.__name__}")
        if not isinstance(self.record_predictions, (bool, np.bool_)):
            raise ConfigError("record_predictions", self.record_predictions, "expected True or False")
        object.__setattr__(self, "record_predictions", bool(self.record_predictions))
        if not self.optimizers:
            raise ConfigError("optimizers", (), "expected at least one optimizer")
        names = [o.name for o in self.optimizers]
        if len(set(names)) != len(names):
            raise ConfigError("optimizers", ",".join(names), "expected each optimizer at most once")
        # jax.random.key takes 32 bits: larger seeds would silently alias smaller ones.
        object.__setattr__(self, "seed", check_int("seed", self.seed, low=0, high=MAX_SEED))
        object.__setattr__(self, "seeds", check_int("seeds", self.seeds, high=MAX_INT32))
        offset = check_int("seed_offset", self.seed_offset, low=0, high=MAX_INT32 - self.seeds)
        object.__setattr__(self, "seed_offset", offset)  # seed indices are int32 in the compiled run
        for o in self.optimizers:
            check_representable(o, self.train.dtype)
            for w in dict(o.hparams).get("warmup", ()):
                if w >= self.train.iters:
                    raise ConfigError("warmup", int(w), f"expected less than iters={self.train.iters}")
        if self.train.batch_size > self.data.n_data:
            raise ConfigError("batch_size", self.train.batch_size, f"expected at most n_data={self.data.n_data}")

    @property
    def optimizer_names(self) -> tuple[str, ...]:
        return tuple(o.name for o in self.optimizers)


_SECTIONS = {
    "data": ("target", "n_data", "x_low", "x_high", "noise_std", "source")
    + ("n_val", "n_test", "val_fraction", "test_fraction"),
    "model": ("xdim", "hidden", "ydim", "activation"),
    "train": ("iters", "batch_size", "eval_every", "dtype"),
}


def seed_study(**settings) -> StudyConfig:
    """The seed study (``StudyConfig()``) with flat settings replaced, e.g.
    ``seed_study(iters=300, seeds=8, hidden=(16,), optimizers=("sgd", "adam"), lr=1e-3)``.

    The one way scripts, benchmarks and tests build a config from presets. ``optimizers`` takes
    registry names or :class:`OptimizerConfig`; ``lr`` (a value or a list: a grid) applies to
    every optimizer given by name. Every other key names a field of a config section (``iters``,
    ``n_data``, ``hidden``, ...) or of :class:`StudyConfig` itself (``seed``, ``seeds``, ...).
    """
    from dataclasses import fields, replace

    lr = settings.pop("lr", None)
    names = settings.pop("optimizers", None)
    names = (names,) if isinstance(names, (str, OptimizerConfig)) else names  # one optimizer, not its letters
    if names is not None or lr is not None:
        names = names if names is not None else StudyConfig().optimizer_names
        hp = {} if lr is None else {"lr": lr}
        settings["optimizers"] = tuple(
            o if isinstance(o, OptimizerConfig) else OptimizerConfig.make(o, **hp) for o in names
        )
    base = StudyConfig()
    parts = {}
    for section, keys in _SECTIONS.items():
        given = {k: settings.pop(k) for k in keys if k in settings}
        parts[section] = replace(getattr(base, section), **given)
    top = {f.name for f in fields(StudyConfig)} - set(_SECTIONS)
    unknown = sorted(set(settings) - top)
    if unknown:
        raise ConfigError("setting", unknown[0], "expected a field of StudyConfig or of its sections")
    return replace(base, **parts, **settings)


def to_dict(cfg) -> dict:
    """A JSON-ready dict of a (nested) config dataclass."""
    from dataclasses import asdict

    return asdict(cfg)


def study_from_dict(d: Mapping, grids: Mapping[str, Mapping] | None = None) -> StudyConfig:
    """Inverse of :func:`to_dict` for :class:`StudyConfig` (validates again). With ``grids``
    (optimizer -> every hyperparameter's values, as saved results hold them) optimizers load
    through :meth:`OptimizerConfig.saved`, registered or not."""

    def optimizer(o):
        schedule = o.get("schedule", "constant")  # results saved before schedules: constant
        given = tuple((k, tuple(v)) for k, v in o["hparams"])
        if grids is not None and o["name"] in grids:  # the values that ran, not today's defaults
            return OptimizerConfig.saved(o["name"], grids[o["name"]], schedule, dict(given))
        return OptimizerConfig(o["name"], given, schedule)

    return StudyConfig(
        optimizers=tuple(optimizer(o) for o in d["optimizers"]),
        data=DataConfig(**d["data"]),
        model=ModelConfig(**{**d["model"], "hidden": tuple(d["model"]["hidden"])}),
        train=TrainConfig(**d["train"]),
        seed=d["seed"],
        seeds=d["seeds"],
        record_predictions=d["record_predictions"],
        seed_offset=d.get("seed_offset", 0),  # results saved before shards: 0
    )

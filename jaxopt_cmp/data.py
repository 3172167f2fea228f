"""Data: an explicit key -> the seed study's regression set, its held-out sets, and the minibatch
index stream.

Held-out sets. Generated data: a seed's *validation* set is ``n_val`` points drawn like its
training data from ``fold_in(seed key, VAL_STREAM)`` (the training data, initial weights and
batches keep the key split they always had); the *test* set is ``n_test`` evenly spaced points of
``[x_low, x_high]`` with the noise-free target, the same for every seed. User data: the rows are
split by :func:`split_user_data`, seeded by the study's seed.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxopt_cmp.checks import ConfigError
from jaxopt_cmp.config import DataConfig
from jaxopt_cmp.targets import TARGETS, target_xdim


class Data(NamedTuple):
    """A regression set: inputs ``(N, d)`` and targets ``(N, 1)`` (``d = 1`` for most targets)."""

    x: jax.Array
    y: jax.Array


# A seed's validation key is fold_in(seed key, VAL_STREAM): "val" in ASCII, far from the stream
# numbers a split of the key would use.
VAL_STREAM = 0x76616C
# The user-data split's generator: numpy's SeedSequence of (study seed, SPLIT_STREAM).
SPLIT_STREAM = 0x73706C  # "spl"


def make_data(key: jax.Array, cfg: DataConfig, dtype=jnp.float32, n: int | None = None) -> Data:
    """``x ~ U[x_low, x_high]^d`` ``(n, d)``, ``y = target(x) + noise_std * N(0, 1)`` ``(n, 1)``
    (default ``n_data`` points; ``d`` the target's input dimension)."""
    key_x, key_noise = jax.random.split(key)
    shape = (cfg.n_data if n is None else n, 1)
    x = jax.random.uniform(key_x, (shape[0], target_xdim(cfg.target)), dtype, cfg.x_low, cfg.x_high)
    noise = jax.random.normal(key_noise, shape, dtype)
    return Data(x, TARGETS[cfg.target](x) + jnp.asarray(cfg.noise_std, dtype) * noise)


def make_val(seed_key: jax.Array, cfg: DataConfig, dtype=jnp.float32) -> Data:
    """A seed's validation set: ``n_val`` points drawn like its training data from their own key."""
    return make_data(jax.random.fold_in(seed_key, VAL_STREAM), cfg, dtype, cfg.n_val)


def make_test(cfg: DataConfig, dtype=jnp.float32) -> Data:
    """The test set: :func:`test_inputs` (cast) and the noise-free target. No key: the same for
    every seed."""
    x = jnp.asarray(test_inputs(cfg), dtype)
    return Data(x, TARGETS[cfg.target](x))


def test_inputs(cfg: DataConfig) -> np.ndarray:
    """``(n_test, d)`` float64: ``n_test`` evenly spaced x in ``[x_low, x_high]`` (endpoints
    included); for a 2-D target the ``m x m`` grid of ``m = isqrt(n_test)`` such values per axis
    (``n_test`` rounded down to a square), first coordinate slowest (row ``i * m + j`` is
    ``(g[i], g[j])``)."""
    if target_xdim(cfg.target) == 1:
        return np.linspace(cfg.x_low, cfg.x_high, cfg.n_test).reshape(-1, 1)
    g = np.linspace(cfg.x_low, cfg.x_high, math.isqrt(cfg.n_test))
    u, v = np.meshgrid(g, g, indexing="ij")
    return np.stack([u.ravel(), v.ravel()], axis=1)


def heldout_rows(rows: int, cfg: DataConfig) -> tuple[int, int, int]:
    """``(train, val, test)`` row counts of ``rows`` user rows: each fraction of the rows rounded
    to the nearest integer (at least one row for a fraction above 0), the rest train."""
    held = [max(1, round(f * rows)) if f > 0 else 0 for f in (cfg.val_fraction, cfg.test_fraction)]
    return rows - sum(held), held[0], held[1]


def split_user_data(data: Data, cfg: DataConfig, seed: int) -> tuple[Data, Data | None, Data | None]:
    """``(train, val, test)`` of user rows: a permutation drawn from numpy's
    ``SeedSequence((seed, SPLIT_STREAM))`` gives its first ``test`` rows to the test set, the next
    ``val`` rows to validation and the rest to training, each kept in file order (with both
    fractions 0 the training rows are the file's, in order; val and test are None)."""
    rows = int(np.shape(data.x)[0])
    _, n_val, n_test = heldout_rows(rows, cfg)
    if n_val == n_test == 0:
        return data, None, None
    order = np.random.default_rng(np.random.SeedSequence((int(seed), SPLIT_STREAM))).permutation(rows)
    parts = np.split(order, [n_test, n_test + n_val])
    take = lambda idx: Data(data.x[np.sort(idx)], data.y[np.sort(idx)]) if idx.size else None
    test, val, train = (take(idx) for idx in parts)
    return train, val, test


def data_from_arrays(x, y, source: str = "arrays", dtype=None) -> Data:
    """Wraps user-supplied arrays as ``(N, d)``/``(N, 1)`` data after checking kind, shape and
    finiteness; with ``dtype`` the arrays are cast first and checked after the cast (``1e39`` is
    finite as float64 but inf as float32)."""
    x, y = np.asarray(x), np.asarray(y)
    for name, arr in (("x", x), ("y", y)):
        if arr.dtype.kind not in "biuf":
            raise ConfigError("data", source, f"{name} has dtype {arr.dtype}; expected real numbers")
    x = x.reshape(-1, 1) if x.ndim == 1 else x
    y = y.reshape(-1, 1) if y.ndim == 1 else y
    if x.ndim != 2 or y.shape != (x.shape[0], 1):
        raise ConfigError("data", source, f"got x{x.shape}, y{y.shape}; expected x (N, d) and y (N,) or (N, 1)")
    if x.shape[0] == 0:
        raise ConfigError("data", source, "holds no rows; expected at least one (x, y) pair")
    if dtype is not None:
        with np.errstate(over="ignore"):
            x, y = x.astype(dtype), y.astype(dtype)
    for name, arr in (("x", x), ("y", y)):
        if not np.all(np.isfinite(arr)):
            bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
            where = f" as {np.dtype(dtype).name}" if dtype is not None else ""
            raise ConfigError(
                "data", source, f"{name} holds {bad} NaN/inf value(s){where}; expected finite numbers only"
            )
    return Data(x, y)


def check_user_data(data: Data, cfg) -> Data:
    """The checks of :func:`data_from_arrays` in the run dtype, plus agreement with ``cfg``:
    ``n_data`` is the number of training rows left after the held-out fractions (at least a
    batch: :class:`jaxopt_cmp.config.StudyConfig` checks that)."""
    checked = data_from_arrays(np.asarray(data.x), np.asarray(data.y), "data", cfg.train.dtype)
    rows = checked.x.shape[0]
    train, val, test = heldout_rows(rows, cfg.data)
    if train != cfg.data.n_data:
        what = f"the supplied data's {rows} rows less {val + test} held out" if val or test else "the data's size"
        raise ConfigError("n_data", cfg.data.n_data, f"expected {train}, {what}")
    if checked.x.shape[1] != cfg.model.xdim:
        raise ConfigError("xdim", cfg.model.xdim, f"expected {checked.x.shape[1]}, the supplied data's width")
    return checked


def load_data_file(path: str, dtype=None) -> Data:
    """User data from ``.npz`` (arrays ``x`` and ``y``) or text/CSV (two columns x, y), checked
    (after a cast to ``dtype`` when given). Suffixes are matched case-insensitively."""
    import os
    import warnings

    if not os.path.isfile(path):
        raise ConfigError("data", path, "expected an existing .npz, .csv or .txt file")
    suffix = os.path.splitext(path)[1].lower()
    try:
        if suffix == ".npz":
            from jaxopt_cmp.io import read_npz

            z = read_npz(path)
            x, y = z["x"], z["y"]
        else:
            with warnings.catch_warnings():  # an empty file: refused below with one line
                warnings.simplefilter("ignore", UserWarning)
                table = np.loadtxt(path, delimiter="," if suffix == ".csv" else None, ndmin=2)
            if table.size == 0:
                raise ValueError("no rows")
            if table.shape[1] != 2:
                raise ValueError(f"{table.shape[1]} columns")
            x, y = table[:, 0], table[:, 1]
    except (KeyError, ValueError, OSError, EOFError) as err:
        raise ConfigError("data", path, f"expected arrays x and y, or two numeric columns ({err})") from None
    return data_from_arrays(x, y, path, dtype)


def batch_indices(key: jax.Array, steps: jax.Array, n_data: int, batch_size: int) -> jax.Array:
    """Minibatch indices ``(len(steps), batch_size)`` for the given step numbers.

    The batch of step ``t`` depends only on ``(key, t)``, never on how the steps are chunked,
    so the torch side can be fed exactly the batches the JAX side trains on. Indices are drawn
    with replacement (a permutation of 10k points per step would dominate the step's cost;
    at 64 of 10,000 the chance of a repeat within a batch is ~19%, one repeat of 64). Drawn as
    int32 whatever ``jax_enable_x64`` says, so the stream does not depend on that global flag.
    """
    draw = lambda t: jax.random.randint(jax.random.fold_in(key, t), (batch_size,), 0, n_data, jnp.int32)
    return jax.vmap(draw)(steps)

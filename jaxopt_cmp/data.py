"""Data: an explicit key -> the seed study's regression set, and the minibatch index stream."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxopt_cmp.checks import ConfigError
from jaxopt_cmp.config import DataConfig
from jaxopt_cmp.targets import TARGETS


class Data(NamedTuple):
    """A regression set: ``x_N1`` inputs and ``y_N1`` targets, both ``(N, 1)``."""

    x: jax.Array
    y: jax.Array


def make_data(key: jax.Array, cfg: DataConfig, dtype=jnp.float32) -> Data:
    """``x ~ U[x_low, x_high]``, ``y = target(x) + noise_std * N(0, 1)``, both ``(n_data, 1)``."""
    key_x, key_noise = jax.random.split(key)
    shape = (cfg.n_data, 1)
    x = jax.random.uniform(key_x, shape, dtype, cfg.x_low, cfg.x_high)
    noise = jax.random.normal(key_noise, shape, dtype)
    return Data(x, TARGETS[cfg.target](x) + jnp.asarray(cfg.noise_std, dtype) * noise)


def data_from_arrays(x, y, source: str = "arrays") -> Data:
    """Wraps user-supplied arrays as ``(N, d)``/``(N, 1)`` data after checking shapes and finiteness."""
    x, y = np.asarray(x), np.asarray(y)
    x = x.reshape(-1, 1) if x.ndim == 1 else x
    y = y.reshape(-1, 1) if y.ndim == 1 else y
    if x.ndim != 2 or y.shape != (x.shape[0], 1):
        raise ConfigError("data", source, f"got x{x.shape}, y{y.shape}; expected x (N, d) and y (N,) or (N, 1)")
    for name, arr in (("x", x), ("y", y)):
        if not np.all(np.isfinite(arr)):
            bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
            raise ConfigError("data", source, f"{name} holds {bad} NaN/inf value(s); expected finite numbers only")
    return Data(x, y)


def load_data_file(path: str) -> Data:
    """User data from ``.npz`` (arrays ``x`` and ``y``) or text/CSV (two columns x, y), checked."""
    import os

    if not os.path.isfile(path):
        raise ConfigError("data", path, "expected an existing .npz, .csv or .txt file")
    try:
        if path.endswith(".npz"):
            with np.load(path) as z:
                x, y = z["x"], z["y"]
        else:
            table = np.loadtxt(path, delimiter="," if path.endswith(".csv") else None, ndmin=2)
            if table.shape[1] != 2:
                raise ValueError(f"{table.shape[1]} columns")
            x, y = table[:, 0], table[:, 1]
    except (KeyError, ValueError, OSError) as err:
        raise ConfigError("data", path, f"expected arrays x and y, or two numeric columns ({err})") from None
    return data_from_arrays(x, y, path)


def batch_indices(key: jax.Array, steps: jax.Array, n_data: int, batch_size: int) -> jax.Array:
    """Minibatch indices ``(len(steps), batch_size)`` for the given step numbers.

    The batch of step ``t`` depends only on ``(key, t)``, never on how the steps are chunked,
    so the torch side can be fed exactly the batches the JAX side trains on. Indices are drawn
    with replacement (a permutation of 10k points per step would dominate the step's cost;
    at 64 of 10,000 the chance of a repeat within a batch is ~19%, one repeat of 64).
    """
    draw = lambda t: jax.random.randint(jax.random.fold_in(key, t), (batch_size,), 0, n_data)
    return jax.vmap(draw)(steps)

"""Data from an explicit ``torch.Generator``: the seed study's regression set, its held-out sets
and batch stream (as ``jaxopt_cmp.data``)."""

from __future__ import annotations

import torch

from jaxopt_cmp.config import DataConfig
from jaxopt_cmp.data import test_inputs
from jaxopt_cmp.targets import TARGETS, target_xdim


def make_data(generator: torch.Generator, cfg: DataConfig, dtype=torch.float32, n: int | None = None):
    """``(x, y)``, ``(n, d)`` and ``(n, 1)`` (default ``n_data``): ``x ~ U[x_low, x_high]^d``,
    ``y = f(x) + noise_std N(0, 1)``; a validation set is ``n=cfg.n_val`` from its own generator.

    ``f`` is ``jaxopt_cmp.targets.TARGETS[cfg.target]`` evaluated with ``torch`` as the array
    namespace, so both frameworks compute the very same formula.
    """
    shape = (cfg.n_data if n is None else n, 1)
    xshape = (shape[0], target_xdim(cfg.target))
    x = cfg.x_low + (cfg.x_high - cfg.x_low) * torch.rand(xshape, generator=generator, dtype=dtype)
    noise = torch.randn(shape, generator=generator, dtype=dtype)
    return x, TARGETS[cfg.target](x, torch) + cfg.noise_std * noise


def make_test(cfg: DataConfig, dtype=torch.float32):
    """The test set ``(x, y)``: the JAX side's float64 test inputs
    (:func:`jaxopt_cmp.data.test_inputs`), cast, and the noise-free target."""
    x = torch.from_numpy(test_inputs(cfg)).to(dtype)
    return x, TARGETS[cfg.target](x, torch)


def batch_indices(generator: torch.Generator, n_data: int, batch_size: int) -> torch.Tensor:
    """One minibatch of distinct indices, ``randperm(n_data)[:batch_size]`` as in the seed."""
    return torch.randperm(n_data, generator=generator)[:batch_size]

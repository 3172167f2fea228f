"""Data from an explicit ``torch.Generator``: the seed study's regression set and batch stream."""

from __future__ import annotations

import torch

from jaxopt_cmp.config import DataConfig
from jaxopt_cmp.targets import TARGETS


def make_data(generator: torch.Generator, cfg: DataConfig, dtype=torch.float32):
    """``(x, y)``, both ``(n_data, 1)``: ``x ~ U[x_low, x_high]``, ``y = f(x) + noise_std N(0, 1)``.

    ``f`` is ``jaxopt_cmp.targets.TARGETS[cfg.target]`` evaluated with ``torch`` as the array
    namespace, so both frameworks compute the very same formula.
    """
    shape = (cfg.n_data, 1)
    x = cfg.x_low + (cfg.x_high - cfg.x_low) * torch.rand(shape, generator=generator, dtype=dtype)
    noise = torch.randn(shape, generator=generator, dtype=dtype)
    return x, TARGETS[cfg.target](x, torch) + cfg.noise_std * noise


def batch_indices(generator: torch.Generator, n_data: int, batch_size: int) -> torch.Tensor:
    """One minibatch of distinct indices, ``randperm(n_data)[:batch_size]`` as in the seed."""
    return torch.randperm(n_data, generator=generator)[:batch_size]

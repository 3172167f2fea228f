"""The seed's MLP in Flax linen, with PyTorch's ``kaiming_normal_`` initialisation."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxopt_cmp.activations import ACTIVATIONS
from jaxopt_cmp.config import ModelConfig

Params = Any  # a pytree {"dense_0": {"kernel", "bias"}, ...}


def torch_kaiming_normal() -> nn.initializers.Initializer:
    """torch's ``kaiming_normal_`` (a=0, fan_in): an *untruncated* normal, std ``sqrt(2/fan_in)``.

    Flax's ``kaiming_normal``/``he_normal`` draw from a truncated normal and so differ in the
    tails; the kernel is ``(in, out)``, so fan_in is axis -2 as in ``variance_scaling``'s default.
    """
    return nn.initializers.variance_scaling(2.0, "fan_in", "normal")


class MLP(nn.Module):
    """``Dense -> activation`` per hidden size, then a linear ``Dense(ydim)``; biases start at zero."""

    hidden: tuple[int, ...]
    ydim: int
    dtype: Any = jnp.float32
    activation: str = "tanh"

    @nn.compact
    def __call__(self, x):
        dense = lambda i, n: nn.Dense(
            n,
            kernel_init=torch_kaiming_normal(),
            dtype=self.dtype,
            param_dtype=self.dtype,
            name=f"dense_{i}",
        )
        for i, width in enumerate(self.hidden):
            x = ACTIVATIONS[self.activation](dense(i, width)(x))
        return dense(len(self.hidden), self.ydim)(x)


def make_model(cfg: ModelConfig, dtype=jnp.float32) -> MLP:
    return MLP(cfg.hidden, cfg.ydim, dtype, cfg.activation)


def init_params(key: jax.Array, cfg: ModelConfig, dtype=jnp.float32) -> Params:
    """Fresh parameters (the ``"params"`` collection only) for a ``(1, xdim)`` input."""
    return make_model(cfg, dtype).init(key, jnp.zeros((1, cfg.xdim), dtype))["params"]


def mse(pred: jax.Array, target: jax.Array) -> jax.Array:
    """Mean squared error; refuses shapes that would broadcast ((N, 1) vs (N,) gives (N, N))."""
    if pred.shape != target.shape:
        raise ValueError(f"mse: prediction shape {pred.shape} != target shape {target.shape}")
    return jnp.mean((pred - target) ** 2)


def count_params(params: Params) -> int:
    return sum(int(np.prod(p.shape)) for p in jax.tree_util.tree_leaves(params))


def param_rows(params: Params, n_first: int = 5) -> list[tuple[str, tuple[int, ...], np.ndarray]]:
    """``(name, shape, first values)`` per array, layer by layer, kernel before bias."""
    rows = []
    for layer in sorted(params, key=lambda k: int(k.rsplit("_", 1)[1])):
        for leaf in ("kernel", "bias"):
            arr = np.asarray(params[layer][leaf])
            rows.append((f"{layer}.{leaf}", arr.shape, arr.reshape(-1)[:n_first]))
    return rows

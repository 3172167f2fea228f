"""The seed's MLP in PyTorch: ``Linear -> Tanh`` (or another activation) per hidden size, then
``Linear``; Kaiming init."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from jaxopt_cmp.config import ModelConfig


class Sin(nn.Module):
    """``sin(x)`` as a module (torch has none)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sin(x)


# Mirrors jaxopt_cmp.activations.ACTIVATIONS; GELU exact (erf), as the JAX side names it.
ACTIVATIONS = {
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
    "gelu": lambda: nn.GELU(approximate="none"),
    "silu": nn.SiLU,
    "sin": Sin,
}


class MLP(nn.Module):
    """``xdim -> hidden[0] -> ... -> ydim`` MLP (tanh: the seed's); layers live in ``net`` as in the seed.

    Module names follow the seed notebook, ``f"{type}_{index:02d}"`` inside ``net``:
    ``linear_00, tanh_01, linear_02, tanh_03, linear_04`` for two hidden layers (another
    activation's name in place of ``tanh``). Layers are built
    without torch's default initialisation (which draws from the global RNG): weights come from
    :func:`init_params` with an explicit generator, else they are NaN until weights are copied in.
    """

    def __init__(
        self,
        xdim: int,
        hidden: tuple[int, ...],
        ydim: int,
        dtype=torch.float32,
        generator: torch.Generator | None = None,
        activation: str = "tanh",
    ):
        super().__init__()
        widths = (xdim, *hidden, ydim)
        self.net = nn.Sequential()
        for i, (n_in, n_out) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
            # skip_init builds on the meta device: no draw from the global RNG, memory left empty.
            linear = nn.utils.skip_init(nn.Linear, n_in, n_out, dtype=dtype)
            self.net.add_module(f"linear_{len(self.net):02d}", linear)
            if i < len(widths) - 2:
                self.net.add_module(f"{activation}_{len(self.net):02d}", ACTIVATIONS[activation]())
        if generator is None:
            with torch.no_grad():
                for p in self.parameters():
                    p.fill_(float("nan"))
        else:
            init_params(self, generator)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def make_model(cfg: ModelConfig, dtype=torch.float32, generator: torch.Generator | None = None) -> MLP:
    """The config's MLP, initialised from ``generator`` (NaN weights without one)."""
    return MLP(cfg.xdim, cfg.hidden, cfg.ydim, dtype, generator, cfg.activation)


def linears(model: MLP) -> list[tuple[str, nn.Linear]]:
    """``(name in net, layer)`` of every ``Linear``, input side first."""
    return [(name, m) for name, m in model.net.named_children() if isinstance(m, nn.Linear)]


def init_params(model: MLP, generator: torch.Generator) -> MLP:
    """In place: ``kaiming_normal_`` weights (untruncated, std ``sqrt(2/fan_in)``), zero biases."""
    for _, layer in linears(model):
        nn.init.kaiming_normal_(layer.weight, generator=generator)
        nn.init.zeros_(layer.bias)
    return model


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def param_rows(model: nn.Module, n_first: int = 5) -> list[tuple[str, tuple[int, ...], np.ndarray]]:
    """``(name, shape, first values)`` per parameter in registration order (weight before bias)."""
    return [
        (name, tuple(p.shape), p.detach().cpu().numpy().reshape(-1)[:n_first]) for name, p in model.named_parameters()
    ]


def mse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error; refuses shapes that would broadcast ((N, 1) vs (N,) gives (N, N))."""
    if pred.shape != target.shape:
        raise ValueError(f"mse: prediction shape {tuple(pred.shape)} != target shape {tuple(target.shape)}")
    return torch.mean((pred - target) ** 2)

"""Hand-written torch optimizers for registry entries ``torch.optim`` lacks.

- :class:`Lion` from the paper (Chen et al. 2023, "Symbolic Discovery of Optimization
  Algorithms", Algorithm 2): ``c = b1 m + (1-b1) g``; ``p -= lr (sign(c) + wd p)``;
  ``m = b2 m + (1-b2) g``.
- ``Optax*``: optax's own formula of an optimizer whose torch.optim version differs (the registry's
  ``*_optax`` entries), written from ``optax/_src/transform.py`` so the difference to torch can be
  run in torch too.
- :class:`NAdam`: ``torch.optim.NAdam`` with its scalar state in the parameters' dtype.

Each is elementwise and written per parameter tensor, eagerly, under ``torch.no_grad``.
"""

from __future__ import annotations

import math

import torch


class _Elementwise(torch.optim.Optimizer):
    """Base: ``_init(p, group) -> state`` once, then ``_update(p, g, state, group, t)`` per step.

    ``t`` is the 1-based step as a Python int (torch.optim keeps it in a float32 tensor).
    """

    def __init__(self, params, **defaults):
        super().__init__(params, defaults)

    def _init(self, p: torch.Tensor, group: dict) -> dict:
        raise NotImplementedError

    def _update(self, p: torch.Tensor, g: torch.Tensor, state: dict, group: dict, t: int) -> None:
        raise NotImplementedError

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state.update(self._init(p, group), step=0)
                state["step"] += 1
                self._update(p, p.grad, state, group, state["step"])
        return loss


def _check(value: float, name: str, low: float = 0.0, high: float = math.inf) -> None:
    if not low <= value < high:
        raise ValueError(f"Invalid {name}: {value}")


class Lion(_Elementwise):
    """Lion (EvoLved Sign Momentum), Chen et al. 2023, Algorithm 2; defaults from the paper's code.

    The weight decay is decoupled and scaled by lr, as in the paper and ``optax.lion``.
    """

    def __init__(self, params, lr=1e-4, betas=(0.9, 0.99), weight_decay=0.0):
        _check(lr, "lr")
        _check(betas[0], "beta1", high=1.0)
        _check(betas[1], "beta2", high=1.0)
        _check(weight_decay, "weight_decay")
        super().__init__(params, lr=lr, betas=betas, weight_decay=weight_decay)

    def _init(self, p, group):
        return {"exp_avg": torch.zeros_like(p)}

    def _update(self, p, g, state, group, t):
        (b1, b2), m = group["betas"], state["exp_avg"]
        c = (1 - b1) * g + b1 * m
        p.sub_(group["lr"] * (torch.sign(c) + group["weight_decay"] * p))
        m.copy_((1 - b2) * g + b2 * m)


class _OptaxAdamFamily(_Elementwise):
    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8):
        _check(lr, "lr")
        _check(betas[0], "beta1", high=1.0)
        _check(betas[1], "beta2", high=1.0)
        _check(eps, "eps")
        super().__init__(params, lr=lr, betas=betas, eps=eps)

    def _init(self, p, group):
        return {"exp_avg": torch.zeros_like(p), "exp_avg_sq": torch.zeros_like(p)}

    @staticmethod
    def _moments(g, state, b1, b2):
        """optax's ``update_moment``: ``m = (1-b1) g + b1 m``, ``v = (1-b2) g^2 + b2 v``."""
        m, v = state["exp_avg"], state["exp_avg_sq"]
        m.copy_((1 - b1) * g + b1 * m)
        v.copy_((1 - b2) * g * g + b2 * v)
        return m, v


class OptaxAMSGrad(_OptaxAdamFamily):
    """``optax.amsgrad``: the running max of the *bias-corrected* second moment (torch: of the raw
    moment, bias-corrected afterwards)."""

    def _init(self, p, group):
        return {**super()._init(p, group), "max_exp_avg_sq": torch.zeros_like(p)}

    def _update(self, p, g, state, group, t):
        (b1, b2), eps = group["betas"], group["eps"]
        m, v = self._moments(g, state, b1, b2)
        v_max = state["max_exp_avg_sq"]
        torch.maximum(v_max, v / (1 - b2**t), out=v_max)
        p.sub_(group["lr"] * (m / (1 - b1**t)) / (v_max.sqrt() + eps))


class OptaxNAdam(_OptaxAdamFamily):
    """``optax.nadam`` (Adam with ``nesterov=True``): constant beta1,
    ``m_hat = b1 m/(1-b1^(t+1)) + (1-b1) g/(1-b1^t)``, ``p -= lr m_hat/(sqrt(v/(1-b2^t)) + eps)``."""

    def __init__(self, params, lr=2e-3, betas=(0.9, 0.999), eps=1e-8):
        super().__init__(params, lr, betas, eps)

    def _update(self, p, g, state, group, t):
        (b1, b2), eps = group["betas"], group["eps"]
        m, v = self._moments(g, state, b1, b2)
        m_hat = b1 * (m / (1 - b1 ** (t + 1))) + (1 - b1) * (g / (1 - b1**t))
        p.sub_(group["lr"] * m_hat / ((v / (1 - b2**t)).sqrt() + eps))


class OptaxRAdam(_OptaxAdamFamily):
    """``optax.radam``: eps added to the bias-corrected ``sqrt(v)``; rectified when ``rho_t >= 5``."""

    def _update(self, p, g, state, group, t):
        (b1, b2), eps = group["betas"], group["eps"]
        m, v = self._moments(g, state, b1, b2)
        rho_inf = 2 / (1 - b2) - 1
        rho_t = rho_inf - 2 * t * b2**t / (1 - b2**t)
        m_hat = m / (1 - b1**t)
        if rho_t >= 5:
            r = math.sqrt((rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t))
            p.sub_(group["lr"] * r * m_hat / ((v / (1 - b2**t)).sqrt() + eps))
        else:
            p.sub_(group["lr"] * m_hat)


class OptaxAdagrad(_Elementwise):
    """``optax.adagrad``: ``s = s + g^2`` from ``initial_accumulator_value`` (0.1),
    ``p -= lr g / sqrt(s + eps)`` (eps inside the square root; 0 where ``s`` is 0)."""

    def __init__(self, params, lr=1e-2, initial_accumulator_value=0.1, eps=1e-7):
        _check(lr, "lr")
        _check(initial_accumulator_value, "initial_accumulator_value")
        _check(eps, "eps")
        super().__init__(params, lr=lr, initial_accumulator_value=initial_accumulator_value, eps=eps)

    def _init(self, p, group):
        return {"sum": torch.full_like(p, group["initial_accumulator_value"])}

    def _update(self, p, g, state, group, t):
        s = state["sum"]
        s.add_(g * g)
        scale = torch.where(s > 0, torch.rsqrt(s + group["eps"]), torch.zeros_like(s))
        p.sub_(group["lr"] * scale * g)


class NAdam(torch.optim.NAdam):
    """``torch.optim.NAdam`` whose scalar state (``step``, ``mu_product``) has the parameters' dtype.

    torch creates that state, at the first step, in ``torch.get_default_dtype()``: float32 unless
    changed. In a float64 run ``mu_product``'s float32 rounding (~6e-8 relative) then enters every
    update, ~1e6 times float64's rounding. The first step here runs with the default dtype set to the
    parameters' (float64 only; it is restored at once), which is what ``torch.set_default_dtype(
    torch.float64)`` gives a float64 torch program.
    """

    def step(self, closure=None):
        dtype = self.param_groups[0]["params"][0].dtype
        previous = torch.get_default_dtype()
        if dtype != torch.float64 or previous == torch.float64:
            return super().step(closure)
        torch.set_default_dtype(dtype)
        try:
            return super().step(closure)
        finally:
            torch.set_default_dtype(previous)

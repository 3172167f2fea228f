"""Faster plain-torch ways to train R independent runs of the seed MLP at once (for the benchmark).

R runs of one optimizer (seeds, grid points) become one *stacked* model, and the update is
``torch.optim`` over the stacked tensors. Two ways to get every run's gradient:

- :func:`batched_step` — layer ``i`` is a weight ``(R, in, out)`` (Flax's kernel layout, so a layer
  is one ``torch.baddbmm``: ``h_RBo = b_R1o + h_RBi @ W_Rio``) and a bias ``(R, 1, out)``; one
  backward of ``sum_r mse_r``. Run r's loss depends only on run r's slice, so the gradient in that
  slice is ``d mse_r / d theta_r``.
- :func:`func_step` — ``torch.func``: ``vmap(grad_and_value(loss of one run))`` through
  ``functional_call`` of the :class:`torch_ref.model.MLP` itself, parameters stacked by
  ``stack_module_state`` (torch layout).

A stacked ``torch.optim`` step is the same per-run update as R separate optimizers exactly when
the optimizer is *elementwise*: every state entry and update entry depends only on the same entry
of the parameter and gradient (SGD, momentum, Adam). :func:`make_batched` refuses the others (a
norm- or layer-wise rule such as LARS or Lamb would mix runs). ``tests/test_bench.py`` checks
per-run equality with the eager loop, step by step, in float64.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np
import torch

from torch_ref.convert import params_from_torch
from torch_ref.model import MLP
from torch_ref.optimizers import make_optimizer

# Registry optimizers whose torch.optim update is elementwise, so stacking runs is exact.
ELEMENTWISE = ("sgd", "momentum", "adam")


class Batched(NamedTuple):
    """R runs of one optimizer: stacked ``[W0, b0, W1, b1, ...]`` and the optimizer over them."""

    params: list[torch.Tensor]
    optimizer: torch.optim.Optimizer


class FuncRuns(NamedTuple):
    """R runs of one optimizer for ``torch.func``: stacked torch-layout parameters by name."""

    params: dict[str, torch.Tensor]
    optimizer: torch.optim.Optimizer


def check_elementwise(name: str) -> None:
    if name not in ELEMENTWISE:
        raise ValueError(f"optimizer {name!r} is not known to be elementwise; stacking runs needs one of {ELEMENTWISE}")


# Stacked weights (baddbmm)


def stack_params(params_R: Sequence[dict]) -> list[torch.Tensor]:
    """Flax-layout dicts, one per run -> ``[W0 (R, in, out), b0 (R, 1, out), ...]`` leaf tensors.

    Arrays may be numpy, JAX or torch (CPU); the result is a copy in the runs' dtype.
    """
    layers = sorted(params_R[0], key=lambda k: int(k.rsplit("_", 1)[1]))
    out = []
    for layer in layers:
        kernel = np.stack([np.asarray(p[layer]["kernel"]) for p in params_R])
        bias = np.stack([np.asarray(p[layer]["bias"])[None, :] for p in params_R])
        out += [torch.from_numpy(np.array(a, order="C")).requires_grad_(True) for a in (kernel, bias)]
    return out


def stack_models(models: Sequence[MLP]) -> list[torch.Tensor]:
    """:func:`stack_params` of ``torch_ref`` models (weights copied, not shared)."""
    return stack_params([params_from_torch(m) for m in models])


def unstack(params: Sequence[torch.Tensor], r: int) -> dict[str, dict[str, np.ndarray]]:
    """Run ``r``'s weights as a Flax-layout dict of numpy arrays (inverse of :func:`stack_params`)."""
    pairs = zip(params[0::2], params[1::2])
    return {
        f"dense_{i}": {"kernel": w[r].detach().numpy().copy(), "bias": b[r, 0].detach().numpy().copy()}
        for i, (w, b) in enumerate(pairs)
    }


def forward(params: Sequence[torch.Tensor], x_RBi: torch.Tensor) -> torch.Tensor:
    """Every run's MLP on its own inputs, ``(R, B, xdim) -> (R, B, ydim)``; tanh between layers."""
    h = x_RBi
    n_layers = len(params) // 2
    for i in range(n_layers):
        h = torch.baddbmm(params[2 * i + 1], h, params[2 * i])
        if i < n_layers - 1:
            h = torch.tanh(h)
    return h


def mse_R(pred_RBo: torch.Tensor, y_RBo: torch.Tensor) -> torch.Tensor:
    """Each run's mean squared error, ``(R,)``; refuses shapes that would broadcast."""
    if pred_RBo.shape != y_RBo.shape:
        raise ValueError(f"mse_R: prediction shape {tuple(pred_RBo.shape)} != target shape {tuple(y_RBo.shape)}")
    return ((pred_RBo - y_RBo) ** 2).mean(dim=(1, 2))


def make_batched(name: str, params: list[torch.Tensor], **hparams: float) -> Batched:
    """``torch_ref``'s ``torch.optim`` optimizer for ``name`` over the stacked tensors."""
    check_elementwise(name)
    return Batched(params, make_optimizer(name, params, **hparams))


def batched_step(run: Batched, x_RBi: torch.Tensor, y_RBo: torch.Tensor) -> torch.Tensor:
    """One update of every run on its own minibatch; each run's pre-update loss ``(R,)``, detached."""
    loss_R = mse_R(forward(run.params, x_RBi), y_RBo)
    run.optimizer.zero_grad(set_to_none=True)
    loss_R.sum().backward()
    run.optimizer.step()
    return loss_R.detach()


def batched_mse(params: Sequence[torch.Tensor], x_RNi: torch.Tensor, y_RNo: torch.Tensor) -> torch.Tensor:
    """Every run's full-data MSE ``(R,)``, without building a graph."""
    with torch.no_grad():
        return mse_R(forward(params, x_RNi), y_RNo)


# torch.func over the torch_ref model


def func_runs(name: str, models: Sequence[MLP], **hparams: float) -> FuncRuns:
    """The models' parameters stacked on a leading run axis (copies) and an optimizer over them."""
    from torch.func import stack_module_state

    check_elementwise(name)
    stacked, _ = stack_module_state(list(models))
    params = {k: v.detach().clone().requires_grad_(True) for k, v in stacked.items()}
    return FuncRuns(params, make_optimizer(name, list(params.values()), **hparams))


def make_func_loss(model: MLP) -> Callable:
    """``loss_R(params, x_RBi, y_RBo)``: ``vmap`` of one run's MSE through ``functional_call``.

    ``model`` supplies the structure only (a copy on the meta device is used).
    """
    from torch.func import vmap

    return vmap(_loss_one(model))


def make_func_grad(model: MLP) -> Callable:
    """``(grads, loss_R) = f(params, x_RBi, y_RBo)`` by ``vmap(grad_and_value(loss of one run))``."""
    from torch.func import grad_and_value, vmap

    return vmap(grad_and_value(_loss_one(model)))


def _loss_one(model: MLP) -> Callable:
    """One run's MSE as a function of its parameters (``model``'s structure, on the meta device)."""
    from torch.func import functional_call

    base = copy.deepcopy(model).to("meta")
    return lambda p, x, y: ((functional_call(base, p, (x,)) - y) ** 2).mean()


def func_step(grad_fn: Callable, runs: FuncRuns, x_RBi: torch.Tensor, y_RBo: torch.Tensor) -> torch.Tensor:
    """One update of every run: per-run gradients by ``grad_fn``, then ``optimizer.step``."""
    grads, loss_R = grad_fn({k: p.detach() for k, p in runs.params.items()}, x_RBi, y_RBo)
    for k, p in runs.params.items():
        p.grad = grads[k]
    runs.optimizer.step()
    return loss_R


def func_unstack(runs: FuncRuns, model: MLP, r: int) -> dict[str, dict[str, np.ndarray]]:
    """Run ``r``'s weights in Flax layout (loaded into a copy of ``model``)."""
    one = copy.deepcopy(model)
    with torch.no_grad():
        one.load_state_dict({k: v[r] for k, v in runs.params.items()})
    return params_from_torch(one)

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

:class:`TorchRuns` holds a whole workload (every optimizer x S seeds) in one of four ways (eager
models, stacked, ``torch.func``, ``torch.compile`` of the stacked step) for the benchmark.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np
import torch

from jaxopt_cmp.config import StudyConfig
from torch_ref.convert import params_from_torch
from torch_ref.data import make_data
from torch_ref.model import MLP
from torch_ref.optimizers import make_optimizer
from torch_ref.train import DATA, initial_model, seed_generator, train_step

# Registry optimizers whose torch.optim update is elementwise, so stacking runs is exact.
ELEMENTWISE = ("sgd", "momentum", "adam")
KINDS = ("eager", "batched", "func", "compile")  # the ways TorchRuns holds a workload


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


# A whole workload


class TorchRuns:
    """Every optimizer x S seeds of ``cfg`` held one ``kind`` of way; data, weights and batches up front.

    Seed s's data and initial weights come from ``torch_ref.train``'s seeded generators (as
    ``run_study`` makes them); batch indices (with replacement, as the JAX engine draws them) from
    this object's own generator, seeded with ``cfg.seed``. Each optimizer uses its first grid point.
    """

    def __init__(self, kind: str, cfg: StudyConfig):
        if kind not in KINDS:
            raise ValueError(f"kind {kind!r}: expected one of {KINDS}")
        self.kind, self.seeds = kind, cfg.seeds
        self.n_data, self.batch_size = cfg.data.n_data, cfg.train.batch_size
        data = [make_data(seed_generator(cfg.seed, s, DATA), cfg.data) for s in range(cfg.seeds)]
        self.x_SN1 = torch.stack([x for x, _ in data])
        self.y_SN1 = torch.stack([y for _, y in data])
        inits = [initial_model(cfg, s) for s in range(cfg.seeds)]
        self.hparams = {o.name: {k: v[0] for k, v in o.grid().items()} for o in cfg.optimizers}
        self.generator = torch.Generator().manual_seed(cfg.seed)
        self.rows = torch.arange(cfg.seeds)[:, None]
        self.set_batches(16)
        if kind == "eager":
            self.models = [self._eager_runs(init) for init in inits]
        elif kind == "func":
            self.runs = [func_runs(n, inits, **hp) for n, hp in self.hparams.items()]
            self.grad_fn, self.loss_fn = make_func_grad(inits[0]), make_func_loss(inits[0])
        else:
            self.runs = [make_batched(n, stack_models(inits), **hp) for n, hp in self.hparams.items()]
            self.compiled = None
            if kind == "compile":
                torch._dynamo.reset()  # a fresh compile per workload, never dynamo's eager fallback
                self.compiled = torch.compile(self._stacked_step, dynamic=False)

    def _eager_runs(self, init: MLP) -> list[tuple[MLP, torch.optim.Optimizer]]:
        """One model (a copy of ``init``) and its optimizer per optimizer: the seed notebook's way."""
        models = {n: copy.deepcopy(init) for n in self.hparams}
        return [(m, make_optimizer(n, m.parameters(), **self.hparams[n])) for n, m in models.items()]

    def set_batches(self, steps: int) -> None:
        """Draws the batch indices of ``steps`` steps (``step(t)`` cycles through them)."""
        shape = (steps, self.seeds, self.batch_size)
        self.idx_TSB = torch.randint(0, self.n_data, shape, generator=self.generator)

    def _stacked_step(self, x_SB1: torch.Tensor, y_SB1: torch.Tensor) -> None:
        for run in self.runs:
            batched_step(run, x_SB1, y_SB1)

    def step(self, t: int) -> None:
        """One update of every run (all optimizers, all seeds) on step t's minibatches."""
        idx_SB = self.idx_TSB[t % len(self.idx_TSB)]
        if self.kind == "eager":
            for s, runs in enumerate(self.models):
                x, y = self.x_SN1[s, idx_SB[s]], self.y_SN1[s, idx_SB[s]]
                for model, optimizer in runs:
                    train_step(model, optimizer, x, y)
            return
        x_SB1, y_SB1 = self.x_SN1[self.rows, idx_SB], self.y_SN1[self.rows, idx_SB]
        if self.kind == "func":
            for run in self.runs:
                func_step(self.grad_fn, run, x_SB1, y_SB1)
        else:
            (self.compiled or self._stacked_step)(x_SB1, y_SB1)

    def evaluate(self) -> list[float]:
        """Every run's full-data MSE, seed-major for eager, optimizer-major for the stacked kinds."""
        with torch.no_grad():
            if self.kind == "eager":
                return [
                    torch.mean((m(x) - y) ** 2).item()
                    for runs, x, y in zip(self.models, self.x_SN1, self.y_SN1)
                    for m, _ in runs
                ]
            if self.kind == "func":
                detached = [{k: p.detach() for k, p in run.params.items()} for run in self.runs]
                losses = [self.loss_fn(p, self.x_SN1, self.y_SN1) for p in detached]
            else:
                losses = [batched_mse(run.params, self.x_SN1, self.y_SN1) for run in self.runs]
            return torch.cat(losses).tolist()

    def train(self, steps: int, eval_steps: frozenset[int] = frozenset()) -> None:
        """``steps`` updates, evaluating every run after each step count in ``eval_steps`` (0: before)."""
        if 0 in eval_steps:
            self.evaluate()
        for t in range(steps):
            self.step(t)
            if t + 1 in eval_steps:
                self.evaluate()

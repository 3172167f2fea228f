"""Running a registry optimizer in both frameworks on the same inputs, and measuring the gap.

Two harnesses, each returning the parameters after every step:

- *gradient runs*: a fixed gradient sequence (``grads_T``, leading axis = steps) fed to an optax
  transformation and to a torch optimizer from the same start: isolates the update formula;
- *MLP runs*: the seed MLP trained on the seed data, weights copied from JAX and batch indices
  drawn on the JAX side (``Problem``), through the engine's own step
  (:func:`jaxopt_cmp.train.make_step`) and ``torch_ref.train.train_step``.

plus the model's forward/gradient agreement and :func:`equivalence_test`, a TOST on whole-run
outcomes (the two frameworks' random streams differ, so those agree in distribution only).

Comparisons run under :func:`precision`: JAX's x64 mode for float64 only, and matmul precision
``"highest"`` (on GPUs JAX's default is TF32 for float32 matmuls; on CPU it changes nothing).
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Callable, Iterator
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import torch

from jaxopt_cmp import data as jdata
from jaxopt_cmp import model as jmodel
from jaxopt_cmp.config import DataConfig, ModelConfig
from jaxopt_cmp.optimizers import OPTIMIZERS
from jaxopt_cmp.optimizers import make_optimizer as jax_optimizer
from jaxopt_cmp.train import RunState, make_step
from torch_ref import model as tmodel
from torch_ref.convert import name_map, params_from_torch, params_to_torch
from torch_ref.optimizers import make_optimizer as torch_optimizer
from torch_ref.train import train_step

MATMUL_PRECISION = "highest"
SEED_MODEL = ModelConfig()  # 1-64-64-1, 4,353 parameters
host = functools.partial(jax.tree_util.tree_map, np.asarray)
leaves = jax.tree_util.tree_leaves


@contextlib.contextmanager
def precision(dtype) -> Iterator[None]:
    """JAX's x64 mode on for float64 only, and matmul precision ``"highest"``, inside the block."""
    with jax.enable_x64(np.dtype(dtype) == np.float64), jax.default_matmul_precision(MATMUL_PRECISION):
        yield


def torch_dtype(dtype) -> torch.dtype:
    return getattr(torch, np.dtype(dtype).name)


def relative(a: np.ndarray, ref: np.ndarray) -> float:
    """``max |a - ref| / max |ref|``: the error measured against the array's scale."""
    return float(np.max(np.abs(a - ref)) / np.max(np.abs(ref)))


def deviation_T(params_T, ref_T) -> np.ndarray:
    """Per step: max over arrays of ``max |a - ref|`` / that array's ``max |ref|`` over the run.

    Scaled by each array's size over the whole run, not at step t: an entry crossing zero (the
    MLP's output bias is 5e-6 at SGD step 88) would make a per-step relative error rounding blown up.
    """
    per_array = [
        np.max(np.abs(np.asarray(a, np.float64) - r).reshape(len(r), -1), axis=1) / np.max(np.abs(r))
        for a, r in zip(leaves(params_T), (np.asarray(r, np.float64) for r in leaves(ref_T)), strict=True)
    ]
    return np.max(per_array, axis=0)


# ---------------------------------------------------------------------------------------------
# Gradient runs


def random_gradients(seed: int, steps: int, shapes: dict[str, tuple[int, ...]]) -> tuple[dict, dict]:
    """``(params, grads_T)`` in float64: a start near 1 and ``steps`` gradients per array.

    Each entry has its own scale, 10^U(-4, 0.5), so eps placements matter for some entries and
    not others; gradients carry a drift (mean 0.3 scale) so the runs go somewhere, and 5% are
    exactly zero.
    """
    rng = np.random.default_rng(seed)
    params, grads = {}, {}
    for name, shape in shapes.items():
        params[name] = 1 + 0.5 * rng.standard_normal(shape)
        scale = 10 ** rng.uniform(-4, 0.5, shape)
        g = scale * (0.3 + rng.standard_normal((steps, *shape)))
        grads[name] = np.where(rng.random((steps, *shape)) < 0.05, 0.0, g)
    return params, grads


def jax_gradient_runs(txs: dict[str, optax.GradientTransformation], params, grads_T, dtype) -> dict[str, dict]:
    """Per transformation, the parameters after each of the gradients ``grads_T`` (cast to
    ``dtype``) from ``params``; all in one compiled scan (each transformation on its own run)."""
    cast = lambda a: jnp.asarray(np.asarray(a, dtype))
    with precision(dtype):
        params, grads_T = jax.tree_util.tree_map(cast, params), jax.tree_util.tree_map(cast, grads_T)

        def body(carry, g):
            new = {}
            for name, tx in txs.items():
                p, state = carry[name]
                updates, state = tx.update(g, state, p)
                new[name] = (optax.apply_updates(p, updates), state)
            return new, {name: p for name, (p, _) in new.items()}

        run = jax.jit(lambda p, g_T: jax.lax.scan(body, {n: (p, tx.init(p)) for n, tx in txs.items()}, g_T)[1])
        out = host(run(params, grads_T))
    assert {a.dtype for a in leaves(out)} == {np.dtype(dtype)}, "x64 mode did not take effect"
    return out


def jax_gradient_run(tx: optax.GradientTransformation, params, grads_T, dtype) -> dict:
    """:func:`jax_gradient_runs` of one transformation."""
    return jax_gradient_runs({"tx": tx}, params, grads_T, dtype)["tx"]


def torch_gradient_run(
    make: Callable[[list[torch.Tensor]], torch.optim.Optimizer],
    params,
    grads_T,
    dtype,
    lr_lambda: Callable[[int], float] | None = None,
) -> dict:
    """The torch twin of :func:`jax_gradient_run`; ``make(parameters)`` builds the optimizer.

    ``lr_lambda``, if given, drives ``torch.optim.lr_scheduler.LambdaLR`` (step ``t`` uses
    ``lr * lr_lambda(t)``, t from 0), the twin of an optax schedule ``count -> lr``.
    """
    names, treedef = jax.tree_util.tree_flatten(params)
    tensors = [torch.nn.Parameter(torch.tensor(np.asarray(p, dtype))) for p in names]
    optimizer = make(tensors)
    scheduler = None if lr_lambda is None else torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda)
    grads = [torch.tensor(np.asarray(g, dtype)) for g in leaves(grads_T)]
    out = [np.empty((len(grads[0]), *p.shape), dtype) for p in tensors]
    for t in range(len(grads[0])):
        for p, g in zip(tensors, grads, strict=True):
            p.grad = g[t].clone()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        for o, p in zip(out, tensors, strict=True):
            o[t] = p.detach().numpy()
    return jax.tree_util.tree_unflatten(treedef, out)


def registry_tx(name: str, lr_lambda: Callable | None = None, **hparams) -> optax.GradientTransformation:
    """The registry's (injected) transformation; with ``lr_lambda`` its lr is the schedule
    ``count -> lr * lr_lambda(count)``, the twin of torch's ``LambdaLR(optimizer, lr_lambda)``."""
    if lr_lambda is not None:
        lr = hparams.get("lr", OPTIMIZERS[name].defaults["lr"])
        hparams = {**hparams, "lr": lambda count: lr * lr_lambda(count)}
    return jax_optimizer(name, **hparams)


def torch_registry_run(name: str, params, grads_T, dtype, lr_lambda=None, **hparams) -> dict:
    """:func:`torch_gradient_run` of ``torch_ref``'s twin of registry optimizer ``name``."""
    make = lambda tensors: torch_optimizer(name, tensors, **hparams)
    return torch_gradient_run(make, params, grads_T, dtype, lr_lambda)


def registry_gradient_runs(name: str, params, grads_T, dtype, lr_lambda=None, **hparams) -> tuple[dict, dict]:
    """``(jax params_T, torch params_T)`` of registry optimizer ``name`` (see :func:`registry_tx`)."""
    jax_run = jax_gradient_run(registry_tx(name, lr_lambda, **hparams), params, grads_T, dtype)
    return jax_run, torch_registry_run(name, params, grads_T, dtype, lr_lambda, **hparams)


# ---------------------------------------------------------------------------------------------
# MLP runs


class Problem(NamedTuple):
    """One seed problem as numpy arrays: data ``(N, 1)``, Flax-layout params, batches ``(T, B)``."""

    x: np.ndarray
    y: np.ndarray
    params: dict
    idx_TB: np.ndarray

    def cast(self, dtype) -> Problem:
        copy = lambda a: np.array(a, dtype)  # a writable copy, as torch.from_numpy wants
        return Problem(copy(self.x), copy(self.y), jax.tree_util.tree_map(copy, self.params), self.idx_TB)


class Trajectory(NamedTuple):
    """``loss_T[t]``: step t's minibatch loss (before its update); ``params_T``: after step t."""

    loss_T: np.ndarray
    params_T: dict


def seed_problem(steps: int, batch_size: int = 64, model: ModelConfig = SEED_MODEL, seed: int = 0) -> Problem:
    """The seed problem, drawn on the JAX side in float32 (data, initial weights, batch indices).

    float64 runs train its exact upcast, so a float32 run can be measured against a float64 run
    of the same problem (drawing in x64 mode would give other numbers: other bits per sample).
    """
    key_data, key_init, key_batch = jax.random.split(jax.random.key(seed), 3)
    data = jdata.make_data(key_data, DataConfig())
    params = jmodel.init_params(key_init, model)
    idx = jdata.batch_indices(key_batch, jnp.arange(steps), DataConfig().n_data, batch_size)
    return Problem(np.asarray(data.x), np.asarray(data.y), host(params), np.asarray(idx))


def jax_mlp_trajectories(
    hparams: dict[str, dict], problem: Problem, dtype, model: ModelConfig = SEED_MODEL
) -> dict[str, Trajectory]:
    """The engine's own step (``make_step`` + the registry's inject_hyperparams optimizer) for
    every ``name -> hyperparameters`` of ``hparams``, all in one compiled scan (one compilation
    instead of one per optimizer; each optimizer still trains on its own)."""
    p = problem.cast(dtype)
    with precision(dtype):
        txs = {name: jax_optimizer(name, **hp) for name, hp in hparams.items()}
        apply = jmodel.make_model(model, dtype).apply
        steps = {name: make_step(apply, tx) for name, tx in txs.items()}
        x, y = jnp.asarray(p.x), jnp.asarray(p.y)

        def body(states, inputs):
            idx, t = inputs
            out = {name: step(states[name], x[idx], y[idx], t) for name, step in steps.items()}
            return {n: s for n, (s, _) in out.items()}, {n: (loss, s.params) for n, (s, loss) in out.items()}

        @jax.jit
        def run(states, idx_TB):
            return jax.lax.scan(body, states, (idx_TB, jnp.arange(len(idx_TB))))[1]

        params = jax.tree_util.tree_map(jnp.asarray, p.params)
        states = {name: RunState(params, tx.init(params), jnp.int32(-1)) for name, tx in txs.items()}
        out = {name: Trajectory(np.asarray(loss_T), host(params_T)) for name, (loss_T, params_T) in run(
            states, p.idx_TB).items()}
    # Proves the x64 switch took effect (JAX would silently compute in float32 otherwise).
    assert {a.dtype for a in leaves(out)} == {np.dtype(dtype)}, "x64 mode did not take effect"
    return out


def jax_mlp_trajectory(name: str, problem: Problem, dtype, model: ModelConfig = SEED_MODEL, **hparams) -> Trajectory:
    """:func:`jax_mlp_trajectories` of one optimizer."""
    return jax_mlp_trajectories({name: hparams}, problem, dtype, model)[name]


def torch_mlp_trajectory(
    name: str, problem: Problem, dtype, model: ModelConfig = SEED_MODEL, **hparams
) -> Trajectory:
    """``torch_ref``'s eager step on the same weights and the same batches."""
    p = problem.cast(dtype)
    net = params_to_torch(p.params, tmodel.make_model(model, torch_dtype(dtype)))
    optimizer = torch_optimizer(name, net.parameters(), **hparams)
    x, y = torch.from_numpy(p.x), torch.from_numpy(p.y)
    losses, params = [], []
    for idx in torch.tensor(p.idx_TB, dtype=torch.long):
        losses.append(train_step(net, optimizer, x[idx], y[idx]))
        params.append(params_from_torch(net))
    params_T = jax.tree_util.tree_map(lambda *a: np.stack(a), *params)
    return Trajectory(np.asarray(losses, dtype), params_T)


def model_agreement(problem: Problem, dtype, model: ModelConfig = SEED_MODEL) -> dict[str, float]:
    """Relative gaps (:func:`relative`) of full-data predictions, loss and each gradient array at
    the problem's initial weights: ``{"forward", "loss", "grad dense_0.kernel", ...}``. Raises
    ``TypeError`` unless both frameworks computed in ``dtype``."""
    p = problem.cast(dtype)
    with precision(dtype):
        apply = jmodel.make_model(model, dtype).apply
        loss_fn = lambda params: jmodel.mse(apply({"params": params}, p.x), p.y)
        jax_pred = np.asarray(apply({"params": p.params}, p.x))
        jax_loss, jax_grads = host(jax.value_and_grad(loss_fn)(p.params))
    net = params_to_torch(p.params, tmodel.make_model(model, torch_dtype(dtype)))
    pred, loss, grads = torch_forward_and_grads(net, p.x, p.y)
    if not pred.dtype == jax_pred.dtype == np.dtype(dtype):
        raise TypeError(f"model_agreement: asked for {dtype}, got torch {pred.dtype}, jax {jax_pred.dtype}")
    out = {"forward": relative(pred, jax_pred), "loss": abs(loss / float(jax_loss) - 1)}
    for layer in sorted(grads):
        for leaf in ("kernel", "bias"):
            out[f"grad {layer}.{leaf}"] = relative(grads[layer][leaf], jax_grads[layer][leaf])
    return out


def torch_forward_and_grads(net: tmodel.MLP, x: np.ndarray, y: np.ndarray):
    """torch's full-data predictions, loss and Flax-layout gradients for the model's weights."""
    net.zero_grad()
    pred = net(torch.tensor(x))
    loss = tmodel.mse(pred, torch.tensor(y))
    loss.backward()
    grads = {
        layer: {"kernel": m.weight.grad.numpy().T, "bias": m.bias.grad.numpy()}
        for layer, (_, m) in zip(name_map(net), tmodel.linears(net), strict=True)
    }
    return pred.detach().numpy(), loss.item(), grads


# ---------------------------------------------------------------------------------------------
# Settings of the MLP comparisons, and the float32 band

# Registry defaults, except where the seed MLP at the default is a bad place to compare:
# - RMSprop at lr 1e-2 throws the loss from 0.1 to ~10 within the first steps; in that chaotic
#   phase float64 rounding alone grows to 1e-4 (rmsprop_momentum, 300 steps). At lr 1e-3 all four
#   agree to <= 5e-14 over 1,000 steps.
# - AdamW: torch decays by ``p *= 1 - lr * wd``, one more float32 rounding of every weight per
#   step (of a factor itself rounded: 1 - 1e-5 is held only to ~0.3% of the 1e-5); while lr wd is
#   small next to a weight's last bit that rounding is biased and torch's float32 run drifts from
#   its float64 run 7-20x further than JAX's (which adds -lr wd p into the update). Compared at
#   lr 2^-10, wd 2^-3 (exact factor, decay of 2^-13 per step): torch's drift 1.3x JAX's.
MLP_HPARAMS: dict[str, dict[str, float]] = {
    "rmsprop": {"lr": 1e-3},
    "rmsprop_centered": {"lr": 1e-3},
    "rmsprop_momentum": {"lr": 1e-3},
    "rmsprop_momentum_optax": {"lr": 1e-3},
    "adamw": {"lr": 2.0**-10, "weight_decay": 2.0**-3},
}

# float64: every step within this relative deviation. Measured for every registry entry: <= 4.3e-14
# over 1,000 MLP steps (rmsprop_momentum*; adamw at its defaults 1.3e-13), <= 5.2e-14 over 1,000
# random-gradient steps (adamw, off-default hyperparameters), all others <= 1e-14.
F64_TOL = 1e-10

# float32: the torch-vs-JAX gap over a run must stay within K_F32 times the noise floor, the largest
# deviation of JAX's own float32 run from its float64 run (same inputs). Measured gap/floor over
# 1,000 steps: MLP <= 2.0 (adamw at MLP_HPARAMS; nadam 1.6, amsgrad 1.5, the rest <= 1.2), random
# gradients <= 2.1 (adamw; nadam 1.4).
K_F32 = 4.0


# Sign updates (Lion): a float32 rounding that leaves c = b1 m + (1-b1) g on the other side of 0
# flips sign(c) and moves that weight by 2 lr at once. On the MLP (where the frameworks' float32
# gradients differ by rounding) the float32 runs are bit-identical for ~100 steps, then differ by
# whole flips, in lumps: the flip of a 1-element output bias reads as 2/t relative (1e-2 at step
# 200), ahead of or behind JAX's own float32-vs-float64 flips (gap/JAX-floor 0 .. 10.7 over 100 ..
# 1,000 steps). Their band is the larger of the two frameworks' own float32 drifts. That band is
# implied by float64 parity (gap <= both drifts + the float64 gap), so for Lion the float32 MLP
# row documents the size of the flips; its float32 formula is checked on random gradients, where
# both frameworks see the same gradients and agree exactly (measured gap 0, floor 1e-5).
SIGN_UPDATES = frozenset({"lion"})


def float32_band(jax64_T, jax32_T, torch32_T, torch64_T=None) -> tuple[float, float]:
    """``(gap, floor)``: max over steps of the torch-vs-JAX float32 deviation, and of JAX's own
    float32-vs-float64 deviation (:func:`deviation_T`); the gap passes if ``<= K_F32 * floor``.
    With ``torch64_T`` (sign updates, :data:`SIGN_UPDATES`) the floor is the larger of both
    frameworks' own drifts."""
    floor = float(deviation_T(jax32_T, jax64_T).max())
    if torch64_T is not None:
        floor = max(floor, float(deviation_T(torch32_T, torch64_T).max()))
    return float(deviation_T(torch32_T, jax32_T).max()), floor


# ---------------------------------------------------------------------------------------------
# Whole runs: equivalence in distribution


class Equivalence(NamedTuple):
    """Welch TOST on ``log b - log a``: ``ratio`` = exp(mean difference) (b's geometric mean over
    a's), its 90% interval, the TOST p-value and whether the ratio lies within the margin."""

    ratio: float
    ci_low: float
    ci_high: float
    p_value: float
    equivalent: bool


def t_sf(t: float, df: float) -> float:
    """Student t survival function ``P(T > t)`` (regularized incomplete beta, float64)."""
    with jax.enable_x64(True):
        tail = 0.5 * float(jax.scipy.special.betainc(df / 2, 0.5, df / (df + t * t)))
    return tail if t >= 0 else 1 - tail


def _t_quantile(q: float, df: float) -> float:
    low, high = 0.0, 1e3
    for _ in range(200):  # bisection on the monotone survival function
        mid = (low + high) / 2
        low, high = (mid, high) if t_sf(mid, df) > 1 - q else (low, mid)
    return (low + high) / 2


def equivalence_test(a_S, b_S, margin: float = 1.25, alpha: float = 0.05) -> Equivalence:
    """Two one-sided Welch t-tests that the ratio of geometric means ``b/a`` lies in
    ``[1/margin, margin]`` (H0: outside). Equivalent when both reject at ``alpha``: the
    ``1 - 2 alpha`` interval of the ratio lies inside the margin. Needs finite positive values."""
    la, lb = np.log(np.asarray(a_S, np.float64)), np.log(np.asarray(b_S, np.float64))
    if not (np.all(np.isfinite(la)) and np.all(np.isfinite(lb))) or min(len(la), len(lb)) < 2:
        return Equivalence(math.nan, math.nan, math.nan, 1.0, False)
    d = lb.mean() - la.mean()
    va, vb = la.var(ddof=1) / len(la), lb.var(ddof=1) / len(lb)
    se = math.sqrt(va + vb)
    if se == 0:
        inside = abs(d) < math.log(margin)
        return Equivalence(math.exp(d), math.exp(d), math.exp(d), 0.0 if inside else 1.0, inside)
    df = (va + vb) ** 2 / (va**2 / (len(la) - 1) + vb**2 / (len(lb) - 1))
    delta = math.log(margin)
    p = max(t_sf((d + delta) / se, df), t_sf((delta - d) / se, df))
    q = _t_quantile(1 - alpha, df)
    return Equivalence(math.exp(d), math.exp(d - q * se), math.exp(d + q * se), p, p < alpha)

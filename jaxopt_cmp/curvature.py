"""Curvature of a loss on a flat parameter vector: Hessian-vector products, the exact Hessian,
the top eigenvalue (power iteration, Lanczos) and Adam's preconditioned Hessian.

Everything takes ``loss(params_P) -> scalar`` on a flat vector (``jax.flatten_util.ravel_pytree``)
and is pure and jittable; nothing here knows about models or optimizers' names.

Stability thresholds (Cohen et al. 2021, "Gradient descent on neural networks typically occurs at
the edge of stability"; 2022, "Adaptive gradient methods at the edge of stability"): on a quadratic
with top Hessian eigenvalue ``lam``, gradient descent with step ``lr`` is stable iff
``lam < 2 / lr``; heavy-ball momentum ``mu`` iff ``lam < 2 (1 + mu) / lr``; Adam with
``P = diag(sqrt(v_hat) + eps) / lr`` iff the top eigenvalue of ``P^-1/2 H P^-1/2`` stays below
``(2 + 2 beta1) / (1 - beta1)`` (38 for beta1 = 0.9).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

MatVec = Callable[[jax.Array], jax.Array]


def hvp_fn(loss: Callable[[jax.Array], jax.Array], params_P: jax.Array) -> MatVec:
    """``v -> H v`` at ``params_P`` by forward-over-reverse differentiation (one HVP ~ 3 gradients)."""
    grad = jax.grad(loss)
    return lambda v: jax.jvp(grad, (params_P,), (v,))[1]


def hessian(loss: Callable[[jax.Array], jax.Array], params_P: jax.Array, block: int = 64) -> jax.Array:
    """The exact ``(P, P)`` Hessian: ``block`` HVPs at a time (``vmap``) over column blocks (``lax.map``),
    symmetrised (forward-over-reverse columns agree with rows to rounding only)."""
    n = params_P.shape[0]
    blocks = -(-n // block)
    basis = jnp.eye(blocks * block, n, dtype=params_P.dtype).reshape(blocks, block, n)
    hvp = hvp_fn(loss, params_P)
    cols = jax.lax.map(jax.vmap(hvp), basis).reshape(blocks * block, n)[:n]
    return (cols + cols.T) / 2


def preconditioned(matvec: MatVec, d_P: jax.Array) -> MatVec:
    """``v -> D H D v`` with ``D = diag(d_P)``: the Hessian seen through the preconditioner
    ``P^-1 = D^2`` (``D H D`` and ``P^-1 H`` share their eigenvalues)."""
    return lambda v: d_P * matvec(d_P * v)


def adam_scaling(nu_P: jax.Array, count: jax.Array, lr, beta2, eps) -> jax.Array:
    """``d = sqrt(lr / (sqrt(v_hat) + eps))``, ``v_hat = nu / (1 - beta2^count)`` (optax's Adam):
    the ``D`` of :func:`preconditioned` for ``P = diag(sqrt(v_hat) + eps) / lr``. NaN before the
    first update (``count == 0``: no second moment yet)."""
    correction = 1 - jnp.asarray(beta2, nu_P.dtype) ** count.astype(nu_P.dtype)
    v_hat = nu_P / jnp.where(count > 0, correction, jnp.nan)
    return jnp.sqrt(lr / (jnp.sqrt(v_hat) + eps))


def power_iteration(matvec: MatVec, v0_P: jax.Array, iters: int) -> tuple[jax.Array, jax.Array]:
    """``(lam, v)``: the Rayleigh quotient after ``iters`` power steps from ``v0_P``; converges to
    the eigenvalue of largest *magnitude* at rate ``|lam_2 / lam_1|`` per step."""

    def body(_, v):
        w = matvec(v)
        return w / jnp.linalg.norm(w)

    v = jax.lax.fori_loop(0, iters, body, v0_P / jnp.linalg.norm(v0_P))
    return jnp.vdot(v, matvec(v)), v


def lanczos_top(matvec: MatVec, v0_P: jax.Array, iters: int) -> tuple[jax.Array, jax.Array]:
    """``(lam, v)``: the largest (algebraic) Ritz value and its vector after ``iters`` Lanczos steps
    from ``v0_P`` (``iters`` HVPs). Rayleigh-Ritz on the Krylov basis, orthogonalised in full
    (twice), so ``lam <= lam_max`` always and is exact once the Krylov space holds the top
    eigenvector; converges far faster than power iteration (rate set by the square root of the
    relative gap). A Krylov space that closes early (an invariant subspace) is handled: its
    later basis vectors are zero and their rows are kept out of the Ritz problem.
    """
    n = v0_P.shape[0]
    tiny = jnp.finfo(v0_P.dtype).eps

    def body(j, carry):
        V, HV, v = carry
        V = V.at[j].set(v)
        w = matvec(v)
        HV = HV.at[j].set(w)
        for _ in range(2):  # classical Gram-Schmidt twice: orthogonal to working precision
            w = w - V.T @ (V @ w)
        norm = jnp.linalg.norm(w)
        scale = jnp.maximum(jnp.linalg.norm(HV[j]), jnp.linalg.norm(V[j]))
        live = norm > 100 * tiny * scale
        return V, HV, jnp.where(live, w / jnp.where(live, norm, 1), 0)

    start = (jnp.zeros((iters, n), v0_P.dtype), jnp.zeros((iters, n), v0_P.dtype), v0_P / jnp.linalg.norm(v0_P))
    V, HV, _ = jax.lax.fori_loop(0, iters, body, start)
    T = V @ HV.T
    T = (T + T.T) / 2
    dead = jnp.sum(V * V, axis=1) < 0.5
    floor = -(jnp.linalg.norm(T) + 1)  # below every eigenvalue of the live block
    T = jnp.where(dead[:, None] | dead[None, :], 0, T) + jnp.diag(jnp.where(dead, floor, 0))
    lam_K, vec_KK = jnp.linalg.eigh(T)
    v = V.T @ vec_KK[:, -1]
    return lam_K[-1], v / jnp.linalg.norm(v)


def stuck_step(iters: int) -> float:
    """The per-direction step ``s = lr_eff * lam`` below which ``iters`` steps of ``(1 - s)`` leave
    more than half of a direction's error: ``(1 - s)^iters > 1/2  <=>  s < 1 - 2^(-1/iters)``."""
    return 1.0 - 2.0 ** (-1.0 / iters)


def sharpness_threshold(name: str, hp: dict[str, float]) -> tuple[str, float] | None:
    """``(kind, threshold)``: what a run's curvature is compared with at its stability edge.
    ``kind`` is ``"sharpness"`` (top eigenvalue of H) or ``"preconditioned"`` (of P^-1/2 H P^-1/2);
    None for optimizers without a known threshold."""
    if name == "sgd":
        return "sharpness", 2 / hp["lr"]
    if name == "momentum":
        return "sharpness", 2 * (1 + hp["momentum"]) / hp["lr"]
    if name == "nesterov":
        return "sharpness", (2 + 2 * hp["momentum"]) / ((1 + 2 * hp["momentum"]) * hp["lr"])
    if name in ADAM_FAMILY:
        return "preconditioned", (2 + 2 * hp["beta1"]) / (1 - hp["beta1"])
    return None


def effective_lr(name: str, hp: dict[str, float]) -> float | None:
    """The step a slow (low-curvature) direction sees per unit gradient: ``lr`` for SGD,
    ``lr / (1 - momentum)`` for heavy ball and Nesterov (the buffer's steady state), None for
    adaptive methods (their step per direction is the preconditioned spectrum itself)."""
    if name == "sgd":
        return hp["lr"]
    if name in ("momentum", "nesterov"):
        return hp["lr"] / (1 - hp["momentum"])
    return None


# Optimizers whose state holds optax's ScaleByAdamState (count, mu, nu) and whose update is
# lr * m_hat / (sqrt(v_hat) + eps): the preconditioner P = diag(sqrt(v_hat) + eps) / lr applies.
ADAM_FAMILY = ("adam", "adamw")


def find_adam_state(opt_state):
    """The ``ScaleByAdamState`` node (fields ``count``, ``nu``) inside an optax state, else None.
    Fields, not attributes: every NamedTuple has a ``count`` *method*, so RMSprop's
    ``ScaleByRmsState(nu)`` is no Adam state."""
    found = []
    is_adam = lambda n: {"nu", "count"} <= set(getattr(n, "_fields", ()))

    def visit(node):
        if is_adam(node) and not found:
            found.append(node)
        return node

    jax.tree_util.tree_map(visit, opt_state, is_leaf=is_adam)
    return found[0] if found else None


# An eigenvalue counts as negative below -NEG_TOL * max|eig|, 20x above float32 rounding: the
# float32 and float64 spectra (Hessian + syevd) of the seed study's 512-point subsample at SGD's and
# Adam's final weights differ by at most 4.6e-7 * max|eig|, and their negative fractions at this
# tolerance agree exactly (5.35%, 2.11%).
NEG_TOL = 1e-5
QUANTILES = (0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99)


def spectrum_stats(eig_P: np.ndarray, step_scale: float, iters: int) -> dict:
    """Top, bottom, negative fraction, the fraction of directions ``iters`` steps cannot halve
    (``step_scale * eig < stuck_step(iters)``, negatives included) and quantiles."""
    if not np.all(np.isfinite(eig_P)):
        return None
    tol = NEG_TOL * np.max(np.abs(eig_P))
    return {
        "top": eig_P[-1],
        "min": eig_P[0],
        "negative_fraction": np.mean(eig_P < -tol),
        "stuck_fraction": np.mean(step_scale * eig_P < stuck_step(iters)),
        "learnable": int(np.sum(step_scale * eig_P >= stuck_step(iters))),
        "stuck_below": stuck_step(iters) / step_scale,
        "quantiles": {str(q): np.quantile(eig_P, q) for q in QUANTILES},
    }


def compare_spectra(sub_P: np.ndarray, full_P: np.ndarray, step_scale: float, iters: int) -> dict:
    """How far a subsample spectrum is from the full-data one (both ascending): the top
    eigenvalue, the stuck and negative fractions of each, the largest gap between matched
    (sorted) eigenvalues relative to the full top one, and the median |log10| ratio of matched
    eigenvalues where both lie above the stuck curvature."""
    a, b = spectrum_stats(sub_P, step_scale, iters), spectrum_stats(full_P, step_scale, iters)
    both = (sub_P > a["stuck_below"]) & (full_P > b["stuck_below"])
    return {
        "top": [a["top"], b["top"]],
        "top_rel_diff": abs(a["top"] - b["top"]) / abs(b["top"]),
        "stuck_fraction": [a["stuck_fraction"], b["stuck_fraction"]],
        "negative_fraction": [a["negative_fraction"], b["negative_fraction"]],
        "max_sorted_diff_rel_top": np.max(np.abs(sub_P - full_P)) / abs(b["top"]),
        "median_abs_log10_ratio_above_stuck": np.median(np.abs(np.log10(sub_P[both] / full_P[both]))),
    }

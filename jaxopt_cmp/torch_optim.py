"""optax transformations that reproduce ``torch.optim``'s update formulas where optax's differ.

Each ``scale_by_torch_*`` is a pure ``optax.GradientTransformation`` (state in, state out) that
returns the update *before* the learning rate; chain it with ``optax.scale_by_learning_rate(lr)``
as torch applies ``lr`` last, so a learning-rate schedule acts on the current step only, as
``torch.optim.lr_scheduler`` does. The formulas are read from torch 2.13's single-tensor code
paths (``torch/optim/{nadam,adam,radam,adagrad}.py``, the ones torch runs on CPU tensors); ``g``
is the gradient, ``t`` the 1-based step, ``m``/``v`` the first/second moments:

=========================  ======================================================================
``scale_by_torch_nadam``   ``mu_t = b1 (1 - 0.5 * 0.96^(t psi))``; ``P_t = prod mu_1..mu_t``;
                           ``u = (1-mu_t)/(1-P_t) g/d + mu_{t+1}/(1-P_t mu_{t+1}) m/d``,
                           ``d = sqrt(v / (1-b2^t)) + eps``  (optax.nadam: constant b1, Dozat)
``scale_by_torch_amsgrad`` ``vmax = max(vmax, v)`` of the *raw* v, then
                           ``u = m/(1-b1^t) / (sqrt(vmax)/sqrt(1-b2^t) + eps)`` (optax: max of the
                           bias-corrected v)
``scale_by_torch_radam``   ``rho_t = rho_inf - 2 t b2^t/(1-b2^t)``; if ``rho_t > 5``
                           ``u = m_hat r_t sqrt(1-b2^t)/(sqrt(v) + eps)`` else ``u = m_hat``
                           (optax: eps added to sqrt of the bias-corrected v, ``rho_t >= 5``)
``scale_by_torch_adagrad`` ``s = s + g^2`` from ``initial_accumulator_value``;
                           ``u = g/(sqrt(s) + eps) / (1 + (t-1) lr_decay)`` (optax: eps inside
                           the square root, s starts at 0.1, no lr_decay)
=========================  ======================================================================

All four are elementwise (every output entry depends only on the same entry of the gradient and
state), so they are exact on ``jaxopt_cmp.train``'s flat parameter vectors.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

Updates = optax.Updates


def _float_step(count, tree) -> jax.Array:
    """The 1-based step ``count`` as a float of the tree's widest float dtype."""
    return jnp.asarray(count, optax.tree.dtype(tree, "highest"))


def _moments(updates, state, beta1, beta2):
    """Adam's shared bookkeeping: ``(count, t as float, m, v)`` with torch's moment updates."""
    count = optax.safe_increment(state.count)
    m = jax.tree.map(lambda g, m: _ema(g, m, beta1, 1), updates, state.m)
    v = jax.tree.map(lambda g, v: _ema(g, v, beta2, 2), updates, state.v)
    return count, _float_step(count, updates), m, v


def _ema(g, m, decay, order):
    return (1 - decay) * g**order + decay * m


class ScaleByTorchNAdamState(NamedTuple):
    """``count`` steps done; ``mu_product`` = mu_1 ... mu_count; moments ``m``, ``v``."""

    count: jax.Array
    mu_product: jax.Array
    m: Updates
    v: Updates


def scale_by_torch_nadam(beta1=0.9, beta2=0.999, eps=1e-8, momentum_decay=4e-3) -> optax.GradientTransformation:
    """torch.optim.NAdam (Dozat 2016 with torch's momentum schedule), without lr (see module doc).

    ``mu_product`` is kept in the parameters' dtype; torch keeps it in ``torch.get_default_dtype()``
    (float32 unless changed), which ``torch_ref`` sets to the parameters' dtype for its NAdam.
    """

    def init_fn(params):
        zeros = optax.tree.zeros_like(params)
        dtype = optax.tree.dtype(params, "highest")
        return ScaleByTorchNAdamState(jnp.zeros([], jnp.int32), jnp.ones([], dtype), zeros, zeros)

    def update_fn(updates, state, params=None):
        del params
        count, t, m, v = _moments(updates, state, beta1, beta2)
        mu = beta1 * (1 - 0.5 * 0.96 ** (t * momentum_decay))
        mu_next = beta1 * (1 - 0.5 * 0.96 ** ((t + 1) * momentum_decay))
        mu_product = state.mu_product * mu
        coef_g = (1 - mu) / (1 - mu_product)
        coef_m = mu_next / (1 - mu_product * mu_next)
        bias2 = 1 - beta2**t
        out = jax.tree.map(lambda g, m, v: (coef_g * g + coef_m * m) / (jnp.sqrt(v / bias2) + eps), updates, m, v)
        return out, ScaleByTorchNAdamState(count, mu_product.astype(state.mu_product.dtype), m, v)

    return optax.GradientTransformation(init_fn, update_fn)


class ScaleByTorchAMSGradState(NamedTuple):
    count: jax.Array
    m: Updates
    v: Updates
    v_max: Updates


def scale_by_torch_amsgrad(beta1=0.9, beta2=0.999, eps=1e-8) -> optax.GradientTransformation:
    """torch.optim.Adam(amsgrad=True): the running maximum of the raw second moment, bias-corrected
    afterwards (optax.amsgrad takes the maximum of the bias-corrected moment), without lr."""

    def init_fn(params):
        zeros = optax.tree.zeros_like(params)
        return ScaleByTorchAMSGradState(jnp.zeros([], jnp.int32), zeros, zeros, zeros)

    def update_fn(updates, state, params=None):
        del params
        count, t, m, v = _moments(updates, state, beta1, beta2)
        v_max = jax.tree.map(jnp.maximum, state.v_max, v)
        bias1, bias2_sqrt = 1 - beta1**t, jnp.sqrt(1 - beta2**t)
        out = jax.tree.map(lambda m, vm: (m / bias1) / (jnp.sqrt(vm) / bias2_sqrt + eps), m, v_max)
        return out, ScaleByTorchAMSGradState(count, m, v, v_max)

    return optax.GradientTransformation(init_fn, update_fn)


class ScaleByTorchAdamState(NamedTuple):
    count: jax.Array
    m: Updates
    v: Updates


def scale_by_torch_radam(beta1=0.9, beta2=0.999, eps=1e-8) -> optax.GradientTransformation:
    """torch.optim.RAdam (Liu et al. 2020), without lr: rectified Adam step while the variance is
    tractable (``rho_t > 5``), else the bias-corrected momentum alone. eps is added to ``sqrt(v)``
    *before* the bias correction, unlike optax.radam."""

    def init_fn(params):
        zeros = optax.tree.zeros_like(params)
        return ScaleByTorchAdamState(jnp.zeros([], jnp.int32), zeros, zeros)

    def update_fn(updates, state, params=None):
        del params
        count, t, m, v = _moments(updates, state, beta1, beta2)
        bias1, bias2 = 1 - beta1**t, 1 - beta2**t
        rho_inf = 2 / (1 - beta2) - 1
        rho_t = rho_inf - 2 * t * beta2**t / bias2
        tractable = rho_t > 5
        # The ratio is negative for rho_t < 4; it is only used where tractable.
        ratio = (rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t)
        rect = jnp.sqrt(jnp.where(tractable, ratio, 1))
        scale = jnp.where(tractable, rect * jnp.sqrt(bias2), 0)

        def one(m, v):
            m_hat = m / bias1
            return jnp.where(tractable, m_hat * scale / (jnp.sqrt(v) + eps), m_hat)

        return jax.tree.map(one, m, v), ScaleByTorchAdamState(count, m, v)

    return optax.GradientTransformation(init_fn, update_fn)


class ScaleByTorchAdagradState(NamedTuple):
    count: jax.Array
    sum_of_squares: Updates


def scale_by_torch_adagrad(lr_decay=0.0, initial_accumulator_value=0.0, eps=1e-10) -> optax.GradientTransformation:
    """torch.optim.Adagrad (Duchi et al. 2011), without lr: ``g / (sqrt(s) + eps)`` with eps
    outside the square root, ``s`` from ``initial_accumulator_value``, and torch's step-size decay
    ``1 / (1 + (t - 1) lr_decay)``."""

    def init_fn(params):
        full = optax.tree.full_like(params, initial_accumulator_value)
        return ScaleByTorchAdagradState(jnp.zeros([], jnp.int32), full)

    def update_fn(updates, state, params=None):
        del params
        count = optax.safe_increment(state.count)
        decay = 1 / (1 + (_float_step(count, updates) - 1) * lr_decay)
        sums = jax.tree.map(lambda g, s: s + g * g, updates, state.sum_of_squares)
        out = jax.tree.map(lambda g, s: decay * g / (jnp.sqrt(s) + eps), updates, sums)
        return out, ScaleByTorchAdagradState(count, sums)

    return optax.GradientTransformation(init_fn, update_fn)


def with_lr(inner: optax.GradientTransformation, lr) -> optax.GradientTransformation:
    """``inner`` then ``-lr``: the learning rate applied last, as torch does."""
    return optax.chain(inner, optax.scale_by_learning_rate(lr))


def nadam(lr, beta1=0.9, beta2=0.999, eps=1e-8, momentum_decay=4e-3) -> optax.GradientTransformation:
    return with_lr(scale_by_torch_nadam(beta1, beta2, eps, momentum_decay), lr)


def amsgrad(lr, beta1=0.9, beta2=0.999, eps=1e-8) -> optax.GradientTransformation:
    return with_lr(scale_by_torch_amsgrad(beta1, beta2, eps), lr)


def radam(lr, beta1=0.9, beta2=0.999, eps=1e-8) -> optax.GradientTransformation:
    return with_lr(scale_by_torch_radam(beta1, beta2, eps), lr)


def adagrad(lr, lr_decay=0.0, initial_accumulator_value=0.0, eps=1e-10) -> optax.GradientTransformation:
    return with_lr(scale_by_torch_adagrad(lr_decay, initial_accumulator_value, eps), lr)


def rmsprop_momentum(lr, alpha=0.99, eps=1e-8, momentum=0.9, centered=False) -> optax.GradientTransformation:
    """torch.optim.RMSprop(momentum > 0): ``b = momentum b + g/(sqrt(v) + eps)``, ``p -= lr b``.

    optax.rmsprop(momentum=...) scales by lr *before* its momentum trace, so its buffer holds
    past learning rates: the same while lr is constant, not under a schedule. Built from optax's
    own pieces in torch's order.
    """
    scale = optax.scale_by_stddev if centered else optax.scale_by_rms
    return optax.chain(
        scale(decay=alpha, eps=eps, eps_in_sqrt=False),
        optax.trace(decay=momentum),
        optax.scale_by_learning_rate(lr),
    )

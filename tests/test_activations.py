"""Every hidden-layer activation: the engine against torch_ref step by step in float64, the
default (tanh) unchanged, and bad names refused with one line.

Parity is checked with torch_ref.parity's MLP harness (as tests/test_parity.py does), at a tiny
size: two hidden layers of 8, SGD and Adam, the parameters after every step, to the float64
bound of tests/test_engine_parity.py.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from jaxopt_cmp.activations import ACTIVATIONS
from jaxopt_cmp.checks import ConfigError
from jaxopt_cmp.config import ModelConfig
from jaxopt_cmp.model import init_params, make_model
from tests.test_cli import compare
from tests.test_engine_parity import F64_TOL
from torch_ref import model as tmodel
from torch_ref import parity
from torch_ref.convert import params_to_torch


def test_torch_mirrors_every_activation():
    assert set(tmodel.ACTIVATIONS) == set(ACTIVATIONS)


@pytest.mark.parametrize("activation", list(ACTIVATIONS))
def test_forward_matches_torch_including_negative_inputs(activation):
    """Same weights, same inputs (both signs, where relu/gelu/silu differ from tanh): same output."""
    cfg = ModelConfig(xdim=2, hidden=(5, 3), activation=activation)
    params = init_params(jax.random.key(1), cfg, jnp.float32)
    x = np.linspace(-3, 3, 40, dtype=np.float32).reshape(20, 2)
    got = np.asarray(make_model(cfg).apply({"params": params}, x))
    net = params_to_torch(jax.tree_util.tree_map(np.asarray, params), tmodel.make_model(cfg))
    want = net(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-6)
    names = [n for n, _ in net.net.named_children()]
    assert names == ["linear_00", f"{activation}_01", "linear_02", f"{activation}_03", "linear_04"]


def test_gelu_is_the_exact_form_on_both_sides():
    x = jnp.asarray([-2.0, -0.5, 0.7, 1.5], jnp.float32)
    exact = jax.nn.gelu(x, approximate=False)
    np.testing.assert_allclose(ACTIVATIONS["gelu"](x), exact, rtol=1e-7)
    assert float(jnp.max(jnp.abs(exact - jax.nn.gelu(x, approximate=True)))) > 1e-4  # the choice shows
    np.testing.assert_allclose(tmodel.ACTIVATIONS["gelu"]()(torch.tensor(np.asarray(x))).numpy(), exact, atol=1e-6)


HPARAMS = {"sgd": {"lr": 0.05}, "adam": {"lr": 0.01}}


@pytest.mark.parametrize("activation", list(ACTIVATIONS))
def test_training_matches_torch_ref_step_by_step_for_every_activation(activation):
    """The engine's step (``make_step``) and torch_ref's eager step from copied weights on the
    JAX side's batches: parameters after every one of 30 steps agree to float64 rounding."""
    model = ModelConfig(hidden=(8, 8), activation=activation)
    problem = parity.seed_problem(30, 16, model)
    jax_runs = parity.jax_mlp_trajectories(HPARAMS, problem, np.float64, model)
    for name, hp in HPARAMS.items():
        ref = parity.torch_mlp_trajectory(name, problem, np.float64, model, **hp)
        gap_T = parity.deviation_T(jax_runs[name].params_T, ref.params_T)
        assert gap_T.shape == (30,) and np.max(gap_T) <= F64_TOL, (activation, name, np.max(gap_T))
        np.testing.assert_allclose(jax_runs[name].loss_T, ref.loss_T, rtol=F64_TOL)
        assert parity.moved(ref.params_T, problem.params) > 1e-3, (activation, name)  # it trained


def test_default_is_tanh_and_activation_changes_the_function():
    assert ModelConfig().activation == "tanh"
    x = jnp.linspace(-2, 2, 9).reshape(-1, 1)
    outs = {}
    for a in ACTIVATIONS:
        cfg = ModelConfig(hidden=(4,), activation=a)
        outs[a] = np.asarray(make_model(cfg).apply({"params": init_params(jax.random.key(0), cfg)}, x))
    assert len({o.tobytes() for o in outs.values()}) == len(ACTIVATIONS)


def test_unknown_activation_is_refused(usage_error, tmp_path):
    with pytest.raises(ConfigError, match="activation='elu'.*tanh, relu, gelu, silu, sin"):
        ModelConfig(activation="elu")
    err = usage_error(compare, ["--activation", "elu", "--iters", "2", "--out", str(tmp_path / "o")])
    assert err == "compare.py: error: --activation=elu is not allowed: expected one of tanh, relu, gelu, silu, sin"

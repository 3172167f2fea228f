"""The benchmark's torch baselines do the eager loop's job, run by run; bench.py runs and reports.

The stacked (``baddbmm``) and ``torch.func`` implementations in :mod:`torch_ref.batched` are
compared with :func:`torch_ref.train.train_step` on one model per run, from the same weights on
the same batches, at every step, in float64. The benchmark itself is run in a tiny form; no
timing is asserted.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest
import torch

from jaxopt_cmp.config import DataConfig, ModelConfig, seed_study
from torch_ref import batched
from torch_ref.convert import params_from_torch
from torch_ref.data import make_data
from torch_ref.model import make_model
from torch_ref.optimizers import make_optimizer
from torch_ref.train import train_step

ROOT = Path(__file__).resolve().parents[1]
RUNS, STEPS, BATCH, N_DATA = 3, 20, 16, 200
HPARAMS = {"sgd": {"lr": 1e-2}, "momentum": {"lr": 1e-2, "momentum": 0.9}, "adam": {"lr": 1e-2}}
TOL = {"rtol": 1e-10, "atol": 1e-12}  # float64: both sides agree to rounding


class Problem(NamedTuple):
    """R runs, each with its own data ``(N, 1)``, initial model and batch indices ``(T, B)``."""

    models: list
    x_RN1: torch.Tensor
    y_RN1: torch.Tensor
    idx_TRB: torch.Tensor

    def batch(self, t: int):
        take = lambda a: a[torch.arange(RUNS)[:, None], self.idx_TRB[t]]
        return take(self.x_RN1), take(self.y_RN1)


@pytest.fixture(scope="module")
def problem() -> Problem:
    gen = torch.Generator().manual_seed(1234)
    models = [make_model(ModelConfig(), torch.float64, gen) for _ in range(RUNS)]
    data = [make_data(gen, DataConfig(n_data=N_DATA), torch.float64) for _ in range(RUNS)]
    idx = torch.randint(0, N_DATA, (STEPS, RUNS, BATCH), generator=gen)
    return Problem(models, torch.stack([x for x, _ in data]), torch.stack([y for _, y in data]), idx)


def eager_trajectories(problem: Problem, name: str):
    """``loss_RT`` and ``params_RT[r][t]`` (after step t) of one eager model per run."""
    loss_RT, params_RT = np.zeros((RUNS, STEPS)), []
    for r, init in enumerate(problem.models):
        model = make_model(ModelConfig(), torch.float64)
        model.load_state_dict(init.state_dict())
        optimizer = make_optimizer(name, model.parameters(), **HPARAMS[name])
        params_RT.append([])
        for t in range(STEPS):
            idx = problem.idx_TRB[t, r]
            loss_RT[r, t] = train_step(model, optimizer, problem.x_RN1[r][idx], problem.y_RN1[r][idx])
            params_RT[r].append(params_from_torch(model))
    return loss_RT, params_RT


def assert_params_close(got: dict, want: dict, where: str) -> None:
    assert set(got) == set(want), where
    for layer, leaves in want.items():
        for leaf, value in leaves.items():
            np.testing.assert_allclose(got[layer][leaf], value, **TOL, err_msg=f"{where} {layer}.{leaf}")


@pytest.mark.parametrize("name", batched.ELEMENTWISE)
def test_stacked_runs_train_like_one_eager_model_each(problem, name):
    loss_RT, params_RT = eager_trajectories(problem, name)
    run = batched.make_batched(name, batched.stack_models(problem.models), **HPARAMS[name])
    assert run.params[0].shape == (RUNS, 1, 64) and run.params[1].shape == (RUNS, 1, 64)
    for t in range(STEPS):
        loss_R = batched.batched_step(run, *problem.batch(t))
        np.testing.assert_allclose(loss_R.numpy(), loss_RT[:, t], **TOL, err_msg=f"step {t}")
        for r in range(RUNS):
            assert_params_close(batched.unstack(run.params, r), params_RT[r][t], f"{name} run {r} step {t}")


@pytest.mark.parametrize("name", batched.ELEMENTWISE)
def test_torch_func_runs_train_like_one_eager_model_each(problem, name):
    loss_RT, params_RT = eager_trajectories(problem, name)
    runs = batched.func_runs(name, problem.models, **HPARAMS[name])
    grad_fn = batched.make_func_grad(problem.models[0])
    for t in range(STEPS):
        loss_R = batched.func_step(grad_fn, runs, *problem.batch(t))
        np.testing.assert_allclose(loss_R.numpy(), loss_RT[:, t], **TOL, err_msg=f"step {t}")
        for r in range(RUNS):
            got = batched.func_unstack(runs, problem.models[0], r)
            assert_params_close(got, params_RT[r][t], f"{name} run {r} step {t}")


def test_full_data_losses_match_the_eager_model(problem):
    params = batched.stack_models(problem.models)
    func_loss = batched.make_func_loss(problem.models[0])
    stacked = batched.func_runs("sgd", problem.models, lr=0.1).params
    with torch.no_grad():
        want = [torch.mean((m(x) - y) ** 2).item() for m, x, y in zip(problem.models, problem.x_RN1, problem.y_RN1)]
        got_func = func_loss({k: p.detach() for k, p in stacked.items()}, problem.x_RN1, problem.y_RN1)
    np.testing.assert_allclose(batched.batched_mse(params, problem.x_RN1, problem.y_RN1).numpy(), want, **TOL)
    np.testing.assert_allclose(got_func.numpy(), want, **TOL)


def test_stacking_round_trips_and_copies(problem):
    params = batched.stack_models(problem.models)
    for r, model in enumerate(problem.models):
        assert_params_close(batched.unstack(params, r), params_from_torch(model), f"run {r}")
    with torch.no_grad():
        params[0].zero_()
    assert torch.all(next(problem.models[0].parameters()) != 0)  # the models were not touched


def test_stacking_refuses_optimizers_that_are_not_elementwise(problem):
    with pytest.raises(ValueError, match="elementwise"):
        batched.make_batched("lamb", batched.stack_models(problem.models), lr=1e-2)
    with pytest.raises(ValueError, match="elementwise"):
        batched.func_runs("lars", problem.models, lr=1e-2)


# A whole workload, each way the benchmark holds it


def test_torch_runs_of_every_kind_train_the_same_runs():
    """TorchRuns' eager, stacked and torch.func kinds: same data, weights and batches, same losses."""
    cfg = seed_study(seeds=2, iters=1, n_data=N_DATA, batch_size=BATCH, record_predictions=False)
    losses = {}
    for kind in ("eager", "batched", "func"):
        runs = batched.TorchRuns(kind, cfg)
        runs.set_batches(5)
        before = runs.evaluate()
        runs.train(5, eval_steps=frozenset({0, 5}))
        after = np.array(runs.evaluate())
        assert np.all(after < np.array(before)), kind  # it trained
        # eager lists runs seed-major, the stacked kinds optimizer-major
        losses[kind] = after.reshape(2, 3).T.ravel() if kind == "eager" else after
    np.testing.assert_allclose(losses["batched"], losses["eager"], rtol=1e-5)
    np.testing.assert_allclose(losses["func"], losses["eager"], rtol=1e-5)


def test_torch_runs_refuse_an_unknown_kind():
    with pytest.raises(ValueError, match="kind"):
        batched.TorchRuns("jit", seed_study(n_data=N_DATA, record_predictions=False))


# The benchmark script, tiny


TINY = [
    "--quick",
    "--iters",
    "100",
    "--eval-every",
    "50",
    "--seeds-list",
    "2",
    "--grid-list",
    "2",
    "--scaling-iters",
    "100",
    "--repeats",
    "1",
    "--target-s",
    "0.05",
    "--no-compare",
    "--ceiling-size",
    "256",
]


def run_bench(*args):
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bench.py"), *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )


def test_bench_runs_tiny_and_writes_json_markdown_and_plot(tmp_path):
    out = tmp_path / "bench"
    proc = run_bench(*TINY, "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads((out / "bench.json").read_text())
    for key in (
        "schema",
        "date",
        "mode",
        "machine",
        "versions",
        "settings",
        "ceiling",
        "seed_study",
        "throughput",
        "scaling",
        "compare_py",
        "memory",
        "targets",
    ):
        assert key in doc, key
    impls = {"jax", "torch-eager", "torch-batched", "torch-func"}
    assert set(doc["seed_study"]["impls"]) == impls
    assert [w["S"] for w in doc["throughput"]] == [2]
    assert [(p["S"], p["H"], p["runs"]) for p in doc["grid_throughput"]] == [(4, 2, 8)]
    assert doc["grid_throughput"][0]["impls"]["jax"]["rate"]["median"] > 0
    assert doc["grid_throughput"][0]["reference"]["S"] == 2  # the seeds table's largest S, in every repeat
    assert doc["grid_throughput"][0]["ratio_over_reference"]["median"] > 0
    for impl, m in doc["throughput"][0]["impls"].items():
        assert m["rate"]["median"] > 0, impl
    assert set(doc["throughput"][0]["ratio_jax_over"]) == impls - {"jax"}
    assert doc["settings"]["flops_per_model_step"] == 6 * 64 * (1 * 64 + 64 * 64 + 64 * 1)
    assert [p["iters"] for p in doc["scaling"]["iters"]] == [100]
    assert doc["compare_py"] is None and doc["compare_small"] is None and doc["ceiling"]["gflops"]["median"] > 0
    assert set(doc["memory"]) == impls
    md = (out / "bench.md").read_text()
    for text in ("model-steps/s", "Targets", "torch-batched", doc["machine"]["cpu_model"]):
        assert text in md, text
    assert (out / "throughput.png").stat().st_size > 1000
    assert not list(out.glob(".*tmp"))


@pytest.mark.parametrize(
    "argv, flag",
    [
        (["--seeds-list", "0"], "--seeds-list"),
        (["--repeats", "0"], "--repeats"),
        (["--iters", "x"], "--iters"),
        (["--torch-threads", "none"], "--torch-threads"),
        (["--target-s", "-1"], "--target-s"),
    ],
)
def test_bench_bad_flags_exit_2_with_one_line(argv, flag, tmp_path, usage_error):
    sys.path.insert(0, str(ROOT / "scripts"))
    import bench

    err = usage_error(bench, [*argv, "--out", str(tmp_path / "x")])
    assert flag in err and not (tmp_path / "x").exists()  # stopped before making anything

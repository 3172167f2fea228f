"""Learning-rate schedules (``jaxopt_cmp.schedules``) against torch's scheduler classes, and the
compiled engine under a schedule against ``torch_ref`` step by step, in float64.

Boundary steps the issue names: warmup 0 (step 0 at the full lr), the last warmup step
(``t = warmup - 1``), the warmup -> decay switch (``t = warmup``) and the final step
(``t = iters - 1``); with ``eval_every=1`` every step's full-data MSE is compared, so all of them.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from jaxopt_cmp import study as jstudy
from jaxopt_cmp.checks import ConfigError
from jaxopt_cmp.config import (
    DataConfig,
    ModelConfig,
    OptimizerConfig,
    StudyConfig,
    TrainConfig,
    study_from_dict,
    to_dict,
)
from jaxopt_cmp.optimizers import OPTIMIZERS
from jaxopt_cmp.schedules import PARAMS as KIND_PARAMS
from jaxopt_cmp.schedules import SCHEDULES, make_schedule
from tests.test_cli import compare
from tests.test_engine_parity import F64_TOL, assert_parity, run_both
from torch_ref.optimizers import TORCH_OPTIMIZERS, make_scheduler
from torch_ref.parity import MLP_HPARAMS, precision

ITERS = 12
PARAMS = {"final_lr_fraction": 0.25, "step_size": 3, "gamma": 0.5}


def torch_lrs(kind: str, lr: float, iters: int, **params) -> np.ndarray:
    """The lr each of ``iters`` updates uses under torch's scheduler, stepped after each update."""
    p = torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))
    opt = torch.optim.SGD([p], lr=lr)
    sched = make_scheduler(opt, kind, iters, **params)
    out = []
    for _ in range(iters):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        if sched is not None:
            sched.step()
    return np.asarray(out)


@pytest.mark.parametrize("kind", SCHEDULES)
@pytest.mark.parametrize("warmup", [0, 1, 4, ITERS - 1])
@pytest.mark.parametrize("final", [0.0, 0.25])
def test_make_schedule_matches_torch_schedulers(kind, warmup, final):
    params = {} if kind == "constant" else {**PARAMS, "warmup": warmup, "final_lr_fraction": final}
    if kind == "constant" and (warmup or final):
        pytest.skip("constant takes no schedule parameters")
    with precision(np.float64):
        lr_T = np.asarray(make_schedule(kind, np.float64(0.1), ITERS, **params)(np.arange(ITERS)))
    assert lr_T.dtype == np.float64
    # Measured: within 3e-17 of torch's (its recursive formulas); 1e-12 is far above that noise.
    np.testing.assert_allclose(lr_T, torch_lrs(kind, 0.1, ITERS, **params), rtol=1e-12, atol=1e-15)
    if kind == "constant":
        assert np.all(lr_T == 0.1)
        return
    # The conventions (module doc): step 0 uses lr / (warmup + 1); step `warmup` the full lr.
    assert lr_T[0] == pytest.approx(0.1 / (warmup + 1), rel=1e-15)
    if warmup < ITERS - 1:
        assert lr_T[warmup] == pytest.approx(0.1, rel=1e-15)
        if kind in ("cosine", "linear"):
            assert lr_T[-1] == pytest.approx(0.1 * final, abs=1e-17)
    if warmup > 0:
        assert lr_T[warmup - 1] == pytest.approx(0.1 * warmup / (warmup + 1), rel=1e-15)


def test_make_schedule_float64_in_float64_mode():
    """``count / N`` in float64: optax's own schedules compute it in float32 even in x64 mode."""
    iters = 3_000_001  # step / (iters - 1) is not a float32 number
    with precision(np.float64):
        lr = float(make_schedule("linear", np.float64(1.0), iters)(np.int32(1)))
    assert lr == 1 - 1 / (iters - 1)


def exact_under_schedule() -> list[str]:
    return [n for n in OPTIMIZERS if n in TORCH_OPTIMIZERS and TORCH_OPTIMIZERS[n].schedule_parity]


def test_engine_matches_torch_ref_under_schedules():
    """Every registry optimizer exact under a changing lr, one schedule kind each (round robin, so
    every kind runs with several optimizers in one compiled study); grid points warmup 0 and 4 at
    two lrs; every step's full-data MSE, final parameters and predictions within float64 noise."""
    names = exact_under_schedule()
    kinds = ("cosine", "linear", "step")
    opts = []
    for i, name in enumerate(names):
        lr = {**OPTIMIZERS[name].defaults, **MLP_HPARAMS.get(name, {})}["lr"]
        extra = {k: v for k, v in MLP_HPARAMS.get(name, {}).items() if k != "lr"}
        kind = kinds[i % 3]  # each kind takes only its own parameters (issue 30)
        sched = {"schedule": kind, "warmup": [0, 4], **{k: v for k, v in PARAMS.items() if k in KIND_PARAMS[kind]}}
        opts.append(OptimizerConfig.make(name, lr=[lr, lr / 2], **sched, **extra))
    cfg = StudyConfig(
        optimizers=tuple(opts),
        data=DataConfig(n_data=64),
        model=ModelConfig(hidden=(4,)),
        train=TrainConfig(iters=ITERS, eval_every=1, batch_size=8, dtype="float64"),
    )
    engine, torch_result, feeds = run_both(cfg)
    gaps = assert_parity(engine, torch_result, feeds)
    assert max(max(g.values()) for g in gaps.values()) <= F64_TOL
    for name in names:  # the schedule acted: the two warmups end in different places
        final = engine.final_mse_HS[name][:, 0]
        assert final[0] != final[1], name


def test_rmsprop_momentum_optax_is_not_exact_under_a_schedule():
    """The one optimizer the torch table marks inexact: it does differ once lr changes (the
    reason it is skipped above), and it is the only one skipped."""
    assert [n for n in OPTIMIZERS if n not in exact_under_schedule()] == ["rmsprop_momentum_optax"]


def tiny(opt: OptimizerConfig, iters: int = 6) -> StudyConfig:
    return StudyConfig(
        optimizers=(opt,),
        data=DataConfig(n_data=32),
        model=ModelConfig(hidden=(3,)),
        train=TrainConfig(iters=iters, eval_every=2, batch_size=4),
    )


def test_constant_compiles_todays_program_bit_identical(monkeypatch):
    """``schedule="constant"`` builds exactly the unscheduled optimizer (no schedule parameters,
    no iters in its grid): same results, bit for bit, as the pre-schedule ``make_optimizer``."""
    import optax

    from jaxopt_cmp import train

    cfg = tiny(OptimizerConfig.make("adam", lr=[1e-2, 3e-2]))
    assert set(jstudy.grid_arrays(cfg)["adam"]) == set(OPTIMIZERS["adam"].defaults)
    now = jstudy.run_study(cfg)

    def before(name, *args, **hparams):  # the one-liner every study compiled before schedules
        assert not args or args == ("constant",)
        spec = OPTIMIZERS[name]
        return optax.inject_hyperparams(spec.build)(**{**spec.defaults, **hparams})

    monkeypatch.setattr(train, "make_optimizer", before)
    monkeypatch.setattr(jstudy, "_COMPILED", {})  # compile the old path afresh
    np.testing.assert_array_equal(jstudy.run_study(cfg).mse_EHS["adam"], now.mse_EHS["adam"])
    monkeypatch.undo()
    # cosine at final fraction 1 without warmup is lr at every step: the same numbers again.
    flat = jstudy.run_study(tiny(OptimizerConfig.make("adam", lr=[1e-2, 3e-2], schedule="cosine", final_lr_fraction=1)))
    np.testing.assert_array_equal(flat.mse_EHS["adam"], now.mse_EHS["adam"])


def test_new_warmup_and_iters_do_not_recompile():
    first = jstudy.run_study(tiny(OptimizerConfig.make("sgd", lr=0.1, schedule="cosine", warmup=2)))
    again = jstudy.run_study(tiny(OptimizerConfig.make("sgd", lr=0.1, schedule="cosine", warmup=4), iters=8))
    assert again.timing["compile_s"] == 0, again.timing
    assert not np.array_equal(first.final_mse_HS["sgd"], again.final_mse_HS["sgd"])
    # Only the kind is static: the same shapes under another kind compile their own program.
    other = jstudy.run_study(tiny(OptimizerConfig.make("sgd", lr=0.1, schedule="linear", warmup=4), iters=8))
    assert other.timing["compile_s"] > 0, other.timing


def test_saved_config_round_trips_the_schedule():
    cfg = tiny(OptimizerConfig.make("adam", lr=[1e-2, 3e-2], schedule="step", warmup=[0, 2], gamma=0.5))
    back = study_from_dict(to_dict(cfg))
    assert back == cfg and back.optimizers[0].schedule == "step"
    old = to_dict(tiny(OptimizerConfig.make("adam", lr=1e-2)))
    for o in old["optimizers"]:
        del o["schedule"]  # results saved before schedules existed
    assert study_from_dict(old).optimizers[0].schedule == "constant"
    row = next(jstudy.run_study(cfg).rows())
    assert row["schedule"] == "step" and row["warmup"] == 0 and row["gamma"] == 0.5


@pytest.mark.parametrize(
    ("kwargs", "setting"),
    [
        ({"schedule": "exponential"}, "schedule"),
        ({"schedule": "cosine", "warmup": 6}, "warmup"),  # warmup >= iters
        ({"schedule": "cosine", "warmup": -1}, "warmup"),
        ({"schedule": "cosine", "final_lr_fraction": 1.5}, "final_lr_fraction"),
        ({"schedule": "step", "gamma": 0.0}, "gamma"),
        ({"schedule": "step", "step_size": 0}, "step_size"),
        ({"warmup": 2}, "warmup"),  # a schedule parameter without a schedule would mean nothing
    ],
)
def test_bad_schedule_settings_are_refused(kwargs, setting):
    with pytest.raises(ConfigError) as err:
        tiny(OptimizerConfig.make("sgd", lr=0.1, **kwargs))
    assert err.value.setting == setting


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (["--schedule", "exponential"], "--schedule"),
        (["--schedule", "cosine", "--warmup", "6"], "--warmup"),
        (["--schedule", "step", "--step-size", "0"], "--step-size"),
    ],
)  # the library test above covers every rule, these the flag names (compare.py's main, as run)
def test_cli_bad_schedule_one_line_exit_2(flags, expected, tmp_path, usage_error):
    err = usage_error(compare, ["--iters", "6", "--out", str(tmp_path / "o"), *flags])
    assert expected in err, err
    assert not (tmp_path / "o").exists()

"""Flags that conflict, or name a setting the user did not type (issue 30, items 6, 9, 10, 15):
each is one line naming the flag that was used, exit 2, before anything compiles."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import compare  # noqa: E402
import study  # noqa: E402
import tune as tune_script  # noqa: E402

TINY = ["--iters", "50", "--eval-every", "25", "--n-data", "64", "--batch-size", "8", "--hidden", "4", "--no-plots"]


@pytest.mark.parametrize(
    ("script", "axis"),
    [
        (study, ["--grid", "warmup=0,1"]),
        (compare, ["--grid", "warmup=0,1"]),
        (tune_script, ["--space", "warmup=choice(0,1)", "--trials", "2"]),
    ],
)
def test_a_schedule_flag_and_an_axis_of_the_same_name_are_refused(script, axis, usage_error, tmp_path):
    argv = ["--optimizers", "sgd", "--schedule", "cosine", "--warmup", "2", *axis, *TINY, "--out", str(tmp_path / "o")]
    err = usage_error(script, argv)
    assert "--warmup=2 is not allowed: expected either the flag or a --grid/--space axis" in err


@pytest.mark.parametrize(
    ("axis", "named"),
    [
        (["--grid", "warmup=0,60"], "--grid=warmup=0,60 is not allowed: warmup=60: expected less than iters=50"),
        (["--search", "random", "--trials", "2", "--space", "warmup=choice(60)"],
         "--space=warmup=choice(60) is not allowed: warmup=60"),
    ],
)  # fmt: skip
def test_a_refused_axis_value_is_named_by_the_axis_flag(axis, named, usage_error, tmp_path):
    argv = ["--optimizers", "sgd", "--schedule", "cosine", *axis, *TINY, "--out", str(tmp_path / "o")]
    assert named in usage_error(study, argv)


@pytest.mark.parametrize(
    ("schedule", "flag", "value"),
    [("step", "--final-lr-fraction", "0.5"), ("cosine", "--step-size", "5"), ("linear", "--gamma", "0.5"),
     ("constant", "--warmup", "2")],
)  # fmt: skip
def test_a_schedule_parameter_of_another_kind_is_refused(schedule, flag, value, usage_error, tmp_path):
    argv = ["--optimizers", "sgd", "--schedule", schedule, flag, value, *TINY, "--out", str(tmp_path / "o")]
    err = usage_error(study, argv)
    assert f"{flag}={value} is not allowed: does not apply to schedule {schedule}" in err
    assert not (tmp_path / "o").exists()


def test_the_library_and_the_axes_refuse_it_too():
    from jaxopt_cmp.checks import ConfigError
    from jaxopt_cmp.config import OptimizerConfig
    from jaxopt_cmp.search import swept

    with pytest.raises(
        ConfigError, match=r"^step_size=5 is not allowed: does not apply to schedule cosine, which takes"
    ):
        OptimizerConfig.make("adam", schedule="cosine", step_size=5)
    with pytest.raises(ConfigError, match="sgd has no hyperparameter gamma"):
        swept(["sgd"], "cosine", grid=["gamma=0.1,0.5"])
    assert swept(["sgd"], "step", grid=["gamma=0.1,0.5"])["sgd"] == {"gamma": (0.1, 0.5)}


@pytest.mark.parametrize("script", [study, tune_script])
@pytest.mark.parametrize(
    "flags",
    [["--schedule", "cosine"], ["--warmup", "5"], ["--gamma", "0.5"], ["--final-lr-fraction", "0.1"],
     ["--step-size", "3"], ["--iters", "7"]],
)  # fmt: skip
def test_from_refuses_every_training_flag(script, flags, usage_error, tmp_path):
    err = usage_error(script, ["--from", str(tmp_path), *flags])
    assert f"{flags[0]}" in err and "do not apply" in err, err


def test_the_training_flags_are_every_flag_but_the_few_that_do_not_train():
    import _cli

    study.parse_args(["--out", "x"])
    parser = _cli.Parser.last
    args = parser.parse_args(["--no-plots", "--overwrite", "--target-mse", "0.1", "--no-cache", "--warmup", "3"])
    assert _cli.training_flags_given(parser, args) == ["--warmup"]

"""Independent shards (``study.py --shard I/N``) merged (``--merge``) equal one run of the whole
study: results.json (but ``timing``) and every array of arrays.npz bit for bit, runs.csv and
history.csv byte for byte; a missing, duplicate or foreign part is refused with one line."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_same_study

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import _cli  # noqa: E402
import study  # noqa: E402

from jaxopt_cmp.config import seed_study  # noqa: E402
from jaxopt_cmp.shards import seed_range, shard_config  # noqa: E402

# A search study (its trials drawn from the root seed, the same in every part; the README's shard
# commands split an --lrs study): parts of it split the seeds, every trial in every part.
TINY = "--optimizers adam --search random --trials 2 --seeds 4 --iters 40 --eval-every 20 --hidden 8 --n-data 128"
TINY = [*TINY.split(), "--batch-size", "16", "--no-plots"]
TEXTS = ("runs.csv", "history.csv", "summary.txt")


def _study(out: Path, *flags: str) -> Path:
    study.main([*TINY, *flags, "--out", str(out)])
    return out


@pytest.fixture(scope="module")
def whole(tmp_path_factory) -> Path:
    return _study(tmp_path_factory.mktemp("whole") / "out")


@pytest.fixture(scope="module")
def halves(tmp_path_factory) -> list[Path]:
    tmp = tmp_path_factory.mktemp("halves")
    return [_study(tmp / f"s{i}", "--shard", f"{i}/2") for i in range(2)]


def test_seed_ranges_cover_every_seed_once():
    for seeds in range(1, 12):
        for count in range(1, seeds + 1):
            parts = [seed_range(seeds, i, count) for i in range(count)]
            assert [i for a, b in parts for i in range(a, b)] == list(range(seeds))
            assert max(b - a for a, b in parts) - min(b - a for a, b in parts) <= 1


def test_two_shards_merged_equal_one_run(whole, halves, tmp_path):
    shard = json.loads((halves[1] / "results.json").read_text())
    assert shard["shard"]["index"] == 1 and shard["shard"]["count"] == 2 and shard["shard"]["seeds"] == 4
    assert shard["config"]["seeds"] == 2 and shard["config"]["seed_offset"] == 2
    study.main(["--merge", *map(str, reversed(halves)), "--out", str(tmp_path / "m"), "--no-plots"])
    assert_same_study(tmp_path / "m", whole, TEXTS)
    assert (tmp_path / "m" / "report.html").exists()
    timings = [json.loads((d / "results.json").read_text())["timing"] for d in (*halves, tmp_path / "m")]
    assert timings[2]["train_s"] == timings[0]["train_s"] + timings[1]["train_s"]
    assert {line.split(",")[2] for line in (halves[1] / "runs.csv").read_text().splitlines()[1:]} == {"2", "3"}


def test_uneven_shards_merged_equal_one_run(whole, tmp_path, capsys):
    """4 seeds in 3 parts (2, 1, 1 seeds): each part compiles its own seed count."""
    parts = [_study(tmp_path / f"p{i}", "--shard", f"{i}/3") for i in range(3)]
    assert "shard 2/3: seeds 3..3 of 4" in capsys.readouterr().out
    study.main(["--merge", *map(str, parts), "--out", str(tmp_path / "m"), "--no-plots"])
    assert_same_study(tmp_path / "m", whole, TEXTS)


def _edited_copy(part: Path, to: Path, edit) -> Path:
    """A copy of a part's directory whose results.json ``edit(doc)`` changed."""
    import shutil

    shutil.copytree(part, to)
    doc = json.loads((to / "results.json").read_text())
    edit(doc)
    (to / "results.json").write_text(json.dumps(doc))
    return to


def test_missing_duplicate_and_foreign_parts_are_refused(halves, tmp_path, usage_error):
    out = ["--out", str(tmp_path / "m"), "--no-plots"]
    err = usage_error(study, ["--merge", str(halves[0]), *out])
    assert "missing part(s) 1 of 2" in err
    err = usage_error(study, ["--merge", str(halves[0]), str(halves[0]), str(halves[1]), *out])
    assert f"duplicate part 0/2: {halves[0]} and {halves[0]}" in err
    foreign = _edited_copy(halves[1], tmp_path / "foreign", lambda doc: doc["config"].update(seed=7))
    err = usage_error(study, ["--merge", str(halves[0]), str(foreign), *out])
    assert f"{halves[0]} and {foreign} are parts of different studies: config differs (seed: 0 vs 7)" in err
    assert not (tmp_path / "m").exists()


def test_parts_of_other_code_or_versions_or_not_shards_are_refused(halves, whole, tmp_path, usage_error):
    out = ["--out", str(tmp_path / "m"), "--no-plots"]
    for key, what in (("code", "code (jaxopt_cmp source digest)"), ("jax", "versions")):
        edit = lambda doc: (doc["shard"] if key == "code" else doc["versions"]).update({key: "other"})  # noqa: B023
        edited = _edited_copy(halves[1], tmp_path / key, edit)
        assert f"are parts of different studies: {what} differs" in usage_error(
            study, ["--merge", str(halves[0]), str(edited), *out]
        )
    err = usage_error(study, ["--merge", str(halves[0]), str(whole), *out])
    assert f"{whole}: not a shard" in err


def test_bad_shard_flags_are_refused_before_training(tmp_path, usage_error, monkeypatch):
    out = ["--out", str(tmp_path / "x")]
    assert "--shard=2/2 is not allowed: expected a part index in 0..1" in usage_error(
        study, [*TINY, "--shard", "2/2", *out]
    )
    assert "--shard=0/5 is not allowed: expected 1 to 4 parts" in usage_error(study, [*TINY, "--shard", "0/5", *out])
    assert "--shard=half is not allowed: expected I/N" in usage_error(study, [*TINY, "--shard", "half", *out])
    monkeypatch.delenv("SLURM_ARRAY_TASK_ID", raising=False)
    assert "--shard=auto is not allowed: expected a SLURM job array" in usage_error(
        study, [*TINY, "--shard", "auto", *out]
    )
    err = usage_error(study, ["--merge", str(tmp_path), "--seeds", "8", *out])
    assert "joins saved shards; training flags (--seeds) do not apply" in err
    err = usage_error(study, ["--merge", str(tmp_path), "--resume", *out])
    assert "training flags (--resume) do not apply" in err
    assert not (tmp_path / "x").exists()


def test_shard_auto_reads_a_slurm_job_array():
    env = {"SLURM_ARRAY_TASK_ID": "7", "SLURM_ARRAY_TASK_COUNT": "3", "SLURM_ARRAY_TASK_MIN": "3"}
    assert _cli.parse_shard("auto", {**env, "SLURM_ARRAY_TASK_STEP": "2"}) == (2, 3)  # --array=3-7:2
    assert _cli.parse_shard("auto", {"SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_TASK_COUNT": "4"}) == (1, 4)


def test_a_shards_seeds_are_the_whole_studys_seeds():
    """Part 1 of 2 of 4 seeds trains global seeds 2 and 3 (their keys), not seeds 0 and 1."""
    import jax

    from jaxopt_cmp.study import seed_keys

    cfg = seed_study(seeds=4, iters=40)
    part = shard_config(cfg, 1, 2)
    assert (part.seeds, part.seed_offset) == (2, 2)
    whole_keys = jax.random.key_data(seed_keys(cfg.seed, 4))
    np.testing.assert_array_equal(jax.random.key_data(seed_keys(cfg.seed, 2, part.seed_offset)), whole_keys[2:])

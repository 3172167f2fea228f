"""What checkpointing costs a study (``study.py --checkpoint-every``): the bench's checkpoint row.

One compiled study trains ``repeats`` times without a checkpoint and with each interval, the
order rotated per repeat (so each ratio compares runs made under the same load); the train times'
medians, each interval's ratio to no checkpoint, the saves and the seconds per save. At the
default interval (60 s) a study shorter than a minute never saves; what it would cost a long study
is one save per interval: the per-save seconds measured at a short interval over 60 s.
"""

from __future__ import annotations

import statistics
from pathlib import Path

from jaxopt_cmp.bench.fmt import seconds_range, table
from jaxopt_cmp.bench.timing import summary
from jaxopt_cmp.checkpoint import Checkpoint, study_digest
from jaxopt_cmp.config import StudyConfig

DEFAULT_EVERY_S = 60.0  # study.py's --checkpoint-every default
TARGET = 0.02  # the bound on the slowdown at the default interval


def measure(cfg: StudyConfig, out: str | Path, intervals=(DEFAULT_EVERY_S, 1e-9), repeats: int = 3) -> dict:
    """Train times of ``cfg`` without a checkpoint and checkpointing (into ``out``) at each of
    ``intervals`` seconds (``1e-9``: at every evaluation boundary); see the module doc."""
    from jaxopt_cmp.study import prepare_study

    prepare_study(cfg).run()  # compiles; nobody's train time
    digest = study_digest(cfg)
    kinds = [None, *intervals]
    train = {k: [] for k in kinds}
    saves = {k: [] for k in intervals}
    per_save, size = [], 0
    for r in range(repeats):
        for every in kinds[r % len(kinds) :] + kinds[: r % len(kinds)]:
            saver = None if every is None else Checkpoint(out, digest, every)
            result = prepare_study(cfg).run(checkpoint=saver)
            train[every].append(result.timing["train_s"])
            if saver is not None:
                saves[every].append(saver.saves)
                if saver.saves:
                    per_save.append(saver.save_s / saver.saves)
                    size = saver.path.stat().st_size
                saver.remove()
    base = statistics.median(train[None])
    rows = [
        {"every_s": every, "train_s": summary(train[every]), "saves": saves[every]}
        | {"ratio": statistics.median(train[every]) / base}
        for every in intervals
    ]
    per = summary(per_save)
    projected = None if per["median"] is None else per["median"] / DEFAULT_EVERY_S
    return {
        "runs": sum(o.grid_size for o in cfg.optimizers) * cfg.seeds,
        "iters": cfg.train.iters,
        "eval_every": cfg.train.eval_every,
        "repeats": repeats,
        "train_s": summary(train[None]),
        "intervals": rows,
        "per_save_s": per,
        "checkpoint_mb": size / 2**20,
        "projected_at_default": projected,
        "target": TARGET,
        "met": projected is not None and projected <= TARGET,
    }


def markdown(doc: dict) -> str:
    """The checkpoint row as a markdown table and one line on the target."""
    rows = [["none", seconds_range(doc["train_s"]), "", "1.000x"]]
    for r in doc["intervals"]:
        every = "every boundary" if r["every_s"] < 1e-3 else f"{r['every_s']:g} s"
        rows.append([every, seconds_range(r["train_s"]), ",".join(map(str, r["saves"])), f"{r['ratio']:.3f}x"])
    head = (
        f"Checkpoint cost: {doc['runs']} runs x {doc['iters']} steps (evaluation every {doc['eval_every']}), "
        f"{doc['repeats']} interleaved repeats, medians (min-max)"
    )
    lines = [head, "", *table(["--checkpoint-every", "train s", "saves per run", "vs none"], rows), ""]
    per = doc["per_save_s"]
    if per["median"] is not None:
        verdict = "met" if doc["met"] else "NOT met"
        lines.append(
            f"per save {seconds_range(per)} s ({doc['checkpoint_mb']:.1f} MB): at the default "
            f"{DEFAULT_EVERY_S:g} s interval a long study spends {doc['projected_at_default']:.2%} of its time "
            f"saving (target <= {doc['target']:.0%}: {verdict})"
        )
    return "\n".join(lines) + "\n"

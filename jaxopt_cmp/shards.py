"""Independent shards of one study, and their merge.

Part ``i`` of ``n`` trains a contiguous block of the study's seeds (``numpy.array_split``'s sizes:
the first ``seeds % n`` parts hold one seed more) under their global indices
(``StudyConfig.seed_offset``), so its seeds are exactly those seeds of the whole study. Its
results carry a shard record (``StudyResult.shard``: part, part count, the whole study's seed
count, a digest of this library's code). :func:`merge_shards` joins every part of one study into
the result the whole study would have given: the same arrays bit for bit, the same config; only
``timing`` (summed over the parts) and, where the parts ran on other device layouts than each
other, ``versions["placement"]`` differ.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import replace
from pathlib import Path

import numpy as np

from jaxopt_cmp.checks import ConfigError, is_int
from jaxopt_cmp.config import StudyConfig, to_dict
from jaxopt_cmp.results import ResultsError, StudyResult, load_result

# Versions that may differ between the parts of one study (where and how many processes ran).
LAYOUT_KEYS = ("placement", "device_count", "process_count")


class ShardError(ResultsError):
    """Directories that are not the parts of one study, all of them, once each."""


def seed_range(seeds: int, index: int, count: int) -> tuple[int, int]:
    """``(first, stop)``: the global seed indices of part ``index`` of ``count``."""
    size, extra = divmod(seeds, count)
    first = index * size + min(index, extra)
    return first, first + size + (index < extra)


def shard_config(cfg: StudyConfig, index: int, count: int) -> StudyConfig:
    """``cfg`` (the whole study, ``seed_offset`` 0) cut to part ``index`` of ``count``."""
    if not (is_int(count) and 1 <= count <= cfg.seeds):
        raise ConfigError("shard", f"{index}/{count}", f"expected 1 to {cfg.seeds} parts (seeds={cfg.seeds})")
    if not (is_int(index) and 0 <= index < count):
        raise ConfigError("shard", f"{index}/{count}", f"expected a part index in 0..{count - 1}")
    if cfg.seed_offset != 0:
        raise ConfigError("seed_offset", cfg.seed_offset, "expected 0: shards are cut from a whole study")
    first, stop = seed_range(cfg.seeds, index, count)
    return replace(cfg, seeds=stop - first, seed_offset=first)


def shard_record(whole: StudyConfig, index: int, count: int) -> dict:
    """What a part's results record about it (``results.json``'s ``shard``)."""
    return {"index": index, "count": count, "seeds": whole.seeds, "code": code_digest()}


def code_digest() -> str:
    """sha256 of this library's source files (names and bytes): parts of one study ran one code."""
    root = Path(__file__).resolve().parent
    h = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        h.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def _whole(cfg: StudyConfig, record: dict) -> dict:
    return to_dict(replace(cfg, seeds=record["seeds"], seed_offset=0))


def _first_difference(a, b, path: str = "") -> str:
    """``"train.iters: 40 vs 50"``: the first setting in which two nested dicts differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b), key=str):
            if a.get(k) != b.get(k):
                return _first_difference(a.get(k), b.get(k), f"{path}.{k}" if path else str(k))
    return f"{path or 'value'}: {a!r} vs {b!r}"


def merge_shards(dirs: list[str | os.PathLike]) -> StudyResult:
    """The whole study from the directories of all its parts (any order); ``ShardError`` naming
    the directories for a part of another study (config, code, library versions), a duplicate
    or a missing part, or a directory that is not a part."""
    parts: list[tuple[Path, StudyResult]] = []
    for d in dirs:
        result, _ = load_result(d)
        rec = result.shard
        if not {"index", "count", "seeds", "code"} <= set(rec):
            raise ShardError(f"{d}: not a shard (its results.json has no shard record; shards run with --shard I/N)")
        parts.append((Path(d), result))
    (d0, r0), checks = parts[0], []
    for d, r in parts[1:]:
        checks = [
            ("part count", r0.shard["count"], r.shard["count"]),
            ("config", _whole(r0.config, r0.shard), _whole(r.config, r.shard)),
            ("code (jaxopt_cmp source digest)", r0.shard["code"], r.shard["code"]),
            ("versions", *({k: v for k, v in x.versions.items() if k not in LAYOUT_KEYS} for x in (r0, r))),
        ]
        for what, a, b in checks:
            if a != b:
                raise ShardError(
                    f"{d0} and {d} are parts of different studies: {what} differs ({_first_difference(a, b)})"
                )
    count = r0.shard["count"]
    by_index: dict[int, Path] = {}
    for d, r in parts:
        i = r.shard["index"]
        if i in by_index:
            raise ShardError(f"duplicate part {i}/{count}: {by_index[i]} and {d}")
        by_index[i] = d
        held = (r.config.seed_offset, r.config.seed_offset + r.config.seeds)
        if held != seed_range(r.shard["seeds"], i, count):
            raise ShardError(f"{d}: part {i}/{count} holds seeds {held[0]}..{held[1] - 1}, not that part's")
    missing = [str(i) for i in range(count) if i not in by_index]
    if missing:
        raise ShardError(f"missing part(s) {', '.join(missing)} of {count} (given: {', '.join(map(str, dirs))})")
    ordered = [r for _, r in sorted(parts, key=lambda p: p[1].shard["index"])]
    return _join(ordered)


def _join(parts: list[StudyResult]) -> StudyResult:
    """Parts in order (checked) -> the whole study's result: seed axes concatenated."""
    first = parts[0]
    cfg = replace(first.config, seeds=first.shard["seeds"], seed_offset=0)
    names = cfg.optimizer_names
    cat = lambda get, axis: {n: np.concatenate([get(p, n) for p in parts], axis) for n in names}
    placements = list(dict.fromkeys(p.versions.get("placement", "") for p in parts))
    versions = {**first.versions, "placement": placements[0] if len(placements) == 1 else " | ".join(placements)}
    timing = {}
    for p in parts:
        for k, v in p.timing.items():
            timing[k] = timing.get(k, 0.0) + v if k.endswith("_s") else max(timing.get(k, v), v)
    return StudyResult(
        config=cfg,
        eval_steps=first.eval_steps,
        grid=first.grid,
        mse_EHS=cat(lambda p, n: p.mse_EHS[n], 2),
        diverged_at_HS=cat(lambda p, n: p.diverged_at_HS[n], 1),
        params_HS={},
        pred_EHN=first.pred_EHN,  # seed 0's, like x_N and y_N: part 0 starts at seed 0
        x_N=first.x_N,
        y_N=first.y_N,
        timing=timing,
        versions=versions,
        val_mse_EHS=cat(lambda p, n: p.heldout("val", n), 2),
        test_mse_EHS=cat(lambda p, n: p.heldout("test", n), 2),
    )

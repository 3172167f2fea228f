"""Reporting: bench.md (the README's tables) and the throughput figure, from the bench.json document."""

from __future__ import annotations

import io

from jaxopt_cmp.bench.fmt import mb, pct_range, rate_range, seconds_range, table, x_range
from jaxopt_cmp.bench.process import TIMING_KEYS
from jaxopt_cmp.bench.settings import COMPILE, JAX, THREADS_MARGIN


def markdown(doc: dict) -> str:
    """The whole report: header, seed study, throughput, scaling, memory, targets, method."""
    sections = (_header, _seed_study, _compare_py, _throughput, _grid, _scaling, _memory, _targets)
    out = [line for section in sections for line in section(doc)]
    return "\n".join([*out, "", "### How this was measured", "", *(f"- {n}" for n in method_notes(doc)), ""])


def machine_line(doc: dict) -> str:
    m, v = doc["machine"], doc["versions"]
    load = lambda key: ", ".join(f"{x:.1f}" for x in m[key])
    return (
        f"{doc['date']} · {m['cpu_model']} · {m['cores']} cores · {m['memory_gb']} GB · "
        f"jax {v['jax']} on {m['jax_platform']} ({m['jax_device']} x{m['jax_device_count']}) · "
        f"torch {v['torch']} · load average {load('loadavg_start')} at start, {load('loadavg_end')} at end"
    )


def _header(doc: dict) -> list[str]:
    s, c = doc["settings"], doc["ceiling"]
    flops, ceiling = s["flops_per_model_step"], c["gflops"]
    return [
        f"## Benchmark: jaxopt_cmp vs PyTorch ({doc['mode']} mode)",
        "",
        machine_line(doc),
        "",
        f"Model {s['model']}, minibatch {s['batch_size']}: **{flops / 1e6:.2f} MFLOP per model-step** "
        "(one optimizer update of one model: forward 2·B·Σ fan_in·fan_out + backward 2x). "
        f"Measured float32 matmul ceiling ({c['by']}, {c['size']}³): "
        f"**{ceiling['median']:.0f} GFLOP/s** (min-max {ceiling['min']:.0f}-{ceiling['max']:.0f} over "
        f"{len(ceiling['values'])} repeats) = {ceiling['median'] * 1e9 / flops:,.0f} model-steps/s; torch's: "
        f"{c['torch_gflops']['median']:.0f} GFLOP/s on {c['torch_gflops']['threads']} threads. "
        f"Figures are medians (min-max) of {s['repeats']} interleaved repeats.",
        "",
    ]


def _seed_study(doc: dict) -> list[str]:
    ss = doc["seed_study"]
    rows = []
    for impl, m in ss["impls"].items():
        ratio = "1" if impl == JAX else x_range(ss["ratio_jax_over"][impl])
        compile_s = f"{m['compile_s']:.1f}" if m.get("compile_s") is not None else "-"
        memory = mb(doc["memory"][impl]["seed study"])
        rows.append([impl, f"{m['steps']:,}", rate_range(m["rate"]), ratio, compile_s, m["threads"] or "XLA", memory])
    header = ["implementation", "iterations timed", "model-steps/s", "jax ÷ this", "compile s", "threads"]
    t10 = ss["torch_eager_train_s_10k"]
    return [
        f"### Seed study: 3 optimizers x 1 seed, full-data MSE every {ss['eval_every']} iterations",
        "",
        *table([*header, "peak RSS MB"], rows),
        "",
        f"torch-eager training time for 10,000 iterations: {t10['value']:.1f} s"
        + (" (extrapolated)" if t10["extrapolated"] else "")
        + ".",
    ]


def _compare_py(doc: dict) -> list[str]:
    """compare.py as whole processes, cold and warm cache, with its own timing breakdown: the seed
    study, then the tiny one."""
    return [line for study in ("compare_py", "compare_small") for line in _compare_runs(doc.get(study))]


def _compare_runs(c: dict | None) -> list[str]:
    if not c:
        return []
    pairs = sum(r["kind"] == next(iter(c["kinds"])) for r in c["runs"])
    header = [
        "compare.py run",
        "whole process s",
        "÷ torch-eager training",
        *(k.removesuffix("_s") + " s" for k in TIMING_KEYS),
    ]
    rows = [
        [
            kind,
            seconds_range(k["wall_s"]),
            x_range(k["over_eager_train"], 2),
            *(seconds_range(k[t]) for t in TIMING_KEYS),
        ]
        for kind, k in c["kinds"].items()
    ]
    errors = [f"- {r['kind']} run failed: {r['error']}" for r in c["runs"] if r.get("error")]
    return [
        "",
        f"Whole `{c['command']}` ({pairs} run(s) of each kind; cold: empty cache directory, warm: the same "
        "directory again), beside the torch-eager training time above; setup/compile/train/figures from each "
        "run's results.json `timing` (n/a: not recorded):",
        "",
        *table(header, rows),
        *([""] + errors if errors else []),
    ]


def _throughput(doc: dict) -> list[str]:
    s, points = doc["settings"], doc["throughput"]
    impls = list(doc["seed_study"]["impls"])
    torch_impls = impls[1:]
    rows = [
        [
            p["S"],
            *(rate_range(p["impls"][i]["rate"]) for i in impls),
            pct_range(p["impls"][JAX]["fraction_of_ceiling"]),
            f"{p['ceiling_gflops']['median']:.0f}",
        ]
        for p in points
    ]
    ratios = [[p["S"], *(x_range(p["ratio_jax_over"][i]) for i in torch_impls), _best(p)] for p in points]
    threads = [[p["S"], *(p["impls"][i]["threads"] for i in torch_impls)] for p in points]
    return [
        "",
        "### Throughput vs seeds: model-steps/s, 3 optimizers x S seeds (steady-state training)",
        "",
        f"The seed problem fitted to {s['throughput_n_data']:,} points (a step's cost does not depend on it).",
        "",
        *table(["S", *impls, "jax % of ceiling", "ceiling GFLOP/s"], rows),
        "",
        "jax ÷ torch, per repeat:",
        "",
        *table(["S", *(f"jax ÷ {i}" for i in torch_impls), "jax ÷ best torch"], ratios),
        "",
        "torch threads used (auto: the faster of the candidates, measured per workload):",
        "",
        *table(["S", *torch_impls], threads),
    ]


def _grid(doc: dict) -> list[str]:
    """jax's rate at a tuning study's shape (S seeds x H grid points per optimizer) beside its rate
    at the largest S of the seeds table, timed in the same repeats."""
    points = doc.get("grid_throughput") or []
    if not points:
        return []
    ref = points[0]["reference"]["S"]
    rows = [
        [
            p["S"],
            p["H"],
            f"{len(doc['settings']['optimizers']) * p['runs']:,}",
            rate_range(p["impls"][JAX]["rate"]),
            pct_range(p["impls"][JAX]["fraction_of_ceiling"]),
            " / ".join(f"{c:.1f}" for c in p["impls"][JAX]["compile_s"]),
            rate_range(p["reference"]["rate"]),
            x_range(p["ratio_over_reference"], 2),
        ]
        for p in points
    ]
    lrs = doc["settings"]["grid_lrs"]
    header = ["S", "H", "runs", "jax", "jax % of ceiling", "compile s (short / long)", f"S={ref}", f"÷ S={ref}"]
    return [
        "",
        "### Throughput vs grid points: model-steps/s, 3 optimizers x S seeds x H lrs (jax, steady state)",
        "",
        f"A tuning study's shape: every optimizer at H lrs log-spaced over [{lrs[0]:g}, {lrs[1]:g}], each on S "
        f"seeds, {doc['settings']['throughput_n_data']:,} points. Beside each row, jax at S={ref} (the seeds "
        "table's largest S, its own worker) is timed in every repeat; the last column is the row's rate over "
        "it, repeat by repeat.",
        "",
        *table(header, rows),
    ]


def _best(point: dict) -> str:
    return f"{x_range(point['ratio_jax_over_best_torch'])} ({point['best_torch']})"


def _scaling(doc: dict) -> list[str]:
    sc, eval_every = doc["scaling"], doc["seed_study"]["eval_every"]
    per_1k = lambda p: 1000 * p["time_s"]["median"] / p["iters"]
    rows = [
        [
            f"{p['iters']:,}",
            f"{p['compile_s']:.2f}",
            f"{p['compile_cpu_s']:.2f}",
            f"{p['time_s']['median']:.3f}",
            f"{per_1k(p):.3f}",
        ]
        for p in sc["iters"]
    ]
    header = [f"iterations (S=1, eval every {eval_every})", "compile s", "compile CPU s", "run s", "run s per 1k it"]
    pair = lambda values, spec: " / ".join(format(v, spec) if v is not None else "n/a" for v in values)
    keys = (("iters", ","), ("compile_s", ".2f"), ("compile_cpu_s", ".2f"), ("xla_temp_mb", ",.0f"))
    by_seeds = [[p["S"], *(pair(p["impls"][JAX][k], spec) for k, spec in keys)] for p in doc["throughput"]]
    out = ["", "### Compile time and scaling (jax)", "", *table(header, rows), ""]
    out += table(["S", "iterations (short / long run)", "compile s", "compile CPU s", "XLA temp MB"], by_seeds)
    if COMPILE in doc["seed_study"]["impls"]:
        rows = [[p["S"], f"{p['impls'][COMPILE]['compile_s']:.1f}"] for p in doc["throughput"]]
        out += ["", "torch.compile warm-up (first 3 steps, compiling):", "", *table(["S", "compile s"], rows)]
    return out


def _memory(doc: dict) -> list[str]:
    memory = doc["memory"]
    keys = list(memory[JAX])
    rows = [[impl, *(mb(memory[impl].get(k)) for k in keys)] for impl in doc["seed_study"]["impls"]]
    return [
        "",
        "### Peak memory (RSS MB of each implementation's own worker process)",
        "",
        *table(["implementation", *keys], rows),
    ]


def _targets(doc: dict) -> list[str]:
    verdict = lambda met: "not measured" if met is None else ("met" if met else "**missed**")
    rows = [[t["target"], t["measured"], verdict(t["met"])] for t in doc["targets"]]
    return ["", "### Targets", "", *table(["target", "measured", "verdict"], rows)]


def method_notes(doc: dict) -> list[str]:
    s = doc["settings"]
    return [
        "Every implementation runs in its own spawned worker process; the parent runs one repeat of each in turn "
        "(order rotated per repeat), so ratios compare runs made under the same machine conditions, repeat by repeat.",
        "jax: `jaxopt_cmp.study.compile_study` (lax.scan over steps, vmap over seeds, one jit), "
        "timed around `jax.block_until_ready(compiled(keys, grid))` after one untimed call. As in the scripts, "
        "there is one XLA host device per core (`scripts/_cli.py`), and seeds are sharded across them when S "
        f"divides evenly (here {doc['machine']['jax_device_count']} devices; S=1: the optimizers in lanes, one "
        "per device).",
        "jax throughput is steady-state: two compiled runs of I/4 and I iterations with the same two full-data "
        "evaluations; rate = 3·S·(3I/4) / (t(I) - t(I/4)), which removes data generation, init and evaluation. "
        "bench.json also has the end-to-end rate of the longer run.",
        "torch throughput: a timed loop over data, initial weights and batch indices made up front (seeded "
        "torch generators), steps calibrated to about "
        f"{s['target_s']:g} s per repeat after warm-up; no evaluations.",
        "Seed study: jax times the whole compiled study (data, init, every step and every evaluation); torch-eager "
        "is `torch_ref.train.run_study`'s `train_s` (the reference loop as `compare.py --framework torch` runs "
        "it: per-step randperm batches and divergence guard); torch-batched/func/compile run the same evaluation "
        f"schedule over {s['fast_seed_iters']:,} iterations.",
        "torch-eager is single threaded (`torch_ref.train.single_threaded`); the stacked implementations use the "
        f"fastest of {list(s['torch_threads'])} threads, measured per workload (more threads only when at least "
        f"{THREADS_MARGIN:g}x faster: on a shared machine OpenMP barriers make multi-threaded steps erratic); "
        "torch-compile uses torch-batched's.",
        "torch-batched and torch-func train each seed exactly as its own eager model does (elementwise optimizers "
        "on stacked tensors; tests/test_bench.py checks every step in float64).",
        "Whole process: `compare.py` with its defaults (10,000 iterations, figures on) run as a subprocess while "
        "the workers wait, wall time from start to exit; ratios are over the torch-eager training time above.",
        "Peak RSS: `ru_maxrss` of the implementation's worker after each workload; workloads run in increasing size, "
        "so each figure is that workload's peak (including the process's own baseline, shown as after_import).",
        f"FLOPs per model-step are counted from the model config ({s['flops_per_model_step']:,}); "
        "% of ceiling = model-steps/s x FLOPs per model-step / the matmul's GFLOP/s, repeat by repeat: the "
        "matmul is timed in every repeat (in its own process), so both see the same load.",
        "Machine load from other processes shows up as spread (min-max); the load average is printed above.",
    ]


def throughput_figure(doc: dict):
    """Model-steps/s against S for every implementation, with the matmul ceiling: a Figure (no pyplot)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.5, 5))
    ax = fig.add_subplot()
    for impl in doc["seed_study"]["impls"]:
        pts = [(p["S"], p["impls"][impl]["rate"]) for p in doc["throughput"] if p["impls"][impl]["rate"]["median"]]
        if pts:
            med = [r["median"] for _, r in pts]
            err = [[m - r["min"] for m, (_, r) in zip(med, pts)], [r["max"] - m for m, (_, r) in zip(med, pts)]]
            ax.errorbar([x for x, _ in pts], med, yerr=err, marker="o", capsize=3, label=impl)
    gflops = doc["ceiling"]["gflops"]["median"]
    ceiling = gflops * 1e9 / doc["settings"]["flops_per_model_step"]
    ax.axhline(ceiling, color="grey", linestyle="--", label=f"matmul ceiling ({gflops:.0f} GFLOP/s)")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    seeds = [p["S"] for p in doc["throughput"]]
    ax.set_xticks(seeds, [str(x) for x in seeds])
    ax.minorticks_off()
    ax.set_xlabel("seeds per optimizer S (3 optimizers)")
    ax.set_ylabel("model-steps / s (median, min-max bars)")
    ax.set_title("Training throughput vs seeds: jaxopt_cmp vs PyTorch")
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    m = doc["machine"]
    note = f"{m['cpu_model']}, {m['cores']} cores; jax device: {m['jax_platform']} ({m['jax_device']}); {doc['date']}"
    fig.text(0.01, 0.01, note, fontsize=7, color="dimgrey")
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    return fig


def png_bytes(fig, dpi: int = 100) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()

"""Why one optimizer fits better than another: curvature, steps and where the error is, measured
inside the compiled, vmapped run of a study (every optimizer, grid point and seed).

At every evaluation step of every run, on the full data: the MSE and its gradient norm; the
sharpness (top Hessian eigenvalue) by a few Lanczos iterations of Hessian-vector products, warm
started from the previous evaluation's top vector; for Adam-family runs the preconditioned
sharpness (top eigenvalue of ``P^-1/2 H P^-1/2``, ``P = diag(sqrt(v_hat) + eps) / lr`` from the
run's own optimizer state); the last step's minibatch-gradient norm, update norm, effective step
size (update norm / minibatch-gradient norm) and full-data loss decrease; the error by region of
``x`` and by frequency band of the residual. At ``spectrum_at`` evaluation steps (first, middle,
last by default) the exact Hessian spectrum of each run on a fixed data subsample (see
:func:`subsample_indices`), and for Adam-family runs that of ``P^-1/2 H P^-1/2``.

The runs reuse the engine's pieces (:func:`jaxopt_cmp.train.seed_inputs`, ``make_step``,
:func:`jaxopt_cmp.data.batch_indices`), so a run here trains exactly as in ``run_study``: same
data, initial weights and minibatches per seed. Diagnostics cost HVPs on the full data at every
evaluation, so they are a separate program: ordinary studies never pay for them.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from jaxopt_cmp import curvature
from jaxopt_cmp.checks import ConfigError, check_int
from jaxopt_cmp.config import StudyConfig
from jaxopt_cmp.data import Data, batch_indices
from jaxopt_cmp.io import json_safe
from jaxopt_cmp.model import mse
from jaxopt_cmp.optimizers import make_optimizer
from jaxopt_cmp.study import seed_keys
from jaxopt_cmp.targets import TARGETS
from jaxopt_cmp.train import RunState, SeedInputs, flat_model, make_step, seed_inputs

SUBSAMPLE = 512  # data points of the exact spectrum: see subsample_check and the README "Why" section
LANCZOS_ITERS = 12  # HVPs per sharpness estimate (warm started)
GRID_POINTS = 1024  # uniform x grid of the residual's FFT
START_KEY = 20211  # the Lanczos start vector's key at step 0: part of the method, not of a seed

# Regions of |x| for the seed's target exp(-x^2) cos(10x), bounded by zeros of cos(10x),
# x_k = (2k + 1) pi / 20: the central peak (|x| < x_0 = 0.157), the first troughs beside it
# (to x_1 = 0.471), the inner lobes (envelope > 0.30, to x_3 = 1.100), the outer lobes (envelope
# 0.30 -> 0.016, to x_6 = 2.042) and the tails (envelope below 0.016, under the noise std 0.03).
REGIONS = (
    ("peak", 0.0, math.pi / 20),
    ("first troughs", math.pi / 20, 3 * math.pi / 20),
    ("inner lobes", 3 * math.pi / 20, 7 * math.pi / 20),
    ("outer lobes", 7 * math.pi / 20, 13 * math.pi / 20),
    ("tails", 13 * math.pi / 20, math.inf),
)
# Bands of the residual's spectrum (cycles per unit x) around the target's frequency
# f0 = 10 / (2 pi) = 1.59; the Gaussian envelope spreads the target over about f0 +- 0.5.
F0 = 10 / (2 * math.pi)
BANDS = (
    ("below f0", 0.0, F0 / 2),
    ("around f0", F0 / 2, 1.5 * F0),
    ("above f0", 1.5 * F0, 3 * F0),
    ("far above", 3 * F0, math.inf),
)


class EvalOut(NamedTuple):
    """One evaluation of one run (scalars, ``region_R``, ``band_F``); NaN where undefined."""

    mse: jax.Array
    grad_norm: jax.Array
    sharpness: jax.Array
    precond_sharpness: jax.Array
    batch_grad_norm: jax.Array
    update_norm: jax.Array
    loss_drop: jax.Array
    region_R: jax.Array
    band_F: jax.Array


class LastStep(NamedTuple):
    """The chunk's last step: minibatch-gradient norm, update norm, full-data loss before it."""

    batch_grad_norm: jax.Array
    update_norm: jax.Array
    loss_before: jax.Array


class DiagRun(NamedTuple):
    """One run's loop state: the engine's ``RunState`` plus the warm-start vectors."""

    run: RunState
    v_P: jax.Array
    pv_P: jax.Array
    last: LastStep


class DiagCarry(NamedTuple):
    runs: dict[str, DiagRun]  # axes (H, S)
    seeds: SeedInputs  # axis S


class RunDiagnostics(NamedTuple):
    """One optimizer's diagnostics, numpy arrays named by axes: E evaluations, H grid points,
    S seeds, R regions, F bands, K spectrum steps, P parameters. ``eig_KHSP`` is ascending;
    ``precond_eig_KHSP`` is NaN for optimizers without Adam's preconditioner and at step 0."""

    mse_EHS: np.ndarray
    grad_norm_EHS: np.ndarray
    sharpness_EHS: np.ndarray
    precond_sharpness_EHS: np.ndarray
    batch_grad_norm_EHS: np.ndarray
    update_norm_EHS: np.ndarray
    step_size_EHS: np.ndarray
    loss_drop_EHS: np.ndarray
    region_mse_EHSR: np.ndarray
    band_mse_EHSF: np.ndarray
    eig_KHSP: np.ndarray
    precond_eig_KHSP: np.ndarray
    lanczos_top_KHS: np.ndarray  # Lanczos (cold start) on the subsample, vs eig_KHSP[..., -1]
    params_KHSP: np.ndarray
    scaling_KHSP: np.ndarray  # Adam's D = P^-1/2 at the spectrum steps (NaN otherwise)


class Diagnostics(NamedTuple):
    config: StudyConfig
    eval_steps: np.ndarray  # (E,)
    spectrum_steps: np.ndarray  # (K,)
    grid: dict[str, dict[str, np.ndarray]]  # optimizer -> hyperparameter -> (H,)
    runs: dict[str, RunDiagnostics]
    regions: tuple[tuple[str, float, float], ...]
    region_count_SR: np.ndarray
    bands: tuple[tuple[str, float, float], ...]
    subsample: int
    lanczos_iters: int
    timing: dict[str, float]


def subsample_indices(x_N: np.ndarray, n: int) -> np.ndarray:
    """``n`` indices: every ``N/n``-th point in order of ``x`` (ranks ``(i + 1/2) N / n``), a
    deterministic sample stratified in ``x`` that keeps the peak, lobes and tails in proportion."""
    order = np.argsort(np.asarray(x_N).reshape(-1), kind="stable")
    return order[((np.arange(n) + 0.5) * len(order) / n).astype(int)]


def region_mse(absx_N, r2_N, regions) -> jax.Array:
    """Mean of ``r2_N`` over the points of each region of ``|x|`` (NaN for an empty region)."""
    edges = jnp.asarray([hi for _, _, hi in regions[:-1]], r2_N.dtype)
    ids = jnp.searchsorted(edges, absx_N, side="right")
    total = jax.ops.segment_sum(r2_N, ids, num_segments=len(regions))
    count = jax.ops.segment_sum(jnp.ones_like(r2_N), ids, num_segments=len(regions))
    return total / count


def band_mse(r_M, length: float, bands) -> jax.Array:
    """The mean square of a residual sampled at ``M`` uniform points over a period ``length``,
    split by frequency band (Parseval: the bands sum to ``mean(r_M**2)``). Frequencies are in
    cycles per unit x; no window, so a residual that does not match at the ends leaks into low
    frequencies."""
    m = r_M.shape[0]
    power = jnp.abs(jnp.fft.rfft(r_M)) ** 2 / m**2
    weight = jnp.full(power.shape, 2.0, power.dtype).at[0].set(1.0)
    if m % 2 == 0:
        weight = weight.at[-1].set(1.0)
    freq = jnp.fft.rfftfreq(m, d=length / m)
    return jnp.stack([jnp.sum(jnp.where((freq >= lo) & (freq < hi), weight * power, 0)) for _, lo, hi in bands])


def _adam_scaling(opt_state):
    """``D = P^-1/2`` of an Adam-family state (``curvature.adam_scaling``), or None."""
    node = curvature.find_adam_state(opt_state)
    if node is None or not hasattr(opt_state, "hyperparams") or "beta2" not in opt_state.hyperparams:
        return None
    hp = opt_state.hyperparams
    return curvature.adam_scaling(node.nu, node.count, hp["lr"], hp["beta2"], hp["eps"])


def make_diagnostics_fns(cfg: StudyConfig, lanczos_iters=LANCZOS_ITERS, regions=REGIONS, bands=BANDS):
    """``(init, chunk, snapshot, loss)``, pure functions to be jitted once by the caller:

    - ``init(keys_S, hparams, data=None) -> (DiagCarry, {name: EvalOut (H, S)})``;
    - ``chunk(carry, t0, length) -> (carry, evaluations)``: ``length`` steps from ``t0``, the last
      one instrumented, then the evaluation;
    - ``snapshot(carry) -> {name: (params_HSP, scaling_HSP)}`` for the exact spectra;
    - ``loss(params_P, x_N1, y_N1)``: the MSE on a flat parameter vector.
    """
    dtype = jnp.dtype(cfg.train.dtype)
    apply_flat, _ = flat_model(cfg)
    loss = lambda p, x, y: mse(apply_flat({"params": p}, x), y)
    names = cfg.optimizer_names
    steps = {n: make_step(apply_flat, make_optimizer(n)) for n in names}
    n_data, batch_size = cfg.data.n_data, cfg.train.batch_size
    length = cfg.data.x_high - cfg.data.x_low
    x_grid_M1 = jnp.asarray(cfg.data.x_low + length * np.arange(GRID_POINTS) / GRID_POINTS, dtype)[:, None]
    target = None if cfg.data.source else TARGETS[cfg.data.target]

    def batch(seed: SeedInputs, t):
        idx = batch_indices(seed.batch_key, t[None], n_data, batch_size)[0]
        return seed.data.x[idx], seed.data.y[idx]

    def init_run(name, hp, params):
        flat = ravel_pytree(params)[0]
        v0 = jax.random.normal(jax.random.key(START_KEY), flat.shape, dtype)
        nan = jnp.full((), jnp.nan, dtype)
        state = RunState(flat, make_optimizer(name, **hp).init(flat), jnp.int32(-1))
        return DiagRun(state, v0, v0, LastStep(nan, nan, nan))

    def evaluate(r: DiagRun, seed: SeedInputs) -> tuple[DiagRun, EvalOut]:
        p, (x, y) = r.run.params, seed.data
        full = lambda q: loss(q, x, y)
        value, g = jax.value_and_grad(full)(p)
        hvp = curvature.hvp_fn(full, p)
        lam, v = curvature.lanczos_top(hvp, r.v_P, lanczos_iters)
        d = _adam_scaling(r.run.opt_state)
        plam, pv = (
            (jnp.nan, r.pv_P)
            if d is None
            else curvature.lanczos_top(curvature.preconditioned(hvp, d), r.pv_P, lanczos_iters)
        )
        keep = lambda new, old: jnp.where(jnp.all(jnp.isfinite(new)), new, old)
        band = jnp.full(len(bands), jnp.nan, dtype)
        if target is not None:
            band = band_mse(apply_flat({"params": p}, x_grid_M1)[:, 0] - target(x_grid_M1[:, 0]), length, bands)
        region = region_mse(jnp.abs(x[:, 0]), (apply_flat({"params": p}, x) - y)[:, 0] ** 2, regions)
        alive = (r.run.diverged_at < 0) & jnp.isfinite(value)
        ok = lambda a: jnp.where(alive, a, jnp.nan)
        out = EvalOut(
            jnp.where(alive, value, jnp.inf), ok(jnp.linalg.norm(g)), ok(lam), ok(plam),
            ok(r.last.batch_grad_norm), ok(r.last.update_norm), ok(r.last.loss_before - value),
            ok(region), ok(band),
        )  # fmt: skip
        return r._replace(v_P=keep(v, r.v_P), pv_P=keep(pv, r.pv_P)), out

    def chunk_run(name, r: DiagRun, seed: SeedInputs, t0, n_steps):
        step = steps[name]
        body = lambda t, run: step(run, *batch(seed, t), t)[0]
        run = jax.lax.fori_loop(t0, t0 + n_steps - 1, body, r.run)
        t = t0 + n_steps - 1
        xb, yb = batch(seed, t)
        gb = jax.grad(loss)(run.params, xb, yb)
        new, _ = step(run, xb, yb, t)
        last = LastStep(jnp.linalg.norm(gb), jnp.linalg.norm(new.params - run.params), loss(run.params, *seed.data))
        return DiagRun(new, r.v_P, r.pv_P, last)

    over_runs = lambda f: jax.vmap(jax.vmap(f, (0, 0)), (0, None))  # runs (H, S), seeds (S,)

    def init(keys_S, hparams, data: Data | None = None) -> DiagCarry:
        seeds = jax.vmap(lambda k: seed_inputs(k, cfg, data))(keys_S)
        made = lambda n: jax.vmap(jax.vmap(lambda hp, p: init_run(n, hp, p), (None, 0)), (0, None))
        return DiagCarry({n: made(n)(hparams[n], seeds.params) for n in names}, seeds)

    def chunk(carry: DiagCarry, t0, n_steps) -> DiagCarry:
        runs = {
            n: over_runs(lambda r, s, n=n: chunk_run(n, r, s, t0, n_steps))(carry.runs[n], carry.seeds) for n in names
        }
        return carry._replace(runs=runs)

    def evaluate_all(carry: DiagCarry) -> tuple[DiagCarry, dict[str, EvalOut]]:
        out = {n: over_runs(evaluate)(carry.runs[n], carry.seeds) for n in names}
        return carry._replace(runs={n: r for n, (r, _) in out.items()}), {n: e for n, (_, e) in out.items()}

    def snapshot(carry: DiagCarry):
        def one(r: DiagRun):
            d = _adam_scaling(r.run.opt_state)
            return r.run.params, jnp.full_like(r.run.params, jnp.nan) if d is None else d

        return {n: jax.vmap(jax.vmap(one))(carry.runs[n]) for n in names}

    return init, chunk, evaluate_all, snapshot, loss


def spectrum_indices(n_evals: int, spectrum_at: int) -> tuple[int, ...]:
    """``spectrum_at`` evaluation indices spread from the first to the last (first, middle, last
    for 3)."""
    if spectrum_at == 0:
        return ()
    return tuple(sorted({int(round(i)) for i in np.linspace(0, n_evals - 1, spectrum_at)}))


def check_diagnostics_args(cfg: StudyConfig, spectrum_at: int, subsample: int, lanczos_iters: int) -> None:
    """Bad settings stop here, before compiling (ConfigError naming the setting)."""
    check_int("spectrum_at", spectrum_at, low=0)
    if spectrum_at > len(cfg.train.eval_steps):
        raise ConfigError("spectrum_at", spectrum_at, f"expected at most the {len(cfg.train.eval_steps)} evaluations")
    check_int("subsample", subsample)
    if subsample > cfg.data.n_data:
        raise ConfigError("subsample", subsample, f"expected at most n_data={cfg.data.n_data}")
    check_int("lanczos_iters", lanczos_iters)


def run_diagnostics(
    cfg: StudyConfig,
    data: Data | None = None,
    *,
    spectrum_at: int = 3,
    subsample: int = SUBSAMPLE,
    lanczos_iters: int = LANCZOS_ITERS,
    keys_S: jax.Array | None = None,
    progress: Callable[[int], None] | None = None,
    eigh_threads: int = 1,
) -> Diagnostics:
    """Trains every run of ``cfg`` with the diagnostics of the module doc; ``keys_S`` replaces the
    study's seed keys (``seed_keys(cfg.seed, cfg.seeds)``); ``progress(steps_done)`` is called
    after each evaluation; ``eigh_threads`` eigenvalue problems run at once (give more than 1
    only with a single-threaded BLAS, e.g. ``OPENBLAS_NUM_THREADS=1``, or they oversubscribe)."""
    check_diagnostics_args(cfg, spectrum_at, subsample, lanczos_iters)
    dtype = jnp.dtype(cfg.train.dtype)
    if data is not None:
        if data.x.shape != (cfg.data.n_data, cfg.model.xdim) or data.y.shape != (cfg.data.n_data, 1):
            raise ConfigError(
                "data", f"x{data.x.shape}", f"expected x ({cfg.data.n_data}, {cfg.model.xdim}) and y (N, 1)"
            )
        data = Data(jnp.asarray(data.x, dtype), jnp.asarray(data.y, dtype))
    keys_S = seed_keys(cfg.seed, cfg.seeds, cfg.seed_offset) if keys_S is None else keys_S
    grid = {o.name: {k: jnp.asarray(v, dtype) for k, v in o.grid().items()} for o in cfg.optimizers}
    init, chunk, evaluate, snapshot, loss = make_diagnostics_fns(cfg, lanczos_iters)
    extra = () if data is None else (data,)
    start = time.perf_counter()
    carry = jax.jit(init)(keys_S, grid, *extra)
    chunk_c = jax.jit(chunk).lower(carry, jnp.int32(0), jnp.int32(1)).compile()
    evaluate_c = jax.jit(evaluate).lower(carry).compile()
    snapshot_c, compile_s = jax.jit(snapshot), time.perf_counter() - start  # with init's run
    eval_steps = cfg.train.eval_steps
    spec_idx = spectrum_indices(len(eval_steps), spectrum_at)
    evals, snaps = [], []
    for e, t in enumerate(eval_steps):
        if e > 0:
            carry = chunk_c(carry, jnp.int32(eval_steps[e - 1]), jnp.int32(t - eval_steps[e - 1]))
        carry, ev = evaluate_c(carry)
        evals.append(jax.block_until_ready(ev))
        if e in spec_idx:
            snaps.append(jax.device_get(snapshot_c(carry)))
        if progress is not None:
            progress(t)
    evals = jax.device_get(evals)
    run_s = time.perf_counter() - start - compile_s
    seeds = carry.seeds._replace(data=jax.device_get(carry.seeds.data))
    spectra, spectra_s = exact_spectra(cfg, loss, snaps, seeds, spec_idx, subsample, lanczos_iters, eigh_threads)
    runs = {}
    for n in cfg.optimizer_names:
        stack = lambda f, n=n: np.stack([np.asarray(getattr(ev[n], f)) for ev in evals])
        upd, bgn = stack("update_norm"), stack("batch_grad_norm")
        runs[n] = RunDiagnostics(
            stack("mse"), stack("grad_norm"), stack("sharpness"), stack("precond_sharpness"),
            bgn, upd, upd / bgn, stack("loss_drop"), stack("region_R"), stack("band_F"), *spectra[n],
        )  # fmt: skip
    absx_SN = np.abs(np.asarray(seeds.data.x)[..., 0])
    edges = [hi for _, _, hi in REGIONS[:-1]]
    counts = np.stack([np.bincount(np.searchsorted(edges, a, side="right"), minlength=len(REGIONS)) for a in absx_SN])
    return Diagnostics(
        cfg, np.asarray(eval_steps), np.asarray([eval_steps[i] for i in spec_idx], dtype=int),
        {n: {k: np.asarray(v) for k, v in g.items()} for n, g in grid.items()}, runs, REGIONS, counts, BANDS,
        subsample, lanczos_iters, {"compile_s": compile_s, "run_s": run_s, **spectra_s},
    )  # fmt: skip


def _eigvalsh(H: np.ndarray, d: np.ndarray):
    """``(eig, preconditioned eig or NaN, seconds)`` of one Hessian (LAPACK syevd via numpy)."""
    start = time.perf_counter()
    eig = np.linalg.eigvalsh(H)
    peig = np.linalg.eigvalsh(d[:, None] * H * d[None, :]) if np.all(np.isfinite(d)) else np.full_like(eig, np.nan)
    return eig, peig, time.perf_counter() - start


def _spectrum_jobs(names, params, seeds_x, spec_idx, subsample):
    """``(s, k, x index, [(name, h), ...])`` per distinct Hessian: step 0 once per seed (every run
    of a seed starts from the same weights), every other step once per run."""
    for s in range(seeds_x.shape[0]):
        idx = subsample_indices(seeds_x[s], subsample)
        for k, e in enumerate(spec_idx):
            runs = [(n, h) for n in names for h in range(params[n].shape[1])]
            yield from [(s, k, idx, runs)] if e == 0 else [(s, k, idx, [r]) for r in runs]


def exact_spectra(cfg, loss, snaps, seeds, spec_idx, subsample, lanczos_iters, eigh_threads=1):
    """Per optimizer ``(eig_KHSP, precond_eig_KHSP, lanczos_top_KHS, params_KHSP, scaling_KHSP)``
    on each seed's subsample. Hessians are computed by JAX one at a time while up to
    ``eigh_threads`` eigenvalue problems run on the host (numpy releases the GIL in LAPACK)."""
    hess = jax.jit(lambda p, x, y: curvature.hessian(lambda q: loss(q, x, y), p))
    top = jax.jit(
        lambda p, x, y, v: curvature.lanczos_top(curvature.hvp_fn(lambda q: loss(q, x, y), p), v, lanczos_iters)[0]
    )
    names, n_seeds = cfg.optimizer_names, seeds.data.x.shape[0]
    empty = np.zeros((0, 0, n_seeds, 0), np.dtype(cfg.train.dtype))
    params = {n: np.stack([s[n][0] for s in snaps]) if snaps else empty for n in names}
    scaling = {n: np.stack([s[n][1] for s in snaps]) if snaps else empty for n in names}
    eig = {n: np.full(params[n].shape, np.nan) for n in names}
    peig = {n: np.full(params[n].shape, np.nan) for n in names}
    lz = {n: np.full(params[n].shape[:3], np.nan) for n in names}
    timing, pending = {"hessian_s": 0.0, "eigh_s": 0.0}, []
    data_x, data_y = np.asarray(seeds.data.x), np.asarray(seeds.data.y)
    with ThreadPoolExecutor(max_workers=eigh_threads) as pool:
        for s, k, idx, runs in _spectrum_jobs(names, params, data_x[..., 0], spec_idx, subsample):
            (n, h), start = runs[0], time.perf_counter()
            p, x, y = params[n][k, h, s], jnp.asarray(data_x[s][idx]), jnp.asarray(data_y[s][idx])
            H = np.asarray(hess(p, x, y))
            v0 = jax.random.normal(jax.random.key(START_KEY), p.shape, p.dtype)
            top_k = float(top(p, x, y, v0))
            timing["hessian_s"] += time.perf_counter() - start
            pending.append((pool.submit(_eigvalsh, H, scaling[n][k, h, s]), s, k, runs, top_k))
            if len(pending) > eigh_threads:  # at most eigh_threads + 1 Hessians alive
                pending[-1 - eigh_threads][0].result()
        for future, s, k, runs, top_k in pending:
            e, pe, seconds = future.result()
            timing["eigh_s"] += seconds
            for n, h in runs:
                eig[n][k, h, s], peig[n][k, h, s], lz[n][k, h, s] = e, pe, top_k
    return {n: (eig[n], peig[n], lz[n], params[n], scaling[n]) for n in names}, timing


def subsample_check(diag: Diagnostics, sizes=(512, 1024, 2048), data: Data | None = None, k: int = -1) -> dict:
    """The exact spectrum on each subsample size against the full-data one, at spectrum step
    ``k`` (default the last) of grid point 0, seed 0 of every optimizer (raw Hessian, and the
    preconditioned one for Adam-family runs). Slow: one full-data Hessian per optimizer (4,353
    HVPs on all N points)."""
    cfg = diag.config
    *_, loss = make_diagnostics_fns(cfg)
    seed = seed_inputs(seed_keys(cfg.seed, 1)[0], cfg, data)
    x_N, y_N = seed.data
    hess = jax.jit(lambda p, x, y: curvature.hessian(lambda q: loss(q, x, y), p))
    out = {"step": int(diag.spectrum_steps[k]), "sizes": list(sizes), "optimizers": {}}
    for name, r in diag.runs.items():
        hp = {key: float(v[0]) for key, v in diag.grid[name].items()}
        scale = curvature.effective_lr(name, hp) or hp.get("lr", 1.0)
        p, d = jnp.asarray(r.params_KHSP[k, 0, 0]), r.scaling_KHSP[k, 0, 0]
        start = time.perf_counter()
        H = np.asarray(hess(p, x_N, y_N))
        full, pfull = (
            np.linalg.eigvalsh(H),
            np.linalg.eigvalsh(d[:, None] * H * d[None, :]) if np.all(np.isfinite(d)) else None,
        )
        per = {"full_data_s": time.perf_counter() - start}
        for n in sizes:
            idx = subsample_indices(np.asarray(x_N), n)
            Hs = np.asarray(hess(p, x_N[idx], y_N[idx]))
            per[str(n)] = {"hessian": curvature.compare_spectra(np.linalg.eigvalsh(Hs), full, scale, cfg.train.iters)}
            if pfull is not None:
                per[str(n)]["preconditioned"] = curvature.compare_spectra(
                    np.linalg.eigvalsh(d[:, None] * Hs * d[None, :]), pfull, 1.0, cfg.train.iters
                )
        out["optimizers"][name] = per
    return json_safe(out)

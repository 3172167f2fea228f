"""The JAX side of the benchmark, each in its own worker process (see :mod:`jaxopt_cmp.bench.pool`)."""

from __future__ import annotations

import gc

import jax
import jax.numpy as jnp

from jaxopt_cmp.bench.settings import JAX, JAX_REF, MATMUL, THROUGHPUT_N_DATA, Settings, workload
from jaxopt_cmp.bench.timing import timed
from jaxopt_cmp.config import StudyConfig
from jaxopt_cmp.io import peak_rss_mb, versions


class JaxWorker:
    """Compiled studies via ``jaxopt_cmp.study.compile_study``; times whole compiled calls."""

    def __init__(self, settings: Settings):
        self.settings, self.runs = settings, []
        self.baseline_mb = peak_rss_mb()
        # One throwaway compile, so one-time costs (backend start, first tracing) are nobody's compile time.
        self.setup([workload(1, 2, 2, THROUGHPUT_N_DATA)])
        self.teardown()

    def info(self) -> dict:
        return {"versions": versions(), "baseline_rss_mb": self.baseline_mb}

    def setup(self, configs: list[StudyConfig]) -> list[dict]:
        """Compiles each study afresh (never the program kept from an earlier config of the same shapes)
        and calls it once (untimed warm-up); compile and first-call costs."""
        from jaxopt_cmp.study import clear_cache, compile_study

        out = []
        for cfg in configs:
            clear_cache()
            (compiled, keys, grid, compile_s), cost = timed(compile_study, cfg)
            run = lambda c=compiled, k=keys, g=grid: jax.block_until_ready(c(k, g))
            _, first = timed(run)
            self.runs.append(run)
            analysis = getattr(compiled, "memory_analysis", None)  # a jitted program has one
            stats = analysis() if analysis else None
            out.append(
                {
                    "seeds": cfg.seeds,
                    "iters": cfg.train.iters,
                    "compile_s": compile_s,
                    "compile_cpu_s": cost["cpu_s"],
                    "first_call_s": first["wall_s"],
                    "xla_temp_mb": stats.temp_size_in_bytes / 2**20 if stats is not None else None,
                }
            )
        return out

    def time(self) -> list[dict]:
        return [timed(run)[1] for run in self.runs]

    def teardown(self) -> float:
        self.runs = []
        gc.collect()
        return peak_rss_mb()


class MatmulWorker:
    """The ceiling: GFLOP/s of one jitted ``n^3`` float32 matmul per call. A process of its own, so
    its arrays count in no implementation's peak RSS; timed in every repeat, so each ratio to it
    compares runs made under the same load."""

    def __init__(self, settings: Settings):
        n = settings.ceiling_size
        key_a, key_b = jax.random.split(jax.random.key(0))
        self.a, self.b = (jax.random.normal(k, (n, n), jnp.float32) for k in (key_a, key_b))
        matmul = jax.jit(jnp.matmul)
        self.matmul = lambda: jax.block_until_ready(matmul(self.a, self.b))
        self.matmul()
        self.flops = 2 * n**3

    def info(self) -> dict:
        return {"baseline_rss_mb": peak_rss_mb()}

    def time(self) -> dict:
        _, cost = timed(self.matmul)
        return {**cost, "gflops": self.flops / cost["wall_s"] / 1e9}


def make_worker(impl: str, settings: Settings):
    """The worker for ``impl`` (``jax``, ``jax-ref`` or ``matmul``), called in the worker process."""
    return {JAX: JaxWorker, JAX_REF: JaxWorker, MATMUL: MatmulWorker}[impl](settings)

"""The torch side of the benchmark: one implementation per worker process (see ``jaxopt_cmp.bench.pool``).

``torch-eager`` times :func:`torch_ref.train.run_study` itself for the seed study; every other
workload is a :class:`torch_ref.batched.TorchRuns` trained in a timed loop.
"""

from __future__ import annotations

import dataclasses
import gc
import time

import torch

from jaxopt_cmp.bench.settings import COMPILE, EAGER, THREADS_MARGIN, Settings
from jaxopt_cmp.bench.timing import timed
from jaxopt_cmp.config import StudyConfig
from jaxopt_cmp.io import peak_rss_mb
from torch_ref.batched import TorchRuns
from torch_ref.train import run_study


class TorchWorker:
    """One torch implementation: a seed study or a throughput run per ``setup``, timed by ``time``."""

    def __init__(self, impl: str, settings: Settings):
        self.impl, self.settings = impl, settings
        self.cores = torch.get_num_threads()
        torch.set_num_threads(1)
        self.baseline_mb = peak_rss_mb()
        self.job = None

    def info(self) -> dict:
        return {
            "versions": {"torch": torch.__version__},
            "baseline_rss_mb": self.baseline_mb,
            "torch_default_threads": self.cores,
        }

    def setup(self, cfg: StudyConfig, study: bool = False, threads: int | None = None) -> dict:
        """Builds ``cfg``'s runs and picks threads and steps. ``study``: ``cfg.train.iters`` steps
        with its full-data evaluations; else as many steps as take about ``target_s``."""
        s = self.settings
        if self.impl == EAGER and study:  # the reference loop itself, as compare.py runs it
            warm_up = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, iters=2, eval_every=1))
            run_study(warm_up)  # a process's first torch steps are slow
            self.job = ("study", cfg)
            return {"threads": 1, "steps": cfg.train.iters}
        runs = TorchRuns(self.impl.removeprefix("torch-"), cfg)
        info: dict = {}
        if self.impl == COMPILE:
            torch.set_num_threads(threads or s.torch_threads[-1])
            info["compile_s"] = timed(lambda: [runs.step(t) for t in range(3)])[1]["wall_s"]
        candidates = (1,) if self.impl == EAGER else (threads,) if threads else s.torch_threads
        info["threads"], step_s, info["calibration_s_per_step"] = self._pick_threads(runs, candidates)
        if study:
            steps, eval_steps = cfg.train.iters, frozenset(cfg.train.eval_steps)
        else:
            steps, eval_steps = max(2, min(100_000, round(s.target_s / step_s))), frozenset()
        runs.set_batches(steps)
        runs.train(1)  # warm the new batch tensor
        self.job = ("runs", runs, steps, eval_steps)
        return {**info, "steps": steps}

    def _pick_threads(self, runs: TorchRuns, candidates) -> tuple[int, float, dict]:
        """The fastest thread count: seconds per step of each, after one warm-up step."""
        per_step = {}
        for threads in candidates:
            torch.set_num_threads(threads)
            runs.train(1)
            n, start = 0, time.perf_counter()
            while n < 1 or time.perf_counter() - start < min(0.2, self.settings.target_s / 4):
                runs.step(n)
                n += 1
            per_step[threads] = (time.perf_counter() - start) / n
        # More threads only when clearly faster: on a shared machine OpenMP's barriers can make a
        # multi-threaded step many times slower whenever another process holds a core.
        best = min(candidates)
        for threads in sorted(per_step):
            if per_step[threads] * THREADS_MARGIN < per_step[best]:
                best = threads
        torch.set_num_threads(best)
        return best, per_step[best], {str(k): v for k, v in per_step.items()}

    def time(self) -> dict:
        if self.job[0] == "study":
            result, cost = timed(run_study, self.job[1])
            return {**cost, "train_s": result.timing["train_s"]}
        _, runs, steps, eval_steps = self.job
        return timed(runs.train, steps, eval_steps)[1]

    def teardown(self) -> float:
        self.job = None
        gc.collect()
        return peak_rss_mb()

    def ceiling(self, size: int, repeats: int) -> dict:
        """GFLOP/s of torch's ``size^3`` float32 matmul on all cores (for reference)."""
        torch.set_num_threads(self.cores)
        g = torch.Generator().manual_seed(0)
        a, b = (torch.randn(size, size, generator=g) for _ in range(2))
        a @ b
        walls = [timed(torch.matmul, a, b)[1]["wall_s"] for _ in range(repeats)]
        return {"size": size, "threads": self.cores, "gflops": [2 * size**3 / w / 1e9 for w in walls]}


def make_worker(impl: str, settings: Settings) -> TorchWorker:
    """The worker for a ``torch-*`` implementation, called in the worker process."""
    return TorchWorker(impl, settings)

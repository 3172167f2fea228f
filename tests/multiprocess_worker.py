"""The README's multi-process recipe, as CI runs it (tests/test_multiprocess.py).

Start the same command once per process; every process computes its share of the seeds, every
process ends up holding the whole result, and process 0 alone writes it::

    python tests/multiprocess_worker.py --coordinator localhost:12345 --num-processes 2 --process-id 0 --out OUT &
    python tests/multiprocess_worker.py --coordinator localhost:12345 --num-processes 2 --process-id 1 --out OUT

Under SLURM (``srun``) or Open MPI (``mpirun``) leave out the three process flags: JAX reads them
from the launcher's environment.
"""

from __future__ import annotations

import argparse
import contextlib
import os

import jax
import numpy as np

from jaxopt_cmp.config import seed_study
from jaxopt_cmp.data import load_data_file
from jaxopt_cmp.distributed import initialize, is_main_process
from jaxopt_cmp.io import claim_out_dir
from jaxopt_cmp.results import save_result
from jaxopt_cmp.study import run_study


def config(seeds: int, n_data: int = 256, source: str = ""):
    """A tiny study: 2 optimizers x 2 learning rates x ``seeds`` seeds, 50 steps of a 1-8-1 MLP."""
    return seed_study(
        optimizers=("sgd", "adam"), lr=[1e-2, 3e-2], hidden=(8,), iters=50, eval_every=25,
        batch_size=16, n_data=n_data, source=source, seeds=seeds,
    )  # fmt: skip


def flat_arrays(result) -> dict[str, np.ndarray]:
    """Every array of a result under one flat name (what the test compares across processes)."""
    flat = {"x_N": result.x_N, "y_N": result.y_N}
    for n in result.mse_EHS:
        flat[f"mse_EHS/{n}"] = result.mse_EHS[n]
        flat[f"diverged_at_HS/{n}"] = result.diverged_at_HS[n]
        flat[f"pred_EHN/{n}"] = result.pred_EHN[n]
        for k, v in result.grid[n].items():
            flat[f"grid/{n}/{k}"] = v
        for path, p in jax.tree_util.tree_leaves_with_path(result.params_HS[n]):
            flat[f"params_HS/{n}/{jax.tree_util.keystr(path)}"] = np.asarray(p)
    return flat


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--coordinator", help="HOST:PORT of process 0 (leave out under SLURM/Open MPI)")
    p.add_argument("--num-processes", type=int, help="how many processes (leave out under SLURM/Open MPI)")
    p.add_argument("--process-id", type=int, help="this process, 0..num-processes-1 (leave out under SLURM/MPI)")
    p.add_argument("--out", required=True, help="results directory, written by process 0 only")
    p.add_argument("--seeds", type=int, default=4)
    p.add_argument("--data", help="user data (.npz with x, y; .csv): every process reads the same file")
    p.add_argument("--dump", help="test only: each process saves the arrays it holds to DUMP/process<i>.npz")
    args = p.parse_args(argv)

    initialize(args.coordinator, args.num_processes, args.process_id)  # first, before any other JAX call
    data = load_data_file(args.data) if args.data else None
    cfg = config(args.seeds) if data is None else config(args.seeds, data.x.shape[0], args.data)
    # One writer: process 0 claims the directory at the start; the others never touch it.
    with claim_out_dir(args.out) if is_main_process() else contextlib.nullcontext() as out:
        result = run_study(cfg, data=data)  # on every process: its share of the seeds, then all, gathered
        if out is not None:
            save_result(result, out.path)
    final = {n: np.round(m[-1].astype(float), 4).tolist() for n, m in result.mse_EHS.items()}
    timing = {k: round(v, 2) for k, v in result.timing.items()}
    who = f"process {jax.process_index()} of {jax.process_count()} ({result.versions['placement']})"
    print(f"{who}: final MSE {final}, {timing} s", flush=True)
    if args.dump:
        counts = {"process_count": np.int64(jax.process_count()), "device_count": np.int64(jax.device_count())}
        dump = os.path.join(args.dump, f"process{jax.process_index()}.npz")
        np.savez(dump, **flat_arrays(result), **counts)


if __name__ == "__main__":
    main()

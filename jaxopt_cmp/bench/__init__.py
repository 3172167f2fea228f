"""The benchmark: jaxopt_cmp's compiled engine beside the PyTorch ways of doing the same job.

``scripts/bench.py`` parses flags and calls :func:`jaxopt_cmp.bench.measure.run_bench`. The parts,
in the order data flows through them:

- :mod:`~jaxopt_cmp.bench.settings` — what is run: settings and per-mode presets, FLOPs per step.
- :mod:`~jaxopt_cmp.bench.pool` — one spawned worker process per implementation, named by module
  (:mod:`~jaxopt_cmp.bench.jax_worker` here, ``torch_ref.bench_worker`` for torch), and the pipe
  protocol the parent drives them with.
- :mod:`~jaxopt_cmp.bench.measure` — interleaved repeats, summaries and ratios; the seed study
  and the throughput runs. :mod:`~jaxopt_cmp.bench.process` times whole ``compare.py`` processes.
- :mod:`~jaxopt_cmp.bench.judge` — least-squares fits and the targets, a table of rows.
- :mod:`~jaxopt_cmp.bench.report` — bench.md and the throughput figure.

Nothing here imports torch: the torch side lives in ``torch_ref`` and runs in its own processes.
"""

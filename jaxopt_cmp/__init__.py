"""jaxopt_cmp: optimizers compared on regression problems in compiled, vmapped JAX.

Names are imported on first use, so ``import jaxopt_cmp; jaxopt_cmp.use_all_cores()`` can run
before JAX starts (in a notebook's first cell).
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "ConfigError": "jaxopt_cmp.checks",
    "DataConfig": "jaxopt_cmp.config",
    "ModelConfig": "jaxopt_cmp.config",
    "OptimizerConfig": "jaxopt_cmp.config",
    "StudyConfig": "jaxopt_cmp.config",
    "TrainConfig": "jaxopt_cmp.config",
    "seed_study": "jaxopt_cmp.config",
    "Data": "jaxopt_cmp.data",
    "data_from_arrays": "jaxopt_cmp.data",
    "register_optimizer": "jaxopt_cmp.optimizers",
    "StudyResult": "jaxopt_cmp.results",
    "ResultsError": "jaxopt_cmp.results",
    "load_result": "jaxopt_cmp.results",
    "save_result": "jaxopt_cmp.results",
    "run_study": "jaxopt_cmp.study",
    "prepare_study": "jaxopt_cmp.study",
    "use_all_cores": "jaxopt_cmp.runtime",
    "use_compilation_cache": "jaxopt_cmp.runtime",
    "summarize": "jaxopt_cmp.stats",
    "paired_comparisons": "jaxopt_cmp.stats",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'jaxopt_cmp' has no attribute {name!r}")


def __dir__():
    return __all__

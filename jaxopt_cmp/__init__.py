"""jaxopt_cmp: optimizers compared on regression problems in compiled, vmapped JAX."""

from jaxopt_cmp.checks import ConfigError
from jaxopt_cmp.config import DataConfig, ModelConfig, OptimizerConfig, StudyConfig, TrainConfig
from jaxopt_cmp.results import StudyResult
from jaxopt_cmp.study import run_study

__all__ = [
    "ConfigError",
    "DataConfig",
    "ModelConfig",
    "OptimizerConfig",
    "StudyConfig",
    "StudyResult",
    "TrainConfig",
    "run_study",
]

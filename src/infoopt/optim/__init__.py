"""Optimizers: ours by name (torch's SGD, Adam and AdamW, and our Lion family), any
``torch.optim.Optimizer`` subclass by import path, and parameter groups of several, built from
JSON values.

``build_optimizer("lion_tanh", model.parameters(), lr=3e-4, betas=[0.9, 0.99], kappa=3.0)``;
``build_optimizer("torch.optim.RAdam", model.parameters(), lr=1e-3)``.
"""

from infoopt.optim.base import RANGES, Interval, LionFamily
from infoopt.optim.groups import GroupedOptimizer, GroupError, assign_groups
from infoopt.optim.lion import Lion, LionTanh
from infoopt.optim.registry import (
    OPTIMIZERS,
    HyperParameterError,
    OptimizerFactory,
    build_optimizer,
    optimizer_factory,
)
from infoopt.optim.run import build_run_optimizer, deployed, parameter_groups
from infoopt.optim.snr import LionBayes, LionSoft

__all__ = [
    "OPTIMIZERS",
    "RANGES",
    "GroupError",
    "GroupedOptimizer",
    "HyperParameterError",
    "Interval",
    "Lion",
    "LionBayes",
    "LionFamily",
    "LionSoft",
    "LionTanh",
    "OptimizerFactory",
    "assign_groups",
    "build_optimizer",
    "build_run_optimizer",
    "deployed",
    "optimizer_factory",
    "parameter_groups",
]

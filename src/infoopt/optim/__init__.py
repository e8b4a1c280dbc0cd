"""Optimizers: torch's SGD, Adam and AdamW, and our Lion family, built by name from JSON values.

``build_optimizer("lion_tanh", model.parameters(), lr=3e-4, betas=[0.9, 0.99], kappa=3.0)``.
"""

from infoopt.optim.base import LionFamily
from infoopt.optim.lion import Lion, LionTanh
from infoopt.optim.registry import (
    OPTIMIZERS,
    HyperParameterError,
    OptimizerFactory,
    build_optimizer,
)
from infoopt.optim.snr import LionBayes, LionSoft

__all__ = [
    "OPTIMIZERS",
    "HyperParameterError",
    "Lion",
    "LionBayes",
    "LionFamily",
    "LionSoft",
    "LionTanh",
    "OptimizerFactory",
    "build_optimizer",
]

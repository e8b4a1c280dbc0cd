"""The options of a checkpoint's Hessian measurement (light: no torch, so the CLI parses fast)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from infoopt.entropy import NORMALIZATIONS

POSITIVE_RULES = ("lambda_min", "trace")
AGGREGATIONS = ("all", "positive")
DTYPE_NAMES = ("float32", "float64")


@dataclass(frozen=True)
class HessianOptions:
    """How a checkpoint's Hessian is measured (defaults: PAPER.md §2's configuration).

    ``max_k``: K, coordinates per block; ``probes``: Hutchinson probes (0 skips the traces),
    ``probe_batch`` of them per pass over the data; ``lanczos_max_iter`` (0 skips the top
    eigenvalue) and ``lanczos_tol`` (relative residual: it bounds the eigenvalue's relative
    error, which in practice is near its square); ``vector_batch``: vectors per
    vmapped double-backward (1 = a loop); ``micro_batch_size``: samples per forward pass
    (None = the whole set); ``dtype``; ``eval_size``: test images (used by ``infoopt
    hessian``); ``seed``: of the coordinates, the probes and the Lanczos start. The [choice]s:
    ``positive`` (``"lambda_min"``: λ_min > ``positive_tol`` · max|λ|; ``"trace"``:
    tr H[S_b, S_b] > 0; the default tolerance is ten times the float32 rounding measured on
    sub-Hessian eigenvalues, 1e-6 relative: the exactly singular Hessian of the classifier's
    bias must not count as positive by the sign of its rounding error),
    ``normalization`` of the spectra (``"abs"``, ``"clip"``) and ``aggregation`` of the gaps
    over ``"all"`` blocks or the ``"positive"`` ones.
    """

    max_k: int = 64
    probes: int = 100
    probe_batch: int = 8
    vector_batch: int = 1
    micro_batch_size: int | None = None
    dtype: str = "float32"
    eval_size: int = 2048
    seed: int = 0
    lanczos_max_iter: int = 100
    lanczos_tol: float = 1e-3
    positive: str = "lambda_min"
    positive_tol: float = 1e-5
    normalization: str = "abs"
    aggregation: str = "all"

    def __post_init__(self) -> None:
        choices = {
            "positive": POSITIVE_RULES,
            "normalization": NORMALIZATIONS,
            "aggregation": AGGREGATIONS,
            "dtype": DTYPE_NAMES,
        }
        for name, valid in choices.items():
            if getattr(self, name) not in valid:
                raise ValueError(
                    f"unknown {name} {getattr(self, name)!r}; valid: {', '.join(valid)}"
                )
        for name in ("max_k", "probe_batch", "vector_batch", "eval_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        for name in ("probes", "lanczos_max_iter"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.micro_batch_size is not None and self.micro_batch_size < 1:
            raise ValueError(f"micro_batch_size must be positive, got {self.micro_batch_size}")
        if not 0 <= self.positive_tol < 1:
            raise ValueError(f"positive_tol must be in [0, 1), got {self.positive_tol}")
        if not self.lanczos_tol > 0:
            raise ValueError(f"lanczos_tol must be positive, got {self.lanczos_tol}")

    def columns(self) -> dict[str, object]:
        """The options as table columns ``option_<name>``."""
        return {f"option_{key}": value for key, value in dataclasses.asdict(self).items()}

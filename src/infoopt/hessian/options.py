"""The options of a checkpoint's Hessian measurement (light: no torch, so the CLI parses fast)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from infoopt.entropy import NORMALIZATIONS

POSITIVE_RULES = ("lambda_min", "trace")
AGGREGATIONS = ("all", "positive")
DTYPE_NAMES = ("float32", "float64")
CHOICES = {
    "positive": POSITIVE_RULES,
    "normalization": NORMALIZATIONS,
    "aggregation": AGGREGATIONS,
    "dtype": DTYPE_NAMES,
}
# The estimates of the whole model's Hessian, each computed as one piece of work: Hutchinson's
# traces (per block and in all) and Lanczos's top eigenvalue.
ESTIMATES = ("traces", "top_eigenvalue")


def _option(default: object, help: str) -> object:
    """A field of :class:`HessianOptions`; ``help`` is its flag's help in ``infoopt hessian``."""
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class HessianOptions:
    """How a checkpoint's Hessian is measured (defaults: PAPER.md §2's configuration).

    ``max_k``: K, coordinates per block; ``probes``: Hutchinson probes (0 skips the traces),
    ``probe_batch`` of them per pass over the data; ``lanczos_max_iter`` (0 skips the top
    eigenvalue) and ``lanczos_tol`` (relative residual: it bounds the eigenvalue's relative
    error, which in practice is near its square); ``vector_batch``: vectors per
    vmapped double-backward (1 = a loop; blocks whose Hessian is their Gauss-Newton block have
    no double-backward); ``memory_budget_gb``: GiB that the create-graph
    gradients held by the Hessian operator may take (see below); ``micro_batch_size``: samples
    per forward pass (None = planned within the budget); ``dtype``; ``eval_size``: test images
    (used by ``infoopt hessian``); ``seed``: of the coordinates, the probes and the Lanczos
    start. The [choice]s:
    ``positive`` (``"lambda_min"``: λ_min > ``positive_tol`` · max|λ|; ``"trace"``:
    tr H[S_b, S_b] > 0; the default tolerance lies above the float32 rounding of sub-Hessian
    eigenvalues: the exactly singular Hessian of the classifier's bias must not count as
    positive by the sign of its rounding error),
    ``normalization`` of the spectra (``"abs"``, ``"clip"``) and ``aggregation`` of the gaps
    over ``"all"`` blocks or the ``"positive"`` ones.

    The memory budget's default, 8 GiB, is sized for a 24 GB GPU or a 24 GB-RAM machine: the
    peak memory is the budget times the allocator's overhead plus the process's baseline
    (:mod:`infoopt.hessian.cost` predicts it; ``benchmarks/hessian_memory.py`` measures it).
    Under a budget the graphs that do not fit are rebuilt on every product, which costs time,
    not accuracy: results equal the unbounded ones to float rounding, and a budget beyond what
    the data need changes nothing.
    """

    max_k: int = _option(64, "K: coordinates per block")
    probes: int = _option(100, "Hutchinson probes (0: no traces)")
    probe_batch: int = _option(8, "probes per pass over the data")
    vector_batch: int = _option(
        1, "vectors per vmapped double-backward (1: a loop, fastest on CPU)"
    )
    memory_budget_gb: float = _option(
        8.0, "GiB for the kept create-graph gradients; micro-batches are planned to fit it"
    )
    micro_batch_size: int | None = _option(
        None, "images per forward pass (default: planned within the memory budget)"
    )
    dtype: str = _option("float32", "precision of the products")
    eval_size: int = _option(2048, "test images, a seeded subset")
    seed: int = _option(
        0, "seed of the test subset, coordinates, probes and Lanczos (infoopt hessian: the run's)"
    )
    lanczos_max_iter: int = _option(100, "Lanczos steps at most (0: no top eigenvalue)")
    lanczos_tol: float = _option(1e-3, "Lanczos relative residual")
    positive: str = _option("lambda_min", "a block is positive when λ_min > 0, or its trace > 0")
    positive_tol: float = _option(1e-5, "λ_min must exceed this times max|λ|")
    normalization: str = _option("abs", "negative eigenvalues: |λ|, or clipped at 0")
    aggregation: str = _option("all", "blocks entering the gap's mean and std")

    def __post_init__(self) -> None:
        for name, valid in CHOICES.items():
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
        if not self.memory_budget_gb >= 0:
            raise ValueError(f"memory_budget_gb must be >= 0, got {self.memory_budget_gb}")
        if self.micro_batch_size is not None and self.micro_batch_size < 1:
            raise ValueError(f"micro_batch_size must be positive, got {self.micro_batch_size}")
        if not 0 <= self.positive_tol < 1:
            raise ValueError(f"positive_tol must be in [0, 1), got {self.positive_tol}")
        if not self.lanczos_tol > 0:
            raise ValueError(f"lanczos_tol must be positive, got {self.lanczos_tol}")

    def columns(self) -> dict[str, object]:
        """The options as table columns ``option_<name>``."""
        return {f"option_{key}": value for key, value in dataclasses.asdict(self).items()}

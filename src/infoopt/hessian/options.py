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
    tr H[S_b, S_b] > 0; the default tolerance is ten times the float32 rounding measured on
    sub-Hessian eigenvalues, 1e-6 relative: the exactly singular Hessian of the classifier's
    bias must not count as positive by the sign of its rounding error),
    ``normalization`` of the spectra (``"abs"``, ``"clip"``) and ``aggregation`` of the gaps
    over ``"all"`` blocks or the ``"positive"`` ones.

    The memory budget's default, 8 GiB, makes the paper's configuration fit a 24 GB GPU and a
    24 GB-RAM machine. Unbounded, the graphs of its 2,048 images alone take 18 GiB (ResNet18,
    8.9 MiB per image) or 35 GiB (ViT, 17.7 MiB), and a product's peak RSS on CPU is 2.1x
    (ResNet18) and 2.6x (ViT) the graphs. Under a budget, the peak RSS above the process's
    baseline (0.6 GiB: torch, model, data) was 1.2x (ResNet18) and 1.3x (ViT) the budget
    (``benchmarks/hessian_memory.py``: 2 GiB, 512 images, CPU), so 8 GiB means about 11 GiB
    in all: half of 24 GB, the rest left to the system, or on a GPU to the CUDA context and
    the caching allocator (not measured: no GPU here). The ViT then keeps 6 micro-batches of
    54 images, 16 % of the data, and rebuilds the rest on every call: a product took 1.6x the
    unbounded time at 2 GiB for 512 images (ResNet18: 1.4x). Results equal the unbounded ones
    to float rounding; a budget beyond what the data need changes nothing.
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

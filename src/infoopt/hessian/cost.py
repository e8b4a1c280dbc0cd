"""The time and memory of one Hessian job (a checkpoint or a share of it), predicted before it runs.

The work is counted from the options and the model's parameter tensors (the model built on the
meta device, which allocates nothing), as :mod:`infoopt.hessian.metrics` spends it:

- products: ``k_b = min(numel_b, max_k)`` columns of each block's sub-Hessian in the job: block
  products (one call of ``k_b`` vectors per block) or, for a block whose Hessian is its
  Gauss-Newton block (every ResNet18 block; :mod:`~infoopt.hessian.gauss_newton`), first-order
  passes that need no create-graph gradient; and, for the estimates the job computes, ``probes``
  (Hutchinson, in calls of ``probe_batch`` vectors) and ``lanczos_max_iter`` (Lanczos, one
  vector per call; as Lanczos may stop earlier, this bounds the job) full products;
- graphs: the micro-batches of :func:`~infoopt.hessian.hvp.plan_micro_batches` under
  ``memory_budget_gb``; a kept micro-batch's graph is built once, the others' on every call
  of products.

Each costs its images times seconds per image measured once per model family and device kind,
on the paper's model at CIFAR shape: ``costs.yaml`` beside this file (``gradient``: building a
create-graph gradient, ``product``: one vector through a kept graph, ``block_product``: one column,
the blocks' mean as the operator computes them).
Another size of a family is scaled by its forward and backward FLOPs per image (time) and by the
bytes its create-graph gradient saves per image (its graph), both counted on the meta device;
float64 doubles both. CPU costs are one thread's CPU time: a job with more threads is not assumed
faster (on an idle machine two threads gain up to 2x; on a busy one they can lose).

Memory: what the plan holds (kept graphs, the graph being rebuilt, the double-backward's
temporaries) times the allocator's overhead, the vectors of the largest call (the Lanczos basis,
a block's unit vectors, a probe batch) and the model; on the CPU also the process's baseline.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
import yaml
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from infoopt import models
from infoopt.atomic import write_json
from infoopt.canonical import canonical_json
from infoopt.hessian import affine_norm, gauss_newton, hvp
from infoopt.hessian.hvp import (
    GIB,
    Footprint,
    HessianOperator,
    MicroBatchPlan,
    plan_micro_batches,
)
from infoopt.hessian.options import ESTIMATES, HessianOptions
from infoopt.hessian.space import ParameterSpace
from infoopt.models import build_model, model_options

COSTS = Path(__file__).with_name("costs.yaml")
DEVICE_KINDS = ("cpu", "cuda")
# The shape the costs were measured at (CIFAR-10), each family at its factory's defaults.
REFERENCE_SHAPE = {"num_classes": 10, "in_channels": 3, "image_size": 32}
# Peak memory above the baseline over what the plan holds: 1.2x (ResNet18) and 1.3x (ViT) on
# the CPU (benchmarks/hessian_memory.py); assumed for CUDA's caching allocator too.
ALLOCATOR = 1.3
# Copies of a call's vectors alive at once: the vectors, their products' sums, the flat result
# and (Hutchinson) its product with the vectors.
VECTOR_COPIES = 4


@dataclass(frozen=True)
class Prediction:
    """A job's predicted ``seconds``; ``peak_bytes`` on the device that multiplies (the process
    on the CPU, the GPU's memory on CUDA); ``host_bytes``, the process's memory (what a
    scheduler's limit must allow); the products and the graphs built (``builds`` micro-batch
    graphs, planned as ``plan``)."""

    seconds: float
    peak_bytes: float
    host_bytes: float
    block_products: int
    full_products: int
    plan: MicroBatchPlan
    builds: int

    def minutes(self, attempt: int = 1) -> int:
        """A time limit: 10 minutes for what the model leaves out (start-up, loading, Lanczos's
        orthogonalisation, eigenvalues) plus 1.5x the prediction, times the attempt."""
        return attempt * (10 + math.ceil(1.5 * self.seconds / 60))

    def mem_mb(self, attempt: int = 1) -> int:
        """A memory limit (MB): 1,000 MB for what the model leaves out (the prepared dataset,
        the checkpoint, pandas) plus 1.25x the prediction, times the attempt."""
        return attempt * (1000 + math.ceil(1.25 * self.host_bytes / 1e6))

    def summary(self) -> str:
        plan = self.plan
        return (
            f"predicted {self.seconds:,.0f} s ({self.seconds / 3600:.2f} h), "
            f"{self.block_products:,} block + {self.full_products:,} full products, "
            f"{plan.count} micro-batches of {plan.size} images ({plan.kept} kept, "
            f"{self.builds:,} graphs built), peak {self.peak_bytes / GIB:.1f} GiB"
        )


@functools.cache
def load_costs(path: Path = COSTS) -> dict[str, Any]:
    return yaml.safe_load(Path(path).read_text())


@dataclass(frozen=True)
class _Size:
    """A model's parameter tensors' numels and, per image, FLOPs and saved bytes of its
    create-graph gradient (eval mode, the math attention kernel)."""

    numels: tuple[int, ...]
    flops: float
    saved_bytes: float


def _gradient_size(model: torch.nn.Module, shape: dict[str, int], images: int) -> tuple[int, int]:
    x = torch.zeros(images, shape["in_channels"], shape["image_size"], shape["image_size"])
    y = torch.zeros(images, dtype=torch.long)
    saved = []

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        saved.append(tensor.numel() * tensor.element_size())
        return tensor

    with (
        FlopCounterMode(display=False) as flops,
        torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor),
        sdpa_kernel(SDPBackend.MATH),
    ):
        loss = F.cross_entropy(model(x), y)
        torch.autograd.grad(loss, list(model.parameters()), create_graph=True, allow_unused=True)
    return flops.get_total_flops(), sum(saved)


def _measure(spec: str) -> _Size:
    """The :class:`_Size` of a model spec, from one and two images: what does not grow with
    the images (the weights) cancels."""
    model_spec = json.loads(spec)
    with torch.device("meta"):
        model = build_model(**model_spec).eval()
        one, two = (_gradient_size(model, model_spec, images) for images in (1, 2))
    return _Size(ParameterSpace.of(model).numels, two[0] - one[0], two[1] - one[1])


def size_cache() -> Path:
    """Where measured model sizes are kept between processes: counting FLOPs imports
    torch._dynamo (about 2 s), which every Snakemake start-up would pay otherwise."""
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "infoopt" / "model_sizes.json"


def _models_version() -> str:
    """What a size depends on besides the spec: torch's and timm's versions and the models'
    source."""
    digest = hashlib.sha256(f"{torch.__version__} timm {metadata.version('timm')}".encode())
    for path in sorted(Path(models.__file__).parent.glob("*.py")):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _read_cache(path: Path) -> dict[str, Any]:
    try:
        cached = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return cached if isinstance(cached, dict) else {}


@functools.cache
def _size(spec: str) -> _Size:
    """The :class:`_Size` of a model spec (canonical JSON of :func:`build_model`'s arguments),
    measured once per machine (:func:`size_cache`)."""
    path = size_cache()
    key = f"{_models_version()} {spec}"
    cached = _read_cache(path).get(key)
    if cached is not None:
        return _Size(tuple(cached["numels"]), cached["flops"], cached["saved_bytes"])
    size = _measure(spec)
    with contextlib.suppress(OSError):  # an unwritable cache only costs the next process time
        write_json(_read_cache(path) | {key: asdict(size)}, path)
    return size


def _find_graphless_blocks(spec: str) -> list[int]:
    """The blocks of a model spec whose sub-Hessians need no graph, their Hessians being their
    Gauss-Newton blocks: found as the operator finds them (``HessianOperator.gauss_newton``), on
    the model built at ``spec`` and two random images (the RNG's state is left as it was)."""
    model_spec = json.loads(spec)
    side, channels = model_spec["image_size"], model_spec["in_channels"]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = build_model(**model_spec)
        x = torch.randn(2, channels, side, side)
    return sorted(HessianOperator(model, x, torch.zeros(2, dtype=torch.long)).gauss_newton.blocks)


def _operator_version() -> str:
    """What the blocks found depend on besides the spec: the models and the operator's source."""
    digest = hashlib.sha256(_models_version().encode())
    for module in (hvp, gauss_newton, affine_norm):
        digest.update(Path(module.__file__).read_bytes())
    return digest.hexdigest()[:16]


@functools.cache
def _graphless_blocks(spec: str) -> frozenset[int]:
    """:func:`_find_graphless_blocks` of a model spec (canonical JSON of :func:`build_model`'s
    arguments), once per machine: kept in ``graphless_blocks.json`` beside :func:`size_cache`,
    as building a paper-sized model takes seconds that every Snakemake start-up would pay."""
    path = size_cache().with_name("graphless_blocks.json")
    key = f"{_operator_version()} {spec}"
    blocks = _read_cache(path).get(key)
    if blocks is None:
        blocks = _find_graphless_blocks(spec)
        with contextlib.suppress(OSError):  # an unwritable cache only costs the next process time
            write_json(_read_cache(path) | {key: blocks}, path)
    return frozenset(blocks)


def _unmeasured_costs(table: dict[str, Any], size: _Size) -> dict[str, float]:
    """The costs of a model no measured family covers (a timm or torchvision model, a user's
    own): of each number, the largest over the measured families per FLOP (seconds) or per
    saved byte (graph), scaled to ``size``: a generous request rather than none."""
    families = [name for name, entry in table.items() if isinstance(entry, dict)]
    costs: dict[str, float] = {}
    for family in families:
        ref = _size(
            canonical_json({"name": family, **REFERENCE_SHAPE, "options": model_options(family)})
        )
        for key, value in table[family].items():
            per = ref.saved_bytes if key == "graph_bytes" else ref.flops
            mine = size.saved_bytes if key == "graph_bytes" else size.flops
            costs[key] = max(costs.get(key, 0.0), value * mine / per)
    return costs


@dataclass(frozen=True)
class _Costs:
    """What every job on a model's Hessian shares: its sizes, the plan, the seconds per image."""

    size: _Size
    graphless: frozenset[int]
    ks: list[int]
    plan: MicroBatchPlan
    footprint: Footprint
    element: int
    base_bytes: float
    block_product: float  # seconds of a block's column, per image
    product: float  # of a full product through a kept graph, per image
    rebuild: float  # of rebuilding the graphs not kept, once per call
    build: float  # of building the kept graphs, once per job


def _costs(
    options: HessianOptions, model: dict[str, Any], device_kind: str, costs: dict[str, Any] | None
) -> _Costs:
    if device_kind not in DEVICE_KINDS:
        raise ValueError(f"unknown device kind {device_kind!r}; valid: {', '.join(DEVICE_KINDS)}")
    table = (costs or load_costs())[device_kind]
    name = model["name"]
    defaults = model_options(name)
    spec = canonical_json(model | {"options": defaults | (model.get("options") or {})})
    size = _size(spec)
    if name in table:
        measured = table[name]
        reference = _size(canonical_json({"name": name, **REFERENCE_SHAPE, "options": defaults}))
    else:
        measured, reference = _unmeasured_costs(table, size), size
    element = 8 if options.dtype == "float64" else 4

    images = options.eval_size
    per_image = measured["graph_bytes"] * size.saved_bytes / reference.saved_bytes * element / 4
    footprint = Footprint(per_image=per_image, per_batch=sum(size.numels) * element)
    plan = plan_micro_batches(
        images,
        footprint,
        options.memory_budget_gb * GIB,
        vector_batch=options.vector_batch,
        size=options.micro_batch_size,
    )
    kept_images = min(plan.kept * plan.size, images)
    scale = size.flops / reference.flops * element / 4
    return _Costs(
        size=size,
        graphless=_graphless_blocks(spec),
        ks=[min(numel, options.max_k) for numel in size.numels],
        plan=plan,
        footprint=footprint,
        element=element,
        base_bytes=table["base_bytes"],
        block_product=scale * images * measured["block_product"],
        product=scale * images * measured["product"],
        rebuild=scale * (images - kept_images) * measured["gradient"],
        build=scale * kept_images * measured["gradient"],
    )


def _calls(options: HessianOptions, estimate: str) -> int:
    """The operator's calls of full products that ``estimate`` makes."""
    if estimate == "traces":
        return math.ceil(options.probes / options.probe_batch)
    return options.lanczos_max_iter


def _full_products(options: HessianOptions, estimate: str) -> int:
    return options.probes if estimate == "traces" else options.lanczos_max_iter


def item_seconds(
    options: HessianOptions,
    model: dict[str, Any],
    *,
    device_kind: str = "cpu",
    costs: dict[str, Any] | None = None,
) -> tuple[list[float], dict[str, float]]:
    """The predicted seconds of each block's rows (a Gauss-Newton block's columns need no graph)
    and of each of :data:`~infoopt.hessian.options.ESTIMATES`: their products and the graphs
    they rebuild, the kept graphs (built once in any job that needs a graph) aside. What a plan
    of shares balances (:mod:`infoopt.hessian.shares`)."""
    return _item_seconds(options, _costs(options, model, device_kind, costs))


def _item_seconds(options: HessianOptions, job: _Costs) -> tuple[list[float], dict[str, float]]:
    blocks = [
        k * job.block_product + (b not in job.graphless) * job.rebuild for b, k in enumerate(job.ks)
    ]
    estimates = {
        name: _full_products(options, name) * job.product + _calls(options, name) * job.rebuild
        for name in ESTIMATES
    }
    return blocks, estimates


def predict(
    options: HessianOptions,
    model: dict[str, Any],
    *,
    blocks: Sequence[int] | None = None,
    estimates: Sequence[str] = ESTIMATES,
    device_kind: str = "cpu",
    costs: dict[str, Any] | None = None,
) -> Prediction:
    """The :class:`Prediction` of a job that computes the rows of ``blocks`` (default: all) and
    the ``estimates``: ``model`` is :func:`~infoopt.models.build_model`'s keyword arguments (a
    checkpoint's ``model``), ``costs`` the table of ``costs.yaml`` (its default). The images
    are ``eval_size`` (a smaller test set caps them).
    """
    job = _costs(options, model, device_kind, costs)
    numels = job.size.numels
    blocks = range(len(numels)) if blocks is None else blocks
    block_seconds, estimate_seconds = _item_seconds(options, job)
    calls = sum(b not in job.graphless for b in blocks)
    calls += sum(_calls(options, name) for name in estimates)
    seconds = sum(block_seconds[b] for b in blocks) + sum(estimate_seconds[e] for e in estimates)
    seconds += job.build if calls else 0

    plan, element, dim = job.plan, job.element, sum(numels)
    rebuilt = 1 if plan.kept < plan.count else 0
    held = (plan.kept + rebuilt + options.vector_batch) * job.footprint.graph(plan.size)
    # The largest call's vectors (a block's unit vectors, a probe batch) or the Lanczos basis.
    vectors = [VECTOR_COPIES * job.ks[b] * numels[b] for b in blocks]
    if "traces" in estimates:
        vectors.append(VECTOR_COPIES * min(options.probes, options.probe_batch) * dim)
    if "top_eigenvalue" in estimates and options.lanczos_max_iter:
        vectors.append((options.lanczos_max_iter + 1) * dim)
    work = ALLOCATOR * held + (max(vectors, default=0) + dim) * element
    on_cpu = device_kind == "cpu"
    return Prediction(
        seconds=seconds,
        peak_bytes=job.base_bytes + work if on_cpu else work,
        host_bytes=job.base_bytes + work if on_cpu else job.base_bytes,
        block_products=sum(job.ks[b] for b in blocks),
        full_products=sum(_full_products(options, name) for name in estimates),
        plan=plan,
        builds=plan.kept + (plan.count - plan.kept) * calls if calls else 0,
    )

"""Hessian metrics against the exact dense Hessian of tiny models in float64.

The reference is ``torch.autograd.functional.hessian`` of the mean cross-entropy as a function
of the flat parameter vector (via ``functional_call``), in eval mode: no cached graphs, no
block pruning, no micro-batches, no vmap, i.e. none of the code paths under test.
"""

from __future__ import annotations

import copy
import functools
import math
import re
import statistics

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from scipy.stats import entropy as shannon
from torch import nn
from torch.func import functional_call
from torch.nn.attention import SDPBackend, sdpa_kernel

from infoopt.checkpoint import CheckpointError, save_checkpoint
from infoopt.cli import main
from infoopt.hessian import gauss_newton
from infoopt.hessian.aggregate import aggregate_blocks
from infoopt.hessian.blocks import block_coordinates, sub_hessians
from infoopt.hessian.hvp import (
    GIB,
    PROBE_IMAGES,
    Footprint,
    HessianOperator,
    MicroBatchPlan,
    plan_micro_batches,
)
from infoopt.hessian.metrics import GLOBAL, checkpoint_hessian_table, missing_hessian_table
from infoopt.hessian.options import HessianOptions
from infoopt.hessian.space import ParameterSpace
from infoopt.hessian.spectrum import lanczos_top_eigenvalue
from infoopt.hessian.trace import hutchinson
from infoopt.models import build_model
from infoopt.seeding import generator

pytestmark = pytest.mark.usefixtures("one_thread")


class MLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Flatten(), nn.Linear(16, 12), nn.Tanh(), nn.Dropout(0.5), nn.Linear(12, 4)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class CNN(nn.Module):
    """Conv + BatchNorm + ReLU + pooling + Linear, and one parameter the loss never uses."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 3, 3, padding=1)
        self.bn = nn.BatchNorm2d(3)
        self.fc = nn.Linear(3 * 2 * 2, 4)
        self.unused = nn.Parameter(torch.ones(2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.bn(self.conv(x))), 2)
        return self.fc(x.flatten(1))


class Reused(nn.Module):
    """A layer applied twice, a scale multiplied in twice and a linear head: only the head's
    Hessian is its Gauss-Newton block."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Linear(16, 16)
        self.scale = nn.Parameter(torch.full((16,), 0.9))
        self.head = nn.Linear(16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.layer(F.relu(self.layer(x.flatten(1)))))
        return self.head(x * self.scale * self.scale)


class Mixed(nn.Module):
    """ReLU layers whose images meet in a batch mean: piecewise linear, but an image's logits
    depend on the other images' activations below the mean."""

    def __init__(self) -> None:
        super().__init__()
        self.first, self.second = nn.Linear(16, 8), nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.first(x.flatten(1)))
        return self.second(x - x.mean(dim=0))


class Gain(nn.Module):
    """A per-channel scale: a module the Gauss-Newton pass knows no formula for."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.gain = nn.Parameter(torch.linspace(0.5, 1.5, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gain.view(1, -1, 1, 1)


class Odd(nn.Module):
    """ReLU layers the Gauss-Newton pass reads off directly in their less common forms (a strided,
    dilated, padded convolution; a linear layer on tokens), and some it takes tangents of (a
    grouped convolution, a custom module), and a BatchNorm of flat features."""

    def __init__(self) -> None:
        super().__init__()
        self.strided = nn.Conv2d(1, 4, 3, stride=2, padding=2, dilation=2)
        self.grouped = nn.Conv2d(4, 4, 1, groups=2)
        self.gain = Gain(4)
        self.tokens = nn.Linear(4, 4)
        self.norm = nn.BatchNorm1d(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.gain(self.grouped(F.relu(self.strided(x))))
        return self.norm(self.tokens(F.relu(x).flatten(2).mT).mean(dim=1))


def tiny_vit() -> nn.Module:
    options = {"patch_size": 2, "dim": 6, "depth": 1, "heads": 2, "head_dim": 3, "mlp_dim": 8}
    return build_model("vit", num_classes=4, in_channels=1, image_size=4, options=options)


def tiny_resnet() -> nn.Module:
    options = {"width": 1, "blocks": [1, 1, 1, 1]}
    return build_model("resnet18", num_classes=4, in_channels=1, image_size=4, options=options)


MODELS = {
    "mlp": MLP,
    "cnn": CNN,
    "vit": tiny_vit,
    "resnet": tiny_resnet,
    "reused": Reused,
    "mixed": Mixed,
    "odd": Odd,
}
# The blocks whose Hessian the operator finds to be their Gauss-Newton block.
GAUSS_NEWTON_BLOCKS = {
    "mlp": {"net.4.weight", "net.4.bias"},
    "cnn": {"conv.weight", "conv.bias", "bn.weight", "bn.bias", "fc.weight", "fc.bias"},
    "vit": {"head.weight", "head.bias"},
    "resnet": {name for name, _ in tiny_resnet().named_parameters()},
    "reused": {"head.weight", "head.bias"},
    "mixed": {"second.weight", "second.bias"},
    "odd": {name for name, _ in Odd().named_parameters()},
}


def make_model(name: str) -> nn.Module:
    torch.manual_seed(0)
    model = MODELS[name]()
    model.train()
    with torch.no_grad():
        for _ in range(3):  # non-trivial BatchNorm running statistics
            model(torch.randn(16, 1, 4, 4) * 2 + 0.5)
    return model


def make_data(n: int = 10, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 1, 4, 4, generator=g), torch.randint(0, 4, (n,), generator=g)


def dense_hessian(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    model = copy.deepcopy(model).double().eval()
    names = [name for name, _ in model.named_parameters()]
    shapes = [p.shape for p in model.parameters()]
    flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])

    def loss(vector: torch.Tensor) -> torch.Tensor:
        parts = vector.split([s.numel() for s in shapes])
        params = {n: p.view(s) for n, p, s in zip(names, parts, shapes, strict=True)}
        with sdpa_kernel(SDPBackend.MATH):
            return F.cross_entropy(functional_call(model, params, (x.double(),)), y)

    return torch.autograd.functional.hessian(loss, flat)


@functools.cache
def reference(name: str) -> tuple[nn.Module, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Model ``name``, data, and their dense Hessian (the tests leave them untouched)."""
    model = make_model(name)
    x, y = make_data()
    return model, x, y, dense_hessian(model, x, y)


@pytest.fixture(scope="module", params=["mlp", "cnn", "vit", "resnet"])
def case(request):
    return reference(request.param)


def diagonal_block(hessian: torch.Tensor, space: ParameterSpace, b: int) -> torch.Tensor:
    start = space.offsets[b]
    return hessian[start : start + space.numels[b], start : start + space.numels[b]]


@pytest.mark.parametrize(
    ("micro_batch_size", "vector_batch"), [(None, 1), (3, 1), (None, 4), (4, 3)]
)
def test_products_equal_the_dense_hessian(case, micro_batch_size, vector_batch):
    model, x, y, hessian = case
    operator = HessianOperator(
        model, x, y, micro_batch_size=micro_batch_size, vector_batch=vector_batch, dtype="float64"
    )
    assert operator.space.dim == len(hessian)
    vectors = torch.randn(
        5, len(hessian), dtype=torch.float64, generator=torch.Generator().manual_seed(3)
    )
    torch.testing.assert_close(operator.matmul(vectors), vectors @ hessian, rtol=1e-10, atol=1e-12)
    for b in range(len(operator.space)):
        block = vectors[:, operator.space.offsets[b] :][:, : operator.space.numels[b]]
        expected = block @ diagonal_block(hessian, operator.space, b)
        torch.testing.assert_close(
            operator.block_matmul(b, block), expected, rtol=1e-10, atol=1e-12
        )
    assert operator.full_products == 5


# An injected footprint of 1000 bytes per image and none per micro-batch makes the plans of the
# 10 test images exact: (budget in bytes, explicit size) -> (size, count, kept).
KILOBYTE_IMAGES = Footprint(per_image=1000, per_batch=0)
PLANS = {
    "one batch": ((20_000, None), (10, 1, 1)),
    "two kept": ((15_000, None), (5, 2, 2)),
    "many, some kept": ((8_000, None), (1, 10, 6)),
    "many, none kept": ((0, None), (1, 10, 0)),
    "given size, half kept": ((12_000, 3), (3, 4, 2)),
}


def budgeted(model, x, y, budget_bytes, size, **kwargs) -> HessianOperator:
    return HessianOperator(
        model,
        x,
        y,
        micro_batch_size=size,
        memory_budget_gb=budget_bytes / GIB,
        footprint=KILOBYTE_IMAGES,
        **kwargs,
    )


@pytest.mark.parametrize(
    ("footprint", "budget", "options", "plan"),
    [
        (None, None, {}, (10, 1, 1)),
        (None, None, {"size": 3}, (3, 4, 4)),
        *((KILOBYTE_IMAGES, b, {"size": s}, plan) for (b, s), plan in PLANS.values()),
        # Two vectors per double-backward double its temporaries: two micro-batches fit.
        (KILOBYTE_IMAGES, 20_000, {"vector_batch": 2}, (5, 2, 2)),
        # A gradient per kept micro-batch: the fewest that fit are five, not two.
        (Footprint(per_image=1000, per_batch=500), 16_000, {}, (2, 5, 5)),
        (Footprint(per_image=0, per_batch=500), 1_000, {}, (10, 1, 1)),
    ],
)
def test_budgets_plan_micro_batches(footprint, budget, options, plan):
    assert plan_micro_batches(10, footprint, budget, **options) == MicroBatchPlan(*plan)


@pytest.mark.parametrize("plan", PLANS)
def test_budgeted_products_equal_the_dense_hessian(case, plan):
    model, x, y, hessian = case
    (budget, size), expected = PLANS[plan]
    operator = budgeted(model, x, y, budget, size, dtype="float64")
    assert (operator.plan.size, operator.plan.count, operator.plan.kept) == expected
    assert len(operator.micro_batches) == expected[1]
    vectors = torch.randn(
        3, len(hessian), dtype=torch.float64, generator=torch.Generator().manual_seed(5)
    )
    for _ in range(2):  # the second call reuses the kept graphs
        torch.testing.assert_close(
            operator.matmul(vectors), vectors @ hessian, rtol=1e-10, atol=1e-12
        )
    for b in range(len(operator.space)):
        block = vectors[:, operator.space.offsets[b] :][:, : operator.space.numels[b]]
        expected_block = block @ diagonal_block(hessian, operator.space, b)
        torch.testing.assert_close(
            operator.block_matmul(b, block), expected_block, rtol=1e-10, atol=1e-12
        )
    assert len(operator._kept) == operator.plan.kept


def test_kept_and_rebuilt_micro_batches_match_one_batch(case):
    model, x, y, _ = case
    dim, first = ParameterSpace.of(model).dim, ParameterSpace.of(model).numels[0]
    vectors = torch.randn(4, dim, generator=torch.Generator().manual_seed(6))

    def products(operator: HessianOperator) -> list[torch.Tensor]:
        return [operator.matmul(vectors), operator.block_matmul(0, vectors[:, :first])]

    one = products(HessianOperator(model, x, y, vector_batch=2))
    kept = products(HessianOperator(model, x, y, micro_batch_size=3, vector_batch=2))
    # Micro-batches of 3 with two vectors per call: 2 of 4 kept, then none kept.
    for budget, count in ((15_000, 2), (0, 0)):
        operator = budgeted(model, x, y, budget, 3, vector_batch=2)
        for _ in range(2):  # building the kept graphs, then reusing them
            for product, reference, same in zip(products(operator), one, kept, strict=True):
                torch.testing.assert_close(product, reference, rtol=1e-5, atol=1e-6)
                # The same micro-batches sum to the same bits, kept or rebuilt.
                torch.testing.assert_close(product, same, rtol=0, atol=0)
        assert len(operator._kept) == count


def saved_storage_bytes(grads, alive: set[int]) -> int:
    """Bytes of the distinct storages (not in ``alive``) that the nodes of the graph behind
    ``grads`` save, found by walking it through their ``_saved_*`` attributes."""
    saved, visited = {}, set()
    nodes = [g.grad_fn for g in grads if g is not None]
    while nodes:
        node = nodes.pop()
        if node is None or node in visited:
            continue
        visited.add(node)
        for name in dir(node):
            if name.startswith("_saved_"):
                value = getattr(node, name)
                for item in value if isinstance(value, tuple | list) else (value,):
                    if isinstance(item, torch.Tensor):
                        storage = item.untyped_storage()
                        if storage.data_ptr() not in alive:
                            saved[storage.data_ptr()] = storage.nbytes()
        nodes.extend(next_node for next_node, _ in node.next_functions)
    return sum(saved.values())


def test_footprint_is_what_the_kept_graph_saves(case):
    model, x, y, _ = case
    operator = HessianOperator(model, x, y, memory_budget_gb=1.0)
    footprint = operator.footprint
    assert footprint.per_batch == sum(p.numel() * 4 for p in model.parameters())
    alive = {
        t.untyped_storage().data_ptr()
        for t in (*operator.model.parameters(), *operator.model.buffers(), operator.x, operator.y)
    }
    walked = saved_storage_bytes(operator._build(slice(0, PROBE_IMAGES)), alive)
    # The probe also sees what only the loss saves (its few bytes die with it).
    assert walked <= footprint.per_image * PROBE_IMAGES <= walked + 16
    assert operator.plan == MicroBatchPlan(10, 1, 1)  # 1 GiB holds these graphs


def test_float32_products_are_close_to_the_float64_hessian(case):
    model, x, y, hessian = case
    operator = HessianOperator(model, x, y)
    vectors = torch.randn(3, len(hessian), generator=torch.Generator().manual_seed(4))
    expected = (vectors.double() @ hessian).float()
    torch.testing.assert_close(operator.matmul(vectors), expected, rtol=1e-4, atol=1e-5)


def test_sub_hessians_are_principal_submatrices(case):
    model, x, y, hessian = case
    operator = HessianOperator(model, x, y, dtype="float64", micro_batch_size=4)
    coords = block_coordinates(operator.space, 5, seed=7)
    for b, matrix in enumerate(sub_hessians(operator, coords)):
        index = coords[b] + operator.space.offsets[b]
        np.testing.assert_allclose(matrix, hessian[index][:, index].numpy(), rtol=1e-9, atol=1e-12)
    assert operator.block_products == sum(len(c) for c in coords)
    assert operator.full_products == 0


def assert_gauss_newton_blocks_exact(operator, hessian, expected, coords, atol):
    """The operator finds exactly the ``expected`` Gauss-Newton-exact blocks (by name), and
    their first-order sub-Hessians on ``coords`` are the dense Hessian's; their indices."""
    space = operator.space
    assert {space.names[b] for b in operator.gauss_newton.blocks} == expected
    exact = sorted(operator.gauss_newton.blocks)
    matrices = operator.gauss_newton_submatrices(exact, [coords[b] for b in exact])
    for b, matrix in zip(exact, matrices, strict=True):
        index = coords[b] + space.offsets[b]
        torch.testing.assert_close(matrix, hessian[index][:, index], rtol=1e-9, atol=atol)
    return exact


@pytest.mark.parametrize("name", MODELS)
def test_gauss_newton_blocks_are_found_and_exact(name, monkeypatch):
    model, x, y, hessian = reference(name)
    # Linear, Conv2d and BatchNorm blocks are read off their inputs: tangents only for the rest.
    tangents, tangent_rows = set(), gauss_newton._tangent_rows

    def recorded(module, name, *args):
        tangents.add(type(module).__name__ + "." + name)
        return tangent_rows(module, name, *args)

    monkeypatch.setattr(gauss_newton, "_tangent_rows", recorded)
    # One micro-batch: the batch mean of `mixed` makes its loss depend on the batching.
    operator = HessianOperator(model, x, y, dtype="float64")
    space = operator.space
    coords = block_coordinates(space, 6, seed=3)
    exact = assert_gauss_newton_blocks_exact(
        operator, hessian, GAUSS_NEWTON_BLOCKS[name], coords, atol=1e-12
    )
    assert operator.block_products == sum(len(coords[b]) for b in exact)
    expected = {"Conv2d.weight", "Gain.gain"} if name == "odd" else set()  # the grouped conv
    assert tangents == expected
    others = sorted(set(range(len(space))) - operator.gauss_newton.blocks)
    if others:
        with pytest.raises(ValueError, match=re.escape(space.names[others[0]])):
            operator.gauss_newton_submatrices(others, [coords[b] for b in others])


def test_coordinates_depend_on_block_name_and_seed_only():
    space = ParameterSpace.of(make_model("cnn"))
    coords = block_coordinates(space, 5, seed=11)
    conv = space.index("conv.weight")
    other = ParameterSpace(("other", "conv.weight"), (torch.Size([7]), space.shapes[conv]))
    assert torch.equal(block_coordinates(other, 5, seed=11)[1], coords[conv])
    for name, numel, chosen in zip(space.names, space.numels, coords, strict=True):
        assert len(chosen) == min(numel, 5) and len(set(chosen.tolist())) == len(chosen)
        drawn = torch.randperm(numel, generator=generator("cpu", 11, "coords", name))[:5]
        assert chosen.tolist() == sorted(drawn.tolist())
    assert not torch.equal(block_coordinates(space, 5, seed=12)[conv], coords[conv])


def test_table_rows_equal_dense_references(case):
    model, x, y, hessian = case
    options = HessianOptions(max_k=6, probes=0, lanczos_max_iter=0, dtype="float64", seed=5)
    table = checkpoint_hessian_table(model, x, y, options)
    space = ParameterSpace.of(model)
    blocks = table[table["block"] != GLOBAL]
    assert list(blocks["block"]) == list(space.names)
    coords = block_coordinates(space, 6, seed=5)
    for b, row in enumerate(blocks.itertuples()):
        index = coords[b] + space.offsets[b]
        eigs = np.linalg.eigvalsh(hessian[index][:, index].numpy())
        assert (row.numel, row.k) == (space.numels[b], min(space.numels[b], 6))
        assert row.lambda_min == pytest.approx(eigs[0], rel=1e-8, abs=1e-12)
        assert row.lambda_max == pytest.approx(eigs[-1], rel=1e-8, abs=1e-12)
        assert row.subtrace == pytest.approx(eigs.sum(), rel=1e-8, abs=1e-12)
        assert row.positive == (eigs[0] > 1e-5 * np.abs(eigs).max())
        if np.abs(eigs).sum() > 1e-12:
            p = np.abs(eigs) / np.abs(eigs).sum()
            assert row.entropy == pytest.approx(shannon(p), rel=1e-7, abs=1e-9)
            assert row.gap == pytest.approx(math.log(len(eigs)) - shannon(p), rel=1e-6, abs=1e-9)
        else:  # the unused parameter: a zero sub-Hessian has no entropy
            assert math.isnan(row.entropy) and math.isnan(row.gap)
    summary = table[table["block"] == GLOBAL].iloc[0]
    assert summary["numel"] == len(hessian)
    assert summary["positive_ratio"] == pytest.approx(blocks["positive"].astype(float).mean())
    assert math.isnan(summary["trace"]) and math.isnan(summary["lambda_max"])


def test_clip_normalization_and_trace_rule_follow_the_dense_spectrum():
    model, (x, y) = make_model("mlp"), make_data()
    hessian = dense_hessian(model, x, y)
    options = HessianOptions(
        max_k=8,
        probes=0,
        lanczos_max_iter=0,
        dtype="float64",
        normalization="clip",
        positive="trace",
        aggregation="positive",
    )
    table = checkpoint_hessian_table(model, x, y, options)
    space = ParameterSpace.of(model)
    blocks = table[table["block"] != GLOBAL]
    gaps = []
    for b, (row, coords) in enumerate(
        zip(blocks.itertuples(), block_coordinates(space, 8, 0), strict=True)
    ):
        index = coords + space.offsets[b]
        sub = hessian[index][:, index].numpy()
        eigs = np.clip(np.linalg.eigvalsh(sub), 0, None)
        assert row.gap == pytest.approx(math.log(len(eigs)) - shannon(eigs / eigs.sum()), abs=1e-9)
        assert row.positive == (np.trace(sub) > 0)
        if row.positive:
            gaps.append(row.gap)
    summary = table[table["block"] == GLOBAL].iloc[0]
    assert summary["gap_mean"] == pytest.approx(statistics.fmean(gaps))
    assert summary["gap_std"] == pytest.approx(statistics.pstdev(gaps))


def test_hutchinson_traces_agree_with_exact_traces(case):
    model, x, y, hessian = case
    operator = HessianOperator(model, x, y, dtype="float64")
    estimate = hutchinson(operator, probes=300, seed=0, probe_batch=64)
    space = operator.space
    exact = np.array([diagonal_block(hessian, space, b).trace().item() for b in range(len(space))])
    errors = np.abs(estimate.block_traces - exact)
    assert (errors <= 4 * estimate.block_standard_errors + 1e-10).all()
    assert abs(estimate.trace - hessian.trace().item()) <= 4 * estimate.standard_error
    assert estimate.standard_error > 0
    again = hutchinson(operator, probes=300, seed=0, probe_batch=7)
    np.testing.assert_allclose(again.samples, estimate.samples, rtol=1e-12, atol=1e-14)


def test_lanczos_finds_the_top_eigenvalue_with_few_products(case):
    model, x, y, hessian = case
    operator = HessianOperator(model, x, y, dtype="float64")
    result = lanczos_top_eigenvalue(
        lambda v: operator.matmul(v[None])[0], len(hessian), seed=0, tol=1e-10, dtype=torch.float64
    )
    top = torch.linalg.eigvalsh(hessian)[-1].item()
    assert result.converged and result.eigenvalue == pytest.approx(top, rel=1e-9)
    assert result.products == operator.full_products < len(hessian)


def test_lanczos_returns_the_largest_algebraic_eigenvalue():
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.standard_normal((50, 50)))
    eigs = np.concatenate([[-9.0, -4.0], np.linspace(-1, 2, 47), [3.0]])
    matrix = torch.tensor(q @ np.diag(eigs) @ q.T)
    result = lanczos_top_eigenvalue(
        lambda v: matrix @ v, 50, seed=1, tol=1e-12, dtype=torch.float64
    )
    assert result.eigenvalue == pytest.approx(3.0, rel=1e-10)
    capped = lanczos_top_eigenvalue(
        lambda v: matrix @ v, 50, seed=1, max_iter=3, dtype=torch.float64
    )
    assert not capped.converged and capped.products == 3


def test_full_table_is_seeded_and_micro_batching_changes_nothing():
    model, (x, y) = make_model("cnn"), make_data(n=12)
    options = HessianOptions(max_k=4, probes=6, probe_batch=4, lanczos_max_iter=12, dtype="float64")
    first = checkpoint_hessian_table(model, x, y, options).drop(columns="seconds")
    second = checkpoint_hessian_table(model, x, y, options).drop(columns="seconds")
    pd.testing.assert_frame_equal(first, second)
    option_columns = [c for c in first.columns if c.startswith("option_")]
    # Micro-batches of 5, all kept; then a zero budget: one image per micro-batch, all rebuilt.
    for changed in ({"micro_batch_size": 5, "vector_batch": 3}, {"memory_budget_gb": 0.0}):
        micro = HessianOptions(**(vars(options) | changed))
        third = checkpoint_hessian_table(model, x, y, micro).drop(columns="seconds")
        pd.testing.assert_frame_equal(
            first.drop(columns=option_columns), third.drop(columns=option_columns), rtol=1e-9
        )
    summary = first[first["block"] == GLOBAL].iloc[0]
    assert summary["block_products"] == first["k"].sum()
    assert summary["full_products"] == 6 + summary["lanczos_products"]


def test_callers_model_is_left_untouched():
    model, (x, y) = make_model("cnn"), make_data()
    before = copy.deepcopy(model.state_dict())
    checkpoint_hessian_table(model, x, y, HessianOptions(max_k=3, probes=2, lanczos_max_iter=3))
    assert model.training
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]) and value.dtype == before[key].dtype


def test_aggregates_by_hand():
    blocks = pd.DataFrame(
        {
            "trace": [2.0, -3.0, 0.5, 1.0],
            "gap": [0.1, 0.4, math.nan, 0.3],
            "positive": [True, False, True, True],
        }
    )
    everything = aggregate_blocks(blocks)
    assert everything["positive_ratio"] == 0.75
    assert everything["sharpness"] == 6.5
    assert everything["gap_mean"] == pytest.approx(statistics.fmean([0.1, 0.4, 0.3]))
    assert everything["gap_std"] == pytest.approx(statistics.pstdev([0.1, 0.4, 0.3]))
    assert everything["gap_blocks"] == 3
    positive = aggregate_blocks(blocks, "positive")
    assert positive["gap_mean"] == pytest.approx(0.2) and positive["gap_blocks"] == 2
    assert positive["gap_std"] == pytest.approx(0.1)
    with pytest.raises(ValueError, match="unknown aggregation 'some'; valid: all, positive"):
        aggregate_blocks(blocks, "some")


def test_bad_options_name_the_valid_ones():
    with pytest.raises(ValueError, match="unknown positive 'det'; valid: lambda_min, trace"):
        HessianOptions(positive="det")
    with pytest.raises(ValueError, match="unknown dtype 'float16'; valid: float32, float64"):
        HessianOptions(dtype="float16")
    with pytest.raises(ValueError, match="max_k must be positive"):
        HessianOptions(max_k=0)
    with pytest.raises(ValueError, match="memory_budget_gb must be >= 0, got -1"):
        HessianOptions(memory_budget_gb=-1)
    model, (x, y) = make_model("mlp"), make_data()
    with pytest.raises(ValueError, match="memory_budget_gb must be >= 0, got nan"):
        HessianOperator(model, x, y, memory_budget_gb=math.nan)


def test_missing_table_has_every_block_and_no_numbers():
    space = ParameterSpace.of(make_model("mlp"))
    table = missing_hessian_table(space, HessianOptions())
    assert list(table["block"]) == [*space.names, GLOBAL]
    assert table[["trace", "gap", "lambda_max", "gap_mean"]].isna().all().all()


# The command, end to end, on the bundled digits.


def tiny_resnet_spec() -> dict:
    options = {"width": 2, "blocks": [1, 1, 1, 1]}
    return {
        "name": "resnet18",
        "num_classes": 10,
        "in_channels": 1,
        "image_size": 8,
        "options": options,
    }


def write_checkpoint(path, status: str = "ok") -> nn.Module:
    torch.manual_seed(0)
    model = build_model(**tiny_resnet_spec())
    save_checkpoint(
        {
            "status": status,
            "progress": 0.25,
            "step": 10,
            "epoch": 1.0,
            "dataset": "digits",
            "arch": "resnet18",
            "optimizer": "sgd",
            "seed": 3,
            "model": tiny_resnet_spec(),
            "state_dict": model.state_dict() if status == "ok" else None,
            "metrics": {},
        },
        path,
    )
    return model


ARGS = ["--eval-size", "48", "--max-k", "10", "--probes", "3", "--lanczos-max-iter", "8"]


def test_command_writes_the_table(tmp_path, digits_npz, capsys):
    model = write_checkpoint(tmp_path / "ckpt.pt")
    out = tmp_path / "hessian" / "0.25.parquet"
    main(
        [
            "hessian",
            str(tmp_path / "ckpt.pt"),
            "--data",
            str(digits_npz),
            "--out",
            str(out),
            *ARGS,
            "--device",
            "cpu",
        ]
    )
    table = pd.read_parquet(out)
    names = [name for name, _ in model.named_parameters()]
    assert list(table["block"]) == [*names, GLOBAL]
    # The log opens with the cost model's prediction, to compare with what the job took.
    log = capsys.readouterr().err
    predicted = re.search(
        r"predicted [\d,]+ s \([\d.]+ h\), ([\d,]+) block \+ [\d,]+ full products, "
        r"1 micro-batches of 48 images",
        log,
    )
    assert predicted and int(predicted.group(1)) == table["block_products"].max()
    # Then the operator's own plan: within the default budget, all 48 images as one kept graph.
    assert "Hessian operator: 1 micro-batches of 48 images, 1 kept, 0 rebuilt" in log
    assert (
        (table[["dataset", "arch", "optimizer", "status"]] == ["digits", "resnet18", "sgd", "ok"])
        .all()
        .all()
    )
    assert (table["seed"] == 3).all() and (table["progress"] == 0.25).all()
    assert (table["option_seed"] == 3).all() and (table["option_eval_size"] == 48).all()
    blocks = table[table["block"] != GLOBAL]
    assert blocks[["trace", "lambda_min", "lambda_max", "gap"]].notna().all().all()
    # Independent check of one block: the head's bias (10 coordinates, all sampled) has the
    # exact Hessian of the loss as a function of that bias alone.
    from infoopt.data import eval_subset, load_prepared

    x, y = eval_subset(load_prepared(digits_npz), "test", 48, 3)
    model.eval()
    bias_name = names[-1]

    def loss(bias: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(functional_call(model, {bias_name: bias}, (x,)), y)

    bias = dict(model.named_parameters())[bias_name].detach()
    eigs = torch.linalg.eigvalsh(torch.autograd.functional.hessian(loss, bias).double())
    row = blocks.iloc[-1]
    assert row["k"] == 10
    assert row["lambda_max"] == pytest.approx(eigs[-1].item(), rel=1e-4)
    assert row["lambda_min"] == pytest.approx(eigs[0].item(), rel=1e-3, abs=1e-6)


def test_command_marks_a_diverged_checkpoint(tmp_path, digits_npz):
    write_checkpoint(tmp_path / "ckpt.pt", status="diverged")
    out = tmp_path / "out.parquet"
    main(
        ["hessian", str(tmp_path / "ckpt.pt"), "--data", str(digits_npz), "--out", str(out), *ARGS]
    )
    table = pd.read_parquet(out)
    assert (table["status"] == "diverged").all()
    assert table[["trace", "gap", "lambda_max", "gap_mean", "sharpness"]].isna().all().all()


def test_command_names_a_corrupt_checkpoint_in_one_line(tmp_path, digits_npz, capsys):
    write_checkpoint(tmp_path / "ckpt.pt")
    broken = tmp_path / "broken.pt"
    broken.write_bytes((tmp_path / "ckpt.pt").read_bytes()[:4000])
    out = tmp_path / "out.parquet"
    assert main(["hessian", str(broken), "--data", str(digits_npz), "--out", str(out)]) == 1
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "weights_only" not in error
    assert error.startswith(f"infoopt hessian: error: checkpoint {broken} is corrupt (")
    assert error.rstrip().endswith("delete it and rerun the step that wrote it")
    assert not out.exists()
    with pytest.raises(CheckpointError, match="broken.pt"):
        main(["--debug", "hessian", str(broken), "--data", str(digits_npz), "--out", str(out)])


def test_command_names_a_checkpoint_whose_content_changed(tmp_path, digits_npz, capsys):
    write_checkpoint(tmp_path / "ckpt.pt")
    checkpoint = torch.load(tmp_path / "ckpt.pt", weights_only=True)
    name = next(iter(checkpoint["state_dict"]))
    checkpoint["state_dict"][name].add_(1e-3)
    torch.save(checkpoint, tmp_path / "ckpt.pt")
    out = tmp_path / "out.parquet"
    assert (
        main(["hessian", str(tmp_path / "ckpt.pt"), "--data", str(digits_npz), "--out", str(out)])
        == 1
    )
    assert "content does not match its digest" in capsys.readouterr().err


def test_command_names_corrupt_data_in_one_line(tmp_path, digits_npz, capsys):
    write_checkpoint(tmp_path / "ckpt.pt")
    data = tmp_path / "digits.npz"
    data.write_bytes(digits_npz.read_bytes()[:-100])
    out = tmp_path / "out.parquet"
    assert main(["hessian", str(tmp_path / "ckpt.pt"), "--data", str(data), "--out", str(out)]) == 1
    error = capsys.readouterr().err
    assert error.count("\n") == 1
    assert error.startswith(f"infoopt hessian: error: array file {data} is corrupt")


def test_command_rejects_data_the_model_was_not_built_for(tmp_path, digits_npz):
    write_checkpoint(tmp_path / "ckpt.pt")
    spec = tiny_resnet_spec() | {"num_classes": 7}
    checkpoint = torch.load(tmp_path / "ckpt.pt", weights_only=True)
    model = build_model(**spec)
    save_checkpoint(
        checkpoint | {"model": spec, "state_dict": model.state_dict()}, tmp_path / "ckpt.pt"
    )
    out = tmp_path / "out.parquet"
    args = ["--debug", "hessian", str(tmp_path / "ckpt.pt"), "--data", str(digits_npz)]
    with pytest.raises(ValueError, match="the data do not match the checkpoint"):
        main([*args, "--out", str(out)])
    with pytest.raises(ValueError, match="must be a .parquet file"):
        main([*args, "--out", "x.txt"])


def test_command_flags_take_the_options_types():
    """Each flag converts its text to its option's type, read off HessianOptions' hints."""
    import argparse

    from infoopt.commands import hessian

    parser = argparse.ArgumentParser()
    hessian.configure(parser)
    args = parser.parse_args(
        [
            "--out",
            "t.parquet",
            "--micro-batch-size",
            "4",
            "--lanczos-tol",
            "1e-4",
            "--dtype",
            "float64",
        ]
    )
    assert (args.micro_batch_size, args.lanczos_tol, args.dtype) == (4, 1e-4, "float64")
    assert args.max_k is None, "a flag not given leaves the option to the spec or its default"
    with pytest.raises(SystemExit):
        parser.parse_args(["--out", "t.parquet", "--micro-batch-size", "4.5"])

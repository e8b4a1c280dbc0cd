"""The Hessian of models that are not ours (timm's, modules the operator was not written for)
against the exact dense Hessian in float64, as in tests/test_hessian.py.

What could go wrong with a library's model: its attention through a fused kernel (no
double-backward), its dropout or drop-path or BatchNorm statistics left in training mode, a
module that subclasses torch's but computes something else (timm's ``BatchNormAct2d`` adds an
activation, ``Conv2dSame`` pads inside ``forward``), or a block wrongly taken as one whose
Hessian is its Gauss-Newton block (:mod:`infoopt.hessian.gauss_newton`): then its metrics would
be those of another matrix.
"""

from __future__ import annotations

import copy
import functools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.stats import entropy as shannon
from timm.layers import Attention, BatchNormAct2d, Conv2dSame, Mlp, SqueezeExcite
from torch import nn

from infoopt.hessian.blocks import block_coordinates
from infoopt.hessian.hvp import HessianOperator
from infoopt.hessian.metrics import GLOBAL, checkpoint_hessian_table
from infoopt.hessian.options import HessianOptions
from infoopt.hessian.space import ParameterSpace
from infoopt.models import build_model
from test_hessian import assert_gauss_newton_blocks_exact, dense_hessian

CLASSES = 3


pytestmark = pytest.mark.usefixtures("one_thread")


def timm_vit() -> nn.Module:
    # Dropout, attention dropout and drop-path on: eval mode must turn them off.
    options = {
        "name": "vit_tiny_patch16_224",
        "patch_size": 2,
        "embed_dim": 4,
        "depth": 1,
        "num_heads": 2,
        "mlp_ratio": 2.0,
        "drop_rate": 0.3,
        "attn_drop_rate": 0.3,
        "drop_path_rate": 0.3,
    }
    return build_model("timm", num_classes=CLASSES, in_channels=1, image_size=4, options=options)


def timm_resnet() -> nn.Module:
    options = {"name": "resnet18", "layers": [1, 1, 1, 1], "channels": [2, 2, 2, 2]}
    options |= {"stem_type": "deep", "stem_width": 1, "drop_rate": 0.3}
    return build_model("timm", num_classes=CLASSES, in_channels=1, image_size=4, options=options)


class Zoo(nn.Module):
    """Modules of timm's convolutional and attention networks, small: a padding-inside
    convolution, a depthwise one, BatchNorm with an activation, squeeze-excite, attention,
    a GELU MLP and a LayerNorm before the head."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = Conv2dSame(1, 4, 3, stride=2)
        self.depthwise = nn.Conv2d(4, 4, 3, padding=1, groups=4)
        self.norm_act = BatchNormAct2d(4, act_layer=nn.ReLU)
        self.excite = SqueezeExcite(4, rd_channels=2)
        self.attention = Attention(4, num_heads=2, qkv_bias=True)
        self.mlp = Mlp(4, 6, act_layer=nn.GELU)
        self.norm = nn.LayerNorm(4)
        self.head = nn.Linear(4, CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.excite(self.norm_act(self.depthwise(F.relu(self.stem(x)))))
        tokens = x.flatten(2).mT
        tokens = tokens + self.attention(tokens)
        tokens = tokens + self.mlp(tokens)
        return self.head(self.norm(tokens.mean(dim=1)))


class PiecewiseLinear(nn.Module):
    """Every block's Hessian is its Gauss-Newton block: ReLU, depthwise and padding-inside
    convolutions, pooling and a linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = Conv2dSame(1, 4, 3, stride=2)
        self.depthwise = nn.Conv2d(4, 4, 3, padding=1, groups=4)
        self.head = nn.Linear(4, CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.depthwise(F.relu(self.stem(x))))
        return self.head(F.adaptive_avg_pool2d(x, 1).flatten(1))


MODELS = {"timm_vit": timm_vit, "timm_resnet": timm_resnet, "zoo": Zoo, "relu": PiecewiseLinear}
# The blocks whose Hessian is their Gauss-Newton block, by the model's construction: only the
# head above a nonlinearity of its own inputs (LayerNorm, GELU, softmax, gating); every block
# of a ReLU network of convolutions and eval-mode BatchNorms.
GAUSS_NEWTON_BLOCKS = {
    "timm_vit": {"head.weight", "head.bias"},
    "timm_resnet": {name for name, _ in timm_resnet().named_parameters()},
    "zoo": {"head.weight", "head.bias"},
    "relu": {name for name, _ in PiecewiseLinear().named_parameters()},
}


@functools.cache
def reference(name: str):
    """Model ``name`` after some training-mode steps (non-trivial BatchNorm statistics), six
    4x4 images, and the dense Hessian."""
    torch.manual_seed(0)
    model = MODELS[name]()
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(8, 1, 4, 4) * 2 + 0.5)
        for p in model.parameters():  # away from timm's zero-initialised heads and scales
            p.add_(0.3 * torch.randn_like(p))
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(6, 1, 4, 4, generator=g), torch.randint(0, CLASSES, (6,), generator=g)
    return model, x, y, dense_hessian(model, x, y)


@pytest.fixture(scope="module", params=sorted(MODELS))
def case(request):
    return request.param, reference(request.param)


def test_timm_attention_calls_the_fused_function():
    # timm's attention calls scaled_dot_product_attention (whose fused kernels have no
    # double-backward): what the operator's math-kernel context is for.
    assert timm_vit().blocks[0].attn.fused_attn
    assert Zoo().attention.fused_attn


def test_products_equal_the_dense_hessian(case):
    _, (model, x, y, hessian) = case
    operator = HessianOperator(model, x, y, dtype="float64", micro_batch_size=4)
    assert operator.space.names == tuple(name for name, _ in model.named_parameters())
    vectors = torch.randn(3, len(hessian), dtype=torch.float64)
    torch.testing.assert_close(operator.matmul(vectors), vectors @ hessian, rtol=1e-9, atol=1e-11)


def test_gauss_newton_blocks_are_the_exact_ones(case):
    name, (model, x, y, hessian) = case
    operator = HessianOperator(model, x, y, dtype="float64")
    coords = block_coordinates(operator.space, 6, seed=3)
    assert_gauss_newton_blocks_exact(
        operator, hessian, GAUSS_NEWTON_BLOCKS[name], coords, atol=1e-11
    )


def test_table_rows_equal_dense_references(case):
    _, (model, x, y, hessian) = case
    options = HessianOptions(max_k=5, probes=0, lanczos_max_iter=30, dtype="float64", seed=2)
    table = checkpoint_hessian_table(model, x, y, options)
    space = ParameterSpace.of(model)
    blocks = table[table["block"] != GLOBAL]
    assert list(blocks["block"]) == list(space.names)
    coords = block_coordinates(space, 5, seed=2)
    for b, row in enumerate(blocks.itertuples()):
        index = coords[b] + space.offsets[b]
        eigs = np.linalg.eigvalsh(hessian[index][:, index].numpy())
        assert row.lambda_min == pytest.approx(eigs[0], rel=1e-7, abs=1e-10)
        assert row.lambda_max == pytest.approx(eigs[-1], rel=1e-7, abs=1e-10)
        if np.abs(eigs).sum() > 1e-10:
            p = np.abs(eigs) / np.abs(eigs).sum()
            assert row.gap == pytest.approx(math.log(len(eigs)) - shannon(p), rel=1e-6, abs=1e-8)
    top = np.linalg.eigvalsh(hessian.numpy())[-1]
    assert table[table["block"] == GLOBAL].iloc[0]["lambda_max"] == pytest.approx(top, rel=1e-3)


def test_training_mode_would_differ(case):
    # The reference is eval mode; in training mode dropout, drop-path and batch statistics
    # change the loss, so the products above did run in eval mode.
    name, (model, x, y, _) = case
    if name == "relu":
        pytest.skip("no dropout or BatchNorm")
    model = copy.deepcopy(model).double()
    with torch.no_grad():
        evaluated = F.cross_entropy(model.eval()(x.double()), y)
        trained = F.cross_entropy(model.train()(x.double()), y)
    assert not torch.allclose(evaluated, trained)

"""The GPU check runs end to end on the CPU at reduced sizes (the CUDA run is for a lent GPU)."""

from __future__ import annotations

import re
import subprocess
import sys

import yaml

from conftest import REPO

ARCHS = ("resnet18", "vit")
# float32 is enough when its entropy gaps round as float64's do at the paper's two decimals
# (PAPER.md: ViT's Adam 0.32 against SGD's 0.34): half a unit of the last digit.
GAP_BOUND = 5e-3

REDUCED = [
    "--device", "cpu", "--threads", "1", "--steps", "1", "--warmup", "0", "--batch", "4",
    "--repeats", "1", "--product-images", "4", "--images", "8", "--sampled-blocks", "2",
    "--gap-images", "4", "--gap-k", "2", "--gap-blocks", "3", "--no-compile",
]  # fmt: skip


def test_compiled_product_is_the_operators_product():
    """The compiled path's math, through torch.compile's eager backend (no compiler needed),
    for the whole model and restricted to one block."""
    import torch
    from torch import nn

    sys.path.insert(0, str(REPO / "benchmarks"))
    from hessian_cost import forward_over_reverse

    from infoopt.hessian.hvp import HessianOperator

    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 5), nn.Tanh(), nn.Linear(5, 3))
    x, y = torch.randn(6, 3, 2, 2), torch.randint(0, 3, (6,))
    operator = HessianOperator(model, x, y, dtype="float64")
    v = torch.randn(1, operator.space.dim, dtype=torch.float64)
    parts = dict(enumerate(operator.space.split(v[0])))
    ours = torch.cat([t.flatten() for t in forward_over_reverse(operator, parts, "eager")()])
    torch.testing.assert_close(ours, operator.matmul(v)[0])
    (block,) = forward_over_reverse(operator, {0: parts[0]}, "eager")()
    expected = operator.block_matmul(0, parts[0].reshape(1, -1))[0]
    torch.testing.assert_close(block.flatten(), expected)


def test_gpu_check_prints_every_part_on_cpu():
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks/gpu_check.py"), *REDUCED],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for arch in ARCHS:
        assert re.search(rf"{arch}\s+fp32 batch\s+4:\s+\d+ images/s", out), out
        assert re.search(rf"{arch}\s+bf16 batch\s+4:\s+\d+ images/s", out), out
        assert re.search(rf"{arch}\s+gradient [\d.]+ s, HVP eager [\d.]+x", out), out
        assert re.search(rf"{arch}\s+gradient .* Gauss-Newton [\d.]+x per column", out), out
        assert re.search(rf"{arch}\s+plan 8 x 1 images \(1 kept\), peak [\d.]+ GiB", out), out
        gap = re.search(rf"{arch}\s+3 blocks: max \|Δgap\| ([\d.e+-]+)", out)
        assert gap, out
        assert float(gap.group(1)) < GAP_BOUND, f"{arch}: float32 moves a gap by {gap.group(1)}"
        assert re.search(rf"{arch}: predicted [\d,]+ s \([\d.]+ h\)", out), out
    # The cost model's section for costs.yaml: numbers that YAML reads as numbers.
    section = yaml.safe_load(out[out.index("\ncpu:") : out.index("    predicted per checkpoint")])
    assert {"base_bytes", *ARCHS} == set(section["cpu"])
    for arch in ARCHS:
        numbers = section["cpu"][arch]
        assert set(numbers) == {"gradient", "product", "block_product", "graph_bytes"}, numbers
        assert all(isinstance(value, float) and value > 0 for value in numbers.values()), numbers

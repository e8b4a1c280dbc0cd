"""Model registry: sizes against closed forms and the paper, forward passes against independent
references (torchvision's ResNet, a hand-written float64 ViT), HVPs against finite differences."""

from __future__ import annotations

import copy
import json
import math

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from infoopt.models import MODELS, build_model, model_options

SMALL_RESNET = {"width": 8, "blocks": [1, 1, 1, 1]}
SMALL_VIT = {"dim": 32, "depth": 2, "heads": 2, "head_dim": 16, "mlp_dim": 64}


def counts(model: nn.Module) -> tuple[int, int]:
    params = list(model.parameters())
    return len(params), sum(p.numel() for p in params)


def resnet_counts(w: int, blocks: list[int], c: int, k: int) -> tuple[int, int]:
    """Tensors and parameters of the CIFAR ResNet by hand: conv k*k*in*out, BN 2*out, Linear."""
    tensors = 2 + 1  # stem conv, BN weight and bias
    params = 9 * c * w + 2 * w
    for s, n in enumerate(blocks):
        out, inp = w * 2**s, w * 2 ** max(s - 1, 0)
        tensors += 6 * n + (3 if s > 0 else 0)  # projection shortcut in stages 2-4
        params += 9 * inp * out + 9 * out * out + 4 * out + (inp * out + 2 * out if s > 0 else 0)
        params += (n - 1) * (18 * out * out + 4 * out)
    return tensors + 2, params + 8 * w * k + k


def vit_counts(
    c: int, size: int, k: int, patch: int, dim: int, depth: int, heads: int, hd: int, mlp: int
) -> tuple[int, int]:
    """Tensors and parameters of the ViT, by hand."""
    inner, tokens = heads * hd, (size // patch) ** 2 + 1
    embed = patch * patch * c * dim + dim + tokens * dim + dim  # Linear, pos_embedding, cls_token
    block = 2 * dim + 3 * dim * inner + inner * dim + dim + 2 * dim
    block += dim * mlp + mlp + mlp * dim + dim
    head = 2 * dim + dim * k + k
    return 4 + 11 * depth + 4, embed + depth * block + head


@pytest.fixture(scope="module")
def full_models() -> dict[str, nn.Module]:
    return {
        name: build_model(name, num_classes=10, in_channels=3, image_size=32) for name in MODELS
    }


def test_registry_names():
    assert set(MODELS) == {"resnet18", "vit"}
    assert model_options("resnet18") == {"width": 64, "blocks": (2, 2, 2, 2)}
    assert model_options("vit")["patch_size"] == 4


def test_full_size_counts_match_paper(full_models):
    assert counts(full_models["resnet18"]) == (62, 11_173_962)
    assert counts(full_models["vit"]) == (74, 9_523_722)
    # The closed forms reproduce the paper's numbers too, so they can be trusted at other sizes.
    assert resnet_counts(64, [2, 2, 2, 2], 3, 10) == (62, 11_173_962)
    assert vit_counts(3, 32, 10, 4, 512, 6, 8, 64, 512) == (74, 9_523_722)


def test_small_counts_match_closed_form():
    resnet = build_model(
        "resnet18", num_classes=7, in_channels=1, image_size=8, options=SMALL_RESNET
    )
    assert counts(resnet) == resnet_counts(8, [1, 1, 1, 1], 1, 7)
    resnet = build_model(
        "resnet18", num_classes=5, in_channels=2, image_size=8, options={"blocks": [3, 1, 2, 1]}
    )
    assert counts(resnet) == resnet_counts(64, [3, 1, 2, 1], 2, 5)
    vit = build_model(
        "vit", num_classes=7, in_channels=1, image_size=8, options={**SMALL_VIT, "patch_size": 2}
    )
    assert counts(vit) == vit_counts(1, 8, 7, 2, 32, 2, 2, 16, 64)


def randomize_batchnorm(model: nn.Module, seed: int) -> None:
    """Non-trivial BN statistics and affine parameters, so eval-mode tests exercise them."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.1)


def torchvision_cifar_resnet(blocks: list[int], in_channels: int) -> nn.Module:
    """torchvision's ResNet with the CIFAR stem: 3x3 stride-1 conv, no max-pool."""
    model = torchvision.models.resnet.ResNet(
        torchvision.models.resnet.BasicBlock, blocks, num_classes=10
    )
    model.conv1 = nn.Conv2d(in_channels, 64, 3, stride=1, padding=1, bias=False)
    model.maxpool = nn.Identity()
    return model


@pytest.mark.parametrize(
    ("blocks", "in_channels", "size"), [([2, 2, 2, 2], 3, 8), ([1, 1, 1, 1], 1, 8)]
)
def test_resnet_matches_torchvision(full_models, blocks, in_channels, size):
    if blocks == [2, 2, 2, 2]:
        ours = full_models["resnet18"]
    else:
        ours = build_model(
            "resnet18",
            num_classes=10,
            in_channels=in_channels,
            image_size=size,
            options={"blocks": blocks},
        )
    ours = copy.deepcopy(ours)
    randomize_batchnorm(ours, 0)
    reference = torchvision_cifar_resnet(blocks, in_channels)
    assert counts(reference) == counts(ours)
    # Same layer order: copy our weights and BN buffers into torchvision's model one by one.
    ref_state = reference.state_dict()
    assert [v.shape for v in ref_state.values()] == [v.shape for v in ours.state_dict().values()]
    reference.load_state_dict(dict(zip(ref_state, ours.state_dict().values(), strict=True)))
    x = torch.randn(2, in_channels, size, size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(ours.eval()(x), reference.eval()(x), rtol=1e-4, atol=1e-5)


def layer_norm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + 1e-5) * weight + bias


def reference_vit(p: dict[str, torch.Tensor], x: torch.Tensor, patch: int, heads: int, depth: int):
    """The ViT's eval-mode forward written out with explicit loops, softmax and erf-GELU."""
    b, c, h, w = x.shape
    patches = [
        x[:, :, i : i + patch, j : j + patch].permute(0, 2, 3, 1).reshape(b, -1)
        for i in range(0, h, patch)
        for j in range(0, w, patch)
    ]
    tokens = torch.stack(patches, 1) @ p["patch_embedding.weight"].T + p["patch_embedding.bias"]
    z = torch.cat([p["cls_token"].expand(b, 1, -1), tokens], 1) + p["pos_embedding"]
    for layer in range(depth):
        q = f"blocks.{layer}."
        y = layer_norm(z, p[q + "norm1.weight"], p[q + "norm1.bias"])
        qs, ks, vs = (
            t.unflatten(-1, (heads, -1)) for t in (y @ p[q + "attn.qkv.weight"].T).chunk(3, -1)
        )
        scores = torch.einsum("bthd,bshd->bhts", qs, ks) / math.sqrt(qs.shape[-1])
        att = torch.exp(scores - scores.amax(-1, keepdim=True))
        att = att / att.sum(-1, keepdim=True)
        y = torch.einsum("bhts,bshd->bthd", att, vs).flatten(2)
        z = z + y @ p[q + "attn.out.weight"].T + p[q + "attn.out.bias"]
        y = layer_norm(z, p[q + "norm2.weight"], p[q + "norm2.bias"])
        y = y @ p[q + "ff.net.0.weight"].T + p[q + "ff.net.0.bias"]
        y = 0.5 * y * (1 + torch.erf(y / math.sqrt(2)))
        z = z + y @ p[q + "ff.net.3.weight"].T + p[q + "ff.net.3.bias"]
    cls = layer_norm(z[:, 0], p["norm.weight"], p["norm.bias"])
    return cls @ p["head.weight"].T + p["head.bias"]


def small_vit(in_channels: int = 3, image_size: int = 8, **options) -> nn.Module:
    torch.manual_seed(0)
    options = {**SMALL_VIT, "patch_size": 4, **options}
    return build_model(
        "vit", num_classes=10, in_channels=in_channels, image_size=image_size, options=options
    )


def test_vit_matches_reference_forward():
    model = small_vit(in_channels=3, image_size=12).double().eval()
    # Non-trivial LayerNorm affine parameters, so their use is checked too.
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "norm" in name:
                param.add_(torch.randn_like(param) * 0.3)
    x = torch.randn(3, 3, 12, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    params = dict(model.named_parameters())
    with torch.no_grad():
        expected = reference_vit(params, x, patch=4, heads=2, depth=2)
        torch.testing.assert_close(model(x), expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("arch", ["resnet18", "vit"])
@pytest.mark.parametrize(("in_channels", "size"), [(3, 32), (1, 8)])
def test_output_shapes(arch, in_channels, size):
    options = SMALL_RESNET if arch == "resnet18" else SMALL_VIT
    model = build_model(
        arch, num_classes=10, in_channels=in_channels, image_size=size, options=options
    )
    out = model(torch.randn(3, in_channels, size, size))
    assert out.shape == (3, 10)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("arch", ["resnet18", "vit"])
def test_channels_last_matches_contiguous(arch):
    torch.manual_seed(0)
    options = SMALL_RESNET if arch == "resnet18" else SMALL_VIT
    model = build_model(arch, num_classes=10, in_channels=3, image_size=16, options=options)
    randomize_batchnorm(model, 3)
    model.eval()
    x = torch.randn(4, 3, 16, 16)
    model_cl = copy.deepcopy(model).to(memory_format=torch.channels_last)
    x_cl = x.to(memory_format=torch.channels_last)
    assert not x_cl.is_contiguous()
    with torch.no_grad():
        torch.testing.assert_close(model_cl(x_cl), model(x), rtol=1e-5, atol=1e-5)


def test_vit_dropout_only_in_training():
    model = small_vit(dropout=0.5, emb_dropout=0.5)
    x = torch.randn(4, 3, 8, 8)
    with torch.no_grad():
        assert not torch.equal(model.train()(x), model(x))
        model.eval()
        assert torch.equal(model(x), model(x))


def test_vit_hvp_matches_finite_difference():
    """Double-backward through the math attention kernel equals central differences of gradients."""
    model = small_vit(in_channels=1, image_size=4, patch_size=2, dim=8, heads=2, head_dim=4)
    model = model.double().eval()
    g = torch.Generator().manual_seed(4)
    x = torch.randn(5, 1, 4, 4, dtype=torch.float64, generator=g)
    y = torch.randint(0, 10, (5,), generator=g)
    names = [name for name, _ in model.named_parameters()]
    theta = [p.detach().clone() for p in model.parameters()]
    v = [torch.randn(p.shape, dtype=torch.float64, generator=g) for p in theta]

    def gradient(params: list[torch.Tensor], create_graph: bool) -> tuple[torch.Tensor, ...]:
        loss = F.cross_entropy(
            torch.func.functional_call(model, dict(zip(names, params, strict=True)), (x,)), y
        )
        return torch.autograd.grad(loss, params, create_graph=create_graph)

    with sdpa_kernel(SDPBackend.MATH):
        params = [t.clone().requires_grad_() for t in theta]
        grads = gradient(params, create_graph=True)
        dot = sum((gr * vi).sum() for gr, vi in zip(grads, v, strict=True))
        hvp = torch.autograd.grad(dot, params)
        eps = 1e-5
        plus = gradient(
            [(t + eps * vi).requires_grad_() for t, vi in zip(theta, v, strict=True)], False
        )
        minus = gradient(
            [(t - eps * vi).requires_grad_() for t, vi in zip(theta, v, strict=True)], False
        )
    fd = torch.cat([((a - b) / (2 * eps)).flatten() for a, b in zip(plus, minus, strict=True)])
    exact = torch.cat([h.flatten() for h in hvp])
    assert exact.norm() > 1e-3
    torch.testing.assert_close(exact, fd, rtol=1e-6, atol=1e-7)


def test_resnet_eval_output_independent_of_batch():
    torch.manual_seed(0)
    model = build_model(
        "resnet18", num_classes=10, in_channels=1, image_size=8, options=SMALL_RESNET
    )
    x = torch.randn(6, 1, 8, 8)
    with torch.no_grad():
        model.train()
        for _ in range(3):  # move the running statistics away from their initial values
            model(torch.randn(16, 1, 8, 8) * 2 + 1)
        train_full = model(x)
        model.eval()
        full = model(x)
        for i in range(len(x)):
            torch.testing.assert_close(model(x[i : i + 1]), full[i : i + 1], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(model(x[2:5]), full[2:5], rtol=1e-5, atol=1e-6)
    # In training mode the batch statistics are used: the same inputs give different outputs.
    assert not torch.allclose(train_full, full, atol=1e-3)


def test_json_round_trip_rebuilds_model():
    spec = {
        "name": "vit",
        "num_classes": 10,
        "in_channels": 1,
        "image_size": 8,
        "options": {**SMALL_VIT, "patch_size": 2},
    }
    original = build_model(**spec).eval()
    rebuilt = build_model(**json.loads(json.dumps(spec))).eval()
    rebuilt.load_state_dict(original.state_dict())
    x = torch.randn(2, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(rebuilt(x), original(x))
    spec = {**spec, "name": "resnet18", "options": SMALL_RESNET}
    resnet = build_model(**json.loads(json.dumps(spec)))
    assert counts(resnet) == resnet_counts(8, [1, 1, 1, 1], 1, 10)


def test_unknown_model_lists_valid_names():
    with pytest.raises(ValueError, match="resnet50") as info:
        build_model("resnet50", num_classes=10, in_channels=3, image_size=32)
    assert "resnet18" in str(info.value) and "vit" in str(info.value)


@pytest.mark.parametrize(
    ("arch", "bad", "valid"),
    [("resnet18", "widht", ["width", "blocks"]), ("vit", "heads_dim", ["head_dim", "mlp_dim"])],
)
def test_unknown_option_lists_valid_options(arch, bad, valid):
    with pytest.raises(ValueError, match=bad) as info:
        build_model(arch, num_classes=10, in_channels=3, image_size=32, options={bad: 1})
    assert all(name in str(info.value) for name in valid)


def test_common_argument_is_not_an_option():
    with pytest.raises(ValueError, match="num_classes"):
        build_model("vit", num_classes=10, in_channels=3, image_size=32, options={"num_classes": 5})


@pytest.mark.parametrize(
    ("arch", "kwargs", "culprit"),
    [
        ("vit", {"image_size": 32, "options": {"patch_size": 5}}, "patch_size 5"),
        ("vit", {"image_size": 32, "options": {"dropout": 1.0}}, "dropout"),
        ("vit", {"image_size": 32, "options": {"heads": 0}}, "heads"),
        ("resnet18", {"image_size": 32, "options": {"blocks": [2, 2, 2]}}, "blocks"),
        ("resnet18", {"image_size": 32, "options": {"width": 8.0}}, "width"),
        ("resnet18", {"image_size": 0}, "image_size"),
    ],
)
def test_bad_values_are_named(arch, kwargs, culprit):
    with pytest.raises(ValueError, match=culprit):
        build_model(arch, num_classes=10, in_channels=3, **kwargs)


# Models from libraries and a user's factory, on a data set's shape: 1 channel, 8 pixels, 7 classes.
SHAPE = {"num_classes": 7, "in_channels": 1, "image_size": 8}
TINY_TIMM_VIT = {
    "name": "vit_tiny_patch16_224",
    "patch_size": 2,
    "embed_dim": 16,
    "depth": 1,
    "num_heads": 2,
}
USER_FACTORY = """
import torch
from torch import nn

CALLED_ON = []


def small_net(num_classes, in_channels, image_size, hidden=4):
    CALLED_ON.append(torch.get_default_device().type)
    return nn.Sequential(
        nn.Flatten(), nn.Linear(in_channels * image_size**2, hidden), nn.Linear(hidden, num_classes)
    )


def not_a_model(num_classes, in_channels, image_size):
    return "a string"
"""


@pytest.fixture
def user_module(tmp_path, monkeypatch) -> str:
    (tmp_path / "my_models.py").write_text(USER_FACTORY)
    monkeypatch.syspath_prepend(str(tmp_path))
    return "my_models"


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("timm", TINY_TIMM_VIT),
        ("timm", {"name": "resnet18", "channels": [4, 4, 4, 4]}),
        ("torchvision", {"name": "resnet18"}),
        ("torchvision", {"name": "mobilenet_v3_small", "width_mult": 0.25}),
    ],
)
def test_library_models_take_the_data_set_shape(name, options):
    from infoopt.models import resolve_model_options

    assert resolve_model_options(name, options, SHAPE) == options
    model = build_model(name, **SHAPE, options=options).eval()
    with torch.no_grad():
        assert model(torch.randn(3, 1, 8, 8)).shape == (3, 7)
    first = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    assert first.in_channels == 1  # timm's in_chans, or torchvision's stem replaced


def test_torchvision_keeps_its_stem_for_three_channels():
    model = build_model("torchvision", **{**SHAPE, "in_channels": 3}, options={"name": "resnet18"})
    reference = torchvision.models.resnet18(num_classes=7)
    assert [(n, p.shape) for n, p in model.named_parameters()] == [
        (n, p.shape) for n, p in reference.named_parameters()
    ]


def test_the_fit_check_calls_a_users_factory_on_the_meta_device_only(user_module):
    """Where a factory that loads weights can skip them (README: Your model, your data)."""
    import importlib

    from infoopt.models import resolve_model_options

    called_on = importlib.import_module(user_module).CALLED_ON
    called_on.clear()
    resolve_model_options(f"{user_module}:small_net", {"hidden": 5}, SHAPE)
    assert called_on and set(called_on) == {"meta"}


def test_user_factory_gets_the_shape_and_options(user_module):
    model = build_model(f"{user_module}:small_net", **SHAPE, options={"hidden": 5})
    assert [p.shape for p in model.parameters()] == [(5, 64), (5,), (7, 5), (7,)]


def test_library_spec_round_trips_through_json():
    spec = {"name": "timm", **SHAPE, "options": TINY_TIMM_VIT}
    original = build_model(**spec).eval()
    rebuilt = build_model(**json.loads(json.dumps(spec))).eval()
    rebuilt.load_state_dict(original.state_dict())
    x = torch.randn(2, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(rebuilt(x), original(x))


@pytest.mark.parametrize(
    ("name", "options", "option", "message"),
    [
        ("timm", {"name": "no_such_model"}, "name", "unknown timm model 'no_such_model'"),
        ("timm", {"name": "vit_tiny_patch_16_224"}, "name", "did you mean vit_tiny_patch16_224"),
        ("timm", {}, "name", "needs options.name"),
        ("timm", {**TINY_TIMM_VIT, "no_such_option": 1}, "no_such_option", "takes no option"),
        ("timm", {**TINY_TIMM_VIT, "in_chans": 3}, "in_chans", "the data set sets"),
        ("timm", {**TINY_TIMM_VIT, "pretrained": True}, "pretrained", "no weights"),
        ("timm", {**TINY_TIMM_VIT, "embed_dim": 15}, None, "AssertionError"),
        ("timm", {**TINY_TIMM_VIT, "img_size": 16}, None, "doesn't match model"),
        ("torchvision", {"name": "resnet9000"}, "name", "unknown torchvision model"),
        ("torchvision", {"name": "resnet18", "weights": "DEFAULT"}, "weights", "no weights"),
        ("torchvision", {"name": "resnet18", "width": 3}, "width", "takes no option"),
        ("no_such_package.models:net", {}, "model", "no module named 'no_such_package'"),
        ("infoopt.models:no_such_factory", {}, "model", "has no attribute 'no_such_factory'"),
        ("infoopt.models:MODELS", {}, "model", "is not callable"),
        ("my_models:small_net", {"hidden": 0.5}, None, "TypeError"),
        ("my_models:small_net", {"depth": 3}, "depth", "takes no option"),
        ("my_models:not_a_model", {}, "model", "returned a str"),
    ],
)
@pytest.mark.parametrize("limit", [0, None], ids=["on-meta", "on-cpu"])
def test_library_model_errors_name_the_option(
    name, options, option, message, limit, user_module, monkeypatch
):
    """The same error whether the fit check runs the model on the meta device (a large model)
    or on the CPU (a small one)."""
    import infoopt.models
    from infoopt.models import ModelOptionError, resolve_model_options

    if limit is not None:
        monkeypatch.setattr(infoopt.models, "CPU_CHECK_MAX_PARAMETERS", limit)
    with pytest.raises(ModelOptionError) as error:
        resolve_model_options(name, options, SHAPE)
    assert error.value.name == option
    assert message in str(error.value) and "\n" not in str(error.value)


def test_describe_counts_and_names_the_tensors():
    from infoopt.models import describe

    model = build_model("timm", **SHAPE, options=TINY_TIMM_VIT)
    described = describe(model)
    assert described["parameters"] == sum(p.numel() for p in model.parameters())
    assert described["tensors"] == [[name, list(p.shape)] for name, p in model.named_parameters()]
    assert described["tensors"][-1] == ["head.bias", [7]]


@pytest.mark.parametrize(("model", "changes"), [("timm", True), ("resnet18", False)])
def test_a_library_models_package_version_enters_its_run_key(model, changes, monkeypatch):
    """Upgrading timm retrains timm models' runs, and nothing else: the providing package's
    version is part of a library model's store key, not of ours."""
    import infoopt.models.library
    import infoopt.stored_runs
    from infoopt.records import RunSpec

    monkeypatch.setattr(infoopt.stored_runs, "load_checkpoint", lambda path: {"digest": "init"})
    monkeypatch.setattr(infoopt.stored_runs, "array_digest", lambda path: "data")
    spec = RunSpec(
        dataset="digits",
        arch="net",
        seed=0,
        model={"name": model, "num_classes": 10, "in_channels": 1, "image_size": 8},
        optimizer="sgd",
        algorithm="sgd",
        hparams={"lr": 0.1},
        training={"epochs": 1},
    )
    keys = []
    for version in ("1.0.31", "1.0.32"):
        monkeypatch.setattr(
            infoopt.models.library,
            "distribution_of",
            lambda path, version=version: {"distribution": path, "version": version},
        )
        keys.append(infoopt.stored_runs.run_key(spec, "init.pt", "data.npz")[0])
    assert (keys[0] != keys[1]) is changes

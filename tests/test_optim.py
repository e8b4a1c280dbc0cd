"""Optimizer registry and the Lion family.

References: lion-pytorch's Lion (bit for bit), independent float64 numpy implementations of each
variant's documented formula, and Monte Carlo checks of the Gaussian-model facts (PAPER.md §4)
the variants are derived from. The foreach and per-tensor paths must agree bit for bit on CPU.
"""

from __future__ import annotations

import inspect
import io
import json
import math

import numpy as np
import pytest
import torch
from lion_pytorch import Lion as ReferenceLion
from scipy.stats import norm
from torch import nn
from torch.nn import functional as F

from infoopt.optim import (
    OPTIMIZERS,
    RANGES,
    GroupedOptimizer,
    GroupError,
    HyperParameterError,
    Lion,
    LionBayes,
    LionSoft,
    LionTanh,
    assign_groups,
    build_optimizer,
    build_run_optimizer,
    deployed,
    optimizer_factory,
    parameter_groups,
)
from infoopt.optim.base import UNIT
from infoopt.optim.lion import dense_multipliers
from infoopt.optim.snr import _mean_weight, _variance_weight
from infoopt.records import RunSpec
from infoopt.seeding import derive_seed, generator

FAMILY = ("lion", "lion_tanh", "lion_bayes", "lion_soft")
# Includes a 1-element tensor and a 0-dim one; the last parameter never gets a gradient.
SHAPES = ((6, 5), (3, 4, 2), (1,), (), (17,))
FROZEN = (len(SHAPES) - 1,)
FOREACH = pytest.mark.parametrize("foreach", [False, True], ids=["loop", "foreach"])


# --------------------------------------------------------------------------- problems


def draw(shape: tuple[int, ...], *parts: object, dtype: torch.dtype = torch.float32):
    return torch.randn(shape, generator=generator("cpu", "test_optim", *parts), dtype=dtype)


class Quadratic:
    """A random noisy quadratic: grad_i = h_i ⊙ (θ_i − θ*_i) + ξ_{t,i}; the gradient depends on
    the parameters, so two optimizers agree only if every step agrees."""

    def __init__(self, seed: object, shapes=SHAPES, dtype=torch.float32) -> None:
        self.init = [draw(s, seed, "init", i, dtype=dtype) for i, s in enumerate(shapes)]
        self.target = [draw(s, seed, "target", i, dtype=dtype) for i, s in enumerate(shapes)]
        self.curvature = [draw(s, seed, "h", i, dtype=dtype).abs() for i, s in enumerate(shapes)]
        self.seed = seed

    def params(self) -> list[nn.Parameter]:
        return [nn.Parameter(x.clone()) for x in self.init]

    def set_grads(self, params: list[torch.Tensor], t: int, frozen: tuple[int, ...]) -> None:
        for i, p in enumerate(params):
            if i in frozen:
                p.grad = None
                continue
            noise = draw(p.shape, self.seed, "noise", t, i, dtype=p.dtype)
            p.grad = self.curvature[i] * (p.detach() - self.target[i]) + 0.5 * noise


def trajectory(problem: Quadratic, make, steps: int, frozen=FROZEN):
    """Parameter snapshots after each step; ``make(params)`` builds the optimizer."""
    params = problem.params()
    optimizer = make(params)
    snapshots = []
    for t in range(steps):
        problem.set_grads(params, t, frozen)
        optimizer.step()
        snapshots.append([p.detach().clone() for p in params])
    return snapshots, optimizer, params


def gradient_sequence(seed: object, steps: int, shapes=SHAPES[:-1]) -> list[list[torch.Tensor]]:
    """Gradients with a per-coordinate mean and noise level, so the SNR spans a wide range."""
    mean = [draw(s, seed, "mean", i) for i, s in enumerate(shapes)]
    level = [draw(s, seed, "level", i).exp() for i, s in enumerate(shapes)]
    return [
        [mean[i] + level[i] * draw(s, seed, "g", t, i) for i, s in enumerate(shapes)]
        for t in range(steps)
    ]


def run_on_gradients(optimizer_cls, hparams: dict, init, grads, foreach: bool) -> list:
    params = [nn.Parameter(x.clone()) for x in init]
    optimizer = optimizer_cls(params, **hparams, foreach=foreach)
    for step_grads in grads:
        for p, g in zip(params, step_grads, strict=True):
            p.grad = g.clone()
        optimizer.step()
    return [p.detach() for p in params]


# ------------------------------------------------------------ float64 numpy references


def reference(name: str, hp: dict, init, grads) -> list[np.ndarray]:
    """Each variant's documented formula, per tensor, in float64."""
    b1, b2 = hp.get("betas", (0.9, 0.99))
    lr, wd = hp["lr"], hp.get("weight_decay", 0.0)
    out = []
    for i, theta0 in enumerate(init):
        theta = theta0.double().numpy().copy()
        m = np.zeros_like(theta)
        v = np.zeros_like(theta)
        for t, step_grads in enumerate(grads, start=1):
            g = step_grads[i].double().numpy()
            c = b1 * m + (1 - b1) * g
            m = b2 * m + (1 - b2) * g
            if name == "lion_tanh":
                u = np.tanh(hp["kappa"] * c / np.sqrt(np.mean(c**2)))
            elif name == "lion_bayes":
                b3, eps = hp["beta3"], hp["eps"]
                mean = m / (1 - b2**t)
                v = b3 * v + (1 - b3) * (g - mean) ** 2
                var = v / (1 - b3**t)
                a = 1 - b1 * b2 ** (t - 1)
                k = (1 - b1) ** 2 + b1**2 * (1 - b2) * (1 - b2 ** (2 * (t - 1))) / (1 + b2)
                # eps = 0 at step 1 (σ̂² = 0): the exact argument is ±inf, and tanh(±inf) = ±1.
                with np.errstate(divide="ignore"):
                    u = np.tanh(a / k * np.abs(mean) * c / (var + eps**2))
            elif name == "lion_soft":
                b3, eps = hp["beta3"], hp["eps"]
                v = b3 * v + (1 - b3) * g**2
                c_hat = c / (1 - b1 * b2 ** (t - 1))
                u = np.tanh(hp["kappa"] * c_hat / (np.sqrt(v / (1 - b3**t)) + eps))
            else:
                raise AssertionError(name)
            theta = theta * (1 - lr * wd) - lr * u
        out.append(theta)
    return out


def assert_matches_reference(params, expected, lr: float, steps: int) -> None:
    for p, e in zip(params, expected, strict=True):
        # float32 state vs float64: the argument of tanh carries ~1e-6 relative error per step.
        np.testing.assert_allclose(p.double().numpy(), e, rtol=2e-6, atol=2e-6 * lr * steps)


# -------------------------------------------------------------------------------- Lion


LION_SETTINGS = [
    {"lr": 1e-4, "betas": [0.9, 0.99], "weight_decay": 0.0},
    {"lr": 3e-3, "betas": [0.95, 0.98], "weight_decay": 0.1},
    {"lr": 1e-2, "betas": [0.0, 0.5], "weight_decay": 1.0},
]


@FOREACH
@pytest.mark.parametrize("hp", LION_SETTINGS, ids=["default", "wd0.1", "beta1=0"])
def test_lion_is_lion_pytorch_bit_for_bit(hp, foreach):
    problem = Quadratic(("lion-vs-ref", hp["lr"]))
    ours, optimizer, params = trajectory(problem, lambda p: Lion(p, **hp, foreach=foreach), 20)
    ref_hp = {**hp, "betas": tuple(hp["betas"])}
    theirs, _, _ = trajectory(problem, lambda p: ReferenceLion(p, **ref_hp), 20)
    for t, (a, b) in enumerate(zip(ours, theirs, strict=True)):
        for x, y in zip(a, b, strict=True):
            assert torch.equal(x, y), f"step {t + 1}"
    assert torch.equal(params[-1], problem.init[-1]), "a parameter without grad moved"
    assert params[-1] not in optimizer.state


@pytest.mark.parametrize("name", FAMILY)
def test_foreach_and_loop_agree_bit_for_bit(name):
    """Two param groups with their own lr/weight decay, a float64 tensor (its own foreach batch)
    and a parameter that first gets a gradient at step 4 (its own step count)."""
    shapes = ((6, 5), (3, 4, 2), (1,), (), (17,))
    problem = Quadratic(("foreach", name), shapes)
    problem.init[1] = problem.init[1].double()
    problem.target[1], problem.curvature[1] = (
        problem.target[1].double(),
        problem.curvature[1].double(),
    )

    def make(foreach):
        def build(params):
            groups = [
                {"params": params[:3]},
                {"params": params[3:], "lr": 5e-3, "weight_decay": 0.3},
            ]
            return build_optimizer(name, groups, lr=2e-2, weight_decay=0.05, foreach=foreach)

        return build

    def run(foreach):
        params = problem.params()
        optimizer = make(foreach)(params)
        for t in range(8):
            problem.set_grads(params, t, frozen=(4,) if t < 3 else ())
            optimizer.step()
        return params, optimizer

    (loop, loop_opt), (multi, multi_opt) = run(False), run(True)
    for a, b in zip(loop, multi, strict=True):
        assert torch.equal(a, b)
    assert loop_opt.state[loop[4]]["step"] == 5
    assert multi_opt.state[multi[0]]["step"] == 8


@pytest.mark.parametrize("name", FAMILY)
def test_foreach_and_loop_agree_on_channels_last(name):
    init = draw((4, 3, 2, 2), "channels-last", name).contiguous(memory_format=torch.channels_last)
    grads = [draw((4, 3, 2, 2), "channels-last-g", name, t) for t in range(4)]
    results = []
    for foreach in (False, True):
        x = nn.Parameter(init.clone(memory_format=torch.preserve_format))
        optimizer = build_optimizer(name, [x], lr=1e-2, foreach=foreach)
        for g in grads:
            x.grad = g.contiguous(memory_format=torch.channels_last)
            optimizer.step()
        results.append(x.detach())
    assert results[0].is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(results[0], results[1])


def test_dense_multipliers_equal_the_0dim_scales():
    """The accelerator route of lion_tanh's foreach path, checked on CPU against 0-dim scales."""
    tensors = [
        draw((4, 3, 2, 2), "dense", 0).contiguous(memory_format=torch.channels_last),
        draw((5, 7), "dense", 1),
        draw((7, 5), "dense", 2).t(),  # dense but not contiguous
        draw((), "dense", 3),
        draw((1,), "dense", 4),
    ]
    scales = [draw((), "dense-scale", i) for i in range(len(tensors))]
    multipliers = dense_multipliers(scales, tensors)
    for m, t, s in zip(multipliers, tensors, scales, strict=True):
        assert m.shape == t.shape and m.stride() == t.stride()
        assert torch.equal(m * t, s * t)


@pytest.mark.parametrize("name", FAMILY)
def test_param_groups_act_like_separate_optimizers(name):
    problem = Quadratic(("groups", name))
    hp_a, hp_b = {"lr": 1e-2, "weight_decay": 0.0}, {"lr": 3e-3, "weight_decay": 0.5}
    params = problem.params()
    both = build_optimizer(name, [{"params": params[:2], **hp_a}, {"params": params[2:], **hp_b}])
    alone = problem.params()
    first, second = (
        build_optimizer(name, alone[:2], **hp_a),
        build_optimizer(name, alone[2:], **hp_b),
    )
    for t in range(6):
        problem.set_grads(params, t, frozen=())
        problem.set_grads(alone, t, frozen=())
        both.step()
        first.step()
        second.step()
    for a, b in zip(params, alone, strict=True):
        assert torch.equal(a, b)


@FOREACH
@pytest.mark.parametrize("name", FAMILY)
def test_state_dict_round_trip_is_bit_identical(name, foreach):
    problem = Quadratic(("resume", name))
    hp = {"lr": 1e-2, "weight_decay": 0.1, "foreach": foreach}

    def steps(params, optimizer, ts):
        for t in ts:
            problem.set_grads(params, t, frozen=FROZEN)
            optimizer.step()

    straight = problem.params()
    straight_opt = build_optimizer(name, straight, **hp)
    steps(straight, straight_opt, range(10))

    first = problem.params()
    first_opt = build_optimizer(name, first, **hp)
    steps(first, first_opt, range(5))
    buffer = io.BytesIO()
    torch.save({"params": [p.detach() for p in first], "optimizer": first_opt.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)

    resumed = [nn.Parameter(x.clone()) for x in saved["params"]]
    resumed_opt = build_optimizer(name, resumed, **hp)
    resumed_opt.load_state_dict(saved["optimizer"])
    steps(resumed, resumed_opt, range(5, 10))
    for a, b in zip(straight, resumed, strict=True):
        assert torch.equal(a, b)
    for a, b in zip(straight, resumed, strict=True):
        sa, sb = straight_opt.state[a], resumed_opt.state[b]
        assert sa.keys() == sb.keys()
        for key in sa:
            assert torch.equal(torch.as_tensor(sa[key]), torch.as_tensor(sb[key])), key


@pytest.mark.parametrize("name", FAMILY)
def test_step_evaluates_the_closure_with_grad_enabled(name):
    target = torch.tensor([1.0, -2.0, 3.0])
    x = nn.Parameter(torch.zeros(3))
    optimizer = build_optimizer(name, [x], lr=0.1)

    def closure():
        optimizer.zero_grad()
        loss = ((x - target) ** 2).sum()
        loss.backward()
        return loss

    loss = optimizer.step(closure)
    assert loss.item() == pytest.approx(14.0)
    # the first step moves every coordinate towards the target by at most lr
    assert torch.all(torch.sign(x.detach()) == torch.sign(target))
    assert torch.all(x.detach().abs() <= 0.1 + 1e-7)


def test_foreach_none_means_the_loop_on_cpu(monkeypatch):
    x = nn.Parameter(torch.ones(4))
    optimizer = Lion([x])

    def multi_tensor(*args, **kwargs):
        raise AssertionError("foreach path taken on CPU")

    monkeypatch.setattr(optimizer, "_step_foreach", multi_tensor)
    x.grad = torch.ones(4)
    optimizer.step()
    assert torch.equal(x.detach(), torch.full((4,), 1 - 1e-4))


# ------------------------------------------------------------------------- Lion-tanh


@FOREACH
def test_lion_tanh_with_huge_kappa_is_lion(foreach):
    for seed in range(3):
        problem = Quadratic(("tanh-limit", seed))
        hp = {"lr": 1e-2, "betas": [0.9, 0.99], "weight_decay": 0.1, "foreach": foreach}
        lion, _, _ = trajectory(problem, lambda p, hp=hp: Lion(p, **hp), 15)
        tanh, _, _ = trajectory(problem, lambda p, hp=hp: LionTanh(p, **hp, kappa=1e30), 15)
        for a, b in zip(lion, tanh, strict=True):
            for x, y in zip(a, b, strict=True):
                assert torch.equal(x, y)


@FOREACH
@pytest.mark.parametrize("steps", [1, 12])
@pytest.mark.parametrize(
    "hp",
    [
        {"lr": 1e-2, "kappa": 3.0},
        {"lr": 5e-3, "betas": [0.8, 0.95], "weight_decay": 0.2, "kappa": 0.7},
    ],
    ids=["default", "wd"],
)
def test_lion_tanh_against_numpy(hp, steps, foreach):
    grads = gradient_sequence(("tanh", steps), steps)
    init = [draw(g.shape, "tanh-init", i) for i, g in enumerate(grads[0])]
    ours = run_on_gradients(LionTanh, hp, init, grads, foreach)
    assert_matches_reference(ours, reference("lion_tanh", hp, init, grads), hp["lr"], steps)


@FOREACH
def test_lion_tanh_small_kappa_is_a_bounded_linear_step(foreach):
    """|Δθ| ≤ lr·min(1, κ|c|/RMS(c)) (+ the decay lr·λ|θ|): for small κ the step is linear."""
    lr, kappa, wd = 1e-2, 0.05, 0.1
    g = [draw(s, "small-kappa", i) * 10 ** (i - 1) for i, s in enumerate(SHAPES[:-1])]
    init = [draw(s, "small-kappa-init", i) for i, s in enumerate(SHAPES[:-1])]
    hp = {"lr": lr, "kappa": kappa, "weight_decay": wd}
    after = run_on_gradients(LionTanh, hp, init, [g], foreach)
    for theta0, theta1, grad in zip(init, after, g, strict=True):
        step = (theta0.double() * (1 - lr * wd) - theta1.double()).numpy()
        c = 0.1 * grad.double().numpy()  # first step: m = 0
        bound = lr * np.minimum(1.0, kappa * np.abs(c) / np.sqrt(np.mean(c**2)))
        rounding = 4 * np.finfo(np.float32).eps * np.abs(theta0.double().numpy())  # θ is float32
        assert np.all(np.abs(step) <= bound * (1 + 1e-5) + rounding)
        assert np.all(np.abs(step) < lr * kappa * math.sqrt(c.size) * (1 + 1e-5) + rounding)


# ------------------------------------------------------------- Lion-Bayes, Lion-soft


BAYES_SETTINGS = [
    {"lr": 1e-2, "beta3": 0.99, "eps": 1e-8},
    {"lr": 3e-3, "betas": [0.8, 0.9], "weight_decay": 0.1, "beta3": 0.9, "eps": 0.5},
    {"lr": 1e-2, "betas": [0.0, 0.95], "beta3": 0.5, "eps": 0.0},
]


@FOREACH
@pytest.mark.parametrize("steps", [1, 2, 15])
@pytest.mark.parametrize("hp", BAYES_SETTINGS, ids=["default", "wd", "beta1=0"])
def test_lion_bayes_against_numpy(hp, steps, foreach):
    grads = gradient_sequence(("bayes", steps), steps)
    init = [draw(g.shape, "bayes-init", i) for i, g in enumerate(grads[0])]
    ours = run_on_gradients(LionBayes, hp, init, grads, foreach)
    assert_matches_reference(ours, reference("lion_bayes", hp, init, grads), hp["lr"], steps)


@FOREACH
def test_lion_bayes_first_step_is_lions(foreach):
    """σ̂² = 0 at step 1, so the posterior mean is the sign: the step equals Lion's."""
    grads = gradient_sequence("bayes-first", 1)
    init = [draw(g.shape, "bayes-first-init", i) for i, g in enumerate(grads[0])]
    hp = {"lr": 1e-2, "weight_decay": 0.1}
    bayes = run_on_gradients(LionBayes, hp, init, grads, foreach)
    lion = run_on_gradients(Lion, hp, init, grads, foreach)
    for a, b in zip(bayes, lion, strict=True):
        assert torch.equal(a, b)


SOFT_SETTINGS = [
    {"lr": 1e-2, "kappa": 3.0, "beta3": 0.999, "eps": 1e-8},
    {"lr": 3e-3, "betas": [0.8, 0.9], "weight_decay": 0.1, "kappa": 0.5, "beta3": 0.9, "eps": 1e-3},
]


@FOREACH
@pytest.mark.parametrize("steps", [1, 15])
@pytest.mark.parametrize("hp", SOFT_SETTINGS, ids=["default", "wd"])
def test_lion_soft_against_numpy(hp, steps, foreach):
    grads = gradient_sequence(("soft", steps), steps)
    init = [draw(g.shape, "soft-init", i) for i, g in enumerate(grads[0])]
    ours = run_on_gradients(LionSoft, hp, init, grads, foreach)
    assert_matches_reference(ours, reference("lion_soft", hp, init, grads), hp["lr"], steps)


@FOREACH
def test_lion_soft_limits_are_lion_and_an_adam_like_step(foreach):
    problem = Quadratic("soft-limit")
    hp = {"lr": 1e-2, "weight_decay": 0.1, "foreach": foreach}
    lion, _, _ = trajectory(problem, lambda p: Lion(p, **hp), 15)
    sharp, _, _ = trajectory(problem, lambda p: LionSoft(p, **hp, kappa=1e20), 15)
    for a, b in zip(lion, sharp, strict=True):
        for x, y in zip(a, b, strict=True):
            assert torch.equal(x, y)
    # κ → 0: tanh(z) ≈ z, so Δθ/(lr·κ) = ĉ/(sqrt(v̂) + ε); at step 1 that is g/(|g| + ε).
    g = [draw(s, "soft-linear", i) for i, s in enumerate(SHAPES[:-1])]
    init = [draw(s, "soft-linear-init", i) for i, s in enumerate(SHAPES[:-1])]
    kappa = 1e-3
    after = run_on_gradients(LionSoft, {"lr": 1.0, "kappa": kappa}, init, [g], foreach)
    for theta0, theta1, grad in zip(init, after, g, strict=True):
        step = (theta0.double() - theta1.double()) / kappa
        expected = grad.double() / (grad.double().abs() + 1e-8)
        torch.testing.assert_close(step, expected, rtol=0, atol=1e-3)


@FOREACH
@pytest.mark.parametrize("name", FAMILY)
def test_extreme_gradients_stay_finite(name, foreach):
    """Zero, tiny and huge gradients (and a zero tensor next to a huge one) never give NaN/inf;
    a zero gradient gives a zero update."""
    shapes = ((5, 4), (3,), (1,), (7,))
    gen = generator("cpu", "test_optim", "extreme", name)
    grad_scales = (0.0, 1e-30, 1e15, 1.0)
    init = [torch.randn(s, generator=gen) for s in shapes]
    params = [nn.Parameter(x.clone()) for x in init]
    optimizer = build_optimizer(name, params, lr=1e-2, foreach=foreach)
    for _ in range(6):
        for p, scale in zip(params, grad_scales, strict=True):
            p.grad = torch.randn(p.shape, generator=gen) * scale
        optimizer.step()
        for p, theta0 in zip(params, init, strict=True):
            assert torch.isfinite(p).all()
            assert p.sub(theta0).abs().max() <= 6 * 1e-2 + 1e-6
        for state in optimizer.state.values():
            for key, value in state.items():
                if key != "step":
                    assert not torch.isnan(value).any(), key
    assert torch.equal(params[0], init[0])
    assert not torch.equal(params[2], init[2])


# ---------------------------------------------- the Gaussian model of PAPER.md §4 (Monte Carlo)


def gaussian_model(n: int, mu: float, sigma: float, *parts: object):
    rng = np.random.default_rng(derive_seed("test_optim", *parts))
    y = rng.choice(np.array([-1.0, 1.0]), size=n)
    return y, y * mu + sigma * rng.standard_normal(n)


def lion_update(g: np.ndarray) -> np.ndarray:
    """Our Lion's first update direction, −Δθ/lr, for the gradient ``g`` (no weight decay)."""
    theta = nn.Parameter(torch.zeros(len(g), dtype=torch.float64))
    optimizer = Lion([theta], lr=1.0, weight_decay=0.0)
    theta.grad = torch.from_numpy(g)
    optimizer.step()
    return -theta.detach().numpy()


def test_lions_update_is_the_bayes_classifier():
    """Fed x of the Gaussian model as its gradient, Lion's step is the Bayes classifier of Y:
    its error rate is Φ(−μ/σ), and no other threshold does better (paired differences, their
    own standard errors)."""
    n, mu, sigma = 1_000_000, 0.6, 1.2
    y, x = gaussian_model(n, mu, sigma, "bayes-classifier")
    wrong = lion_update(x) != y
    p = norm.cdf(-mu / sigma)
    assert abs(wrong.mean() - p) < 5 * math.sqrt(p * (1 - p) / n)

    def exact_error(t):
        return 0.5 * (norm.cdf((t - mu) / sigma) + norm.cdf((-t - mu) / sigma))

    for t in (-1.5, -0.6, -0.25, -0.05, 0.05, 0.25, 0.6, 1.5):
        diff = (np.where(x > t, 1.0, -1.0) != y).astype(float) - wrong
        se = diff.std() / math.sqrt(n)
        assert abs(diff.mean() - (exact_error(t) - p)) < 5 * se
        if abs(t) >= 0.25:
            assert diff.mean() > 5 * se


def momentum_samples(n: int, mu: float, sigma: float, betas, step: int, *parts: object):
    """Y and Lion's c_step for gradients g_s = Y·μ + σ·ξ_s, s = 1..step, from m_0 = 0."""
    beta1, beta2 = betas
    rng = np.random.default_rng(derive_seed("test_optim", *parts))
    y = rng.choice(np.array([-1.0, 1.0]), size=n)
    m = np.zeros(n)
    for _ in range(step - 1):
        m = beta2 * m + (1 - beta2) * (y * mu + sigma * rng.standard_normal(n))
    return y, beta1 * m + (1 - beta1) * (y * mu + sigma * rng.standard_normal(n))


@pytest.mark.parametrize("step", [1, 3, 20])
def test_lion_bayes_factors_give_the_posterior_mean(step):
    """Lion-Bayes's tanh((a_t/k_t)·μ·c/σ²) at the true μ and σ is E[Y | c_t], estimated by
    Monte Carlo from simulated momenta: binned, each bin within 5 standard errors (Var(Y|c) =
    1 − tanh²); a scale 30 % off is rejected, so the test has power."""
    n, mu, sigma, betas = 1_000_000, 0.3, 1.0, (0.9, 0.99)
    y, c = momentum_samples(n, mu, sigma, betas, step, "posterior-mean", step)
    a, k = _mean_weight(*betas, step), _variance_weight(*betas, step)
    bins = np.digitize(c, np.quantile(c, np.linspace(0, 1, 41)[1:-1]))

    def worst_z(scale: float) -> float:
        model = np.tanh(scale * (a / k) * mu * c / sigma**2)
        worst = 0.0
        for b in np.unique(bins):
            inside = bins == b
            se = math.sqrt(np.mean(1 - model[inside] ** 2) / inside.sum())
            worst = max(worst, abs(np.mean(y[inside] - model[inside])) / se)
        return worst

    assert worst_z(1.0) < 5
    assert worst_z(1.3) > 5
    assert worst_z(0.7) > 5


# ---------------------------------------------------------------------------- registry


def test_registry_names():
    assert set(OPTIMIZERS) == {"sgd", "adam", "adamw", *FAMILY}
    with pytest.raises(ValueError, match=r"unknown optimizer 'lamb'.*adamw.*lion_bayes"):
        build_optimizer("lamb", [nn.Parameter(torch.ones(1))])


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_unknown_hparam_is_named_with_the_valid_ones(name):
    with pytest.raises(ValueError, match=r"'momentun'.*valid: .*lr.*weight_decay"):
        build_optimizer(name, [nn.Parameter(torch.ones(1))], lr=0.1, momentun=0.9)


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
@pytest.mark.parametrize(
    "bad",
    [{"lr": "0.1"}, {"lr": True}, {"lr": math.nan}],
    ids=["string-lr", "bool-lr", "nan-lr"],
)
def test_invalid_values_raise(name, bad):
    with pytest.raises(ValueError, match=r"lr|weight_decay|Invalid"):
        build_optimizer(name, [nn.Parameter(torch.ones(1))], **{"lr": 0.1, **bad})


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
@pytest.mark.parametrize(
    ("bad", "message"),
    [({"lr": -1e-3}, "lr must be a number >= 0"), ({"weight_decay": -0.1}, "weight_decay must be")],
    ids=["negative-lr", "negative-wd"],
)
def test_negative_values_are_the_projects_errors(name, bad, message):
    """Our own check names the optimizer (torch's would say "Invalid learning rate")."""
    with pytest.raises(ValueError, match=rf"^{name}: {message}"):
        build_optimizer(name, [nn.Parameter(torch.ones(1))], **{"lr": 0.1, **bad})


@pytest.mark.parametrize("name", ["adam", "adamw", *FAMILY])
@pytest.mark.parametrize("betas", [[1.0, 0.9], [0.9, -0.1], [0.9], [0.9, 0.99, 0.999], 0.9])
def test_invalid_betas_raise(name, betas):
    with pytest.raises(ValueError, match="betas"):
        build_optimizer(name, [nn.Parameter(torch.ones(1))], betas=betas)


@pytest.mark.parametrize(
    ("name", "bad"),
    [
        ("lion_tanh", {"kappa": 0.0}),
        ("lion_tanh", {"kappa": -1.0}),
        ("lion_soft", {"kappa": math.inf}),
        ("lion_bayes", {"beta3": 1.0}),
        ("lion_bayes", {"eps": -1e-8}),
        ("lion_soft", {"beta3": -0.5}),
        ("lion", {"foreach": "yes"}),
        ("sgd", {"nesterov": 1}),
    ],
)
def test_invalid_variant_hparams_raise(name, bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        build_optimizer(name, [nn.Parameter(torch.ones(1))], lr=0.1, **bad)


def test_param_group_values_are_validated():
    x, y = nn.Parameter(torch.ones(1)), nn.Parameter(torch.ones(1))
    with pytest.raises(ValueError, match="lr"):
        Lion([{"params": [x]}, {"params": [y], "lr": -1.0}])
    with pytest.raises(ValueError, match="betas"):
        LionBayes([{"params": [x], "betas": [0.9, 1.5]}])


def test_unsupported_parameters_and_gradients():
    with pytest.raises(ValueError, match="complex"):
        Lion([nn.Parameter(torch.ones(2, dtype=torch.complex64))])
    x = nn.Parameter(torch.ones(3))
    x.grad = torch.ones(3).to_sparse()
    with pytest.raises(RuntimeError, match="sparse"):
        Lion([x]).step()


def test_sgd_requires_lr():
    with pytest.raises(ValueError, match="requires hyper-parameter.*lr"):
        build_optimizer("sgd", [nn.Parameter(torch.ones(1))])


def test_json_hparams_build_the_torch_classes():
    x = [nn.Parameter(torch.ones(2))]
    config = json.loads(
        '{"sgd": {"lr": 0.1, "momentum": 0.9, "nesterov": true, "weight_decay": 5e-4},'
        ' "adam": {"lr": 1e-4, "betas": [0.8, 0.95], "eps": 1e-6},'
        ' "adamw": {"lr": 3e-4},'
        ' "lion_bayes": {"lr": 3e-5, "betas": [0.95, 0.98], "beta3": 0.9, "eps": 1e-7}}'
    )
    sgd = build_optimizer("sgd", x, **config["sgd"])
    assert type(sgd) is torch.optim.SGD
    assert {k: sgd.param_groups[0][k] for k in ("lr", "momentum", "nesterov", "dampening")} == {
        "lr": 0.1,
        "momentum": 0.9,
        "nesterov": True,
        "dampening": 0.0,
    }
    assert sgd.param_groups[0]["weight_decay"] == 5e-4
    adam = build_optimizer("adam", x, **config["adam"])
    assert type(adam) is torch.optim.Adam
    assert adam.param_groups[0]["betas"] == (0.8, 0.95)
    assert (adam.param_groups[0]["eps"], adam.param_groups[0]["weight_decay"]) == (1e-6, 0.0)
    adamw = build_optimizer("adamw", x, **config["adamw"])
    assert type(adamw) is torch.optim.AdamW
    group = adamw.param_groups[0]
    assert (group["lr"], group["betas"], group["eps"], group["weight_decay"]) == (
        3e-4,
        (0.9, 0.999),
        1e-8,
        1e-2,
    )
    bayes = build_optimizer("lion_bayes", x, **config["lion_bayes"])
    assert type(bayes) is LionBayes
    group = bayes.param_groups[0]
    assert (group["lr"], group["betas"], group["beta3"], group["eps"]) == (
        3e-5,
        (0.95, 0.98),
        0.9,
        1e-7,
    )


def test_lion_family_defaults():
    x = [nn.Parameter(torch.ones(2))]
    expected = {
        "lion": {"lr": 1e-4, "betas": (0.9, 0.99), "weight_decay": 0.0},
        "lion_tanh": {"lr": 1e-4, "betas": (0.9, 0.99), "weight_decay": 0.0, "kappa": 3.0},
        "lion_bayes": {"lr": 1e-4, "betas": (0.9, 0.99), "beta3": 0.99, "eps": 1e-8},
        "lion_soft": {"lr": 1e-4, "kappa": 3.0, "beta3": 0.999, "eps": 1e-8},
    }
    for name, values in expected.items():
        group = build_optimizer(name, x).param_groups[0]
        assert {k: group[k] for k in values} == values
        assert group["foreach"] is None


# ------------------------------------------------------------- ranges, written once, agreed on


def _boundary_points(interval):
    """Values on, just inside and just outside each finite end of ``interval``."""
    points = []
    for end in (interval.low, interval.high):
        if math.isfinite(end):
            points += [end - 1e-6, end, end + 1e-6]
    return points


def _class_accepts(cls, **hparams):
    try:
        cls([nn.Parameter(torch.ones(2, 2))], **hparams)
    except ValueError:
        return False
    return True


RANGED = [
    (name, hparam)
    for name, factory in sorted(OPTIMIZERS.items())
    for hparam in (*RANGES, "betas")
    if hparam in factory.hparams
]


@pytest.mark.parametrize(("name", "hparam"), RANGED, ids=["-".join(x) for x in RANGED])
def test_every_range_agrees_with_the_class_check(name, hparam):
    """The registry accepts a value exactly when the class's own constructor does, at and
    around each end of the range, for every hyper-parameter the registry knows a range of."""
    factory = OPTIMIZERS[name]
    base = {"lr": 0.1} if "lr" in factory.required else {}
    if hparam == "betas":
        values = [(b, 0.99) for b in _boundary_points(UNIT)]
        values += [(0.9, b) for b in _boundary_points(UNIT)]
    else:
        values = _boundary_points(RANGES[hparam])
    for value in values:
        try:
            factory.resolve({**base, hparam: value})
            registry = True
        except HyperParameterError:
            registry = False
        assert registry == _class_accepts(factory.cls, **{**base, hparam: value}), value
        assert registry == (
            value in RANGES[hparam] if hparam != "betas" else all(b in UNIT for b in value)
        )


def test_zero_lr_and_eps_are_allowed_for_every_optimizer():
    for name, factory in OPTIMIZERS.items():
        zeros = {key: 0.0 for key in ("lr", "eps") if key in factory.hparams}
        assert {k: factory.resolve(zeros)[k] for k in zeros} == zeros, name


# ------------------------------------------------------------------ optimizers by import path


def test_torch_optimizers_by_import_path_record_every_default():
    radam = optimizer_factory("torch.optim.RAdam")
    resolved = radam.resolve({"lr": 3e-4, "weight_decay": 1e-4})
    signature = inspect.signature(torch.optim.RAdam).parameters
    assert set(resolved) == set(signature) - {"params"}
    assert resolved["lr"] == 3e-4 and resolved["betas"] == (0.9, 0.999)
    # torch writes `weight_decay: float = 0`: a float is meant, and one is recorded.
    assert isinstance(radam.resolve({})["weight_decay"], float)
    optimizer = build_optimizer("torch.optim.RAdam", [nn.Parameter(torch.ones(2))], lr=3e-4)
    assert type(optimizer) is torch.optim.RAdam
    assert (
        build_optimizer("torch.optim:NAdam", [nn.Parameter(torch.ones(2))]).defaults["lr"] == 2e-3
    )
    # Adafactor's eps is a pair whose first default is None: any value there is its own to check.
    assert optimizer_factory("torch.optim.Adafactor").resolve({"eps": [1e-30, 1e-3]})["eps"] == (
        1e-30,
        1e-3,
    )


@pytest.mark.parametrize(
    ("algorithm", "hparams", "named", "match"),
    [
        ("torch.optim.RAdam", {"betas": [1.5, 0.9]}, "betas", "Invalid beta parameter"),
        ("torch.optim.RAdam", {"lr": -1.0, "eps": -1.0}, None, "Invalid"),
        ("torch.optim.RAdam", {"betas": [0.9]}, "betas", "a list of 2"),
        ("torch.optim.RAdam", {"decoupled_weight_decay": 1}, "decoupled_weight_decay", "true or"),
        ("torch.optim.Muon", {"ns_steps": 2.5}, "ns_steps", "an integer"),
        ("torch.optim.Muon", {"adjust_lr_fn": "nonsense"}, "adjust_lr_fn", "nonsense"),
        ("torch.optim.RAdam", {"momentum": 0.9}, "momentum", "valid: lr, betas"),
    ],
)
def test_a_foreign_constructor_refusal_names_the_hparam(algorithm, hparams, named, match):
    with pytest.raises(HyperParameterError, match=match) as error:
        optimizer_factory(algorithm).resolve(hparams)
    assert error.value.name == named


@pytest.mark.parametrize(
    ("path", "match"),
    [
        ("torch.optim.NoSuchThing", "'torch.optim' has no attribute 'NoSuchThing'"),
        ("nosuchpackage.Opt", "no module named 'nosuchpackage'"),
        ("torch.nn.Linear", "not a torch.optim.Optimizer subclass"),
        ("torch.optim.LBFGS", "needs a closure"),
        ("schedulefree.AdamWScheduleFreeClosure", "needs a closure"),
        ("lamb", "unknown optimizer 'lamb'"),
    ],
)
def test_what_names_no_optimizer_is_said_in_one_line(path, match):
    with pytest.raises(ValueError, match=match) as error:
        optimizer_factory(path)
    assert "\n" not in str(error.value)


# Every optimizer class of torch.optim but those the training loop cannot drive: LBFGS (a
# closure), SparseAdam (sparse gradients) and Muon (matrices only: a parameter group of its own).
TORCH_OPTIMIZERS = sorted(
    name
    for name, cls in vars(torch.optim).items()
    if isinstance(cls, type)
    and issubclass(cls, torch.optim.Optimizer)
    and name not in ("Optimizer", "LBFGS", "SparseAdam", "Muon")
)


@pytest.mark.parametrize("name", TORCH_OPTIMIZERS)
def test_every_torch_optimizer_trains_by_its_import_path(name):
    algorithm = f"torch.optim.{name}"
    spec = optimizer_run_spec(algorithm, optimizer_factory(algorithm).resolve({}))
    model, optimizer, _ = tiny_trajectory(lambda m: build_run_optimizer(spec, m), 2)
    assert type(optimizer) is getattr(torch.optim, name)
    assert all(torch.isfinite(p).all() for p in model.parameters())
    torch.manual_seed(0)
    assert not torch.equal(model.head.weight, Tiny().head.weight), "it trained"


def test_an_installed_packages_optimizer_by_import_path():
    factory = optimizer_factory("schedulefree.AdamWScheduleFree")
    assert not factory.ours and factory.resolve({"warmup_steps": 3})["warmup_steps"] == 3
    with pytest.raises(HyperParameterError, match="an integer"):
        factory.resolve({"warmup_steps": 0.5})


# ---------------------------------------------------------------------------- parameter groups


class Tiny(nn.Module):
    """Names like our models': a hidden matrix, a head, a norm, a 4-D kernel."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)
        self.hidden = nn.Linear(18, 6, bias=False)
        self.norm = nn.LayerNorm(6)
        self.head = nn.Linear(6, 3)

    def forward(self, x):
        x = self.conv(x).flatten(1)
        return self.head(self.norm(self.hidden(x)))


MUON_GROUPS = {
    "hidden": {"algorithm": "torch.optim.Muon", "ndim": [2], "exclude": ["head.*"]},
    "rest": {"algorithm": "adamw"},
}


def test_groups_put_every_parameter_in_exactly_one():
    named = list(Tiny().named_parameters())
    assert assign_groups(MUON_GROUPS, named) == {
        "conv.weight": "rest",
        "conv.bias": "rest",
        "hidden.weight": "hidden",
        "norm.weight": "rest",
        "norm.bias": "rest",
        "head.weight": "rest",
        "head.bias": "rest",
    }
    by_name = {"head": {"algorithm": "sgd", "names": ["head.*"]}, **MUON_GROUPS}
    assert assign_groups(by_name, named)["head.weight"] == "head"
    with pytest.raises(GroupError, match="'conv.weight' \\(4-D\\) matches no group") as error:
        assign_groups({"hidden": MUON_GROUPS["hidden"]}, named)
    assert error.value.group is None
    with pytest.raises(GroupError, match="'hidden.weight' matches groups") as error:
        assign_groups({**MUON_GROUPS, "matrices": {"algorithm": "sgd", "ndim": [2]}}, named)
    assert error.value.group == "matrices"
    with pytest.raises(GroupError, match="both match every parameter"):
        assign_groups({**MUON_GROUPS, "all": {"algorithm": "sgd"}}, named)


def group_spec(groups):
    resolved = {
        name: {
            **rule,
            "hparams": optimizer_factory(rule["algorithm"]).resolve(rule.get("hparams", {})),
        }
        for name, rule in groups.items()
    }
    return optimizer_run_spec("+", {}, resolved)


def optimizer_run_spec(algorithm, hparams, groups=None):
    """A run's spec with these optimizer fields (the others do not build an optimizer)."""
    return RunSpec(
        dataset="digits",
        arch="tiny",
        seed=0,
        model={},
        optimizer="test",
        algorithm=algorithm,
        hparams=hparams,
        training={},
        groups=groups,
    )


def tiny_trajectory(make_optimizer, steps, model=None, scheduler_of=None):
    """Weights after ``steps`` steps of a seeded regression of Tiny."""
    torch.manual_seed(0)
    model = model or Tiny()
    optimizer = make_optimizer(model)
    scheduler = scheduler_of(optimizer) if scheduler_of else None
    x = torch.randn(16, 1, 5, 5, generator=generator("cpu", "tiny", "x"))
    y = torch.randn(16, 3, generator=generator("cpu", "tiny", "y"))
    for _ in range(steps):
        optimizer.zero_grad()
        F.mse_loss(model(x), y).backward()
        optimizer.step()
        if scheduler:
            scheduler.step()
    return model, optimizer, scheduler


def test_a_grouped_optimizer_steps_like_its_members_alone():
    spec = group_spec(MUON_GROUPS)
    grouped, optimizer, _ = tiny_trajectory(lambda m: build_run_optimizer(spec, m), 5)
    assert isinstance(optimizer, GroupedOptimizer)
    assert parameter_groups(optimizer)["hidden.weight"] == "hidden"

    def separate(model):
        hidden = [model.hidden.weight]
        rest = [p for n, p in model.named_parameters() if n != "hidden.weight"]
        muon = torch.optim.Muon(hidden, **spec.groups["hidden"]["hparams"])
        adamw = build_optimizer("adamw", rest)
        return GroupedOptimizer({"hidden": muon, "rest": adamw}, {})

    alone, _, _ = tiny_trajectory(separate, 5)
    for a, b in zip(grouped.parameters(), alone.parameters(), strict=True):
        assert torch.equal(a, b)


def test_a_grouped_optimizer_resumes_bit_for_bit_under_a_schedule():
    spec = group_spec(MUON_GROUPS)

    def schedule(optimizer):
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda t: 1.0 / (1 + t))

    whole, _, _ = tiny_trajectory(lambda m: build_run_optimizer(spec, m), 6, scheduler_of=schedule)
    first, optimizer, scheduler = tiny_trajectory(
        lambda m: build_run_optimizer(spec, m), 3, scheduler_of=schedule
    )
    # The schedule reaches every member's groups.
    assert {group["lr"] for group in optimizer.param_groups} == {1e-3 / 4}
    saved = io.BytesIO()
    torch.save(
        {
            "model": first.state_dict(),
            "optimizer": optimizer.state_dict(),
            "sched": scheduler.state_dict(),
        },
        saved,
    )
    saved.seek(0)
    state = torch.load(saved, weights_only=False)
    model = Tiny()
    model.load_state_dict(state["model"])

    def restored(optimizer):
        # As the trainer resumes: the schedule first, then both states.
        scheduler = schedule(optimizer)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["sched"])
        return scheduler

    resumed, _, _ = tiny_trajectory(
        lambda m: build_run_optimizer(spec, m), 3, model=model, scheduler_of=restored
    )
    for a, b in zip(whole.parameters(), resumed.parameters(), strict=True):
        assert torch.equal(a, b)


# ------------------------------------------------------------------- train and eval modes


def test_deployed_weights_are_the_eval_modes_and_training_goes_on():
    import schedulefree

    spec = optimizer_run_spec("schedulefree.AdamWScheduleFree", {"lr": 1e-2})
    model, optimizer, _ = tiny_trajectory(lambda m: build_run_optimizer(spec, m), 4)
    assert isinstance(optimizer, schedulefree.AdamWScheduleFree)
    training = [p.detach().clone() for p in model.parameters()]
    twin = schedulefree.AdamWScheduleFree(
        [torch.nn.Parameter(p.clone()) for p in model.parameters()], lr=1e-2
    )
    twin.load_state_dict(optimizer.state_dict())
    twin.eval()
    with deployed(optimizer):
        assert not optimizer.param_groups[0]["train_mode"]
        for p, q in zip(model.parameters(), twin.param_groups[0]["params"], strict=True):
            assert torch.equal(p, q)
        assert not all(torch.equal(p, t) for p, t in zip(model.parameters(), training, strict=True))
    assert optimizer.param_groups[0]["train_mode"]
    for p, t in zip(model.parameters(), training, strict=True):
        torch.testing.assert_close(p, t, rtol=0, atol=1e-6)
    optimizer.step()  # it steps only in train mode


def test_optimizers_without_modes_are_left_alone():
    model, optimizer, _ = tiny_trajectory(
        lambda m: build_optimizer("sgd", m.parameters(), lr=0.1), 2
    )
    before = [p.detach().clone() for p in model.parameters()]
    with deployed(optimizer):
        pass
    assert all(torch.equal(p, b) for p, b in zip(model.parameters(), before, strict=True))

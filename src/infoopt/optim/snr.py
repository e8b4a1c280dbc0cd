"""Lion with a per-coordinate tanh: the Gaussian model's posterior mean with a signal-to-noise
ratio estimated from the gradient history (one more state tensor, like Adam's second moment).

PAPER.md §4: for Y ∈ {±1} equiprobable and X | Y ~ N(Yμ, σ²), E[Y | x] = tanh(μx/σ²) =
tanh((μ/σ)·(x/σ)). :class:`LionBayes` plugs in estimates of μ and σ² per coordinate;
:class:`LionSoft` keeps the per-coordinate standardisation x/σ and replaces the SNR μ/σ by a
constant κ.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor

from infoopt.optim.base import (
    LionFamily,
    StateLists,
    check_range,
)


def _mean_weight(beta1: float, beta2: float, step: int) -> float:
    """a_t = E[c_t]/μ for gradients of constant mean μ: Lion's m starts at 0, uncorrected."""
    return 1.0 - beta1 * beta2 ** (step - 1)


def _variance_weight(beta1: float, beta2: float, step: int) -> float:
    """k_t = Var[c_t]/σ² for independent gradients of variance σ²."""
    momentum = (1.0 - beta2) * (1.0 - beta2 ** (2 * (step - 1))) / (1.0 + beta2)
    return (1.0 - beta1) ** 2 + beta1**2 * momentum


class LionBayes(LionFamily):
    """Lion with ``sign(c)`` replaced by the posterior mean ``tanh(s ⊙ c)``, ``s = μ̂/σ̂²``.

    Model (PAPER.md §4). Per coordinate the gradients g_t are independent with mean μ and
    variance σ², and the direction to learn is Y = sign(μ). Lion observes x = c_t =
    β1·m_{t−1} + (1−β1)·g_t; with m_0 = 0 this has E[c_t] = a_t·μ and Var[c_t] = k_t·σ², where

        a_t = 1 − β1·β2^(t−1)
        k_t = (1−β1)² + β1²·(1−β2)·(1 − β2^(2(t−1))) / (1+β2)

    so X | Y ~ N(Y·a_t·|μ|, k_t·σ²) and E[Y | x] = tanh(a_t·|μ|·x / (k_t·σ²)).

    Estimator, at step t = 1, 2, … (state m_0 = v_0 = 0):

        c_t   = β1·m_{t−1} + (1−β1)·g_t
        m_t   = β2·m_{t−1} + (1−β2)·g_t                  (Lion's momentum, unchanged)
        μ̂_t   = |m_t| / (1 − β2^t)                        (bias-corrected mean, magnitude)
        v_t   = β3·v_{t−1} + (1−β3)·(g_t − m_t/(1 − β2^t))²
        σ̂²_t  = v_t / (1 − β3^t)                          (bias-corrected EMA variance around it)
        u_t   = tanh( (a_t/k_t) · μ̂_t · c_t / (σ̂²_t + ε²) )
        θ     ← θ·(1 − lr·λ) − lr·u_t

    The factor 1/k_t (≈ 71 at the default betas) is what makes this more than tanh of the
    gradient's SNR: c averages many gradients, so its sign is far more reliable than one g's.
    A coordinate with a steady gradient (σ̂ ≪ |μ̂|) moves like Lion, ±lr; a noise-dominated one
    (|μ̂| ≲ √k_t·σ̂) moves by less.

    Step 1: m_1/(1 − β2) = g_1, so σ̂²_1 = 0 (up to rounding) and the argument is
    (a_1/k_1)·|g_1|·c_1/ε², which is huge unless |g_1| ≲ ε: the first step is Lion's,
    sign(g_1). In the first ~1/(1−β2) steps σ̂² is biased low (the deviations are taken from a
    mean that contains them: about half the variance at t = 2), which errs towards Lion's sign.

    ε (default 1e-8, on the gradient scale like Adam's) floors the noise standard deviation:
    coordinates whose gradients are ≲ ε get damped updates (the argument scales like g²/ε²), and
    an all-zero gradient gives u = 0.

    State: ``exp_avg`` is Lion's m; ``exp_var`` is w_t = β3·w_{t−1} + (1−β3)·(δ_t² + ε²) with
    δ_t = g_t − m_t/(1 − β2^t), so that w_t/(1 − β3^t) = σ̂²_t + ε² is the whole denominator and
    costs no temporary tensor.

    Numerics: computed as ``tanh((α_t·c_t) ⊙ |m_t| / w_t)`` with α_t = a_t·(1−β3^t) /
    (k_t·(1−β2^t)) folded into the coefficients of c. The constant added to w each step is
    max((1−β3)·ε², tiny), ``tiny`` the smallest normal number of the dtype (ε² underflows in
    float16, and ε may be 0), so w_t > 0 and the ratio is never 0/0; a finite numerator over it
    is finite or ±inf, and tanh(±inf) = ±1. So no NaN or inf reaches θ while the numerator and
    w_t stay finite (float32: |g| ≲ 1e18).
    """

    extra_state = ("exp_var",)
    # Not tied to Lion's rounding (its κ → ∞ limit is not Lion's step), so m takes one lerp_.
    lerp_momentum = True

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float = 1e-4,
        betas: Iterable[float] = (0.9, 0.99),
        weight_decay: float = 0.0,
        beta3: float = 0.99,
        eps: float = 1e-8,
        *,
        foreach: bool | None = None,
    ) -> None:
        defaults = {
            "lr": lr,
            "betas": betas,
            "weight_decay": weight_decay,
            "beta3": beta3,
            "eps": eps,
        }
        super().__init__(params, defaults, foreach)

    def _check_group(self, group: dict[str, Any]) -> None:
        group["beta3"] = check_range("beta3", group["beta3"])
        group["eps"] = check_range("eps", group["eps"])

    def _c_scale(self, group: dict[str, Any], step: int) -> float:
        beta1, beta2 = group["betas"]
        a = _mean_weight(beta1, beta2, step)
        k = _variance_weight(beta1, beta2, step)
        return a * (1.0 - group["beta3"] ** step) / (k * (1.0 - beta2**step))

    def _eps_term(self, group: dict[str, Any], dtype: torch.dtype) -> float:
        """(1−β3)·ε², added to w every step; at least ``tiny`` so that w > 0."""
        return max((1.0 - group["beta3"]) * group["eps"] ** 2, torch.finfo(dtype).tiny)

    def _direction(
        self,
        group: dict[str, Any],
        step: int,
        c: list[Tensor],
        grads: list[Tensor],
        states: StateLists,
    ) -> list[Tensor]:
        beta2, beta3 = group["betas"][1], group["beta3"]
        exp_avgs, exp_vars = states["exp_avg"], states["exp_var"]
        deviations = torch._foreach_sub(grads, exp_avgs, alpha=1.0 / (1.0 - beta2**step))
        torch._foreach_mul_(exp_vars, beta3)
        torch._foreach_addcmul_(exp_vars, deviations, deviations, value=1.0 - beta3)
        torch._foreach_add_(exp_vars, self._eps_term(group, c[0].dtype))
        # The deviations are no longer needed: their memory can serve the ratios.
        del deviations
        # |m|·c before the division: a finite product over a positive denominator is never NaN.
        ratios = torch._foreach_abs(exp_avgs)
        torch._foreach_mul_(ratios, c)
        torch._foreach_div_(ratios, exp_vars)
        torch._foreach_tanh_(ratios)
        return ratios


class LionSoft(LionFamily):
    """Lion with ``sign(c)`` replaced by ``tanh(κ · ĉ / (sqrt(v̂) + ε))`` per coordinate:

        ĉ_t = c_t / (1 − β1·β2^(t−1))                  (c without m's zero-initialisation bias)
        v_t = β3·v_{t−1} + (1−β3)·g_t²,  v̂_t = v_t / (1 − β3^t)     (Adam's second moment)

    Motivation: the posterior mean tanh(μx/σ²) = tanh((μ/σ)·(x/σ)) is an SNR times a
    standardised observation. :class:`LionBayes` estimates both factors per coordinate, and its
    SNR estimate is itself noisy. LionSoft keeps the per-coordinate standardisation, with Adam's
    RMS sqrt(v̂) = sqrt(μ² + σ²) as the scale (≈ σ where the sign is uncertain, μ ≪ σ, and ≈ |μ|
    where it is not), and replaces the SNR by one prior constant κ, a temperature. Its limits
    place it on a line between two known optimizers: κ → ∞ gives sign(c), Lion exactly; for
    small κ, tanh(z) ≈ z and the step is κ·ĉ/(sqrt(v̂) + ε), Adam's step with Lion's
    interpolated (Nesterov-like) momentum. At κ = 3 a coordinate with a noiseless gradient moves
    by tanh(3) ≈ 0.995·lr (|ĉ| = sqrt(v̂)), as in Lion, and a pure-noise one by typically
    ≈ 0.3·lr (|ĉ| ≈ 0.12·σ at the default betas). The bias correction of c keeps the first steps
    as large as Lion's and does not change the sign, so the κ → ∞ limit is untouched.

    Numerics: computed as ``tanh((κ·sqrt(1−β3^t)/a_t)·c / (sqrt(v_t) + max(ε·sqrt(1−β3^t),
    tiny)))`` (``tiny``: the dtype's smallest normal number), so the denominator is positive: a
    zero gradient gives 0, never 0/0. A gradient whose square overflows makes v_t = inf and
    freezes that coordinate (update 0), never NaN.
    """

    extra_state = ("exp_avg_sq",)

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float = 1e-4,
        betas: Iterable[float] = (0.9, 0.99),
        weight_decay: float = 0.0,
        kappa: float = 3.0,
        beta3: float = 0.999,
        eps: float = 1e-8,
        *,
        foreach: bool | None = None,
    ) -> None:
        defaults = {
            "lr": lr,
            "betas": betas,
            "weight_decay": weight_decay,
            "kappa": kappa,
            "beta3": beta3,
            "eps": eps,
        }
        super().__init__(params, defaults, foreach)

    def _check_group(self, group: dict[str, Any]) -> None:
        group["kappa"] = check_range("kappa", group["kappa"])
        group["beta3"] = check_range("beta3", group["beta3"])
        group["eps"] = check_range("eps", group["eps"])

    def _c_scale(self, group: dict[str, Any], step: int) -> float:
        beta1, beta2 = group["betas"]
        unbias3 = 1.0 - group["beta3"] ** step
        return group["kappa"] * unbias3**0.5 / _mean_weight(beta1, beta2, step)

    def _floor(self, group: dict[str, Any], step: int, dtype: torch.dtype) -> float:
        unbias3 = 1.0 - group["beta3"] ** step
        return max(group["eps"] * unbias3**0.5, torch.finfo(dtype).tiny)

    def _direction(
        self,
        group: dict[str, Any],
        step: int,
        c: list[Tensor],
        grads: list[Tensor],
        states: StateLists,
    ) -> list[Tensor]:
        beta3 = group["beta3"]
        exp_avg_sqs = states["exp_avg_sq"]
        torch._foreach_mul_(exp_avg_sqs, beta3)
        torch._foreach_addcmul_(exp_avg_sqs, grads, grads, value=1.0 - beta3)
        denominators = torch._foreach_sqrt(exp_avg_sqs)
        torch._foreach_add_(denominators, self._floor(group, step, c[0].dtype))
        torch._foreach_div_(c, denominators)
        torch._foreach_tanh_(c)
        return c

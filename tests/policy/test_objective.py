"""The VL-SAFE objective's pieces, checked against hand computations."""

import math

import pytest
import torch

from vlsafe.policy.objective import (
    AugmentedLagrangian,
    PercentileNorm,
    expectile_loss,
    lambda_return,
    reachability_target,
    vlsafe_weight,
)


def test_weight_reduces_to_reward_only_and_cost_only():
    g = torch.Generator().manual_seed(0)
    a_r, a_c = torch.randn(50, generator=g), torch.randn(50, generator=g)
    w1 = vlsafe_weight(torch.ones(50), a_r, a_c, beta1=2.0, beta2=3.0, max_weight=1e9)
    w0 = vlsafe_weight(torch.zeros(50), a_r, a_c, beta1=2.0, beta2=3.0, max_weight=1e9)
    torch.testing.assert_close(w1, torch.exp(2.0 * a_r))  # p ≡ 1: reward-only advantage weighting
    torch.testing.assert_close(w0, torch.exp(-3.0 * a_c))  # p ≡ 0: cost-only
    p = torch.full((50,), 0.3)
    mixed = 0.3 * torch.exp(2.0 * a_r) + 0.7 * torch.exp(-3.0 * a_c)
    torch.testing.assert_close(vlsafe_weight(p, a_r, a_c, 2.0, 3.0, 1e9), mixed)


def test_weight_is_clipped_without_overflow():
    w = vlsafe_weight(torch.tensor([1.0, 0.0]), torch.tensor([1e4, 0.0]), torch.tensor([0.0, -1e4]), 1.0, 1.0, 20.0)
    assert torch.isfinite(w).all() and torch.equal(w, torch.tensor([20.0, 20.0]))


def test_lambda_return_by_hand():
    r = torch.tensor([[1.0], [2.0], [3.0]])
    v = torch.tensor([[10.0], [20.0], [30.0]])
    c = torch.tensor([[1.0], [0.5], [1.0]])
    g, lam = 0.9, 0.8
    r2 = 3 + g * 1.0 * 30
    r1 = 2 + g * 0.5 * ((1 - lam) * 20 + lam * r2)
    r0 = 1 + g * 1.0 * ((1 - lam) * 10 + lam * r1)
    torch.testing.assert_close(lambda_return(r, v, c, g, lam), torch.tensor([[r0], [r1], [r2]]))
    # λ = 0: one-step TD targets
    torch.testing.assert_close(lambda_return(r, v, c, g, 0.0), r + g * c * v)


def test_expectile_regression_finds_upper_and_lower_expectiles():
    x = torch.arange(10.0)
    fits = {}
    for tau in (0.2, 0.5, 0.8):
        v = torch.zeros((), requires_grad=True)
        opt = torch.optim.SGD([v], lr=0.05)
        for _ in range(2000):
            opt.zero_grad()
            expectile_loss(x, v, tau).mean().backward()
            opt.step()
        fits[tau] = v.item()
        # the first-order condition of an expectile: τ Σ(x - v)+ = (1 - τ) Σ(v - x)+
        up, down = (x - fits[tau]).clamp(min=0).sum(), (fits[tau] - x).clamp(min=0).sum()
        assert float(tau * up) == pytest.approx(float((1 - tau) * down), abs=1e-2)
    assert fits[0.5] == pytest.approx(4.5, abs=1e-3) and fits[0.2] < 4.5 < fits[0.8]


def test_reachability_target_keeps_the_worst_violation_ahead():
    h = torch.tensor([0.0, 1.0, 0.0])
    v = torch.tensor([0.5, 0.2, 0.0])
    cont = torch.tensor([1.0, 1.0, 0.0])
    torch.testing.assert_close(reachability_target(h, v, cont, 0.9), torch.tensor([0.45, 1.0, 0.0]))


def test_lagrange_multiplier_rises_above_the_limit_and_falls_back_to_zero():
    lag = AugmentedLagrangian(limit=0.1, mu=1.0, mu_growth=0.0)
    seen = [lag.update(0.5) for _ in range(5)]
    assert seen == pytest.approx([0.4, 0.8, 1.2, 1.6, 2.0])
    for _ in range(30):
        lag.update(0.0)
    assert lag.lam == 0.0


def test_percentile_norm_scale_never_below_one():
    norm = PercentileNorm(decay=0.0)
    assert norm.update(torch.linspace(0, 0.1, 101)) == 1.0
    assert norm.update(torch.linspace(0, 100, 101)) == pytest.approx(90.0, rel=1e-4)
    assert not math.isnan(norm.scale)

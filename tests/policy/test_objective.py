"""The VL-SAFE objective's pieces, checked against hand computations."""

import math

import numpy as np
import pytest
import torch

from vlsafe.policy.objective import (
    AugmentedLagrangian,
    PercentileNorm,
    ScaleNorm,
    discounted_returns,
    expectile_loss,
    extraction_target,
    reachability_returns,
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


def test_discounted_returns_by_hand_and_cut_at_termination():
    r = np.array([1.0, 2.0, 3.0, 4.0])
    done = np.array([False, True, False, False])
    g = 0.5
    np.testing.assert_allclose(discounted_returns(r, done, g), [1 + g * 2, 2, 3 + g * 4, 4])


def test_reachability_returns_by_hand_clipped_and_cut_at_termination():
    """The data's V_h: γ^k for the nearest cost k steps ahead, a cost above 1 counts as 1, and an
    episode's end (done) cuts what follows it off."""
    g = 0.5
    np.testing.assert_allclose(reachability_returns(np.array([0, 0, 0, 2.0, 0]), np.zeros(5, bool), g),
                               [0.125, 0.25, 0.5, 1.0, 0.0])
    np.testing.assert_allclose(reachability_returns(np.array([0, 1.0, 0, 0, 0.4]),
                                                    np.array([False, False, True, False, False]), g),
                               [0.5, 1.0, 0.0, 0.2, 0.4])


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


def test_scale_norm_has_a_small_floor_and_no_floor_at_one():
    norm = ScaleNorm(floor=0.02, decay=0.0)
    assert norm.update(0.001) == 0.02  # a cost signal ~0 everywhere is not blown up to unit size
    assert norm.update(0.3) == pytest.approx(0.3)  # ... but a real one below 1 is kept (the old floor was 1)


def test_extraction_target_is_the_behaviour_when_the_weight_is_flat():
    g = torch.Generator().manual_seed(0)
    log_b = torch.log_softmax(torch.randn(8, 15, generator=g), -1)
    torch.testing.assert_close(extraction_target(log_b, torch.ones(8, 15)), log_b)
    # β1 = β2 = 0 gives w ≡ 1 whatever the advantages and p(s)
    w = vlsafe_weight(torch.rand(8, 1, generator=g), torch.randn(8, 15, generator=g), torch.randn(8, 15, generator=g),
                      0.0, 0.0, 20.0)
    torch.testing.assert_close(extraction_target(log_b, w), log_b)


def test_cost_advantage_moves_mass_only_where_the_state_is_unsafe():
    log_b = torch.log_softmax(torch.zeros(2, 15), -1)  # a uniform behaviour
    adv_r = torch.zeros(2, 15)
    adv_c = torch.zeros(2, 15)
    adv_c[:, 4] = -1.0  # action 4 leads to less cost than the behaviour's average
    p = torch.tensor([[1.0], [0.0]])  # state 0 looks safe, state 1 unsafe
    target = extraction_target(log_b, vlsafe_weight(p, adv_r, adv_c, 2.0, 2.0, 20.0)).exp()
    torch.testing.assert_close(target[0], log_b[0].exp())  # p = 1: the cost advantage has no say
    assert target[1, 4] > 5 * target[1, 0]  # p = 0: e^{2} times the mass of any other action

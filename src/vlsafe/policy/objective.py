"""The pieces of the VL-SAFE objective, as plain functions of tensors (PAPER.md).

Each is small enough to check by hand, which the tests do:

- `discounted_returns`: Monte-Carlo returns of recorded episodes (the critics' fixed scales);
- `expectile_loss`: |τ - 1(u < 0)| u², u = target - prediction (FOSP/IQL's V from Q);
- `reachability_target`: the discounted safety Bellman backup max(h(s'), γ V_h(s')) of FOSP's
  feasibility critic;
- `vlsafe_weight`: w = p(s)·exp(β1·A_r) + (1-p(s))·exp(-β2·A_c), clipped;
- `extraction_target`: log π*(a|s) = log π_b(a|s) + log w(s,a) - log Z(s), the closed form that
  the actor is fitted to (AWR/IQL family: π* re-weights the *behaviour's* actions);
- `ScaleNorm`: the EMA scale that puts A_r and A_c each on unit spread, with a small floor;
- `PercentileNorm`: the 5-95 percentile EMA floored at 1 (DreamerV3; the earlier, shared scaling);
- `AugmentedLagrangian`: the multiplier λ on imagined cost above the limit d (SafeDreamer).
"""

from __future__ import annotations

import math

import torch

__all__ = ["expectile_loss", "reachability_target", "vlsafe_weight", "extraction_target",
           "discounted_returns", "reachability_returns", "ScaleNorm", "PercentileNorm", "AugmentedLagrangian"]


def discounted_returns(reward, done, gamma: float):
    """Monte-Carlo Σ_k γ^k r_{t+k} of one episode's transitions (numpy arrays, (T,)), cut at `done`."""
    import numpy as np

    out = np.zeros(len(reward), np.float64)
    acc = 0.0
    for t in reversed(range(len(reward))):
        acc = float(reward[t]) + gamma * (0.0 if done[t] else acc)
        out[t] = acc
    return out


def reachability_returns(cost, done, gamma: float):
    """Monte-Carlo V_h of one episode's transitions: max_j γ^j h_{t+j}, h = cost clipped to [0, 1],
    cut at `done` (numpy arrays, (T,)): γ^k for a cost k steps ahead, 0 where none comes. The
    data's own answer to FOSP's "how soon does this state reach a violation"."""
    import numpy as np

    out = np.zeros(len(cost), np.float64)
    acc = 0.0
    for t in reversed(range(len(cost))):
        acc = max(min(max(float(cost[t]), 0.0), 1.0), gamma * (0.0 if done[t] else acc))
        out[t] = acc
    return out


def expectile_loss(target: torch.Tensor, prediction: torch.Tensor, tau: float) -> torch.Tensor:
    """Asymmetric squared error: with τ > 0.5 the prediction tends to an upper expectile of target."""
    u = target - prediction
    return (tau - (u < 0).to(u.dtype)).abs() * u ** 2


def reachability_target(h_next: torch.Tensor, v_next: torch.Tensor, cont: torch.Tensor, gamma: float) -> torch.Tensor:
    """Target of V_h(s_t): the worst violation h ∈ [0, 1] still ahead, max(h(s_{t+1}), γ·V_h(s_{t+1}))."""
    return torch.maximum(h_next, gamma * cont * v_next)


def vlsafe_weight(p_safe: torch.Tensor, adv_reward: torch.Tensor, adv_cost: torch.Tensor,
                  beta1: float, beta2: float, max_weight: float) -> torch.Tensor:
    """The paper's actor weight; exponents are clamped first so exp() cannot overflow."""
    top = math.log(max_weight)
    w = p_safe * torch.exp((beta1 * adv_reward).clamp(max=top)) + (1 - p_safe) * torch.exp((-beta2 * adv_cost).clamp(max=top))
    return w.clamp(max=max_weight)


def extraction_target(log_prior: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """log π*(a|s) over the last dim: π* ∝ prior·w, the prior π̂_b(a|s) (or 1/K for K actions sampled
    from π̂_b). With w ≡ 1 it is the prior itself: no signal, no change from the behaviour."""
    return torch.log_softmax(log_prior + torch.log(weight.clamp(min=1e-12)), -1)


class ScaleNorm:
    """EMA of the root-mean-square of an advantage, floored: A / scale has unit spread.

    Reward and cost advantages each get their own: a cost advantage that is 1000x smaller than
    the reward one would otherwise vanish from w. The floor keeps a signal that is ~0 everywhere
    (a batch with no danger in it) from being blown up to unit size. The scale stays a tensor on
    the advantage's device (no host sync per update on a GPU); `state` reads it out as a float.
    """

    def __init__(self, floor: float, decay: float = 0.99):
        self.floor, self.decay, self.scale = floor, decay, None

    def update(self, rms) -> torch.Tensor:
        rms = torch.as_tensor(rms, dtype=torch.float32).detach()
        if self.scale is None:
            self.scale = rms.clone()
        else:
            self.scale = self.decay * self.scale.to(rms.device) + (1 - self.decay) * rms
        return self.scale.clamp(min=self.floor)

    def state(self) -> dict:
        return {"scale": None if self.scale is None else float(self.scale)}

    def load(self, state: dict) -> None:
        scale = state.get("scale")
        self.scale = None if scale is None else torch.tensor(float(scale))


class PercentileNorm:
    """Scale = EMA of (P95 - P5) of returns, never below 1 so small returns are not blown up."""

    def __init__(self, decay: float = 0.99, low: float = 0.05, high: float = 0.95):
        self.decay, self.low, self.high = decay, low, high
        self.scale = None

    def update(self, returns: torch.Tensor) -> float:
        x = returns.detach().flatten().float()
        spread = float(torch.quantile(x, self.high) - torch.quantile(x, self.low))
        self.scale = spread if self.scale is None else self.decay * self.scale + (1 - self.decay) * spread
        return max(1.0, self.scale)

    def state(self) -> dict:
        return {"scale": self.scale}

    def load(self, state: dict) -> None:
        self.scale = state.get("scale")


class AugmentedLagrangian:
    """λ ← max(0, λ + μ(J_c − d)), μ ← min(μ(1 + ν), μ_max).

    `penalty()` is λ_eff = max(0, λ + μ(J_c − d)): the derivative of SafeDreamer's augmented
    penalty ψ in J_c, i.e. how many units of reward one unit of cost advantage is worth.
    """

    def __init__(self, limit: float, init: float = 0.0, mu: float = 1.0, mu_growth: float = 1e-3, mu_max: float = 10.0):
        self.limit, self.lam, self.mu, self.mu_growth, self.mu_max = limit, init, mu, mu_growth, mu_max
        self.last_cost = 0.0

    def penalty(self, cost: float) -> float:
        return max(0.0, self.lam + self.mu * (cost - self.limit))

    def update(self, cost: float) -> float:
        self.last_cost = float(cost)
        self.lam = self.penalty(cost)
        self.mu = min(self.mu * (1 + self.mu_growth), self.mu_max)
        return self.lam

    def state(self) -> dict:
        return {"lam": self.lam, "mu": self.mu}

    def load(self, state: dict) -> None:
        self.lam, self.mu = float(state["lam"]), float(state["mu"])

"""VL-SAFE's actor-critic, learned only in the imagination of a frozen world model (PAPER.md).

One update, top to bottom (`ImaginationLearner.update`):

1. imagine `horizon` steps from posterior start states of dataset sequences with the actor;
   the world model predicts reward r̂, cost ĉ, p̂(safe) and continue for every imagined state;
2. critics: Q_r, Q_c regress λ-returns of r̂ and ĉ (bootstrapped by slow target V's); V_r is the
   upper expectile τ of Q_r and V_c the lower expectile 1-τ of Q_c: both the value of the best
   actions the policy takes (FOSP's expectile V);
3. advantages A_r = Q_r - V_r, A_c = Q_c - V_c, divided by a 5-95 percentile EMA of the returns;
4. actor: weighted log-likelihood of its own imagined actions with
   w = p(s)·exp(β1·A_r) + (1-p(s))·exp(-β2·A_c), clipped, plus an entropy bonus.

`safety` says where p(s) comes from, and is what separates the methods sharing this code:

| method            | p(s)                                   | Lagrangian |
|-------------------|----------------------------------------|------------|
| `vl-safe`         | the world model's safety head (the VLM) | off (switch) |
| `dreamer-offline` | ≡ 1: reward-only advantage weighting    | off        |
| `lagrangian`      | ≡ 1                                    | on: A_r ← (A_r - λ A_c)/(1+λ) |
| `fosp`            | 1 - V_h(s), a reachability critic of ĉ  | off        |
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from vlsafe.config import ConfigError
from vlsafe.policy.objective import (
    AugmentedLagrangian,
    PercentileNorm,
    expectile_loss,
    lambda_return,
    reachability_target,
    vlsafe_weight,
)
from vlsafe.worldmodel.rssm import WorldModel, mlp

__all__ = ["PolicyConfig", "METHODS", "Actor", "ImaginationLearner", "method_config"]


@dataclass(frozen=True)
class PolicyConfig:
    method: str = "vl-safe"
    safety: str = "vlm"  # where p(s) comes from: vlm (safety head), reachability (1 - V_h), none (p ≡ 1)
    lagrangian: bool = False  # augmented-Lagrangian penalty on imagined cost above cost_limit
    horizon: int = 15
    discount_horizon: float = 100.0  # γ = 1 - 1/discount_horizon
    lam: float = 0.95  # λ of the λ-returns
    expectile: float = 0.8  # τ of V_r; V_c uses 1 - τ
    advantage: str = "return"  # A = R^λ - V(s) ("return", DreamerV3) or Q(s,a) - V(s) ("q", FOSP/IQL); see README
    beta1: float = 3.0  # inverse temperature of the reward advantage
    beta2: float = 3.0  # inverse temperature of the cost advantage
    max_weight: float = 20.0
    entropy: float = 3e-3
    unimix: float = 0.01  # uniform mixing of the discrete actor
    hidden: int = 128
    layers: int = 2
    actor_lr: float = 3e-4
    critic_lr: float = 3e-4
    grad_clip: float = 100.0
    slow_critic: float = 0.02  # rate of the target V's EMA
    cost_limit: float = 0.01  # per imagined discounted cost return from a start state
    lagrange_mu: float = 1.0
    lagrange_mu_growth: float = 1e-3

    def __post_init__(self) -> None:
        if self.safety not in ("vlm", "reachability", "none"):
            raise ConfigError(f"policy.safety: expected vlm, reachability or none, got {self.safety!r}")
        if not 0 < self.expectile < 1 or not 0 <= self.lam <= 1 or self.discount_horizon < 1:
            raise ConfigError("policy: need 0 < expectile < 1, 0 <= lam <= 1 and discount_horizon >= 1")
        if self.advantage not in ("q", "return"):
            raise ConfigError(f"policy.advantage: expected q or return, got {self.advantage!r}")
        if self.horizon < 1 or self.max_weight <= 1:
            raise ConfigError("policy: need horizon >= 1 and max_weight > 1")

    @property
    def gamma(self) -> float:
        return 1.0 - 1.0 / self.discount_horizon


METHODS: dict[str, dict] = {
    "vl-safe": dict(safety="vlm", lagrangian=False),
    "dreamer-offline": dict(safety="none", lagrangian=False),
    "lagrangian": dict(safety="none", lagrangian=True),
    "fosp": dict(safety="reachability", lagrangian=False),
}


def method_config(method: str, **fields) -> PolicyConfig:
    if method not in METHODS:
        raise ConfigError(f"unknown method {method!r}; valid methods: {', '.join(METHODS)}")
    return PolicyConfig(method=method, **{**METHODS[method], **fields})


class Actor(nn.Module):
    """π(a | feat): categorical over 15 actions (with unimix) or a Gaussian over [-1, 1]^2."""

    def __init__(self, feat: int, action_dim: int, discrete: bool, hidden: int, layers: int, unimix: float):
        super().__init__()
        self.discrete, self.action_dim, self.unimix = discrete, action_dim, unimix
        self.net = mlp(feat, hidden, action_dim if discrete else 2 * action_dim, layers)

    def dist(self, feat: torch.Tensor) -> torch.distributions.Distribution:
        out = self.net(feat)
        if self.discrete:
            probs = (1 - self.unimix) * out.softmax(-1) + self.unimix / self.action_dim
            return torch.distributions.OneHotCategorical(probs=probs)
        mean, std = out.chunk(2, -1)
        return torch.distributions.Independent(torch.distributions.Normal(torch.tanh(mean), 0.1 + 0.9 * torch.sigmoid(std)), 1)

    def sample(self, feat: torch.Tensor) -> torch.Tensor:
        a = self.dist(feat).sample()
        return a if self.discrete else a.clamp(-1, 1)

    def mode(self, feat: torch.Tensor) -> torch.Tensor:
        d = self.dist(feat)
        if self.discrete:
            return F.one_hot(d.probs.argmax(-1), self.action_dim).float()
        return d.mean


class _Value(nn.Module):
    def __init__(self, inp: int, hidden: int, layers: int):
        super().__init__()
        self.net = mlp(inp, hidden, 1, layers)

    def forward(self, *x: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat(x, -1) if len(x) > 1 else x[0])[..., 0]


class ImaginationLearner(nn.Module):
    """Actor, Q/V critics for reward and cost, the reachability critic and their slow targets."""

    def __init__(self, cfg: PolicyConfig, feat: int, action_dim: int, discrete: bool):
        super().__init__()
        self.cfg = cfg
        h, n = cfg.hidden, cfg.layers
        self.actor = Actor(feat, action_dim, discrete, h, n, cfg.unimix)
        self.q_reward, self.v_reward = _Value(feat + action_dim, h, n), _Value(feat, h, n)
        self.q_cost, self.v_cost = _Value(feat + action_dim, h, n), _Value(feat, h, n)
        self.v_reach = _Value(feat, h, n)
        self.slow = nn.ModuleDict({"v_reward": copy.deepcopy(self.v_reward), "v_cost": copy.deepcopy(self.v_cost),
                                   "v_reach": copy.deepcopy(self.v_reach)})
        for p in self.slow.parameters():
            p.requires_grad_(False)
        self.norm_reward, self.norm_cost = PercentileNorm(), PercentileNorm()
        self.lagrange = AugmentedLagrangian(cfg.cost_limit, mu=cfg.lagrange_mu, mu_growth=cfg.lagrange_mu_growth)

    def critic_parameters(self) -> list[nn.Parameter]:
        return [p for name, p in self.named_parameters() if not name.startswith(("actor.", "slow."))]

    def make_optimizer(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW([{"params": list(self.actor.parameters()), "lr": self.cfg.actor_lr},
                                  {"params": self.critic_parameters(), "lr": self.cfg.critic_lr}], eps=1e-5)

    def p_safe(self, world_model: WorldModel, feat: torch.Tensor) -> torch.Tensor:
        """p(s) of the method: the VLM safety head, feasibility 1 - V_h, or 1."""
        if self.cfg.safety == "vlm":
            return torch.sigmoid(world_model.safety_head(feat)[..., 0])
        if self.cfg.safety == "reachability":
            return (1 - self.v_reach(feat)).clamp(0, 1)
        return torch.ones(feat.shape[:-1], device=feat.device)

    def update(self, world_model: WorldModel, start: dict[str, torch.Tensor],
               optimizer: torch.optim.Optimizer) -> dict[str, float]:
        cfg = self.cfg
        with torch.no_grad():
            traj = world_model.imagine(start, self.actor.sample, cfg.horizon)
        traj["cost"] = traj["cost"].clamp(min=0)  # the two-hot mean can dip below 0; a cost cannot
        feat, act = traj["feat"][:-1], traj["action"]  # s_0..s_{H-1} and the actions taken there
        nxt, cont = traj["feat"][1:], traj["cont"]
        with torch.no_grad():
            # weight[t] = Π_{k<t} γ·cont_k: imagined steps after a predicted episode end count less
            weight = torch.cumprod(torch.cat([torch.ones_like(cont[:1]), cfg.gamma * cont[:-1]]), 0)
            ret_r = lambda_return(traj["reward"], self.slow["v_reward"](nxt), cont, cfg.gamma, cfg.lam)
            # costs are never negative, so neither are their values (V_c's lower expectile can dip below 0)
            ret_c = lambda_return(traj["cost"], self.slow["v_cost"](nxt).clamp(min=0), cont, cfg.gamma, cfg.lam)
            reach_y = reachability_target(traj["cost"].clamp(0, 1), self.slow["v_reach"](nxt).clamp(0, 1), cont, cfg.gamma)

        # -- critics --
        q_r, q_c = self.q_reward(feat, act), self.q_cost(feat, act)
        v_r, v_c, v_h = self.v_reward(feat), self.v_cost(feat), self.v_reach(feat)
        critic_terms = {
            "q_reward": (q_r - ret_r) ** 2, "q_cost": (q_c - ret_c) ** 2,
            "v_reward": expectile_loss(q_r.detach(), v_r, cfg.expectile),
            "v_cost": expectile_loss(q_c.detach(), v_c, 1 - cfg.expectile),
            "v_reach": (v_h - reach_y) ** 2,
        }
        critic_loss = sum((weight * t).mean() for t in critic_terms.values())

        # -- the actor's weight --
        with torch.no_grad():
            if cfg.advantage == "q":
                adv_r, adv_c = q_r - v_r, q_c - v_c
            else:
                adv_r, adv_c = ret_r - v_r, ret_c - v_c
            # centred on the batch (a baseline: the policy gradient stays unbiased, and both
            # exponentials sit near 1 so that p(s) alone sets the mix), then percentile-scaled
            adv_r = (adv_r - adv_r.mean()) / self.norm_reward.update(ret_r)
            adv_c = (adv_c - adv_c.mean()) / self.norm_cost.update(ret_c)
            p = self.p_safe(world_model, feat)
            cost_return = float(ret_c[0].mean())
            lam = 0.0
            if cfg.lagrangian:
                lam = self.lagrange.update(cost_return)  # λ_eff of this cost, which becomes λ
                adv_r = (adv_r - lam * adv_c) / (1 + lam)
            w = vlsafe_weight(p, adv_r, adv_c, cfg.beta1, cfg.beta2, cfg.max_weight)
        dist = self.actor.dist(feat.detach())
        logp, entropy = dist.log_prob(act), dist.entropy()
        actor_loss = -(weight * (w * logp + cfg.entropy * entropy)).mean()

        optimizer.zero_grad(set_to_none=True)
        (actor_loss + critic_loss).backward()
        gn_actor = nn.utils.clip_grad_norm_(self.actor.parameters(), cfg.grad_clip)
        gn_critic = nn.utils.clip_grad_norm_(self.critic_parameters(), cfg.grad_clip)
        optimizer.step()
        with torch.no_grad():
            for name, slow in self.slow.items():
                for ps, po in zip(slow.parameters(), getattr(self, name).parameters()):
                    ps.lerp_(po, cfg.slow_critic)
        out = {"imag/return": float(ret_r[0].mean()), "imag/cost_return": cost_return,
               "imag/reward": float(traj["reward"].mean()), "imag/cost": float(traj["cost"].mean()),
               "imag/p_safe": float(p.mean()), "actor/weight_mean": float(w.mean()), "actor/weight_max": float(w.max()),
               "actor/entropy": entropy.mean().item(), "actor/loss": actor_loss.item(), "lagrange/lambda": lam,
               "critic/loss": critic_loss.item(), "grad/actor": float(gn_actor), "grad/critic": float(gn_critic)}
        out.update({f"critic/{k}": (weight * v).mean().item() for k, v in critic_terms.items()})
        return out

    def extra_state(self) -> dict:
        return {"norm_reward": self.norm_reward.state(), "norm_cost": self.norm_cost.state(), "lagrange": self.lagrange.state()}

    def load_extra_state(self, state: dict) -> None:
        self.norm_reward.load(state["norm_reward"])
        self.norm_cost.load(state["norm_cost"])
        self.lagrange.load(state["lagrange"])

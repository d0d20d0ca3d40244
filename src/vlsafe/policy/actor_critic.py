"""VL-SAFE's actor-critic, learned offline from a dataset and a frozen world model (PAPER.md).

The actor is *extracted* from the data's behaviour, never free of it:

    π*(a|s) ∝ π̂_b(a|s) · w(s,a),   w = p(s)·exp(β1·A_r(s,a)) + (1 − p(s))·exp(−β2·A_c(s,a))

One update (`ImaginationLearner.update`), top to bottom:

1. states: a batch of dataset posterior states (with the recorded action, the real reward and
   cost that followed, and the next state), plus states imagined `horizon` steps ahead from them
   under the actor (the states the car drifts into when it drives itself);
2. behaviour head π̂_b: cross-entropy on the dataset's actions;
3. critics Q(s,a) = (Q_r, Q_c, Q_h) for every candidate action (the 15 discrete actions, or
   actions sampled from π̂_b): targets from imagined branches that hold the action for
   `branch_steps` steps, Σ γ^j r̂_j + γ^k·cont·V(s_k), on all states. V_r is an upper and V_c a
   *pessimistic* (upper) expectile of Q over the behaviour's actions, V_h the π̂_b-mean of the
   reachability Q_h; `in_sample` also pins V to the dataset's own transitions, r + γ(1 − d)·V(s')
   with real rewards and costs. Returns are divided by fixed scales measured on the dataset (a
   collision costs −30·|v| ≈ −390, an ordinary step ~+1);
4. advantages A = Q(s,a) − E_{π̂_b}[Q(s,·)]: zero-mean under the behaviour in every state, so
   the baseline never shifts the p(s) mix; A_r and A_c each divided by its own EMA scale;
5. the actor (`extraction=awr`, the default) fits w on the data's own actions with A = G − V_b
   from their real discounted returns G (AWR: max Σ w·log π(a|s), optimum π* ∝ π_b·w);
   `extraction=exact` matches π* exactly over all candidates (cross-entropy) on dataset and
   imagined states with the imagined critics' A of step 4; `both` sums the two. On four-lane's
   development seeds the imagined critics' ranking made the policy crash more (README), hence
   the default. π̂_b is fitted for the first `bc_steps` updates, then frozen; the actor starts
   as its copy. π̂_b, the actor and V_b read the stochastic latent z_t, not the GRU state h_t
   (`actor_input`, `value_input`): h_t holds the previous action and which driver is driving.

`safety` says where p(s) comes from, and is what separates the methods sharing this code:

| method            | p(s)                                    | Lagrangian |
|-------------------|-----------------------------------------|------------|
| `vl-safe`         | the world model's safety head (the VLM)  | off (switch) |
| `dreamer-offline` | ≡ 1: reward-only advantage weighting     | off        |
| `lagrangian`      | ≡ 1                                     | on: A_r ← (A_r − λ A_c)/(1+λ) |
| `fosp`            | 1 − V_h(s), a reachability critic of ĉ   | off        |
| `bc`              | β1 = β2 = 0: π* = π̂_b (behaviour cloning) | off        |

Ablation switches (one each): `actor_input=feat` and `value_input=feat` (h_t, z_t),
`anchor=self` (π* ∝ π_actor·w, the earlier extraction that drifts away from the data),
`in_sample=false` (critics from imagined branches only), `branch_steps=1` (one-step branches),
`adv_norm=shared` (the earlier scaling: batch-centred, both divided by a return spread floored at 1).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from vlsafe.config import ConfigError
from vlsafe.envs.observation import APPROACH_COLUMNS, CARS_COLUMNS, CONFLICT_COLUMNS, CONFLICT_GAP_M, ROUTE_COLUMNS, SPEED_COLUMNS
from vlsafe.experts.route_follower import RouteFollowerConfig
from vlsafe.policy.objective import (
    AugmentedLagrangian,
    PercentileNorm,
    ScaleNorm,
    expectile_loss,
    extraction_target,
    reachability_target,
    vlsafe_weight,
)
from vlsafe.training.blocks import mlp
from vlsafe.worldmodel.rssm import WorldModel

__all__ = ["PolicyConfig", "METHODS", "Actor", "ImaginationLearner", "method_config"]


@dataclass(frozen=True)
class PolicyConfig:
    method: str = "vl-safe"
    safety: str = "vlm"  # where p(s) comes from: vlm (safety head), reachability (1 - V_h), none (p ≡ 1), constant
    # p(s) ≡ p_constant where safety=constant: the ablation "a cost term in w, without the VLM's
    # per-state judgement" (set it to the mean p(s) of the VLM's runs on the same data)
    p_constant: float = 0.9
    lagrangian: bool = False  # augmented-Lagrangian penalty on the actor's cost above cost_limit
    # where the Lagrangian's cost return and FOSP's V_h come from: the "imagined" critics (Q, V on
    # imagined branches: the baselines as published), or the "data"'s real costs (the actor's cost
    # return as the AWR weights' average of the data's cost returns G_c, V_h regressed on the data's
    # max_j γ^j c_{t+j}): the only way for an actor that reads the vector, which imagined states lack
    safety_critics: str = "imagined"
    # actor fitted on the data's actions with real-return advantages ("awr"), to π* over all
    # actions from the imagined critics ("exact"), or both
    extraction: str = "awr"
    anchor: str = "behaviour"  # π* ∝ π̂_b·w ("behaviour"), or π_actor·w ("self": the earlier extraction, ablation)
    in_sample: bool = True  # critics also regress the dataset's real rewards and costs
    # what the actor and π̂_b see: the stochastic latent z_t ("stoch") or all of h_t, z_t ("feat",
    # the earlier input: h_t holds the previous action, and the cloned actor learns to repeat it)
    actor_input: str = "stoch"
    # what V_b, the AWR baseline of the data's returns, sees: h_t, z_t ("feat") or z_t ("stoch").
    # h_t reveals which driver is driving (its speed and actions so far), so V_b(h, z) predicts a
    # reckless driver's lower return and its actions' advantage comes out ≈ 0
    value_input: str = "stoch"
    # the actor and π̂_b also read where the real state's car is on its route (ROUTE_COLUMNS of the
    # vector: lane offset, heading error, the route 5-30 m ahead, symlog), which a 64 px frame through
    # the latent blurs; not its speed, which the cloned actor reads as "stopped, so stay stopped".
    # Only for an actor that never acts on imagined states (AWR without imagined critics: vl-safe,
    # dreamer-offline, bc)
    ego_input: bool = False
    # the actor and π̂_b also read the car's own speed (SPEED_COLUMNS: speed, velocity along and
    # across the route), without which they cannot tell whether to brake for a bend ahead
    speed_input: bool = False
    # the actor and π̂_b also read the 8 nearest cars of the real state (CARS_COLUMNS: position,
    # velocity and heading relative to the ego), whose motion one frame does not show
    cars_input: bool = False
    # the actor and π̂_b also read when and how close each of those cars passes if both keep their
    # velocities (APPROACH_COLUMNS, derived from the cars' columns: envs.observation.with_approach)
    approach_input: bool = False
    # the actor and π̂_b also read, per car, its predicted closest approach along the lanes it may
    # follow if the ego goes on (CONFLICT_COLUMNS, recorded with `observation.conflict=true`): the
    # expert yields on these predictions, and from positions and velocities alone the clone yielded late
    conflict_input: bool = False
    # × on π̂_b's and the AWR actor's log-likelihood at the data's conflict states (the conflict
    # columns' smallest gap going on below the expert's yield gap, 1.5 m: ~10% of navigation's
    # states): the clone's errors at the junctions go both ways (going on where the expert yields,
    # holding or braking where it goes on or clears out), on states the plain average under-weights
    conflict_weight: float = 1.0
    # how those columns reach the actor, π̂_b and V_b: "symlog" (as stored: the route's lateral
    # places / 32 m, so the decimetres that keep a car on its lane are ~0.01) or "standard" (symlog,
    # then each column shifted and scaled by its mean and standard deviation over the training data)
    # or "route" (only the route's columns standardised, the cars' as stored)
    vector_scale: str = "symlog"
    # which action at each data state π̂_b and the AWR actor fit: the one "recorded" (the episode's
    # driver, noisy and reckless ones included), or the "expert"'s at that state (DART-style
    # relabelling: the clone learns the way back from states the expert itself never drives into).
    # The advantage weight stays the recorded transition's; needs `collect --expert-labels` data
    action_labels: str = "recorded"
    adv_norm: str = "separate"  # A_r and A_c each on its own scale ("separate") or the earlier "shared" scaling
    horizon: int = 5  # imagined steps under the actor; the actor and critics learn on those states too
    discount_horizon: float = 100.0  # γ = 1 - 1/discount_horizon
    # horizon of the data's cost returns behind A_c and V_b's cost (0: discount_horizon). A short
    # one counts the cost the action can still change, not a crash seconds later it did not cause
    cost_horizon: float = 0.0
    # False: the data's rewards without their collision term (−30·|v| on a crash), so that only the
    # cost prices a crash, as in safe RL's separate reward and cost (Safety-Gymnasium, SafeMetaDrive).
    # It shows what the cost side of w carries when the reward cannot. The world model's reward
    # head (imagined critics: extraction exact/both, Lagrangian, FOSP) keeps the recorded reward
    collision_reward: bool = True
    expectile: float = 0.7  # τ of V_r and V_c over the behaviour's actions (V_c upper: pessimistic)
    beta1: float = 6.0  # inverse temperature of the (normalised) reward advantage
    beta2: float = 6.0  # inverse temperature of the (normalised) cost advantage
    max_weight: float = 20.0
    adv_floor: float = 0.02  # floor of each advantage scale, in units of the dataset's return scale
    bc_steps: int = 1000  # updates that fit π̂_b (and the critics) before it is frozen and the actor starts as its copy
    branch_steps: int = 5  # imagined steps each candidate action is held for in Q's target (0.5 s at 10 Hz)
    branch_states: int = 128  # states per update whose candidate branches are imagined (the critic's targets)
    samples: int = 16  # continuous actions: candidate actions drawn from π̂_b per state
    unimix: float = 0.01  # uniform mixing of the discrete actor
    hidden: int = 256
    layers: int = 2
    actor_lr: float = 3e-4
    behaviour_lr: float = 1e-3
    critic_lr: float = 3e-4
    grad_clip: float = 100.0
    slow_critic: float = 0.02  # rate of the target V's EMA
    cost_limit: float = 0.1  # on the actor's discounted cost return (one-step look-ahead of Q_c)
    lagrange_mu: float = 1.0
    lagrange_mu_growth: float = 1e-3
    # imagined critics (imagination, branches, Q, V): "auto" trains them only where the method uses
    # them (extraction exact/both, the Lagrangian's cost estimate, FOSP's V_h); "always" also for
    # the default AWR actor, whose weight never reads them (diagnostics; the path before, ~10x slower)
    critics: str = "auto"
    # λ_u > 0: where the world model's ensemble disagrees more than on the data's own transitions
    # (excess e = max(u / u_data − 1, 0)), imagined rewards lose λ_u·e (in units of the reward
    # return scale) and p(s) shrinks by exp(−λ_u·e): the imagined critics cannot exploit the model's
    # errors (MOPO's penalty). Needs a world model trained with model.ensemble > 0
    uncertainty: float = 0.0
    flag_excess: float = 1.0  # an imagined transition counts as flagged where e > this (diagnostic)

    def __post_init__(self) -> None:
        if self.safety not in ("vlm", "reachability", "none", "constant"):
            raise ConfigError(f"policy.safety: expected vlm, reachability, none or constant, got {self.safety!r}")
        if not 0 <= self.p_constant <= 1:
            raise ConfigError(f"policy.p_constant: expected a probability in [0, 1], got {self.p_constant}")
        if self.extraction not in ("exact", "awr", "both"):
            raise ConfigError(f"policy.extraction: expected exact, awr or both, got {self.extraction!r}")
        if self.anchor not in ("behaviour", "self"):
            raise ConfigError(f"policy.anchor: expected behaviour or self, got {self.anchor!r}")
        if self.actor_input not in ("stoch", "feat") or self.value_input not in ("stoch", "feat"):
            raise ConfigError(f"policy.actor_input, policy.value_input: expected stoch or feat, got "
                              f"{self.actor_input!r}, {self.value_input!r}")
        if self.critics not in ("auto", "always"):
            raise ConfigError(f"policy.critics: expected auto or always, got {self.critics!r}")
        if self.action_labels not in ("recorded", "expert"):
            raise ConfigError(f"policy.action_labels: expected recorded or expert, got {self.action_labels!r}")
        if self.vector_scale not in ("symlog", "standard", "route"):
            raise ConfigError(f"policy.vector_scale: expected symlog, standard or route, got {self.vector_scale!r}")
        if self.safety_critics not in ("imagined", "data"):
            raise ConfigError(f"policy.safety_critics: expected imagined or data, got {self.safety_critics!r}")
        if self.adv_norm not in ("separate", "shared"):
            raise ConfigError(f"policy.adv_norm: expected separate or shared, got {self.adv_norm!r}")
        if not 0 < self.expectile < 1 or self.discount_horizon < 1 or not (self.cost_horizon == 0 or self.cost_horizon >= 1):
            raise ConfigError("policy: need 0 < expectile < 1, discount_horizon >= 1 and cost_horizon 0 or >= 1")
        if self.horizon < 0 or self.max_weight <= 1 or self.bc_steps < 0 or self.samples < 1 or self.branch_steps < 1 \
                or self.branch_states < 1:
            raise ConfigError("policy: need horizon >= 0, max_weight > 1, bc_steps >= 0, samples >= 1, branch_steps >= 1 "
                              "and branch_states >= 1")
        if self.uncertainty < 0 or self.flag_excess < 0:
            raise ConfigError(f"policy.uncertainty and policy.flag_excess: expected >= 0, got {self.uncertainty}, "
                              f"{self.flag_excess}")
        if self.beta1 < 0 or self.beta2 < 0 or self.adv_floor <= 0:
            raise ConfigError("policy: need beta1, beta2 >= 0 and adv_floor > 0")
        self._check_vector_inputs()

    def _check_vector_inputs(self) -> None:
        if self.conflict_weight <= 0 or (self.conflict_weight != 1 and not self.conflict_input):
            raise ConfigError(f"policy.conflict_weight: expected > 0, and 1 unless policy.conflict_input=true (it reads "
                              f"the conflict columns), got {self.conflict_weight} with conflict_input {self.conflict_input}")
        if self.approach_input and self.conflict_input:
            raise ConfigError("policy.approach_input and policy.conflict_input: expected one of them (both read the "
                              "columns after the vector's 70)")
        if self.safety_critics == "data" and self._imagines_anyway:
            raise ConfigError("policy.safety_critics=data: for the AWR actor without imagined critics (extraction awr, "
                              f"critics auto, uncertainty 0), got extraction {self.extraction}, critics {self.critics}, "
                              f"uncertainty {self.uncertainty}")
        if self.vector_columns and self.imagined_critics:
            raise ConfigError("policy.ego_input, policy.speed_input, policy.cars_input, policy.approach_input, "
                              "policy.conflict_input: the vector "
                              f"exists on the data's states only; method {self.method} (extraction {self.extraction}) "
                              "acts on imagined states, which have none"
                              + (" (policy.safety_critics=data takes its safety from the data's states)"
                                 if self._imagined_safety and not self._imagines_anyway else ""))

    @property
    def vector_columns(self) -> tuple[int, ...]:
        """The vector observation's columns the actor and π̂_b read beside the latent (`speed_input`,
        `ego_input`, `cars_input`; `approach_input`: columns of the vector extended by `with_approach`;
        `conflict_input`: columns recorded with `observation.conflict`)."""
        return ((SPEED_COLUMNS if self.speed_input else ()) + (ROUTE_COLUMNS if self.ego_input else ())
                + (CARS_COLUMNS if self.cars_input else ()) + (APPROACH_COLUMNS if self.approach_input else ())
                + (CONFLICT_COLUMNS if self.conflict_input else ()))

    @property
    def standardised_columns(self) -> tuple[bool, ...]:
        """Per vector column the actor reads: whether it is standardised (`vector_scale`)."""
        return tuple(self.vector_scale == "standard" or (self.vector_scale == "route" and c in ROUTE_COLUMNS)
                     for c in self.vector_columns)

    @property
    def gamma(self) -> float:
        return 1.0 - 1.0 / self.discount_horizon

    @property
    def cost_gamma(self) -> float:
        """γ of the data's Monte-Carlo cost returns (A_c of the AWR weight)."""
        return 1.0 - 1.0 / (self.cost_horizon or self.discount_horizon)

    @property
    def imagined_critics(self) -> bool:
        """Whether an update imagines and trains Q and V: only the actor's `exact` target, the
        Lagrangian's cost return and FOSP's p = 1 − V_h (`safety_critics=imagined`) read them."""
        return self._imagines_anyway or self._imagined_safety

    @property
    def _imagines_anyway(self) -> bool:
        """Imagined critics whatever the safety: the `exact` target, `critics=always`, the uncertainty penalty."""
        return self.critics == "always" or self.extraction != "awr" or self.uncertainty > 0

    @property
    def _imagined_safety(self) -> bool:
        """The Lagrangian's cost return or FOSP's V_h from the imagined critics."""
        return self.safety_critics == "imagined" and (self.lagrangian or self.safety == "reachability")

    @property
    def data_reachability(self) -> bool:
        """FOSP's V_h regressed on the data's states (`safety_critics=data`), not the imagined one."""
        return self.safety == "reachability" and self.safety_critics == "data"


METHODS: dict[str, dict] = {
    "vl-safe": dict(safety="vlm", lagrangian=False),
    "dreamer-offline": dict(safety="none", lagrangian=False),
    "lagrangian": dict(safety="none", lagrangian=True),
    "fosp": dict(safety="reachability", lagrangian=False),
    "bc": dict(safety="none", lagrangian=False, beta1=0.0, beta2=0.0),
}


def method_config(method: str, **fields) -> PolicyConfig:
    if method not in METHODS:
        raise ConfigError(f"unknown method {method!r}; valid methods: {', '.join(METHODS)}")
    return PolicyConfig(method=method, **{**METHODS[method], **fields})


def _one_rank(x: torch.Tensor) -> torch.Tensor:
    return x


class Actor(nn.Module):
    """π(a | feat): categorical over 15 actions (with unimix) or a Gaussian over [-1, 1]^2.

    `skip` drops the first features: with skip = deter the actor sees only the stochastic latent
    z_t (`PolicyConfig.actor_input=stoch`). The GRU state h_t carries the previous action, and
    an imitation-based actor that sees it learns to repeat it (the "copycat" failure of behaviour
    cloning with history): on four-lane's development seeds π̂_b on h_t, z_t crashed in 38% of
    episodes, on z_t alone in 12% (README)."""

    def __init__(self, feat: int, action_dim: int, discrete: bool, hidden: int, layers: int, unimix: float,
                 skip: int = 0, columns: tuple[int, ...] = (), standardised: tuple[bool, ...] = ()):
        """`columns`: the input ends with those columns of the (symlog) vector observation after the
        world model's features; `standardised` (one flag per column): those are first shifted and
        scaled by the buffers `column_loc`, `column_scale` (the training data's statistics,
        `set_column_stats`), the others read as stored."""
        super().__init__()
        self.discrete, self.action_dim, self.unimix, self.skip = discrete, action_dim, unimix, skip
        self.columns = tuple(columns)
        self.standardised = tuple(standardised) or (False,) * len(self.columns)
        self.standardise = any(self.standardised)
        if self.standardise:
            self.register_buffer("column_loc", torch.zeros(len(self.columns)))
            self.register_buffer("column_scale", torch.ones(len(self.columns)))
        self.net = mlp(feat + len(self.columns) - skip, hidden, action_dim if discrete else 2 * action_dim, layers)

    def set_column_stats(self, columns: torch.Tensor) -> None:
        """Mean and standard deviation (floored at 0.01) of the standardised symlog columns over the
        training data (location 0, scale 1 for the others)."""
        which = torch.tensor(self.standardised, device=self.column_loc.device)
        self.column_loc.copy_(torch.where(which, columns.mean(0), 0.0))
        self.column_scale.copy_(torch.where(which, columns.std(0).clamp(min=0.01), 1.0))

    def scaled_columns(self, columns: torch.Tensor) -> torch.Tensor:
        """The symlog columns as this actor reads them (standardised, clipped at 10 deviations, if asked)."""
        if not self.standardise:
            return columns
        return ((columns - self.column_loc) / self.column_scale).clamp(-10, 10)

    def dist(self, feat: torch.Tensor) -> torch.distributions.Distribution:
        x = feat[..., self.skip:] if self.skip else feat
        if self.standardise:
            k = len(self.columns)
            x = torch.cat([x[..., :-k], self.scaled_columns(x[..., -k:])], -1)
        out = self.net(x)
        if self.discrete:
            probs = (1 - self.unimix) * out.softmax(-1) + self.unimix / self.action_dim
            return torch.distributions.OneHotCategorical(probs=probs)
        mean, std = out.chunk(2, -1)
        return torch.distributions.Independent(torch.distributions.Normal(torch.tanh(mean), 0.1 + 0.9 * torch.sigmoid(std)), 1)

    def log_probs(self, feat: torch.Tensor) -> torch.Tensor:
        """Discrete: log π(a|s) of every action, (..., A)."""
        return self.dist(feat).probs.log()

    def sample(self, feat: torch.Tensor) -> torch.Tensor:
        a = self.dist(feat).sample()
        return a if self.discrete else a.clamp(-1, 1)

    def mode(self, feat: torch.Tensor) -> torch.Tensor:
        d = self.dist(feat)
        if self.discrete:
            return F.one_hot(d.probs.argmax(-1), self.action_dim).float()
        return d.mean


class ImaginationLearner(nn.Module):
    """Actor, behaviour head π̂_b, critics Q = (Q_r, Q_c, Q_h) and V = (V_r, V_c, V_h), slow V."""

    def __init__(self, cfg: PolicyConfig, feat: int, action_dim: int, discrete: bool, *, deter: int):
        """`feat` = deter + stoch features of the world model, `deter` the first part's size."""
        super().__init__()
        self.cfg = cfg
        h, n = cfg.hidden, cfg.layers
        skip = deter if cfg.actor_input == "stoch" else 0
        cols = cfg.vector_columns
        standardised = cfg.standardised_columns
        self.actor = Actor(feat, action_dim, discrete, h, n, cfg.unimix, skip, cols, standardised)
        self.behaviour = Actor(feat, action_dim, discrete, h, n, cfg.unimix, skip, cols, standardised)
        self.q = mlp(feat + action_dim, h, 3, n)
        self.v = mlp(feat, h, 3, n)
        self.slow_v = copy.deepcopy(self.v).requires_grad_(False)
        # V_b: the behaviour's value by regression on the data's real returns (the AWR baseline)
        self.value_skip = deter if cfg.value_input == "stoch" else 0
        # V_b also reads the vector columns the actor reads: a baseline blind to what the actor sees
        # (a gap in traffic) credits the state's luck to the action taken in it. On left-turn with
        # the cars in view, a V_b on z_t alone made VL-SAFE crash 0.10 more (docs/every-task-drives.md)
        self.v_mc = mlp(feat - self.value_skip + len(cols), h, 2, n)
        if cfg.data_reachability:  # FOSP's V_h on the data's states, on V_b's input (`safety_critics=data`)
            self.v_h = mlp(feat - self.value_skip + len(cols), h, 1, n)
        # fixed return scales of the dataset (reward, cost), set once by `set_scales` and saved
        self.register_buffer("scales", torch.ones(2))
        self.register_buffer("updates", torch.zeros((), dtype=torch.long))
        if cfg.uncertainty > 0:  # u_data: the ensemble's mean disagreement on the data's transitions
            self.register_buffer("u_data", torch.ones(()))
        floor = cfg.adv_floor
        self.norm_reward, self.norm_cost = ScaleNorm(floor), ScaleNorm(floor)
        self.awr_reward, self.awr_cost = ScaleNorm(floor), ScaleNorm(floor)
        self.legacy_reward, self.legacy_cost = PercentileNorm(), PercentileNorm()
        self.legacy_awr_reward, self.legacy_awr_cost = PercentileNorm(), PercentileNorm()
        self.lagrange = AugmentedLagrangian(cfg.cost_limit, mu=cfg.lagrange_mu, mu_growth=cfg.lagrange_mu_growth)
        # `updates` (a buffer, saved) mirrored as a Python int: reading the buffer every update
        # would be a host sync on a GPU; a loaded state dict resets the mirror
        self._count: int | None = None
        self.register_load_state_dict_post_hook(lambda module, keys: setattr(module, "_count", None))
        # under torchrun (`distribute`): the mean over the ranks of the batch statistics that move
        # the learner's own state (advantage scales, λ), so that every replica holds the same one
        self.ranks_mean: Callable[[torch.Tensor], torch.Tensor] = _one_rank
        self.shards = 1

    def distribute(self, ranks_mean: Callable[[torch.Tensor], torch.Tensor], world: int) -> None:
        """Make this replica one of `world` data-parallel ones: each holds 1/world of the batch
        (and of the critic's branch states), and the batch statistics are means over the ranks."""
        if self.cfg.adv_norm == "shared":
            raise ConfigError("policy.adv_norm=shared (percentiles of one batch) runs in one process, not under torchrun")
        self.ranks_mean, self.shards = ranks_mean, world

    @property
    def count(self) -> int:
        if self._count is None:
            self._count = int(self.updates)
        return self._count

    @property
    def discrete(self) -> bool:
        return self.actor.discrete

    def critic_parameters(self) -> list[nn.Parameter]:
        reach = list(self.v_h.parameters()) if self.cfg.data_reachability else []
        return list(self.q.parameters()) + list(self.v.parameters()) + list(self.v_mc.parameters()) + reach

    @property
    def value_columns(self) -> tuple[int, ...]:
        """The vector columns V_b reads: the actor's."""
        return self.actor.columns

    def _value_input(self, feat: torch.Tensor, columns: torch.Tensor | None) -> torch.Tensor:
        """What the data-state values read: the latent `value_input` names, and the actor's columns."""
        x = feat[..., self.value_skip:] if self.value_skip else feat
        return x if columns is None else torch.cat([x, self.actor.scaled_columns(columns)], -1)

    def baseline(self, feat: torch.Tensor, columns: torch.Tensor | None = None) -> torch.Tensor:
        """V_b(s) = (reward, cost) returns on the fixed scales, on the input `value_input` names
        and `columns`, the symlog vector's `value_columns` (None when the actor reads no vector)."""
        return self.v_mc(self._value_input(feat, columns))

    def data_reach(self, feat: torch.Tensor, columns: torch.Tensor | None = None) -> torch.Tensor:
        """V_h(s) regressed on the data's reachability returns (`safety_critics=data`), unclipped."""
        return self.v_h(self._value_input(feat, columns))[..., 0]

    def set_scales(self, reward: float, cost: float) -> None:
        self.scales.copy_(torch.tensor([reward, cost], dtype=self.scales.dtype))

    def make_optimizer(self) -> torch.optim.Optimizer:
        critic = self.critic_parameters()
        return torch.optim.AdamW([{"params": list(self.actor.parameters()), "lr": self.cfg.actor_lr},
                                  {"params": list(self.behaviour.parameters()), "lr": self.cfg.behaviour_lr},
                                  {"params": critic, "lr": self.cfg.critic_lr}], eps=1e-5)

    # -- candidate actions and their prior ----------------------------------------------------------
    def candidates(self, feat: torch.Tensor, policy: Actor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, K, A) candidate actions at each state and their log prior (N, K) under `policy`:
        all 15 discrete actions with log π(a|s), or K samples from π with the uniform 1/K."""
        N, A = feat.shape[0], self.actor.action_dim
        if self.discrete:
            eye = torch.eye(A, device=feat.device).expand(N, A, A)
            return eye, policy.log_probs(feat)
        acts = policy.dist(feat).sample((self.cfg.samples,)).clamp(-1, 1).transpose(0, 1)
        return acts, torch.full(acts.shape[:2], -math.log(self.cfg.samples), device=feat.device)

    def q_values(self, feat: torch.Tensor, acts: torch.Tensor) -> torch.Tensor:
        """Q(s, a_k) for every candidate: (N, K, 3) = (Q_r, Q_c, Q_h)."""
        # Q's first layer is linear in [feat, a]: W·[f; a] = W_f·f + W_a·a, so the feature part is
        # computed once per state instead of once per candidate (15x fewer rows in the widest matmul)
        first, K = self.q[0], acts.shape[1]
        if first.bias is not None:  # layers=0: one affine map, nothing to factor
            return self.q(torch.cat([feat[:, None].expand(-1, K, -1), acts], -1))
        F_ = feat.shape[-1]
        x = feat @ first.weight[:, :F_].T
        return self.q[1:](x[:, None] + acts @ first.weight[:, F_:].T)

    def excess(self, world_model: WorldModel, feat: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """e(s, a) = max(u / u_data − 1, 0): disagreement beyond what the data's own transitions show."""
        return (world_model.disagreement(feat, action) / self.u_data - 1).clamp(min=0)

    def state_excess(self, world_model: WorldModel, feat: torch.Tensor) -> torch.Tensor:
        """e(s) of a state: the excess of its next step under π̂_b's most likely action."""
        return self.excess(world_model, feat, self.behaviour.mode(feat))

    def p_safe(self, world_model: WorldModel, feat: torch.Tensor, columns: torch.Tensor | None = None) -> torch.Tensor:
        """p(s) of the method: the VLM safety head, feasibility 1 - V_h, a constant, or 1; with
        `uncertainty` λ_u > 0 shrunk by exp(−λ_u·e(s)) where the model is unsure what comes next.
        `columns`: the data states' vector columns, which the data's V_h reads (`safety_critics=data`)."""
        p = self._p_safe(world_model, feat, columns)
        if self.cfg.uncertainty > 0:
            p = p * torch.exp(-self.cfg.uncertainty * self.state_excess(world_model, feat))
        return p

    def _p_safe(self, world_model: WorldModel, feat: torch.Tensor, columns: torch.Tensor | None = None) -> torch.Tensor:
        if self.cfg.safety == "vlm":
            return world_model.p_safe(feat)
        if self.cfg.data_reachability:
            return (1 - self.data_reach(feat, columns)).clamp(0, 1)
        if self.cfg.safety == "reachability":
            return (1 - self.v(feat)[..., 2]).clamp(0, 1)
        p = self.cfg.p_constant if self.cfg.safety == "constant" else 1.0
        return torch.full(feat.shape[:-1], p, device=feat.device)

    # -- one update ---------------------------------------------------------------------------------
    def update(self, world_model: WorldModel, batch: dict[str, torch.Tensor], nxt: dict[str, torch.Tensor],
               optimizer: torch.optim.Optimizer, loss_fn=None) -> dict[str, torch.Tensor | float]:
        """`batch`: dataset states (deter, stoch) with `action`, `reward`, `cost`, `done`, `has_next`
        and the Monte-Carlo `return_reward`/`return_cost` (see `agent.start_states`); `nxt`: the
        posterior states that followed them (used where `has_next`).

        `loss_fn` computes the losses (`losses`, or a DDP wrapper of it under torchrun: its forward is
        where DDP learns which parameters this update used). Returns the metrics as 0-dim tensors
        (or floats), read out only when logged: the default (AWR) update has no host sync. The
        imagined critics' path syncs (λ and its metrics)."""
        cfg = self.cfg
        if self.count == cfg.bc_steps:  # the actor starts as the behaviour it re-weights
            self.actor.load_state_dict(self.behaviour.state_dict())
        loss, row, imagined = (loss_fn or self.losses)(world_model, batch, nxt)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        gn_actor = nn.utils.clip_grad_norm_(self.actor.parameters(), cfg.grad_clip)
        nn.utils.clip_grad_norm_(self.behaviour.parameters(), cfg.grad_clip)
        gn_critic = nn.utils.clip_grad_norm_(self.critic_parameters(), cfg.grad_clip)
        optimizer.step()
        if imagined:
            with torch.no_grad():
                for ps, po in zip(self.slow_v.parameters(), self.v.parameters()):
                    ps.lerp_(po, cfg.slow_critic)
        self.updates += 1
        self._count = self.count + 1
        return {**row, "grad/actor": gn_actor, "grad/critic": gn_critic}

    def losses(self, world_model: WorldModel, batch: dict[str, torch.Tensor],
               nxt: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict, bool]:
        """One update's summed loss (actor, π̂_b, critics), its metrics, and whether the imagined
        critics were trained (their slow V then moves)."""
        cfg = self.cfg
        actor_on = self.count >= cfg.bc_steps
        N = batch["deter"].shape[0]
        with torch.no_grad():
            data_feat = world_model.feat(batch)
        # what the actor and π̂_b read on the data's states: the latent, and columns of the real vector
        cols = cfg.vector_columns
        vector = batch["vector"][:, list(cols)] if cols else None
        data_in = data_feat if vector is None else torch.cat([data_feat, vector], -1)
        # -- the imagined critics, p(s), λ and the exact target π* (only where the method reads them) --
        if cfg.imagined_critics:
            imagined = self._imagined(world_model, batch, nxt, data_feat, actor_on)
            critic_loss, p, lam = imagined["loss"], imagined["p"][:N], imagined["lam"]
        else:
            imagined = None
            critic_loss, lam = torch.zeros((), device=data_feat.device), 0.0
            with torch.no_grad():
                p = self.p_safe(world_model, data_feat, vector)

        # -- behaviour head π̂_b: the data's actions, then frozen (a fixed anchor and fixed V targets) --
        label = batch["expert_action"] if cfg.action_labels == "expert" else batch["action"]
        if actor_on:
            bc_loss = torch.zeros((), device=data_feat.device)
        else:
            logp_b = self.behaviour.dist(data_in).log_prob(self._action_input(label))
            if cfg.conflict_weight == 1:
                bc_loss = -logp_b.mean()
            else:
                c = self._conflict_weight(batch)
                bc_loss = -(c * logp_b).sum() / c.sum()

        # -- the weight on the data's own actions, advantages from their real returns (AWR) --
        v_mc = self.baseline(data_feat, vector)
        returns = torch.stack([batch["return_reward"] / self.scales[0], batch["return_cost"] / self.scales[1]], -1)
        critic_loss = critic_loss + ((v_mc - returns) ** 2).sum(-1).mean()
        if cfg.data_reachability:
            critic_loss = critic_loss + ((self.data_reach(data_feat, vector) - batch["return_reach"]) ** 2).mean()
        data_lagrangian = cfg.lagrangian and cfg.safety_critics == "data"
        if data_lagrangian:
            lam = self.lagrange.lam
        with torch.no_grad():
            w_data = self._data_weight(returns - v_mc, returns, p, lam)
            if data_lagrangian:  # J_c of π* ∝ π_b·w: the weights' self-normalised mean of the data's G_c
                wv = w_data * batch["has_next"].float()
                cost_return = self.ranks_mean((wv * batch["return_cost"]).sum() / wv.sum().clamp(min=1e-8))
                if actor_on:  # λ moves once the actor learns, as on the imagined path
                    self.lagrange.update(float(cost_return))
        actor_loss = torch.zeros((), device=data_feat.device)
        if actor_on and cfg.extraction in ("exact", "both"):
            logp = self._log_probs(imagined["feat"], imagined["acts"])
            actor_loss = actor_loss - (imagined["log_target"].exp() * logp).sum(-1).mean()
        if actor_on and cfg.extraction in ("awr", "both"):
            logp_data = self.actor.dist(data_in).log_prob(self._action_input(label))
            valid = batch["has_next"].float()
            if cfg.conflict_weight != 1:
                valid = valid * self._conflict_weight(batch)
            actor_loss = actor_loss - (w_data * logp_data * valid).sum() / valid.sum().clamp(min=1.0)

        with torch.no_grad():
            ent = self.actor.dist(data_in).entropy().mean()
            row = {"actor/p_safe": p.mean(), "actor/data_weight_mean": w_data.mean(), "actor/data_weight_min": w_data.min(),
                   "actor/entropy": ent, "actor/loss": actor_loss.detach(), "behaviour/loss": bc_loss.detach(),
                   "lagrange/lambda": lam, "critic/loss": critic_loss.detach()}
            if data_lagrangian:
                row["lagrange/cost_return"] = cost_return
        row = {**row, **(imagined["metrics"] if imagined is not None else {})}
        return actor_loss + bc_loss + critic_loss, row, imagined is not None

    def _imagined(self, world_model: WorldModel, batch: dict[str, torch.Tensor], nxt: dict[str, torch.Tensor],
                  data_feat: torch.Tensor, actor_on: bool) -> dict:
        """Q and V from imagined branches on dataset and imagined states: their loss, p(s) and λ on
        all states, and π*'s exact target over every candidate action."""
        cfg, g, N = self.cfg, self.cfg.gamma, data_feat.shape[0]
        with torch.no_grad():
            states = {"deter": batch["deter"], "stoch": batch["stoch"]}
            if cfg.horizon and actor_on:
                traj = world_model.imagine(states, self.actor.sample, cfg.horizon)
                pick = torch.randint(0, cfg.horizon * N, (N,), device=data_feat.device)
                states = {k: torch.cat([states[k], traj[k][1:].flatten(0, 1)[pick]]) for k in states}
            feat = world_model.feat(states)
            M = feat.shape[0]
            # candidate actions under the behaviour; each held for `branch_steps` imagined steps
            acts, log_b = self.candidates(feat, self.behaviour)
            # the critic's targets on a random subset of the states (imagining branches is most of
            # an update's cost); the actor uses Q on all of them
            sel = torch.randperm(M, device=feat.device)[:max(1, cfg.branch_states // self.shards)]
            target, heads = self._branch_targets(world_model, {k: v[sel] for k, v in states.items()}, acts[sel])
            if cfg.in_sample:  # the data's own transitions, real reward and cost, pin V
                vn = self.slow_v(world_model.feat(nxt))
                alive = (~batch["done"]).float() * g
                data_target = torch.stack([batch["reward"] / self.scales[0] + alive * vn[:, 0],
                                           batch["cost"] / self.scales[1] + alive * vn[:, 1].clamp(min=0),
                                           reachability_target(batch["cost"].clamp(0, 1), vn[:, 2].clamp(0, 1),
                                                               (~batch["done"]).float(), g)], -1)
        # Q learns on the branch states only; on the others it is read (V's targets, the advantages)
        # without a graph: a backward pass over all 15 x M rows would be mostly zeros
        q_loss = ((self.q_values(feat[sel], acts[sel]) - target) ** 2).mean(1).sum(-1).mean()
        with torch.no_grad():
            qd = self.q_values(feat, acts)
        v = self.v(feat)
        prior = log_b.exp()
        v_loss = (prior * (expectile_loss(qd[..., 0], v[:, None, 0], cfg.expectile)
                           + expectile_loss(qd[..., 1], v[:, None, 1], cfg.expectile))).sum(1).mean()
        v_loss = v_loss + ((v[:, 2] - (prior * qd[..., 2]).sum(1)) ** 2).mean()
        if cfg.in_sample:
            v_loss = v_loss + ((v[:N] - data_target) ** 2)[batch["has_next"]].sum(-1).mean()
        with torch.no_grad():
            p = self.p_safe(world_model, feat)
            adv_r, adv_c, lam, cost_return = self._advantages(qd, prior, feat, actor_on)
            w = vlsafe_weight(p[:, None], adv_r, adv_c, cfg.beta1, cfg.beta2, cfg.max_weight)
            anchor = log_b if cfg.anchor == "behaviour" else self._self_prior(feat, log_b)
            log_target = extraction_target(anchor, w)
            kl_b = (log_target.exp() * (log_target - log_b)).sum(-1).mean() if self.discrete else torch.zeros(())
            metrics = {"imag/return": qd[:N, :, 0].mul(prior[:N]).sum(1).mean() * self.scales[0],
                       "imag/cost_return": cost_return, "imag/reward": heads["reward"].mean(),
                       "imag/cost": heads["cost"].mean(), "imag/p_safe": p.mean(), "imag/p_safe_min": p.min(),
                       "actor/weight_mean": w.mean(), "actor/weight_max": w.max(), "actor/adv_reward_std": adv_r.std(),
                       "actor/adv_cost_std": adv_c.std(), "actor/kl_target_behaviour": kl_b,
                       "critic/q_loss": q_loss.detach(), "critic/v_loss": v_loss.detach()}
            if cfg.uncertainty > 0:
                metrics.update({"imag/flagged": heads["flagged"].mean(), "imag/penalty": heads["penalty"].mean()})
        return {"loss": q_loss + v_loss, "p": p, "lam": lam, "feat": feat, "acts": acts, "log_target": log_target,
                "metrics": metrics}

    def _branch_targets(self, world_model: WorldModel, states: dict[str, torch.Tensor],
                        acts: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Targets (M, K, 3) of Q(s, a_k): hold a_k for `branch_steps` imagined steps, then V.

        At 10 Hz one step of braking barely changes the next state; holding the action for
        half a second lets the critic see what braking or accelerating does."""
        cfg, g = self.cfg, self.cfg.gamma
        M, K = acts.shape[:2]
        state = {k: v.repeat_interleave(K, 0) for k, v in states.items()}
        flat = acts.flatten(0, 1)
        ret_r = torch.zeros(M * K, device=flat.device)
        ret_c, reach = torch.zeros_like(ret_r), torch.zeros_like(ret_r)
        disc = torch.ones_like(ret_r)
        penalty, flagged = torch.zeros_like(ret_r), torch.zeros_like(ret_r)
        f = world_model.feat(state) if cfg.uncertainty > 0 else None  # the state each step leaves
        for _ in range(cfg.branch_steps):
            if cfg.uncertainty > 0:
                e = self.excess(world_model, f, flat)
                penalty = penalty + disc * cfg.uncertainty * e
                flagged = flagged + (e > cfg.flag_excess).float() / cfg.branch_steps
            state = world_model.img_step(state, flat)
            f = world_model.feat(state)
            heads = {"reward": world_model.twohot.mean(world_model.reward_head(f)), "cost": world_model.cost(f),
                     "cont": torch.sigmoid(world_model.cont_head(f)[..., 0])}
            ret_r = ret_r + disc * heads["reward"] / self.scales[0]
            ret_c = ret_c + disc * heads["cost"] / self.scales[1]
            reach = torch.maximum(reach, disc * heads["cost"].clamp(0, 1))
            disc = disc * g * heads["cont"]
        v_end = self.slow_v(f)  # f: the features of the last branch state (branch_steps >= 1)
        heads = {**heads, "penalty": penalty, "flagged": flagged}
        target = torch.stack([ret_r - penalty + disc * v_end[:, 0], ret_c + disc * v_end[:, 1].clamp(min=0),
                              torch.maximum(reach, disc * v_end[:, 2].clamp(0, 1))], -1)
        return target.view(M, K, 3), heads

    def _advantages(self, q: torch.Tensor, prior: torch.Tensor, feat: torch.Tensor,
                    actor_on: bool) -> tuple[torch.Tensor, torch.Tensor, float, torch.Tensor]:
        """A_r, A_c (N, K) on the weight's scale, the Lagrange multiplier and the actor's cost return.
        λ moves only once the actor learns: during the behaviour head's fit it would grow on the
        cost of an untrained actor."""
        cfg = self.cfg
        base = (prior[..., None] * q[..., :2]).sum(1, keepdim=True)  # E_{π̂_b} Q(s, ·): zero-mean A under π_b
        adv = q[..., :2] - base
        if self.discrete:
            pi = self.actor.dist(feat).probs
        else:
            pi = prior.exp() / prior.exp().sum(1, keepdim=True)
        cost_return = self.ranks_mean((pi * q[..., 1]).sum(1).mean() * self.scales[1])
        if cfg.adv_norm == "separate":
            rms = self.ranks_mean((prior[..., None] * adv ** 2).sum(1).mean(0)).sqrt()
            adv_r, adv_c = self._scaled(adv, rms, self.norm_reward, self.norm_cost)
        else:  # the earlier scaling: raw units, centred on the batch, divided by a return spread floored at 1
            raw = q[..., :2] * self.scales
            adv_r, adv_c = self._legacy_scaled(raw - (prior[..., None] * raw).sum(1, keepdim=True), raw,
                                               self.legacy_reward, self.legacy_cost)
        lam = 0.0
        if cfg.lagrangian:
            lam = self.lagrange.update(float(cost_return)) if actor_on else self.lagrange.lam
        adv_r = self._penalised(adv_r, adv_c, lam)
        return adv_r, adv_c, lam, cost_return

    def _conflict_weight(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """`policy.conflict_weight` at the batch's conflict states, 1 elsewhere."""
        ones = torch.ones_like(batch["has_next"], dtype=torch.float32)
        gap = batch["vector"][:, CONFLICT_COLUMNS[-2]]  # symlog of the smallest gap going on / CONFLICT_GAP_M
        conflict = gap < math.log1p(RouteFollowerConfig.yield_gap_m / CONFLICT_GAP_M)
        return torch.where(conflict, torch.full_like(ones, self.cfg.conflict_weight), ones)

    def _data_weight(self, adv: torch.Tensor, returns: torch.Tensor, p: torch.Tensor, lam: float) -> torch.Tensor:
        """w of the dataset's actions from A = G − V_b(s): real discounted returns G against the
        behaviour's value V_b, each of reward and cost on its own scale (or the earlier shared one)."""
        cfg = self.cfg
        if cfg.adv_norm == "separate":
            adv_r, adv_c = self._scaled(adv, self.ranks_mean((adv ** 2).mean(0)).sqrt(), self.awr_reward, self.awr_cost)
        else:
            adv_r, adv_c = self._legacy_scaled(adv * self.scales, returns * self.scales,
                                               self.legacy_awr_reward, self.legacy_awr_cost)
        adv_r = self._penalised(adv_r, adv_c, lam)
        return vlsafe_weight(p, adv_r, adv_c, cfg.beta1, cfg.beta2, cfg.max_weight)

    @staticmethod
    def _scaled(adv: torch.Tensor, rms: torch.Tensor, reward: ScaleNorm, cost: ScaleNorm) -> tuple[torch.Tensor, torch.Tensor]:
        """A_r and A_c (last dim 2) each divided by its own floored EMA scale."""
        return adv[..., 0] / reward.update(rms[0]), adv[..., 1] / cost.update(rms[1])

    @staticmethod
    def _legacy_scaled(adv: torch.Tensor, returns: torch.Tensor, reward: PercentileNorm,
                       cost: PercentileNorm) -> tuple[torch.Tensor, torch.Tensor]:
        """The earlier scaling (ablation): batch-centred, divided by a return spread floored at 1."""
        return ((adv[..., 0] - adv[..., 0].mean()) / reward.update(returns[..., 0]),
                (adv[..., 1] - adv[..., 1].mean()) / cost.update(returns[..., 1]))

    def _penalised(self, adv_r: torch.Tensor, adv_c: torch.Tensor, lam: float) -> torch.Tensor:
        """The Lagrangian's reward advantage (A_r − λ A_c)/(1 + λ); A_r itself when it is off."""
        return (adv_r - lam * adv_c) / (1 + lam) if self.cfg.lagrangian else adv_r

    def _self_prior(self, feat: torch.Tensor, log_b: torch.Tensor) -> torch.Tensor:
        """The ablation's anchor: the actor's own current log π(a|s) (π_{k+1} ∝ π_k·w)."""
        if self.discrete:
            return self.actor.log_probs(feat)
        return log_b  # continuous candidates are sampled from π̂_b either way

    def _log_probs(self, feat: torch.Tensor, acts: torch.Tensor) -> torch.Tensor:
        if self.discrete:
            return self.actor.log_probs(feat)
        return self.actor.dist(feat[:, None].expand(-1, acts.shape[1], -1)).log_prob(acts.clamp(-0.999, 0.999))

    def _action_input(self, action: torch.Tensor) -> torch.Tensor:
        """Dataset actions as the critic's and log_prob's input: one-hot (discrete) or the vector."""
        if self.discrete:
            return F.one_hot(action.long(), self.actor.action_dim).float()
        return action.float().clamp(-0.999, 0.999)

    def extra_state(self) -> dict:
        return {"norm_reward": self.norm_reward.state(), "norm_cost": self.norm_cost.state(),
                "awr_reward": self.awr_reward.state(), "awr_cost": self.awr_cost.state(),
                "legacy_reward": self.legacy_reward.state(), "legacy_cost": self.legacy_cost.state(),
                "legacy_awr_reward": self.legacy_awr_reward.state(), "legacy_awr_cost": self.legacy_awr_cost.state(),
                "lagrange": self.lagrange.state()}

    def load_extra_state(self, state: dict) -> None:
        self.norm_reward.load(state["norm_reward"])
        self.norm_cost.load(state["norm_cost"])
        self.awr_reward.load(state["awr_reward"])
        self.awr_cost.load(state["awr_cost"])
        self.legacy_reward.load(state["legacy_reward"])
        self.legacy_cost.load(state["legacy_cost"])
        self.legacy_awr_reward.load(state.get("legacy_awr_reward", {}))  # absent in checkpoints before the split
        self.legacy_awr_cost.load(state.get("legacy_awr_cost", {}))
        self.lagrange.load(state["lagrange"])

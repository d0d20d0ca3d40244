"""The safety-aware world model of VL-SAFE: a DreamerV3-style RSSM with reward, cost, safety and
continue heads, over 64x64 BEV frames (PAPER.md, "Safety-aware world model").

One file says the whole model, in the paper's and DreamerV3's names:

- `deter` (h_t): the GRU's deterministic state; `stoch` (z_t): `stoch` categorical variables
  of `classes` classes each, sampled straight-through with `unimix` uniform mixing;
- `prior` p(z_t | h_t) and `posterior` q(z_t | h_t, embed(x_t));
- KL balancing with free bits: dyn = KL(sg(post) || prior), rep = KL(post || sg(prior)),
  each clipped below at `free_nats`, weighted `kl_dyn` and `kl_rep`;
- heads on feat = [h, z]: decoder x̂, reward r̂ (two-hot over symlog bins), cost ĉ (Bernoulli: the
  probability of a cost at this step, positives weighted `cost_pos_weight`), safety p̂ (Bernoulli,
  supervised by the VLM's p(safe), the loss balanced between the safe and the unsafe mass), continue
  (Bernoulli). Re-weighted Bernoulli losses move the optimum's logit by a known constant (log of the
  weight ratio); `heads` subtracts it again, so ĉ and p̂ stay calibrated probabilities;
- the heads learn on posterior *and* prior states (`prior_heads`): imagination only ever queries
  prior states, whose stoch part is sampled without seeing the frame;
- optionally (`ego`) the posterior also reads the ego's own 14 floats (speed, velocity along and
  across the route, lane offset, heading error, the route 5-30 m ahead: what the car's odometry
  and navigation know, not the other cars) through an MLP beside the CNN, and a head reconstructs
  them: a 64 px frame shows neither speed nor the route beyond its edge;
- `observe` (posterior states of a real sequence) and `imagine` (prior rollouts under a policy),
  which is all the policy learner needs;
- optionally (`ensemble` = K > 0) K one-step predictors of z_{t+1} from (h_t, z_t, a_t), each on
  its own bootstrap of the batch; their `disagreement` marks transitions the data did not cover,
  where imagination should not be trusted (MOPO, Plan2Explore).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from vlsafe.envs.observation import EGO_SIZE
from vlsafe.training.blocks import mlp

__all__ = ["WorldModelConfig", "PRESETS", "WorldModel", "symlog", "symexp", "TwoHot"]


@dataclass(frozen=True)
class WorldModelConfig:
    """Sizes and loss weights; `preset` names a row of PRESETS (xs for tests/CPU, s and m for runs)."""

    preset: str = "xs"
    image_size: int = 64
    action_dim: int = 15  # one-hot discrete actions, or 2 continuous
    deter: int = 128
    stoch: int = 16
    classes: int = 16
    hidden: int = 128
    cnn_depth: int = 8
    mlp_layers: int = 1
    unimix: float = 0.01
    free_nats: float = 1.0
    kl_dyn: float = 0.5
    kl_rep: float = 0.1
    bins: int = 255
    image_scale: float = 1.0
    reward_scale: float = 1.0
    cost_scale: float = 1.0
    cost_head: str = "bernoulli"  # 'bernoulli' (P(cost) per step) or 'twohot' (regression, as before; ablation)
    cost_pos_weight: float = 10.0  # Bernoulli cost head: loss weight of steps with a cost
    cost_event_weight: float = 10.0  # two-hot cost head: loss weight of steps with a cost (rare events)
    safety_scale: float = 10.0
    safety_balance: bool = True  # weight the safe and the unsafe label mass equally (logit corrected back)
    prior_heads: bool = True  # reward/cost/safety/continue heads also learn on prior states
    cont_scale: float = 1.0
    ensemble: int = 0  # K members of the disagreement ensemble (0: none)
    ensemble_scale: float = 1.0
    ego: bool = False  # the posterior also reads the ego's kinematics and route (EGO_SIZE floats of the vector)
    ego_scale: float = 1.0

    def __post_init__(self) -> None:
        if self.image_size != 64:
            raise ValueError(f"image_size: the CNN is built for 64 px frames, got {self.image_size}")
        if self.cost_head not in ("bernoulli", "twohot"):
            raise ValueError(f"cost_head: expected bernoulli or twohot, got {self.cost_head!r}")
        if self.cost_pos_weight <= 0:
            raise ValueError(f"cost_pos_weight: expected > 0, got {self.cost_pos_weight}")
        if self.ensemble < 0 or self.ensemble == 1:
            raise ValueError(f"ensemble: expected 0 (none) or at least 2 members, got {self.ensemble}")

    @property
    def feat(self) -> int:
        return self.deter + self.stoch * self.classes


PRESETS: dict[str, dict] = {
    "xs": dict(deter=128, stoch=16, classes=16, hidden=128, cnn_depth=8, mlp_layers=1),
    "s": dict(deter=512, stoch=32, classes=16, hidden=256, cnn_depth=24, mlp_layers=2),
    "m": dict(deter=1024, stoch=32, classes=32, hidden=512, cnn_depth=48, mlp_layers=3),
}


def symlog(x: torch.Tensor) -> torch.Tensor:
    return torch.sign(x) * torch.log1p(x.abs())


def symexp(x: torch.Tensor) -> torch.Tensor:
    return torch.sign(x) * torch.expm1(x.abs())


class TwoHot(nn.Module):
    """Categorical over `bins` points evenly spaced in symlog space [-20, 20]; DreamerV3's reward head."""

    def __init__(self, bins: int):
        super().__init__()
        self.register_buffer("points", torch.linspace(-20.0, 20.0, bins))

    def mean(self, logits: torch.Tensor) -> torch.Tensor:
        return symexp((logits.softmax(-1) * self.points).sum(-1))

    def loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Cross-entropy against the two-hot encoding of symlog(target); shape of target."""
        y = symlog(target).clamp(self.points[0], self.points[-1])
        idx = torch.bucketize(y, self.points).clamp(1, len(self.points) - 1)
        lo, hi = self.points[idx - 1], self.points[idx]
        w_hi = ((y - lo) / (hi - lo)).clamp(0, 1)
        logp = logits.log_softmax(-1)
        return -((1 - w_hi) * logp.gather(-1, (idx - 1)[..., None])[..., 0] + w_hi * logp.gather(-1, idx[..., None])[..., 0])


class ChannelNorm(nn.Module):
    """LayerNorm over the channels of an image tensor (B, C, H, W), as DreamerV3's CNNs use."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm = nn.LayerNorm(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class Encoder(nn.Module):
    """64x64x3 -> embed: four stride-2 convolutions (64 -> 4 px), LayerNorm + SiLU."""

    def __init__(self, depth: int):
        super().__init__()
        chans = [3, depth, 2 * depth, 4 * depth, 8 * depth]
        mods: list[nn.Module] = []
        for a, b in zip(chans[:-1], chans[1:]):
            mods += [nn.Conv2d(a, b, 4, 2, 1, bias=False), ChannelNorm(b), nn.SiLU()]
        self.net = nn.Sequential(*mods)
        self.out = 8 * depth * 4 * 4

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """image (..., 64, 64, 3) uint8 -> (..., out)."""
        lead = image.shape[:-3]
        # (N, H, W, C) bytes viewed as NCHW are channels_last already: the convolutions keep that
        # layout, so ChannelNorm's permutes are free views
        x = image.reshape(-1, *image.shape[-3:]).permute(0, 3, 1, 2).float().div_(255.0).sub_(0.5)
        return self.net(x).reshape(*lead, self.out)


class Decoder(nn.Module):
    """feat -> 64x64x3 image in [-0.5, 0.5] (mean of a unit Gaussian, i.e. an MSE loss)."""

    def __init__(self, feat: int, depth: int):
        super().__init__()
        self.depth = depth
        self.inp = nn.Linear(feat, 8 * depth * 4 * 4)
        chans = [8 * depth, 4 * depth, 2 * depth, depth]
        mods: list[nn.Module] = []
        for a, b in zip(chans[:-1], chans[1:]):
            mods += [nn.ConvTranspose2d(a, b, 4, 2, 1, bias=False), ChannelNorm(b), nn.SiLU()]
        mods.append(nn.ConvTranspose2d(depth, 3, 4, 2, 1))
        self.net = nn.Sequential(*mods)

    def forward(self, feat: torch.Tensor) -> torch.Tensor:
        lead = feat.shape[:-1]
        x = self.inp(feat.reshape(-1, feat.shape[-1])).reshape(-1, 8 * self.depth, 4, 4)
        x = x.contiguous(memory_format=torch.channels_last)  # see Encoder.forward
        return self.net(x).permute(0, 2, 3, 1).reshape(*lead, 64, 64, 3)


State = dict[str, torch.Tensor]  # deter (B, deter), stoch (B, stoch, classes), logits (B, stoch, classes)


class WorldModel(nn.Module):
    def __init__(self, config: WorldModelConfig):
        super().__init__()
        c = self.config = config
        self.encoder = Encoder(c.cnn_depth)
        self.img_in = mlp(c.stoch * c.classes + c.action_dim, c.hidden, c.hidden, 1)
        self.gru = nn.GRUCell(c.hidden, c.deter)
        self.prior_net = mlp(c.deter, c.hidden, c.stoch * c.classes, 1)
        self.embed_size = self.encoder.out + (c.hidden if c.ego else 0)
        self.post_net = mlp(c.deter + self.embed_size, c.hidden, c.stoch * c.classes, 1)
        self.decoder = Decoder(c.feat, c.cnn_depth)
        if c.ego:
            self.ego_in = mlp(EGO_SIZE, c.hidden, c.hidden, 1)
            self.ego_out = mlp(c.feat, c.hidden, EGO_SIZE, c.mlp_layers)
        self.reward_head = mlp(c.feat, c.hidden, c.bins, c.mlp_layers)
        self.cost_head = mlp(c.feat, c.hidden, c.bins if c.cost_head == "twohot" else 1, c.mlp_layers)
        self.safety_head = mlp(c.feat, c.hidden, 1, c.mlp_layers)
        self.cont_head = mlp(c.feat, c.hidden, 1, c.mlp_layers)
        self.twohot = TwoHot(c.bins)
        for head in (self.reward_head, self.cost_head):  # start predicting 0, as DreamerV3 does
            nn.init.zeros_(head[-1].weight)
            nn.init.zeros_(head[-1].bias)
        if c.cost_head == "bernoulli":  # start near the base rate of a rare event, not at 0.5
            nn.init.constant_(self.cost_head[-1].bias, -4.0)
        if c.ensemble:
            self.ensemble = nn.ModuleList(mlp(c.feat + c.action_dim, c.hidden, c.stoch * c.classes, 1)
                                          for _ in range(c.ensemble))
        # EMA of the mean VLM label: the balanced safety loss shifts the logit by logit(mean), undone in p_safe
        self.register_buffer("safety_mean", torch.tensor(0.5))

    # -- the state-space model ----------------------------------------------------------------
    def embed(self, image: torch.Tensor, vector: torch.Tensor | None = None) -> torch.Tensor:
        """embed(x_t): the frame's CNN features, and with `ego` those of the vector's ego part."""
        out = self.encoder(image)
        if not self.config.ego:
            return out
        if vector is None:
            raise ValueError("this world model reads the ego vector (model.ego): pass the vector observation")
        return torch.cat([out, self.ego_in(symlog(vector[..., :EGO_SIZE].float()))], -1)

    def initial(self, batch: int, device=None) -> State:
        c = self.config
        z = torch.zeros(batch, c.stoch, c.classes, device=device)
        return {"deter": torch.zeros(batch, c.deter, device=device), "stoch": z, "logits": z}

    def _dist(self, logits: torch.Tensor) -> torch.Tensor:
        """Logits (B, stoch*classes) -> unimix log-probabilities (B, stoch, classes)."""
        c = self.config
        probs = logits.reshape(*logits.shape[:-1], c.stoch, c.classes).softmax(-1)
        probs = (1 - c.unimix) * probs + c.unimix / c.classes
        return probs.log()

    def _sample(self, logp: torch.Tensor) -> torch.Tensor:
        """One-hot sample (Gumbel-max) with straight-through gradients."""
        probs = logp.exp()
        gumbel = -torch.log(-torch.log(torch.rand_like(probs).clamp(1e-20, 1.0)))
        onehot = F.one_hot((logp.detach() + gumbel).argmax(-1), self.config.classes).to(probs.dtype)
        return onehot + probs - probs.detach()

    def img_step(self, state: State, action: torch.Tensor) -> State:
        """Prior step: h_t = GRU(h_{t-1}, [z_{t-1}, a_{t-1}]), z_t ~ p(z | h_t)."""
        x = self.img_in(torch.cat([state["stoch"].flatten(1), action], -1))
        deter = self.gru(x, state["deter"])
        logp = self._dist(self.prior_net(deter))
        return {"deter": deter, "stoch": self._sample(logp), "logits": logp}

    def obs_step(self, state: State, action: torch.Tensor, embed: torch.Tensor, is_first: torch.Tensor) -> State:
        """Posterior step; `is_first` resets the state and the previous action (episode start).

        The prior at this step depends only on `deter`, so `observe` computes all priors of a
        sequence in one batched call after the loop instead of here.
        """
        return self._obs_step(state, *self._step_inputs(action, embed), is_first)

    def _step_inputs(self, action: torch.Tensor, embed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The parts of the recurrence that do not depend on the state: the action's share of
        `img_in`'s first layer and the frame's share of `post_net`'s (both layers are linear
        without bias, W·[x; y] = W_x·x + W_y·y). `observe` computes them for a whole sequence in
        two matmuls before the loop, instead of two per step."""
        c = self.config
        w_in, w_post = self.img_in[0].weight, self.post_net[0].weight
        return action @ w_in[:, c.stoch * c.classes:].T, embed @ w_post[:, c.deter:].T

    def _obs_step(self, state: State, action_in: torch.Tensor, embed_in: torch.Tensor, is_first: torch.Tensor) -> State:
        c = self.config
        keep = (~is_first).to(embed_in.dtype)[:, None]
        x = (state["stoch"].flatten(1) @ self.img_in[0].weight[:, :c.stoch * c.classes].T + action_in) * keep
        deter = self.gru(self.img_in[1:](x), state["deter"] * keep)
        logp = self._dist(self.post_net[1:](deter @ self.post_net[0].weight[:, :c.deter].T + embed_in))
        return {"deter": deter, "stoch": self._sample(logp), "logits": logp}

    def observe(self, image: torch.Tensor, action: torch.Tensor, is_first: torch.Tensor,
                state: State | None = None, vector: torch.Tensor | None = None) -> tuple[State, State]:
        """Posterior and prior states (B, T, ...) of a real sequence in Dreamer layout."""
        B, T = image.shape[:2]
        embed = self.embed(image, vector)
        assert action.shape[:2] == (B, T), f"action {tuple(action.shape)} vs image (B, T) = {(B, T)}"
        state = state or self.initial(B, image.device)
        action_in, embed_in = self._step_inputs(action, embed)
        posts = []
        for t in range(T):
            state = self._obs_step(state, action_in[:, t], embed_in[:, t], is_first[:, t])
            posts.append(state)
        post = {k: torch.stack([s[k] for s in posts], 1) for k in posts[0]}
        c = self.config
        prior_logp = self._dist(self.prior_net(post["deter"])).reshape(B, T, c.stoch, c.classes)
        return post, {"deter": post["deter"], "logits": prior_logp}

    def feat(self, state: State) -> torch.Tensor:
        return torch.cat([state["deter"], state["stoch"].flatten(-2)], -1)

    def imagine(self, start: State, policy: Callable[[torch.Tensor], torch.Tensor], horizon: int) -> dict[str, torch.Tensor]:
        """Roll the prior forward `horizon` steps from `start` (N, ...) under `policy(feat) -> action`.

        Returns feat, deter and stoch (H+1, N, ...) with the start first, action (H, N, A) and, per
        imagined step (H, N), reward, cost, p_safe and cont predicted for the state the action led to.
        """
        state = {k: v.detach() for k, v in start.items() if k in ("deter", "stoch")}
        states, feats, actions = [state], [self.feat(state)], []
        for _ in range(horizon):
            action = policy(feats[-1])
            state = self.img_step(state, action)
            states.append(state)
            feats.append(self.feat(state))
            actions.append(action)
        feat = torch.stack(feats)
        heads = self.heads(feat[1:])
        return {"feat": feat, "action": torch.stack(actions), "deter": torch.stack([s["deter"] for s in states]),
                "stoch": torch.stack([s["stoch"] for s in states]), **heads}

    def disagreement(self, feat: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """u(s, a) (...,): the ensemble's variance over its predicted distributions of z_{t+1},
        summed over classes and averaged over the stoch variables; 0 where every member agrees."""
        probs = self._ensemble_logp(feat, action).exp()
        return probs.var(0).sum(-1).mean(-1)

    def _ensemble_logp(self, feat: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        c = self.config
        x = torch.cat([feat, action], -1)
        logits = torch.stack([m(x) for m in self.ensemble])
        return logits.reshape(*logits.shape[:-1], c.stoch, c.classes).log_softmax(-1)

    def heads(self, feat: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"reward": self.twohot.mean(self.reward_head(feat)), "cost": self.cost(feat),
                "p_safe": self.p_safe(feat), "cont": torch.sigmoid(self.cont_head(feat)[..., 0])}

    def cost(self, feat: torch.Tensor) -> torch.Tensor:
        """ĉ: expected cost of arriving in this state (P(cost) for the Bernoulli head)."""
        out = self.cost_head(feat)
        if self.config.cost_head == "twohot":
            return self.twohot.mean(out).clamp(min=0)  # the two-hot mean can dip below 0; a cost cannot
        return torch.sigmoid(out[..., 0] - math.log(self.config.cost_pos_weight))

    def p_safe(self, feat: torch.Tensor) -> torch.Tensor:
        """p̂(safe), the balanced loss's logit shift undone: logit p = logit p_balanced + logit(mean label)."""
        logit = self.safety_head(feat)[..., 0]
        if self.config.safety_balance:
            m = self.safety_mean.clamp(1e-3, 1 - 1e-3)
            logit = logit + torch.log(m / (1 - m))
        return torch.sigmoid(logit)

    # -- the loss -------------------------------------------------------------------------------
    def kl(self, post: State, prior: State) -> tuple[torch.Tensor, torch.Tensor]:
        """(dyn, rep) KL per step (B, T), before free bits."""
        def kl(lp, lq):  # KL(p || q), summed over stoch variables
            return (lp.exp() * (lp - lq)).sum((-1, -2))

        return kl(post["logits"].detach(), prior["logits"]), kl(post["logits"], prior["logits"].detach())

    def loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor], State]:
        """Mean world-model loss over valid steps; batch keys as the SequenceSampler gives them."""
        c = self.config
        post, prior = self.observe(batch["bev"], batch["action"], batch["is_first"], vector=batch.get("vector"))
        feat = self.feat(post)
        mask = batch["valid"].float()
        n = mask.sum().clamp(min=1.0)
        target = batch["bev"].float().div_(255.0).sub_(0.5)
        image = F.mse_loss(self.decoder(feat), target, reduction="none").sum((-1, -2, -3))
        terms = {"image": image, **self._head_losses(feat, batch, mask)}
        if c.ego:
            ego = symlog(batch["vector"][..., :EGO_SIZE].float())
            terms["ego"] = F.mse_loss(self.ego_out(feat), ego, reduction="none").sum(-1)
        if c.prior_heads:  # the states imagination will query: deter with a stoch drawn from the prior
            prior_feat = torch.cat([post["deter"], self._sample(prior["logits"]).flatten(-2)], -1)
            for k, v in self._head_losses(prior_feat, batch, mask).items():
                terms[k] = 0.5 * (terms[k] + v)
        scales = {"image": c.image_scale, "ego": c.ego_scale, "reward": c.reward_scale, "cost": c.cost_scale,
                  "cont": c.cont_scale, "safety": c.safety_scale}
        dyn, rep = self.kl(post, prior)
        terms["dyn"] = dyn.clamp(min=c.free_nats)
        terms["rep"] = rep.clamp(min=c.free_nats)
        scales.update(dyn=c.kl_dyn, rep=c.kl_rep)
        means = {k: (v * mask).sum() / n for k, v in terms.items()}
        total = sum(scales[k] * means[k] for k in means)
        metrics = {f"wm/{k}_loss": v.detach() for k, v in means.items()}
        metrics["wm/kl"] = ((dyn * mask).sum() / n).detach()
        if c.ensemble:
            ens = self._ensemble_loss(feat, post, batch)
            total = total + c.ensemble_scale * ens
            metrics["wm/ensemble_loss"] = ens.detach()
        return total, metrics, post

    def _ensemble_loss(self, feat: torch.Tensor, post: State, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Each member predicts the posterior z_{t+1} (a fixed target) from (h_t, z_t, a_t), on its
        own bootstrap half of the sequences: members that agree on the data can disagree off it."""
        logp = self._ensemble_logp(feat[:, :-1].detach(), batch["action"][:, 1:])  # (K, B, T-1, stoch, classes)
        target = post["logits"][:, 1:].detach().exp()
        ce = -(target * logp).sum((-1, -2))  # (K, B, T-1)
        step = (batch["valid"][:, 1:] & ~batch["is_first"][:, 1:]).float()
        boot = (torch.rand(ce.shape[:2], device=ce.device) < 0.5).float()[..., None]  # (K, B, 1)
        w = boot * step
        return ((ce * w).sum((1, 2)) / w.sum((1, 2)).clamp(min=1.0)).mean()

    def _head_losses(self, feat: torch.Tensor, batch: dict[str, torch.Tensor], mask: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-step losses of the reward, cost, continue and (with labels) safety heads."""
        c = self.config
        out = {"reward": self.twohot.loss(self.reward_head(feat), batch["reward"])}
        if c.cost_head == "twohot":
            event = (batch["cost"] > 0).float()
            out["cost"] = self.twohot.loss(self.cost_head(feat), batch["cost"]) * (1.0 + (c.cost_event_weight - 1.0) * event)
        else:
            # the simulator's cost is 0 or 1 per step; the VLM's (cost_source=vlm) is 1 − p(safe), a soft target
            out["cost"] = F.binary_cross_entropy_with_logits(
                self.cost_head(feat)[..., 0], batch["cost"].float().clamp(0, 1), reduction="none",
                pos_weight=torch.tensor(c.cost_pos_weight, device=feat.device))
        out["cont"] = F.binary_cross_entropy_with_logits(self.cont_head(feat)[..., 0], 1.0 - batch["is_terminal"].float(),
                                                         reduction="none")
        if "p_safe" in batch:
            y = batch["p_safe"].float()
            logit = self.safety_head(feat)[..., 0]
            if c.safety_balance:
                # equal weight to the safe mass y and the unsafe mass 1 - y of the batch; the optimum's
                # logit moves by -logit(mean y), which p_safe() adds back from the running mean
                n = mask.sum().clamp(min=1.0)
                m = ((y * mask).sum() / n).clamp(1e-3, 1 - 1e-3).detach()
                if self.training:
                    self.safety_mean.lerp_(m, 0.01)
                out["safety"] = -(0.5 / m * y * F.logsigmoid(logit) + 0.5 / (1 - m) * (1 - y) * F.logsigmoid(-logit))
            else:
                out["safety"] = F.binary_cross_entropy_with_logits(logit, y, reduction="none")
        return out

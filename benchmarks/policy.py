"""Policy-learner speed: updates/s of `ImaginationLearner.update` per method, at its default settings.

Same world model (`xs`, random weights: the arithmetic of an update does not depend on what the
weights are), same 256 start states per update, one thread. Per method: updates/s with the
default `critics=auto` and with `critics=always` (the reference: every update imagines, rolls
out the 15 branches and trains Q and V, as all updates did before `auto`), their ratio against
the target >= 2x at the default method, and imagined states/s (start states rolled `horizon`
steps under the actor plus branch_states x candidates x branch_steps branch states).
"""

from __future__ import annotations

import argparse
import sys
import time

import torch
import torch.nn.functional as F

from vlsafe.policy.actor_critic import METHODS, ImaginationLearner, method_config
from vlsafe.worldmodel.rssm import PRESETS, WorldModel, WorldModelConfig

TARGET = 2.0


def fake_starts(model: WorldModel, N: int) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    c, g = model.config, torch.Generator().manual_seed(0)
    stoch = lambda: F.one_hot(torch.randint(0, c.classes, (N, c.stoch), generator=g), c.classes).float()  # noqa: E731
    batch = {"deter": torch.randn(N, c.deter, generator=g), "stoch": stoch(),
             "action": torch.randint(0, c.action_dim, (N,), generator=g), "reward": torch.randn(N, generator=g),
             "cost": (torch.rand(N, generator=g) < 0.01).float(), "done": torch.zeros(N, dtype=torch.bool),
             "has_next": torch.ones(N, dtype=torch.bool), "return_reward": 100 * torch.randn(N, generator=g),
             "return_cost": torch.rand(N, generator=g)}
    return batch, {"deter": torch.randn(N, c.deter, generator=g), "stoch": stoch()}


def rate(method: str, critics: str, model: WorldModel, starts: int, updates: int) -> tuple[float, int]:
    """(updates/s once the actor learns, imagined states per update)."""
    torch.manual_seed(0)
    cfg = method_config(method, critics=critics)
    learner = ImaginationLearner(cfg, model.config.feat, model.config.action_dim, discrete=True,
                                 deter=model.config.deter)
    learner.updates.fill_(cfg.bc_steps)  # time the actor's phase: the longer one, and the one with imagination
    opt = learner.make_optimizer()
    batch, nxt = fake_starts(model, starts)
    learner.update(model, batch, nxt, opt)
    t = time.perf_counter()
    for _ in range(updates):
        learner.update(model, batch, nxt, opt)
    dt = (time.perf_counter() - t) / updates
    imagined = 0
    if cfg.imagined_critics:
        imagined = starts * cfg.horizon + min(cfg.branch_states, 2 * starts) * model.config.action_dim * cfg.branch_steps
    return 1 / dt, imagined


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--starts", type=int, default=256)
    p.add_argument("--updates", type=int, default=10)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = WorldModel(WorldModelConfig(preset="xs", **PRESETS["xs"])).eval().requires_grad_(False)
    print(f"torch {torch.__version__}, 1 thread; world model xs, {args.starts} start states per update")
    for method in args.methods.split(","):
        fast, imag = rate(method, "auto", model, args.starts, args.updates)
        ref, imag_ref = rate(method, "always", model, args.starts, args.updates)
        target = f" (target >= {TARGET}x)" if method == "vl-safe" else ""
        print(f"{method:>15}: critics=auto {fast:7.1f} updates/s, {fast * imag:8.0f} imagined states/s; "
              f"critics=always {ref:5.2f} updates/s, {ref * imag_ref:8.0f} imagined states/s; "
              f"ratio {fast / ref:5.2f}x{target}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Small network blocks shared by the world model's heads and the policy's actor and critics."""

from __future__ import annotations

from torch import nn

__all__ = ["mlp"]


def mlp(inp: int, hidden: int, out: int, layers: int) -> nn.Sequential:
    """DreamerV3's MLP: `layers` x (Linear without bias, LayerNorm, SiLU), then a Linear head."""
    mods: list[nn.Module] = []
    for i in range(layers):
        mods += [nn.Linear(inp if i == 0 else hidden, hidden, bias=False), nn.LayerNorm(hidden), nn.SiLU()]
    mods.append(nn.Linear(hidden if layers else inp, out))
    return nn.Sequential(*mods)

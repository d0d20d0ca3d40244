"""The safety-aware world model (RSSM + reward, cost, safety, continue heads) and its training."""

from vlsafe.worldmodel.rssm import PRESETS, WorldModel, WorldModelConfig

__all__ = ["WorldModel", "WorldModelConfig", "PRESETS"]

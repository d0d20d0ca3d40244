"""Where the learner's cost and the reward's crash price come from: the simulator, or the VLM alone.

Real driving logs carry no `info["cost"]` and almost no crashes. With `cost_source="vlm"` the
learner sees such a world: the cost of arriving at frame t+1 is 1 − p(safe) of that frame, as the
VLM labelled it, and the recorded reward loses its crash term (CarDreamer's −collision_scale·|v|
on collision steps), so nothing the simulator knows about crashes reaches the world model or the
actor. The VLM is then the only safety signal (issue 26's "no cost labels" regime; LORD and
DriveVLM-RL learn without a collision penalty). Evaluation still counts the simulator's crashes.
"""

from __future__ import annotations

import numpy as np

from vlsafe.config import ConfigError
from vlsafe.data.store import EpisodeStore

__all__ = ["COST_SOURCES", "check_cost_source", "collision_scale", "vlm_cost", "reward_without_crash"]

COST_SOURCES = ("simulator", "vlm")


def check_cost_source(name: str, field: str = "cost_source") -> str:
    if name not in COST_SOURCES:
        raise ConfigError(f"{field}: expected one of {', '.join(COST_SOURCES)}, got {name!r}")
    return name


def collision_scale(store: EpisodeStore, task: dict, why: str) -> float:
    """The reward's collision scale the data was recorded with, checked before any work (`why`:
    the setting that needs it): the crash term is taken back out from each step's `speed` and
    `collision` signals."""
    scale = (task.get("reward") or {}).get("collision_scale") if isinstance(task, dict) else None
    if not isinstance(scale, (int, float)) or scale <= 0:
        raise ConfigError(f"{store.manifest_path}: {why} needs task.reward.collision_scale > 0, got {scale!r}")
    entries = store.entries()
    if entries:
        with store.open(int(entries[0]["seed"])) as f:  # the signals' names only, not the frames
            signals = sorted(f["signals"]) if "signals" in f else []
        if "speed" not in signals or "collision" not in signals:
            raise ConfigError(f"{store.root}: {why} needs the episodes' speed and collision signals, found {signals}")
    return float(scale)


def vlm_cost(p_safe: np.ndarray) -> np.ndarray:
    """Per transition t -> t+1 (T,), from the frame-aligned labels (T+1,): 1 − p(safe) of the frame arrived at."""
    return (1.0 - np.asarray(p_safe, np.float32)[1:]).astype(np.float32)


def reward_without_crash(reward: np.ndarray, speed: np.ndarray, collision: np.ndarray, scale: float) -> np.ndarray:
    """The recorded reward (T,) with its collision term, −scale·|v| on collision steps, taken back out."""
    return (reward + scale * np.abs(speed) * (collision > 0)).astype(np.float32)

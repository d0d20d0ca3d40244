"""Drive episodes of a task with any policy, collecting the paper's metrics and optional frames."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from vlsafe.envs.driving_env import DrivingEnv
from vlsafe.evaluation.metrics import EpisodeMeter, EpisodeMetrics

__all__ = ["EpisodeRun", "run_episode"]


@dataclass
class EpisodeRun:
    seed: int
    metrics: EpisodeMetrics
    frames: list[np.ndarray] = field(default_factory=list)
    wall_s: float = 0.0


def run_episode(env: DrivingEnv, policy: Callable[[DrivingEnv], object], seed: int,
                record_every: int = 0) -> EpisodeRun:
    """One episode; `policy(env)` returns an action. record_every > 0 keeps every k-th rendered frame."""
    t0 = time.perf_counter()
    env.reset(seed=seed)
    meter = EpisodeMeter(env.dt)
    frames = []
    step = 0
    while True:
        if record_every and step % record_every == 0:
            frames.append(env.render() if env.render_mode else env.bev_frame())
        _, reward, terminated, truncated, info = env.step(policy(env))
        meter.add(reward, info)
        step += 1
        if terminated or truncated:
            break
    if record_every:
        frames.append(env.render() if env.render_mode else env.bev_frame())
    return EpisodeRun(seed=seed, metrics=meter.result(), frames=frames, wall_s=time.perf_counter() - t0)

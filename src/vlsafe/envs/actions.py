"""The paper's 15 discrete actions and the continuous mode, as physical (acceleration, steering).

Backends receive only (acceleration in m/s^2, normalised steering in [-1, 1], positive = left),
so an action means the same manoeuvre on every simulator.
"""

from __future__ import annotations

import itertools

import gymnasium as gym
import numpy as np

__all__ = ["ACCELERATIONS", "STEERINGS", "DISCRETE_ACTIONS", "MAX_ACCELERATION", "action_space", "to_controls",
           "nearest_discrete"]

ACCELERATIONS = (-2.0, 0.0, 2.0)  # m/s^2
STEERINGS = (-0.6, -0.2, 0.0, 0.2, 0.6)  # normalised, + = left
# Index i -> (acceleration, steering); acceleration-major order, so index 7 is (0, 0): keep going.
DISCRETE_ACTIONS = np.array(list(itertools.product(ACCELERATIONS, STEERINGS)), dtype=np.float64)
MAX_ACCELERATION = 3.0  # m/s^2 at continuous action[0] == +-1


def action_space(mode: str) -> gym.Space:
    if mode == "discrete":
        return gym.spaces.Discrete(len(DISCRETE_ACTIONS))
    if mode == "continuous":
        return gym.spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
    raise ValueError(f"action mode: expected 'discrete' or 'continuous', got {mode!r}")


def to_controls(action, mode: str) -> tuple[float, float]:
    """Discrete index or continuous [acc, steer] in [-1, 1]^2 -> (m/s^2, normalised steering)."""
    if mode == "discrete":
        i = int(action)
        if not 0 <= i < len(DISCRETE_ACTIONS):
            raise ValueError(f"action: expected an integer in [0, {len(DISCRETE_ACTIONS) - 1}], got {action!r}")
        acc, steer = DISCRETE_ACTIONS[i]
        return float(acc), float(steer)
    a = np.clip(np.asarray(action, dtype=np.float64).reshape(-1), -1.0, 1.0)
    if a.shape != (2,):
        raise ValueError(f"action: expected 2 values [acceleration, steering], got shape {a.shape}")
    return float(a[0] * MAX_ACCELERATION), float(a[1])


def nearest_discrete(acceleration: float, steering: float) -> int:
    """The discrete action closest to a continuous control (for scripted drivers)."""
    d = (DISCRETE_ACTIONS[:, 0] - acceleration) ** 2 / 4.0 + (DISCRETE_ACTIONS[:, 1] - steering) ** 2
    return int(np.argmin(d))

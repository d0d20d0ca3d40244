"""The paper's 15 discrete actions and the continuous mode, as physical (acceleration, steering).

Backends receive only (acceleration in m/s^2, normalised steering in [-1, 1], positive = left),
so an action means the same manoeuvre on every simulator. A steering s asks for the turn MetaDrive's
car makes with it: yaw rate / speed = tan(s * 40 deg) / 2.6 m (`steering_curvature`; measured on
MetaDrive 0.4.3 at 4 and 7 m/s, radius 17.8-18.0 m at s = 0.2 and 5.9-6.2 m at 0.6, where the
formula gives 18.5 and 5.8). A backend whose car is built otherwise converts (highway-env's 5 m
bicycle, backends/highway.py): before it did, the same 0.2 turned on a 32 m radius there, and a
MetaDrive-trained left turn (20 m) run on highway-env's 13 m junction left the road.
"""

from __future__ import annotations

import itertools

import gymnasium as gym
import numpy as np

__all__ = ["ACCELERATIONS", "STEERINGS", "DISCRETE_ACTIONS", "MAX_ACCELERATION", "action_space", "to_controls",
           "nearest_discrete", "steering_curvature", "steering_for_curvature", "STEER_FULL_LOCK_DEG", "STEER_WHEELBASE_M"]

ACCELERATIONS = (-2.0, 0.0, 2.0)  # m/s^2
STEERINGS = (-0.6, -0.2, 0.0, 0.2, 0.6)  # normalised, + = left
# Index i -> (acceleration, steering); acceleration-major order, so index 7 is (0, 0): keep going.
DISCRETE_ACTIONS = np.array(list(itertools.product(ACCELERATIONS, STEERINGS)), dtype=np.float64)
MAX_ACCELERATION = 3.0  # m/s^2 at continuous action[0] == +-1
# the car a normalised steering is defined on: MetaDrive's (front wheels at 40 deg at full lock, 2.6 m wheelbase)
STEER_FULL_LOCK_DEG = 40.0
STEER_WHEELBASE_M = 2.6


def steering_curvature(steering: float) -> float:
    """The path curvature (yaw rate / speed, 1/m, positive = left) a normalised steering asks for."""
    return float(np.tan(np.clip(steering, -1.0, 1.0) * np.deg2rad(STEER_FULL_LOCK_DEG)) / STEER_WHEELBASE_M)


def steering_for_curvature(curvature: float) -> float:
    """The normalised steering (clipped to [-1, 1]) that asks for a path curvature (1/m)."""
    return float(np.clip(np.arctan(curvature * STEER_WHEELBASE_M) / np.deg2rad(STEER_FULL_LOCK_DEG), -1.0, 1.0))


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

"""A scripted driver: pure-pursuit on the planned route plus IDM car following.

It reads only the backend-neutral Scene, so the same driver runs on every simulator. It is the
lane-keeping reference the tests use and the base of the behaviour mixtures.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vlsafe.envs.actions import nearest_discrete
from vlsafe.envs.scene import Scene

__all__ = ["RouteFollowerConfig", "RouteFollower", "pure_pursuit_steering", "idm_acceleration"]


@dataclass(frozen=True)
class RouteFollowerConfig:
    target_speed: float = 6.0  # m/s
    lookahead_min_m: float = 5.0
    lookahead_time_s: float = 0.8  # look-ahead grows with speed
    steer_gain: float = 2.0  # normalised steering per radian of pure-pursuit angle
    max_acceleration: float = 2.0  # m/s^2
    comfortable_deceleration: float = 3.0  # m/s^2
    time_headway_s: float = 1.5
    min_gap_m: float = 3.0
    follow_traffic: bool = True  # False: ignore other cars (used to make reckless drivers)


def pure_pursuit_steering(scene: Scene, route_s: float, cfg: RouteFollowerConfig) -> float:
    ego = scene.vehicles
    p, h, v = ego.position[0], float(ego.heading[0]), float(ego.speed[0])
    target = scene.route.point_at(route_s + max(cfg.lookahead_min_m, cfg.lookahead_time_s * v))
    rel = target - p
    alpha = np.arctan2(-np.sin(h) * rel[0] + np.cos(h) * rel[1], np.cos(h) * rel[0] + np.sin(h) * rel[1])
    return float(np.clip(cfg.steer_gain * alpha, -1.0, 1.0))


def idm_acceleration(scene: Scene, cfg: RouteFollowerConfig) -> float:
    """Intelligent Driver Model acceleration towards target_speed behind the car ahead in our corridor."""
    veh = scene.vehicles
    p, h = veh.position[0], float(veh.heading[0])
    fwd = np.array([np.cos(h), np.sin(h)])
    v = float(veh.velocity[0] @ fwd)
    acc = cfg.max_acceleration * (1.0 - (max(v, 0.0) / cfg.target_speed) ** 4)
    if cfg.follow_traffic and len(veh.position) > 1:
        rel = veh.position[1:] - p
        f = rel @ fwd
        lat = rel @ np.array([-fwd[1], fwd[0]])
        ahead = (f > 0) & (np.abs(lat) < 0.5 * (veh.width[0] + veh.width[1:]) + 0.8)
        if ahead.any():
            i = int(np.argmin(np.where(ahead, f, np.inf)))
            gap = max(f[i] - 0.5 * (veh.length[0] + veh.length[1 + i]), 0.1)
            dv = v - float(veh.velocity[1 + i] @ fwd)
            s_star = cfg.min_gap_m + max(0.0, v * cfg.time_headway_s
                                         + v * dv / (2 * np.sqrt(cfg.max_acceleration * cfg.comfortable_deceleration)))
            acc -= cfg.max_acceleration * (s_star / gap) ** 2
    return float(np.clip(acc, -2 * cfg.comfortable_deceleration, cfg.max_acceleration))


class RouteFollower:
    """`act(env)` -> an action for the env's action mode (discrete index or [acc/3, steer])."""

    def __init__(self, config: RouteFollowerConfig = RouteFollowerConfig()):
        self.config = config

    def controls(self, scene: Scene, route_s: float) -> tuple[float, float]:
        return idm_acceleration(scene, self.config), pure_pursuit_steering(scene, route_s, self.config)

    def act(self, env) -> int | np.ndarray:
        base = env.unwrapped
        acc, steer = self.controls(base.scene, base.route_s)
        if base.config.action == "discrete":
            return nearest_discrete(acc, steer)
        from vlsafe.envs.actions import MAX_ACCELERATION
        return np.array([acc / MAX_ACCELERATION, steer], dtype=np.float32)

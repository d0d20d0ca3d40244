"""A scripted driver: pure pursuit on the planned route, IDM car following, and yielding.

It reads only the backend-neutral Scene, so the same driver runs on every simulator. It is the
lane-keeping reference the tests use and the base of the behaviour mixtures.

Pure pursuit steers from the rear axle (not the car's centre): steering from the centre cuts
corners, and MetaDrive flags touching a solid line as leaving the road. Yielding predicts every
car at constant velocity for a few seconds against the ego driving on along its route; a
predicted conflict means brake (or, once in the crossing car's path, clear out). That is what
keeps the expert out of crossing traffic at junctions, where IDM's "car ahead in my lane" sees
nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vlsafe.envs.actions import MAX_ACCELERATION, nearest_discrete
from vlsafe.envs.scene import Scene

__all__ = ["RouteFollowerConfig", "RouteFollower", "pure_pursuit_steering", "idm_acceleration", "yielding_acceleration"]


@dataclass(frozen=True)
class RouteFollowerConfig:
    target_speed: float = 7.5  # m/s: enough to finish every route within 500 steps of 0.1 s
    lookahead_min_m: float = 3.0
    lookahead_time_s: float = 0.4  # look-ahead grows with speed
    rear_axle_frac: float = 0.28  # rear axle position behind the centre, as a fraction of car length
    max_acceleration: float = 2.0  # m/s^2
    comfortable_deceleration: float = 3.0  # m/s^2
    time_headway_s: float = 1.5
    min_gap_m: float = 3.0
    follow_traffic: bool = True  # False: ignore other cars (used to make reckless drivers)
    yield_horizon_s: float = 3.0  # 0 disables yielding
    yield_radius_m: float = 3.5  # predicted centre distance that counts as a conflict


def pure_pursuit_steering(scene: Scene, route_s: float, cfg: RouteFollowerConfig, offset: float = 0.0) -> float:
    """Normalised steering towards the route point one look-ahead ahead, shifted `offset` m to its left."""
    ego = scene.vehicles
    h, v = float(ego.heading[0]), float(ego.speed[0])
    fwd = np.array([np.cos(h), np.sin(h)])
    rear = ego.position[0] - cfg.rear_axle_frac * float(ego.length[0]) * fwd
    wheelbase = 2 * cfg.rear_axle_frac * float(ego.length[0])
    s = route_s + cfg.lookahead_min_m + cfg.lookahead_time_s * v
    a, b = scene.route.point_at(s), scene.route.point_at(s + 1.0)
    t = (b - a) / max(float(np.linalg.norm(b - a)), 1e-9)
    rel = a + offset * np.array([-t[1], t[0]]) - rear
    dist = max(float(np.linalg.norm(rel)), 1e-3)
    alpha = np.arctan2(-fwd[1] * rel[0] + fwd[0] * rel[1], fwd @ rel)
    wheel_angle = np.arctan2(2 * wheelbase * np.sin(alpha), dist)
    return float(np.clip(wheel_angle / np.deg2rad(40.0), -1.0, 1.0))  # both backends: ~40-45 deg at full lock


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


def _clearance(scene: Scene, route_s: float, cfg: RouteFollowerConfig, acc: float) -> float:
    """Smallest predicted distance to another car if the ego holds acceleration `acc` along its route.

    Others move at constant velocity; cars behind the ego going its way are ignored (they must
    yield to us), so the expert does not freeze with a follower on its bumper.
    """
    veh = scene.vehicles
    t = np.arange(0.25, cfg.yield_horizon_s + 1e-9, 0.25)
    v0 = float(veh.speed[0])
    v = np.clip(v0 + acc * t, 0.0, max(cfg.target_speed, v0))
    s = route_s + np.concatenate([[0.0], np.cumsum(0.5 * (v[1:] + v[:-1]) * 0.25)]) + v0 * 0.25
    ego_path = scene.route.point_at(s)  # (T, 2)
    others = veh.position[1:, None, :] + veh.velocity[1:, None, :] * t[None, :, None]  # (N, T, 2)
    h = float(veh.heading[0])
    fwd = np.array([np.cos(h), np.sin(h)])
    behind = (veh.position[1:] - veh.position[0]) @ fwd < 0
    same_way = veh.velocity[1:] @ fwd > 0.5 * np.linalg.norm(veh.velocity[1:], axis=1)
    relevant = ~(behind & same_way)
    if not relevant.any():
        return np.inf
    return float(np.linalg.norm(others[relevant] - ego_path[None], axis=-1).min())


def yielding_acceleration(scene: Scene, route_s: float, cfg: RouteFollowerConfig, acc: float) -> float:
    """`acc` if it keeps clear of predicted traffic; else braking, else speeding out of the way.

    Braking alone is wrong once the ego is already in a crossing car's path (it would stop in
    the junction and be hit), so each option is checked and the clearest one taken.
    """
    if cfg.yield_horizon_s <= 0 or len(scene.vehicles.position) < 2:
        return acc
    options = [acc, min(acc, -cfg.comfortable_deceleration), cfg.max_acceleration]  # go on, brake, clear out
    clear = [_clearance(scene, route_s, cfg, a) for a in options]
    for a, c in zip(options, clear):
        if c >= cfg.yield_radius_m:
            return a
    return options[int(np.argmax(clear))]


class RouteFollower:
    """`act(env)` -> an action for the env's action mode (discrete index or [acc/3, steer])."""

    def __init__(self, config: RouteFollowerConfig | None = None):
        self.config = config or RouteFollowerConfig()

    def controls(self, scene: Scene, route_s: float, offset: float = 0.0) -> tuple[float, float]:
        acc = yielding_acceleration(scene, route_s, self.config, idm_acceleration(scene, self.config))
        return acc, pure_pursuit_steering(scene, route_s, self.config, offset)

    def act(self, env) -> int | np.ndarray:
        base = env.unwrapped
        return to_action(base.config.action, *self.controls(base.scene, base.route_s))


def to_action(mode: str, acceleration: float, steering: float):
    if mode == "discrete":
        return nearest_discrete(acceleration, steering)
    return np.array([acceleration / MAX_ACCELERATION, steering], dtype=np.float32)

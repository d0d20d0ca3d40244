"""A scripted driver: pure pursuit on the planned route, IDM car following, and yielding.

It reads only the backend-neutral Scene, so the same driver runs on every simulator. It is the
lane-keeping reference the tests use and the base of the behaviour mixtures.

Pure pursuit steers from the rear axle (not the car's centre): steering from the centre cuts
corners, and MetaDrive flags touching a solid line as leaving the road. Yielding predicts every
car for a few seconds, at constant velocity and along each lane it may follow (prediction.py),
against the ego driving on along its route; a predicted gap between the bodies under
`yield_gap_m` means brake (or, once in the crossing car's path, clear out). That is what keeps
the expert out of crossing traffic at junctions, where IDM's "car ahead in my lane" sees nothing.
Bends are taken at a bounded lateral acceleration: faster, the car slides out of its lane.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vlsafe.envs.actions import MAX_ACCELERATION, STEER_FULL_LOCK_DEG, nearest_discrete, steering_for_curvature
from vlsafe.envs.scene import RoadMap, Scene
from vlsafe.experts.prediction import MOVING, SETTING_OFF, STANDING, LaneGraph, predict_paths

__all__ = ["RouteFollowerConfig", "RouteFollower", "pure_pursuit_steering", "idm_acceleration",
           "yielding_acceleration", "predicted_gaps", "curve_speed", "route_curvature"]


@dataclass(frozen=True)
class RouteFollowerConfig:
    target_speed: float = 7.5  # m/s: enough to finish every route within 500 steps of 0.1 s
    lookahead_min_m: float = 3.0
    lookahead_time_s: float = 0.4  # look-ahead grows with speed
    rear_axle_frac: float = 0.28  # rear axle position behind the centre, as a fraction of car length
    full_lock_deg: float = STEER_FULL_LOCK_DEG  # front-wheel angle at steering 1 (MetaDrive's car)
    # True: ask for the turn by its curvature (actions.steering_for_curvature), the convention every
    # backend honours, not by a wheel angle of MetaDrive's car; the MetaDrive expert keeps the angle
    # (the same steering there, and its datasets unchanged)
    steer_by_curvature: bool = False
    max_acceleration: float = 2.0  # m/s^2
    comfortable_deceleration: float = 3.0  # m/s^2
    time_headway_s: float = 1.5
    min_gap_m: float = 3.0
    follow_traffic: bool = True  # False: ignore other cars (used to make reckless drivers)
    yield_horizon_s: float = 4.0  # 0 disables yielding
    yield_gap_m: float = 1.5  # predicted gap between the cars' bodies that counts as a conflict
    curve_lateral_acc: float = 1.2  # m/s^2 allowed in curves (0: no curve slow-down)
    lane_prediction: bool = True  # also predict other cars along the lanes they may follow (junctions)
    standing_gap_m: float = 0.0  # > 0: the gap to keep from a standing car (none closer, even to clear out)
    # > 0: a standing car with the right of way (Vehicles.priority) may set off at this rate (m/s^2) to
    # set_off_speed along its plan, so the ego keeps out of its way; 0: standing cars stay put
    set_off_acceleration: float = 0.0
    set_off_speed: float = 10.0


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
    if cfg.steer_by_curvature:  # the rear axle's arc through the point; the centre turns at yaw rate / speed = k cos(beta)
        k = 2.0 * np.sin(alpha) / dist
        return steering_for_curvature(k * np.cos(np.arctan(k * cfg.rear_axle_frac * float(ego.length[0]))))
    wheel_angle = np.arctan2(2 * wheelbase * np.sin(alpha), dist)
    return float(np.clip(wheel_angle / np.deg2rad(cfg.full_lock_deg), -1.0, 1.0))


def curve_speed(scene: Scene, route_s: float, cfg: RouteFollowerConfig) -> float:
    """The speed to drive now so that every curve ahead is taken at lateral acceleration
    `curve_lateral_acc` or less, braking for it at `comfortable_deceleration` / 2.

    At 7.5 m/s through a 15 m junction turn (3.8 m/s^2) the car slides outwards, and in the left
    lane that means touching the centre line, which MetaDrive counts as leaving the road.
    """
    if cfg.curve_lateral_acc <= 0:
        return cfg.target_speed
    x = np.arange(0.0, 40.0, 2.5)
    pts = scene.route.point_at(route_s + np.concatenate([x, [x[-1] + 2.5]]))
    d = np.diff(pts, axis=0)
    ok = np.linalg.norm(d, axis=1) > 1e-6
    if ok.sum() < 3:
        return cfg.target_speed
    heading = np.unwrap(np.arctan2(d[ok, 1], d[ok, 0]))
    kappa = np.abs(np.gradient(heading, 2.5))  # 1/m at each point ahead
    v_curve = np.sqrt(cfg.curve_lateral_acc / np.maximum(kappa, 1e-6))
    v_now = np.sqrt(v_curve ** 2 + cfg.comfortable_deceleration * x[ok])
    return float(min(cfg.target_speed, max(v_now.min(), 2.0)))


def route_curvature(scene: Scene, route_s: float, ahead_m: float = 10.0) -> float:
    """Mean signed curvature (1/m, + = left) of the route over the next `ahead_m` metres."""
    p = scene.route.point_at(route_s + np.array([0.0, 1.0, ahead_m - 1.0, ahead_m]))
    d0, d1 = p[1] - p[0], p[3] - p[2]
    turn = np.arctan2(d0[0] * d1[1] - d0[1] * d1[0], d0 @ d1)
    return float(turn) / (ahead_m - 1.0)


def idm_acceleration(scene: Scene, cfg: RouteFollowerConfig, target_speed: float | None = None) -> float:
    """Intelligent Driver Model acceleration towards target_speed behind the car ahead in our corridor."""
    veh = scene.vehicles
    p, h = veh.position[0], float(veh.heading[0])
    fwd = np.array([np.cos(h), np.sin(h)])
    v = float(veh.velocity[0] @ fwd)
    v0 = cfg.target_speed if target_speed is None else target_speed
    acc = cfg.max_acceleration * (1.0 - (max(v, 0.0) / v0) ** 4)
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


def _ego_path(scene: Scene, route_s: float, cfg: RouteFollowerConfig, acc: float, t: np.ndarray) -> np.ndarray:
    """Ego positions at times t if it holds acceleration `acc` along its route (never reversing)."""
    v0 = float(scene.vehicles.speed[0])
    v = np.clip(v0 + acc * t, 0.0, max(cfg.target_speed, v0))
    dt = np.diff(np.concatenate([[0.0], t]))
    prev = np.concatenate([[v0], v[:-1]])
    return scene.route.point_at(route_s + np.cumsum(0.5 * (v + prev) * dt))


def _relevant(scene: Scene) -> np.ndarray:
    """Indices of the cars to yield to: all but those behind the ego going its way (they must
    yield to us), so the expert does not freeze with a follower on its bumper."""
    veh = scene.vehicles
    h = float(veh.heading[0])
    fwd = np.array([np.cos(h), np.sin(h)])
    rel = veh.position[1:] - veh.position[0]
    behind = rel @ fwd < 0
    same_way = veh.velocity[1:] @ fwd > 0.5 * np.linalg.norm(veh.velocity[1:], axis=1)
    near = np.linalg.norm(rel, axis=1) < 80.0
    return 1 + np.flatnonzero(~(behind & same_way) & near)


def _headings(paths: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    """(H, T) direction of travel along each path; `fallback` (H,) where a path stands still."""
    d = np.gradient(paths, axis=1)
    moving = np.linalg.norm(d, axis=-1) > 1e-3
    return np.where(moving, np.arctan2(d[..., 1], d[..., 0]), fallback[:, None])


def _circles(pos: np.ndarray, heading: np.ndarray, length: np.ndarray, width: np.ndarray) -> np.ndarray:
    """Three circle centres (..., 3, 2) covering each car's box (radius width / 2)."""
    reach = np.maximum(length - width, 0.0) / 2
    fwd = np.stack([np.cos(heading), np.sin(heading)], -1) * reach[..., None]
    return pos[..., None, :] + np.array([-1.0, 0.0, 1.0])[:, None] * fwd[..., None, :]


def _clearance(ego: np.ndarray, ego_width: float, others: np.ndarray, other_width: np.ndarray) -> float:
    """Smallest predicted gap (m, body to body) between the ego's circles (T, 3, 2) on its path and
    each predicted path's circles (H, T, 3, 2), at the same instant. A centre distance ignores the
    cars' shapes: a car crossing at an angle reached the ego with its nose at 4.5 m centre to centre."""
    if len(others) == 0:
        return np.inf
    d = np.linalg.norm(others[:, :, :, None, :] - ego[None, :, None, :, :], axis=-1)  # (H, T, 3, 3)
    return float((d.min(axis=(1, 2, 3)) - 0.5 * (ego_width + other_width)).min())


def _traffic(scene: Scene, which: np.ndarray, graph: LaneGraph | None, t: np.ndarray,
             cfg: RouteFollowerConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Circles (H, T, 3, 2) of every predicted path of the cars `which` at times t, the car each
    path belongs to, and its kind (prediction.MOVING, STANDING, SETTING_OFF): at constant velocity,
    and given the lane graph or the cars' plans along every lane they may follow."""
    veh = scene.vehicles
    if graph is None and veh.plan is None:
        others, owner = veh.position[which, None, :] + veh.velocity[which, None, :] * t[None, :, None], np.asarray(which)
        kind = np.where(veh.speed[owner] < 0.5, STANDING, MOVING)
    else:
        set_off = (cfg.set_off_acceleration, cfg.set_off_speed) if cfg.set_off_acceleration > 0 else None
        others, owner, kind = predict_paths(graph, veh, t, which, set_off)
    heading = _headings(others, veh.heading[owner]) if len(owner) else np.zeros((0, len(t)))
    shape = others.shape[:2]
    return _circles(others, heading, np.broadcast_to(veh.length[owner][:, None], shape),
                    np.broadcast_to(veh.width[owner][:, None], shape)), owner, kind


def _ego_circles(scene: Scene, route_s: float, cfg: RouteFollowerConfig, acc: float, t: np.ndarray) -> np.ndarray:
    """Circles (T, 3, 2) of the ego holding acceleration `acc` along its route."""
    veh = scene.vehicles
    path = _ego_path(scene, route_s, cfg, acc, t)
    return _circles(path, _headings(path[None], veh.heading[:1])[0], np.full(len(t), veh.length[0]),
                    np.full(len(t), veh.width[0]))


def predicted_gaps(scene: Scene, route_s: float, cfg: RouteFollowerConfig, which: np.ndarray,
                   graph: LaneGraph | None) -> tuple[np.ndarray, np.ndarray, float]:
    """What the yielding check sees, per car: for each car of `which` (indices into the vehicles),
    the smallest predicted body gap (m) to the ego if the ego goes on along its route (accelerating
    to cruise), over every path the car may take, and when (s); then the smallest gap over those
    cars if the ego brakes instead. The vector's `observation.conflict` columns (a learner that
    should yield where the expert does needs where each car's lane goes, not only where it is)."""
    if len(which) == 0:
        return np.zeros(0), np.zeros(0), np.inf
    t = np.arange(0.1, cfg.yield_horizon_s + 1e-9, 0.1)
    veh = scene.vehicles
    circles, owner, _ = _traffic(scene, which, graph, t, cfg)

    def gaps(a: float) -> np.ndarray:  # (H, T) body-to-body gap of each predicted path to the ego's
        ego = _ego_circles(scene, route_s, cfg, a, t)
        d = np.linalg.norm(circles[:, :, :, None, :] - ego[None, :, None, :, :], axis=-1).min(axis=(2, 3))
        return d - 0.5 * (veh.width[0] + veh.width[owner])[:, None]

    go = gaps(cfg.max_acceleration)
    gap, when = np.empty(len(which)), np.empty(len(which))
    for k, i in enumerate(which):
        g = go[owner == i].min(axis=0)
        j = int(np.argmin(g))
        gap[k], when[k] = g[j], t[j]
    return gap, when, float(gaps(-cfg.comfortable_deceleration).min())


def yielding_acceleration(scene: Scene, route_s: float, cfg: RouteFollowerConfig, acc: float,
                          graph: LaneGraph | None = None) -> float:
    """`acc` if it keeps clear of predicted traffic; else braking, else speeding out of the way.

    Braking alone is wrong once the ego is already in a crossing car's path (it would stop in
    the junction and be hit), so each option is checked and the clearest one taken. Other cars
    are predicted at constant velocity and, given the lane graph, along every lane they may follow.
    """
    if cfg.yield_horizon_s <= 0 or len(scene.vehicles.position) < 2:
        return acc
    t = np.arange(0.1, cfg.yield_horizon_s + 1e-9, 0.1)
    veh = scene.vehicles
    circles, owner, kind = _traffic(scene, _relevant(scene), graph, t, cfg)  # once, for all three options
    options = [acc, min(acc, -cfg.comfortable_deceleration), cfg.max_acceleration]  # go on, brake, clear out
    egos = [_ego_circles(scene, route_s, cfg, a, t) for a in options]
    width = float(veh.width[0])
    # With standing_gap_m, a standing car will be where it is: pass it at that gap, never closer (not
    # even to clear out). One predicted to drive into the ego may brake for it, so against moving cars
    # the clearest option stays the fallback. Without it, every car needs the yield gap.
    standing_gap = cfg.standing_gap_m if cfg.standing_gap_m > 0 else cfg.yield_gap_m

    def clearances(k):
        return [_clearance(e, width, circles[kind == k], veh.width[owner][kind == k]) for e in egos]

    moving, standing, set_off = clearances(MOVING), clearances(STANDING), clearances(SETTING_OFF)
    # A standing car that may set off keeps the ego out of its way, not in it: once braking cannot
    # keep clear of it either, the ego is in its way already, and waiting there only locks the junction.
    outside = set_off[1] >= cfg.yield_gap_m
    for a, m, n, o in zip(options, moving, standing, set_off):
        if m >= cfg.yield_gap_m and n >= standing_gap and (o >= cfg.yield_gap_m or not outside):
            return a
    clear = [min(m, n) if cfg.standing_gap_m <= 0 or n >= cfg.standing_gap_m or k == 1 else -np.inf
             for k, (m, n) in enumerate(zip(moving, standing))]
    return options[int(np.argmax(clear))]


class RouteFollower:
    """`act(env)` -> an action for the env's action mode (discrete index or [acc/3, steer])."""

    def __init__(self, config: RouteFollowerConfig | None = None):
        self.config = config or RouteFollowerConfig()
        self._graph: tuple[RoadMap, LaneGraph] | None = None

    def lane_graph(self, road: RoadMap) -> LaneGraph | None:
        """The episode's lane graph (rebuilt when the road changes); None without lane prediction."""
        if not self.config.lane_prediction:
            return None
        if self._graph is None or self._graph[0] is not road:
            self._graph = (road, LaneGraph(road))
        return self._graph[1]

    def controls(self, scene: Scene, route_s: float, offset: float = 0.0) -> tuple[float, float]:
        acc = idm_acceleration(scene, self.config, curve_speed(scene, route_s, self.config))
        graph = self.lane_graph(scene.road)
        acc = yielding_acceleration(scene, route_s, self.config, acc, graph)
        return acc, pure_pursuit_steering(scene, route_s, self.config, offset)

    def act(self, env) -> int | np.ndarray:
        base = env.unwrapped
        return to_action(base.config.action, *self.controls(base.scene, base.route_s))


def to_action(mode: str, acceleration: float, steering: float):
    if mode == "discrete":
        return nearest_discrete(acceleration, steering)
    return np.array([acceleration / MAX_ACCELERATION, steering], dtype=np.float32)

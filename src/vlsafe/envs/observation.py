"""The vector observation for non-image baselines, computed from the Scene like the BEV.

Layout (70 floats): ego [speed, v_par, v_perp, lane_offset, sin(heading error), cos(heading
error)] / 10 for speeds; route look-ahead points at 5, 10, 20, 30 m in the ego frame / 32 m
(8); the 8 nearest other vehicles, each [present, forward, left, v_forward, v_left,
cos(dh), sin(dh)] with positions / 32 m and velocities / 10 m/s, nearest first, zero-padded (56).

With `observation.conflict`, 18 more floats (CONFLICT_COLUMNS, stored): per car of the 8, the
smallest predicted body gap to the ego if the ego goes on along its route, the car predicted along
every lane it may follow (experts.route_follower.predicted_gaps, the expert's own yielding check),
/ 16 m clipped to [0, 1], and when / 4 s; then the smallest gap over them going on, and braking.

`with_approach` appends what a learner would otherwise have to compute from those columns: per
car, when and how close it passes the ego if both keep their velocities (18 floats, derived, never
stored: datasets keep the 70).
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from vlsafe.envs.scene import Route, Vehicles

__all__ = ["VECTOR_SIZE", "APPROACH_COLUMNS", "CONFLICT_COLUMNS", "conflict_observation", "APPROACH_HORIZON_S", "with_approach",
           "EGO_SIZE", "SPEED_COLUMNS", "ROUTE_COLUMNS", "CARS_COLUMNS", "vector_space", "vector_observation",
           "LOOKAHEAD_M", "NEAREST_K"]

LOOKAHEAD_M = (5.0, 10.0, 20.0, 30.0)
NEAREST_K = 8
EGO_SIZE = 6 + 2 * len(LOOKAHEAD_M)  # the ego's kinematics and route: the vector without the other cars
SPEED_COLUMNS = (0, 1, 2)  # the ego's speed, and its velocity along and across the route
# the ego floats that place the car on its route, without its speed: lane offset, heading error, the route ahead
ROUTE_COLUMNS = tuple(range(3, EGO_SIZE))
VECTOR_SIZE = EGO_SIZE + 7 * NEAREST_K
CARS_COLUMNS = tuple(range(EGO_SIZE, VECTOR_SIZE))  # the nearest cars, relative to the ego
APPROACH_HORIZON_S = 6.0
# columns of the vector extended by `with_approach`: per car (nearest first) the time of closest
# approach / horizon and the distance then / 32 m; then the same two for the car that comes closest
APPROACH_COLUMNS = tuple(range(VECTOR_SIZE, VECTOR_SIZE + 2 * NEAREST_K + 2))
# columns of a vector recorded with `observation.conflict`: per car (nearest first) the predicted
# gap going on / CONFLICT_GAP_M and its time / the horizon; then the smallest gap going on, braking
CONFLICT_COLUMNS = tuple(range(VECTOR_SIZE, VECTOR_SIZE + 2 * NEAREST_K + 2))
CONFLICT_GAP_M = 16.0


def with_approach(vector: np.ndarray) -> np.ndarray:
    """The stored vector(s) (..., 70) with the 18 approach floats appended (..., 88).

    A car that keeps its velocity relative to the ego is nearest it at t* = −(r·Δv)/|Δv|²
    (clipped to [0, APPROACH_HORIZON_S]), at a distance d = |r + Δv t*|. A car the ego will meet
    in a junction 30 m ahead has a small d long before it is near; the expert yields on that
    (on lane-following predictions, experts/prediction.py), and a clone fed only r and Δv had to
    learn the product from a few hundred episodes. No car: t* and d read 1 (far, late). A vector
    of another width (a dataset recorded without the vector observation has 0) is returned as it is.
    """
    v = np.asarray(vector, np.float32)
    if v.shape[-1] != VECTOR_SIZE:
        return v
    cars = v[..., EGO_SIZE:VECTOR_SIZE].reshape(v.shape[:-1] + (NEAREST_K, 7))
    present = cars[..., 0] > 0.5
    r, dv = cars[..., 1:3] * 32.0, cars[..., 3:5] * 10.0
    t = np.clip(-(r * dv).sum(-1) / np.maximum((dv ** 2).sum(-1), 1e-6), 0.0, APPROACH_HORIZON_S)
    d = np.linalg.norm(r + dv * t[..., None], axis=-1)
    t_n = np.where(present, t / APPROACH_HORIZON_S, 1.0)
    d_n = np.where(present, np.minimum(d, 32.0) / 32.0, 1.0)
    k = np.argmin(d_n, axis=-1)[..., None]
    closest = np.concatenate([np.take_along_axis(t_n, k, -1), np.take_along_axis(d_n, k, -1)], -1)
    per_car = np.stack([t_n, d_n], -1).reshape(v.shape[:-1] + (2 * NEAREST_K,))
    return np.concatenate([v, per_car, closest], -1).astype(np.float32)


def vector_space(conflict: bool = False) -> gym.spaces.Box:
    size = VECTOR_SIZE + (len(CONFLICT_COLUMNS) if conflict else 0)
    return gym.spaces.Box(-np.inf, np.inf, shape=(size,), dtype=np.float32)


def _nearest(vehicles: Vehicles) -> np.ndarray:
    """Indices (into vehicles, ego 0) of the NEAREST_K other cars, nearest first: the vector's order."""
    others = vehicles.position[1:] - vehicles.position[0]
    return 1 + np.argsort((others ** 2).sum(1))[:NEAREST_K]


def conflict_observation(scene, route_s: float, graph) -> np.ndarray:
    """The 18 CONFLICT_COLUMNS floats of the scene (`graph`: the episode's experts.prediction.LaneGraph)."""
    from vlsafe.experts.route_follower import RouteFollowerConfig, predicted_gaps

    cfg = RouteFollowerConfig()
    which = _nearest(scene.vehicles)
    gap, when, brake = predicted_gaps(scene, route_s, cfg, which, graph)
    out = np.ones(len(CONFLICT_COLUMNS), np.float32)
    k = len(which)
    out[0:2 * k:2] = np.clip(gap / CONFLICT_GAP_M, 0.0, 1.0)
    out[1:2 * k:2] = when / cfg.yield_horizon_s
    if k:
        out[-2] = np.clip(gap.min() / CONFLICT_GAP_M, 0.0, 1.0)
        out[-1] = np.clip(brake / CONFLICT_GAP_M, 0.0, 1.0)
    return out


def vector_observation(vehicles: Vehicles, route: Route, route_s: float, lane_offset: float) -> np.ndarray:
    out = np.zeros(VECTOR_SIZE, np.float32)
    p, h = vehicles.position[0], float(vehicles.heading[0])
    fwd, left = np.array([np.cos(h), np.sin(h)]), np.array([-np.sin(h), np.cos(h)])
    v = vehicles.velocity[0]
    ahead = route.point_at(route_s + 1.0) - route.point_at(route_s)
    tangent = ahead / max(np.linalg.norm(ahead), 1e-9)
    err = np.arctan2(fwd[0] * tangent[1] - fwd[1] * tangent[0], fwd @ tangent)
    v_par = float(v @ tangent)
    v_perp = float(v @ np.array([-tangent[1], tangent[0]]))
    out[:6] = [np.linalg.norm(v) / 10, v_par / 10, v_perp / 10, np.clip(lane_offset, -10, 10), np.sin(err), np.cos(err)]
    rel = route.point_at(route_s + np.array(LOOKAHEAD_M)) - p
    out[6:6 + 2 * len(LOOKAHEAD_M)] = (np.stack([rel @ fwd, rel @ left], -1) / 32.0).ravel()
    if len(vehicles.position) > 1:
        order = _nearest(vehicles)
        r, dv = vehicles.position[order] - p, vehicles.velocity[order] - v
        dh = vehicles.heading[order] - h
        feats = np.stack([np.ones(len(order)), r @ fwd / 32, r @ left / 32, dv @ fwd / 10, dv @ left / 10,
                          np.cos(dh), np.sin(dh)], -1)
        base = 6 + 2 * len(LOOKAHEAD_M)
        out[base:base + feats.size] = feats.ravel()
    return out

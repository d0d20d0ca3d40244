"""The vector observation for non-image baselines, computed from the Scene like the BEV.

Layout (70 floats): ego [speed, v_par, v_perp, lane_offset, sin(heading error), cos(heading
error)] / 10 for speeds; route look-ahead points at 5, 10, 20, 30 m in the ego frame / 32 m
(8); the 8 nearest other vehicles, each [present, forward, left, v_forward, v_left,
cos(dh), sin(dh)] with positions / 32 m and velocities / 10 m/s, nearest first, zero-padded (56).
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from vlsafe.envs.scene import Route, Vehicles

__all__ = ["VECTOR_SIZE", "EGO_SIZE", "SPEED_COLUMNS", "ROUTE_COLUMNS", "CARS_COLUMNS", "vector_space", "vector_observation",
           "LOOKAHEAD_M", "NEAREST_K"]

LOOKAHEAD_M = (5.0, 10.0, 20.0, 30.0)
NEAREST_K = 8
EGO_SIZE = 6 + 2 * len(LOOKAHEAD_M)  # the ego's kinematics and route: the vector without the other cars
SPEED_COLUMNS = (0, 1, 2)  # the ego's speed, and its velocity along and across the route
# the ego floats that place the car on its route, without its speed: lane offset, heading error, the route ahead
ROUTE_COLUMNS = tuple(range(3, EGO_SIZE))
VECTOR_SIZE = EGO_SIZE + 7 * NEAREST_K
CARS_COLUMNS = tuple(range(EGO_SIZE, VECTOR_SIZE))  # the nearest cars, relative to the ego


def vector_space() -> gym.spaces.Box:
    return gym.spaces.Box(-np.inf, np.inf, shape=(VECTOR_SIZE,), dtype=np.float32)


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
    others = vehicles.position[1:] - p
    if len(others):
        order = np.argsort((others ** 2).sum(1))[:NEAREST_K]
        r, dv = others[order], vehicles.velocity[1:][order] - v
        dh = vehicles.heading[1:][order] - h
        feats = np.stack([np.ones(len(order)), r @ fwd / 32, r @ left / 32, dv @ fwd / 10, dv @ left / 10,
                          np.cos(dh), np.sin(dh)], -1)
        base = 6 + 2 * len(LOOKAHEAD_M)
        out[base:base + feats.size] = feats.ravel()
    return out

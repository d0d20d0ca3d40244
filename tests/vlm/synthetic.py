"""Scripted episodes on a straight road, drawn by vlsafe's own BEVRasterizer: a rear-end crash into a
stopped car, and calm driving. They top up the tiny highway dataset with the collisions a few
short highway episodes rarely contain, so drive-clip's test training sees every concept."""

import numpy as np

from tests.conftest import straight_road, vehicles
from vlsafe.data.episode import SIGNALS, Episode
from vlsafe.envs.bev import BEVConfig, BEVRasterizer
from vlsafe.envs.safety import LaneIndex, safety_signals
from vlsafe.envs.scene import Route

ROAD = straight_road()
ROUTE = Route(np.stack([np.linspace(0, 300, 151), np.full(151, -5.25)], 1))
LANES = LaneIndex(ROAD)


def frame(rows, size: int = 64) -> np.ndarray:
    return BEVRasterizer(BEVConfig(size=size)).draw(ROAD, ROUTE, vehicles(rows))


def scripted_episode(seed: int, crash: bool, size: int = 64, steps: int = 60) -> Episode:
    rng = np.random.default_rng(seed)
    v = rng.uniform(6, 10)
    x, y = 20.0, -5.25
    lead = x + rng.uniform(12, 25) if crash else None
    side = [(x + rng.uniform(-10, 30), -8.75, 0.0, v, 0.0)] if rng.random() < 0.5 else []
    bev, sig = [], {k: [] for k in SIGNALS}
    cost = []
    raster = BEVRasterizer(BEVConfig(size=size))
    for t in range(steps + 1):
        others = ([(lead, y + rng.uniform(-0.2, 0.2) * 0, 0.0, 0.0, 0.0)] if crash else []) + \
                 [(s[0] + v * 0.1 * t, s[1], 0, v, 0) for s in side]
        rows = [(x + v * 0.1 * t, y, 0.0, v, 0.0)] + others
        veh = vehicles(rows)
        bev.append(raster.draw(ROAD, ROUTE, veh))
        if t == 0:
            continue
        s = safety_signals(veh, LANES)
        hit = s.min_gap <= 0.0
        for k, val in (("speed", v), ("ttc", s.ttc), ("min_gap", s.min_gap), ("lane_offset", s.lane_offset),
                       ("collision", float(hit)), ("off_lane", 0.0), ("off_road", 0.0), ("arrived", 0.0),
                       ("distance", v * 0.1 * t), ("waypoints", 0.0), ("route_progress", t / 300)):
            sig[k].append(val)
        cost.append(float(hit))
        if hit:
            break
    T = len(cost)
    term = np.zeros(T, bool)
    term[-1] = bool(cost[-1])
    trunc = np.zeros(T, bool)
    trunc[-1] = not term[-1]
    return Episode(seed=seed, map_seed=0, behaviour="scripted-crash" if crash else "scripted-calm", dt=0.1,
                   bev=np.stack(bev).astype(np.uint8), vector=np.zeros((T + 1, 4), np.float32),
                   action=np.zeros(T, np.int64), reward=np.zeros(T, np.float32), cost=np.asarray(cost, np.float32),
                   terminated=term, truncated=trunc, signals={k: np.asarray(v, np.float32) for k, v in sig.items()})

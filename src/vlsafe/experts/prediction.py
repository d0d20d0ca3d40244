"""Where will the other cars be? Lane-following predictions on the road's lane graph.

Simulator traffic (MetaDrive's and highway-env's IDM cars) drives along lane centres, and at a
junction it turns along a connector lane. A constant-velocity prediction sends a turning car
straight on, so an expert that yields on it brakes *inside* the path the car really takes: that
was most of the scripted expert's collisions at junctions and roundabouts (left-turn, navigation).
Here every car is matched to the lanes it drives on and moved along each lane and each of its
successors at its current speed; the expert treats every branch as possible. Where the simulator
says which branch a car will take (Vehicles.plan, the turn its indicator would show: highway-env's
junction), the car is moved along that one instead.
"""

from __future__ import annotations

import numpy as np

from vlsafe.envs.scene import RoadMap, Vehicles

__all__ = ["LaneGraph", "predict_paths"]

_JOIN_M = 1.0  # lane end and next lane start closer than this are connected
_MATCH_COS = np.cos(np.radians(45.0))  # a car matches lanes heading within 45 degrees of it
_MAX_BRANCHES = 6  # predicted paths per car
MOVING, STANDING, SETTING_OFF = 0, 1, 2  # the kinds of predicted path
SET_OFF_BELOW = 1.0  # m/s: a car this slow may be waiting to go (a locked junction creeps at 0.1-0.6 m/s)


class LaneGraph:
    """The RoadMap's lane centres with arc lengths and successors (built once per episode)."""

    def __init__(self, road: RoadMap):
        self.centres = [lane.centre for lane in road.lanes]
        self.widths = np.array([lane.width for lane in road.lanes])
        self.arcs = [np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(c, axis=0), axis=1))])
                     for c in self.centres]
        pts, ids, tan = [], [], []
        for i, c in enumerate(self.centres):
            d = np.gradient(c, axis=0)
            pts.append(c)
            ids.append(np.full(len(c), i))
            tan.append(d / np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-9))
        self.points, self.lane_of, self.tangents = np.concatenate(pts), np.concatenate(ids), np.concatenate(tan)
        self.index_in_lane = np.concatenate([np.arange(len(c)) for c in self.centres])
        starts = np.array([c[0] for c in self.centres])
        start_dir = np.array([c[1] - c[0] for c in self.centres])
        start_dir /= np.maximum(np.linalg.norm(start_dir, axis=1, keepdims=True), 1e-9)
        self.successors: list[np.ndarray] = []
        for i, c in enumerate(self.centres):
            end_dir = (c[-1] - c[-2]) / max(float(np.linalg.norm(c[-1] - c[-2])), 1e-9)
            near = np.linalg.norm(starts - c[-1], axis=1) < _JOIN_M
            self.successors.append(np.flatnonzero(near & (start_dir @ end_dir > 0.5) & (np.arange(len(starts)) != i)))

    def match(self, position: np.ndarray, heading: float) -> list[tuple[int, float]]:
        """(lane, arc position) of every lane the car is on, heading its way; nearest first."""
        d = np.linalg.norm(self.points - position, axis=1)
        ok = (d < 0.5 * self.widths[self.lane_of] + 0.5) & (self.tangents @ [np.cos(heading), np.sin(heading)] > _MATCH_COS)
        if not ok.any():
            return []
        best: dict[int, tuple[float, float]] = {}
        for k in np.flatnonzero(ok):
            lane = int(self.lane_of[k])
            if lane not in best or d[k] < best[lane][0]:
                best[lane] = (float(d[k]), float(self.arcs[lane][self.index_in_lane[k]]))
        nearest = min(v[0] for v in best.values())
        return [(lane, s) for lane, (dist, s) in sorted(best.items(), key=lambda kv: kv[1][0]) if dist < nearest + 1.0]

    def branches(self, lane: int, s0: float, length: float) -> list[np.ndarray]:
        """Polylines from arc position s0 on `lane`, `length` m long along each chain of successors."""
        out: list[np.ndarray] = []
        stack = [(lane, s0, [], 0.0)]  # lane, start on it, pieces so far, their length
        while stack and len(out) < _MAX_BRANCHES:
            i, s, pieces, before = stack.pop()
            arc, c = self.arcs[i], self.centres[i]
            k = int(np.searchsorted(arc, s, side="right"))
            piece = np.concatenate([[_at(arc, c, s)], c[k:]])
            nxt = self.successors[i]
            if before + float(arc[-1] - s) >= length or len(nxt) == 0 or len(pieces) >= 4:
                out.append(np.concatenate([*pieces, piece]))
            else:
                walked = before + float(np.linalg.norm(np.diff(piece, axis=0), axis=1).sum())
                stack.extend((int(j), 0.0, [*pieces, piece], walked) for j in nxt)
        return out


def _at(arc: np.ndarray, pts: np.ndarray, s: float) -> np.ndarray:
    return np.array([np.interp(s, arc, pts[:, 0]), np.interp(s, arc, pts[:, 1])])


def _along(poly: np.ndarray, dist: np.ndarray) -> np.ndarray:
    """Points `dist` metres along a polyline; beyond its end it goes on straight."""
    seg = np.linalg.norm(np.diff(poly, axis=0), axis=1)
    arc = np.concatenate([[0.0], np.cumsum(seg)])
    out = np.stack([np.interp(dist, arc, poly[:, 0]), np.interp(dist, arc, poly[:, 1])], -1)
    over = dist > arc[-1]
    if over.any() and len(poly) >= 2:
        d = (poly[-1] - poly[-2]) / max(float(seg[-1]), 1e-9)
        out[over] = poly[-1] + (dist[over] - arc[-1])[:, None] * d
    return out


def predict_paths(graph: LaneGraph | None, vehicles: Vehicles, t: np.ndarray, which: np.ndarray,
                  set_off: tuple[float, float] | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Predicted positions (H, T, 2) at times t for the cars `which` (indices into vehicles), the
    car each of the H hypotheses belongs to, and its kind: MOVING, STANDING (it stays put) or
    SETTING_OFF. Every car gets its constant-velocity path plus, at its current speed, its planned
    path where the simulator tells it (Vehicles.plan), else one path per lane branch it may follow
    (given the lane graph). With `set_off` (acceleration m/s^2, top speed m/s) a car below SET_OFF_BELOW m/s that has
    a plan and the right of way over the ego (Vehicles.priority) is also predicted setting off along
    its plan: it waits for others, not for the ego, and goes when they are gone."""
    paths, owner, kind = [], [], []
    plan, rank = vehicles.plan, vehicles.priority
    for i in which:
        p, v = vehicles.position[i], vehicles.velocity[i]
        paths.append(p + v[None, :] * t[:, None])
        owner.append(i)
        speed = float(np.linalg.norm(v))
        kind.append(STANDING if speed < 0.5 else MOVING)
        planned = plan is not None and np.isfinite(plan[i, 0, 0])
        if (set_off is not None and planned and rank is not None and speed < SET_OFF_BELOW
                and rank[i] > rank[0]):
            acc, top = set_off
            reach = np.clip((top - speed) / acc, 0.0, None)  # s until top speed
            tt = np.minimum(t, reach)
            dist = speed * tt + 0.5 * acc * tt ** 2 + top * np.maximum(t - reach, 0.0)
            paths.append(_along(_from(p, plan[i]), dist))
            owner.append(i)
            kind.append(SETTING_OFF)
        if speed < 0.5:
            continue
        dist = speed * t
        if planned:
            paths.append(_along(_from(p, plan[i]), dist))
            owner.append(i)
            kind.append(MOVING)
            continue
        if graph is None:
            continue
        for lane, s in graph.match(p, float(vehicles.heading[i]))[:3]:
            for poly in graph.branches(lane, s, float(dist[-1])):
                paths.append(_along(_from(p, poly), dist))  # from the car's own position, then the lane
                owner.append(i)
                kind.append(MOVING)
    if not paths:
        return np.zeros((0, len(t), 2)), np.zeros(0, dtype=int), np.zeros(0, dtype=int)
    return np.stack(paths), np.array(owner), np.array(kind)


def _from(p: np.ndarray, poly: np.ndarray) -> np.ndarray:
    """The polyline started at the car's own position."""
    return np.concatenate([[p], poly]) if np.linalg.norm(poly[0] - p) > 1e-6 else poly

"""Ground-truth safety signals from a Scene: lane offset, time-to-collision, minimum gap.

Later stages measure how well the VLM's p(safe) tracks real danger; these are the "real
danger" side of that comparison, so they are computed from geometry alone, the same way on
every backend.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vlsafe.envs.scene import RoadMap, Vehicles

__all__ = ["LaneIndex", "SafetySignals", "safety_signals", "TTC_MAX", "GAP_MAX"]

TTC_MAX = 100.0  # s; reported when nothing ahead is closing in
GAP_MAX = 80.0  # m; reported when no other vehicle is listed


class LaneIndex:
    """Nearest-lane-centre queries on a RoadMap, with a coarse grid so a step looks at few segments."""

    def __init__(self, road: RoadMap, cell: float = 20.0):
        a, b, w = [], [], []
        for lane in road.lanes:
            a.append(lane.centre[:-1])
            b.append(lane.centre[1:])
            w.append(np.full(len(lane.centre) - 1, lane.width))
        self.a, self.b, self.width = np.concatenate(a), np.concatenate(b), np.concatenate(w)
        self.cell = cell
        lo = np.floor((np.minimum(self.a, self.b) - cell / 2) / cell).astype(int)
        hi = np.floor((np.maximum(self.a, self.b) + cell / 2) / cell).astype(int)
        grid: dict[tuple[int, int], list[int]] = {}
        for i in range(len(self.a)):
            for gx in range(lo[i, 0], hi[i, 0] + 1):
                for gy in range(lo[i, 1], hi[i, 1] + 1):
                    grid.setdefault((gx, gy), []).append(i)
        self.grid = {k: np.array(v) for k, v in grid.items()}

    def nearest(self, xy: np.ndarray, heading: float) -> tuple[float, float]:
        """(signed lateral offset from the nearest lane centre, that lane's width).

        Lanes pointing against `heading` (more than 90 degrees off) are ignored, so driving on the
        wrong side counts as off-lane. Returns (inf, 0) when no lane is near.
        """
        key = (int(np.floor(xy[0] / self.cell)), int(np.floor(xy[1] / self.cell)))
        idx = self.grid.get(key)
        if idx is None:
            return float("inf"), 0.0
        a, b = self.a[idx], self.b[idx]
        ab = b - a
        L2 = np.maximum((ab * ab).sum(1), 1e-12)
        same_way = ab @ np.array([np.cos(heading), np.sin(heading)]) > 0
        if not same_way.any():
            return float("inf"), 0.0
        t = np.clip(((xy - a) * ab).sum(1) / L2, 0.0, 1.0)
        rel = xy - (a + t[:, None] * ab)
        d2 = np.where(same_way, (rel * rel).sum(1), np.inf)
        i = int(np.argmin(d2))
        side = np.sign(ab[i, 0] * rel[i, 1] - ab[i, 1] * rel[i, 0]) or 1.0
        return float(side * np.sqrt(d2[i])), float(self.width[idx[i]])


@dataclass(frozen=True)
class SafetySignals:
    ttc: float  # s, time to collision with the vehicle ahead in the ego's corridor (TTC_MAX if none closing)
    min_gap: float  # m, smallest box-to-box distance to any vehicle (0 when touching)
    lane_offset: float  # m, signed offset from the nearest same-direction lane centre (+ = left)
    lane_width: float  # m, width of that lane (0 when off every lane)


def _box_gap(ego: np.ndarray, others: np.ndarray) -> np.ndarray:
    """Distance between convex quads (4,2) and (N,4,2); 0 where they overlap (separating axes)."""
    def seg_dist(p, a, b):  # p (N,P,2), a/b (N,E,2) -> (N,P,E)
        ab = (b - a)[:, None]
        ap = p[:, :, None] - a[:, None]
        t = np.clip((ap * ab).sum(-1) / np.maximum((ab * ab).sum(-1), 1e-12), 0, 1)
        return np.linalg.norm(ap - t[..., None] * ab, axis=-1)

    n = len(others)
    e = np.broadcast_to(ego, (n, 4, 2))
    d = np.minimum(seg_dist(e, others, np.roll(others, -1, 1)).min((1, 2)),
                   seg_dist(others, e, np.roll(e, -1, 1)).min((1, 2)))
    overlap = np.ones(n, bool)
    for quad in (e, others):
        for k in range(2):
            axis = quad[:, k + 1] - quad[:, k]
            axis = np.stack([-axis[:, 1], axis[:, 0]], -1)
            pa, pb = (e * axis[:, None]).sum(-1), (others * axis[:, None]).sum(-1)
            overlap &= (pa.max(1) >= pb.min(1)) & (pb.max(1) >= pa.min(1))
    return np.where(overlap, 0.0, d)


def safety_signals(vehicles: Vehicles, lanes: LaneIndex) -> SafetySignals:
    ego_xy, h = vehicles.position[0], float(vehicles.heading[0])
    offset, width = lanes.nearest(ego_xy, h)
    if len(vehicles.position) < 2:
        return SafetySignals(TTC_MAX, GAP_MAX, offset, width)
    corners = vehicles.corners()
    gaps = _box_gap(corners[0], corners[1:])
    fwd = np.array([np.cos(h), np.sin(h)])
    left = np.array([-fwd[1], fwd[0]])
    rel = vehicles.position[1:] - ego_xy
    f, lat = rel @ fwd, rel @ left
    ahead = (f > 0) & (np.abs(lat) < 0.5 * (vehicles.width[0] + vehicles.width[1:]) + 0.5)
    closing = (vehicles.velocity[0] - vehicles.velocity[1:]) @ fwd
    ttc = TTC_MAX
    if ahead.any():
        with np.errstate(divide="ignore"):
            t = np.where(ahead & (closing > 1e-3), gaps / np.maximum(closing, 1e-3), TTC_MAX)
        ttc = float(min(t.min(), TTC_MAX))
    return SafetySignals(ttc=ttc, min_gap=float(min(gaps.min(), GAP_MAX)), lane_offset=offset, lane_width=width)

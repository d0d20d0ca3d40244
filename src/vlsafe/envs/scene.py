"""The backend-neutral picture of the world that observation, reward and cost are computed from.

Every simulator backend turns its own state into these arrays, in one right-handed metric
frame (x east, y north, heading counter-clockwise from +x, radians). Because the BEV
rasterizer, the reward and the safety signals only ever read a `Scene`, the same scene gives
the same picture and the same numbers whichever simulator produced it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["PLAN_STEP_M", "Lane", "RoadMap", "Vehicles", "Scene", "Route", "sample_lane", "box_corners", "wrap_angle"]


PLAN_STEP_M = 2.0  # spacing of the points of Vehicles.plan


def wrap_angle(a: np.ndarray | float) -> np.ndarray | float:
    return (np.asarray(a) + np.pi) % (2 * np.pi) - np.pi


@dataclass(frozen=True)
class Lane:
    """One drivable lane: its centre line (K,2), width (m) and how its two edges are painted.

    `left_line` / `right_line` are 'solid', 'broken' or 'none' (none = shared with a neighbour
    that draws it, or no paint).
    """

    centre: np.ndarray
    width: float
    left_line: str = "broken"
    right_line: str = "broken"

    @property
    def polygon(self) -> np.ndarray:
        return np.concatenate([self.edge(+1), self.edge(-1)[::-1]])

    def edge(self, side: int) -> np.ndarray:
        """Left (+1) or right (-1) edge polyline, offset from the centre by half the width."""
        c = self.centre
        d = np.gradient(c, axis=0) if len(c) > 1 else np.array([[1.0, 0.0]])
        d = d / np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-9)
        normal = np.stack([-d[:, 1], d[:, 0]], axis=1)
        return c + side * 0.5 * self.width * normal


def sample_lane(position, length: float, width: float, left_line: str = "broken",
                right_line: str = "broken", step: float = 2.0) -> Lane:
    """Build a `Lane` from a simulator lane's `position(longitudinal, lateral)` function.

    Both MetaDrive and highway-env lanes expose this function, so backends share this helper.
    `position` must already return points in the vlsafe frame.
    """
    n = max(2, int(np.ceil(length / step)) + 1)
    s = np.linspace(0.0, length, n)
    centre = np.array([position(float(si), 0.0) for si in s], dtype=np.float64)
    return Lane(centre=centre, width=float(width), left_line=left_line, right_line=right_line)


@dataclass(frozen=True)
class RoadMap:
    """Everything static in an episode: the lanes. Built once per reset."""

    lanes: tuple[Lane, ...]

    def __post_init__(self) -> None:
        assert len(self.lanes) > 0, "a RoadMap needs at least one lane"


@dataclass(frozen=True)
class Route:
    """The planned path from spawn to destination as a dense polyline (K,2), and its arc length."""

    points: np.ndarray
    arc: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        pts = np.asarray(self.points, dtype=np.float64)
        assert pts.ndim == 2 and pts.shape[1] == 2 and len(pts) >= 2, f"route points must be (K>=2, 2), got {pts.shape}"
        seg = np.linalg.norm(np.diff(pts, axis=0), axis=1)
        object.__setattr__(self, "points", pts)
        object.__setattr__(self, "arc", np.concatenate([[0.0], np.cumsum(seg)]))

    @property
    def length(self) -> float:
        return float(self.arc[-1])

    def point_at(self, s: np.ndarray | float) -> np.ndarray:
        """Route point(s) at arc position(s) s (clamped to the route)."""
        s = np.clip(s, 0.0, self.length)
        return np.stack([np.interp(s, self.arc, self.points[:, 0]), np.interp(s, self.arc, self.points[:, 1])], -1)

    def project(self, xy: np.ndarray, s_min: float = -np.inf, s_max: float = np.inf) -> tuple[float, float, np.ndarray]:
        """(arc position s, signed lateral offset, unit tangent) of the closest route point to xy.

        Lateral offset is positive to the left of the route direction. `s_min`/`s_max` restrict
        the search to a window of the route, so that progress along a route that passes near
        itself (a loop, a junction) cannot jump ahead.
        """
        lo = max(0, int(np.searchsorted(self.arc, s_min, side="right")) - 1)
        hi = min(len(self.points) - 1, int(np.searchsorted(self.arc, s_max, side="left")) + 1)
        if hi <= lo:
            lo, hi = 0, len(self.points) - 1
        a, b = self.points[lo:hi], self.points[lo + 1:hi + 1]
        ab = b - a
        L2 = np.maximum((ab * ab).sum(1), 1e-12)
        t = np.clip(((xy - a) * ab).sum(1) / L2, 0.0, 1.0)
        proj = a + t[:, None] * ab
        d2 = ((xy - proj) ** 2).sum(1)
        i = int(np.argmin(d2))
        tangent = ab[i] / np.sqrt(L2[i])
        rel = xy - proj[i]
        lateral = float(tangent[0] * rel[1] - tangent[1] * rel[0])
        s = float(self.arc[lo + i] + t[i] * np.sqrt(L2[i]))
        return s, lateral, tangent


@dataclass(frozen=True)
class Vehicles:
    """All vehicles at one instant; row 0 is the ego. Arrays of shape (N,), velocity (N,2) in m/s."""

    position: np.ndarray  # (N,2) m
    heading: np.ndarray  # (N,) rad
    velocity: np.ndarray  # (N,2) m/s, world frame
    length: np.ndarray  # (N,) m
    width: np.ndarray  # (N,) m
    # (N,K,2) m: where each car's simulator will drive it, its planned lanes from where it is, as
    # points PLAN_STEP_M apart (NaN where not known); None from a simulator that does not say. The
    # scripted expert reads it as a driver reads indicators; it is never drawn, so learners do not.
    plan: np.ndarray | None = None
    # (N,) the right of way of the junction lane each car takes (the ego's too; higher goes first, as
    # a road's signs rank it), NaN where a car takes none; None from a simulator without such ranks.
    # A car ranked above the ego does not wait for it, so the expert expects a standing one to set off.
    priority: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = len(self.position)
        for name in ("heading", "length", "width"):
            assert getattr(self, name).shape == (n,), f"{name} shape {getattr(self, name).shape} != ({n},)"
        assert self.velocity.shape == (n, 2), f"velocity shape {self.velocity.shape} != ({n}, 2)"
        assert self.plan is None or (self.plan.ndim == 3 and self.plan.shape[0] == n and self.plan.shape[2] == 2), \
            f"plan shape {None if self.plan is None else self.plan.shape} != ({n}, K, 2)"
        assert self.priority is None or self.priority.shape == (n,), f"priority shape {self.priority.shape} != ({n},)"

    @property
    def speed(self) -> np.ndarray:
        return np.linalg.norm(self.velocity, axis=1)

    def corners(self) -> np.ndarray:
        return box_corners(self.position, self.heading, self.length, self.width)


def box_corners(position: np.ndarray, heading: np.ndarray, length: np.ndarray, width: np.ndarray) -> np.ndarray:
    """(N,4,2) corners of oriented boxes: front-left, front-right, rear-right, rear-left."""
    c, s = np.cos(heading), np.sin(heading)
    fwd = np.stack([c, s], -1) * (length / 2)[:, None]
    left = np.stack([-s, c], -1) * (width / 2)[:, None]
    p = position
    return np.stack([p + fwd + left, p + fwd - left, p - fwd - left, p - fwd + left], axis=1)


@dataclass(frozen=True)
class Scene:
    """One frame: static road, planned route, and vehicles (row 0 = ego)."""

    road: RoadMap
    route: Route
    vehicles: Vehicles

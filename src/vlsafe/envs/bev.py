"""The bird's-eye-view picture every backend shares: ego red, others green, route blue (PAPER.md).

Ego-centred and heading-up: the ego sits at the image centre pointing to the top edge. The
static layers (road surface, lane paint, route) are drawn once into a world-aligned canvas
anchored on a fixed grid, and each frame only rotates a crop of it (one `warpAffine`) and
paints the vehicles on top. Anchoring on a grid, not on the ego's history, is what makes the
picture a pure function of the scene: the same scene always gives the same frame.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import cv2
import numpy as np

from vlsafe.config import ConfigError
from vlsafe.envs.scene import RoadMap, Route, Scene, Vehicles, box_corners

__all__ = ["BEVConfig", "BEVRasterizer", "COLORS"]

# RGB. The three the paper names (ego red, vehicles green, route blue) are pure so that a VLM
# prompt saying "red car" and a test counting red pixels mean the same thing.
COLORS = {
    "background": (0, 0, 0),
    "road": (70, 70, 70),
    "line_solid": (255, 255, 255),
    "line_broken": (150, 150, 150),
    "route": (0, 0, 255),
    "vehicle": (0, 255, 0),
    "ego": (255, 0, 0),
    # `motion_s` > 0: the area a car sweeps in the next motion_s seconds at its current velocity,
    # under the car itself, in a dimmer shade of its own colour.
    "vehicle_motion": (0, 110, 0),
    "ego_motion": (110, 0, 0),
}
_SHIFT = 3  # sub-pixel bits for OpenCV polygon drawing
_ONE = 1 << _SHIFT


@dataclass(frozen=True)
class BEVConfig:
    """size: image side in pixels (64 for the world model, 128/224 for the VLM);
    range_m: metres covered by the image side; route_width_m: drawn width of the route;
    motion_s: > 0 draws, under every car, the area it sweeps in that many seconds at its current
    velocity. One frame then shows who is moving where and how fast, which a single frame
    otherwise cannot (issue 24's motion hypothesis: a learner that reads one frame cannot tell a
    car crossing a junction from a car waiting at it)."""

    size: int = 64
    range_m: float = 32.0
    route_width_m: float = 1.2
    motion_s: float = 0.0

    def __post_init__(self) -> None:
        if not 16 <= self.size <= 1024:
            raise ConfigError(f"bev.size: expected 16..1024 pixels, got {self.size}")
        if not 4.0 <= self.range_m <= 500.0:
            raise ConfigError(f"bev.range_m: expected 4..500 metres, got {self.range_m}")
        if not 0.0 <= self.motion_s <= 10.0:
            raise ConfigError(f"bev.motion_s: expected 0..10 seconds, got {self.motion_s}")

    @property
    def ppm(self) -> float:
        return self.size / self.range_m


class BEVRasterizer:
    """Draws `Scene`s as (size, size, 3) uint8 RGB frames. One instance per env is enough."""

    def __init__(self, config: BEVConfig = BEVConfig(), cache_size: int = 6):
        self.config = config
        self._cache: OrderedDict[tuple, tuple[RoadMap, Route, np.ndarray]] = OrderedDict()
        self._cache_size = cache_size
        self._grid = config.range_m  # canvas anchors every `range_m` metres
        self._half = 0.5 * self._grid + 0.75 * config.range_m  # canvas half side in metres, > 0.5g + range/sqrt(2)
        self._geometry: tuple[RoadMap, list] | None = None

    # -- static layer -------------------------------------------------------------------------
    def _prepared(self, road: RoadMap) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, str, str]]:
        """Per lane: left edge, right edge, bounding box (lo, hi), paints; computed once per map."""
        hit = self._geometry
        if hit is not None and hit[0] is road:
            return hit[1]
        lanes = []
        for lane in road.lanes:
            left, right = lane.edge(+1), lane.edge(-1)
            both = np.concatenate([left, right])
            lanes.append((left, right, np.stack([both.min(0), both.max(0)]), lane.left_line, lane.right_line))
        self._geometry = (road, lanes)
        return lanes

    def _canvas(self, road: RoadMap, route: Route, anchor: tuple[int, int]) -> tuple[np.ndarray, float, float]:
        key = (id(road), id(route), anchor)
        ax, ay = anchor[0] * self._grid, anchor[1] * self._grid
        x0, y1 = ax - self._half, ay + self._half
        hit = self._cache.get(key)
        if hit is not None and hit[0] is road and hit[1] is route:  # ids can be reused after GC
            self._cache.move_to_end(key)
            return hit[2], x0, y1
        ppm = self.config.ppm
        side = int(np.ceil(2 * self._half * ppm))
        canvas = np.zeros((side, side, 3), np.uint8)
        canvas[:] = COLORS["background"]

        def to_px(xy: np.ndarray) -> np.ndarray:
            px = np.empty_like(xy)
            px[..., 0] = (xy[..., 0] - x0) * ppm
            px[..., 1] = (y1 - xy[..., 1]) * ppm
            return np.round(px * _ONE).astype(np.int32)

        lo, hi = np.array([x0, y1 - 2 * self._half]), np.array([x0 + 2 * self._half, y1])
        near = [g for g in self._prepared(road) if (g[2][0] <= hi).all() and (g[2][1] >= lo).all()]
        for left, right, _, _, _ in near:  # road surface: one convex quad per centre-line segment
            quads = to_px(np.stack([left[:-1], left[1:], right[1:], right[:-1]], axis=1))
            for quad in quads:
                cv2.fillConvexPoly(canvas, quad, COLORS["road"], cv2.LINE_8, _SHIFT)
        thick = max(1, int(round(0.15 * ppm)))
        for left, right, _, left_paint, right_paint in near:
            for edge, paint in ((left, left_paint), (right, right_paint)):
                if paint in ("solid", "broken"):
                    cv2.polylines(canvas, [to_px(edge)], False, COLORS[f"line_{paint}"], thick, cv2.LINE_8, _SHIFT)
        cv2.polylines(canvas, [to_px(route.points)], False, COLORS["route"],
                      max(1, int(round(self.config.route_width_m * ppm))), cv2.LINE_8, _SHIFT)
        self._cache[key] = (road, route, canvas)
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return canvas, x0, y1

    # -- per frame ------------------------------------------------------------------------------
    def render(self, scene: Scene) -> np.ndarray:
        return self.draw(scene.road, scene.route, scene.vehicles)

    def draw(self, road: RoadMap, route: Route, vehicles: Vehicles) -> np.ndarray:
        size, ppm = self.config.size, self.config.ppm
        ex, ey = float(vehicles.position[0, 0]), float(vehicles.position[0, 1])
        h = float(vehicles.heading[0])
        anchor = (int(np.floor(ex / self._grid + 0.5)), int(np.floor(ey / self._grid + 0.5)))
        canvas, x0, y1 = self._canvas(road, route, anchor)
        c, s = np.cos(h), np.sin(h)
        cx = cy = (size - 1) / 2.0
        # Maps each output pixel (u, v) to the canvas pixel it shows (see module docstring).
        M = np.array([[s, -c, (ex - x0) * ppm + cy * c - cx * s],
                      [c, s, (y1 - ey) * ppm - cy * s - cx * c]], dtype=np.float64)
        img = cv2.warpAffine(canvas, M, (size, size), flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP,
                             borderMode=cv2.BORDER_CONSTANT, borderValue=COLORS["background"])
        corners = box_corners(vehicles.position, vehicles.heading, vehicles.length, vehicles.width)

        def to_px(world: np.ndarray) -> np.ndarray:
            rel = world - (ex, ey)
            f = rel[..., 0] * c + rel[..., 1] * s
            left = -rel[..., 0] * s + rel[..., 1] * c
            return np.stack([cx - left * ppm, cy - f * ppm], -1)

        def on_image(poly: np.ndarray) -> np.ndarray:  # (N, K, 2) pixel polygons that reach the image
            return (poly.max(axis=1) >= -1).all(-1) & (poly.min(axis=1) <= size).all(-1)

        px = to_px(corners)
        if self.config.motion_s > 0:  # swept area: the hull of the box now and motion_s seconds on
            ahead = to_px(corners + self.config.motion_s * vehicles.velocity[:, None, :])
            swept = np.concatenate([px, ahead], axis=1)
            for i in np.flatnonzero(on_image(swept)):
                hull = cv2.convexHull(np.round(swept[i] * _ONE).astype(np.int32))
                cv2.fillConvexPoly(img, hull, COLORS["ego_motion" if i == 0 else "vehicle_motion"], cv2.LINE_8, _SHIFT)
        visible = on_image(px)
        pts = np.round(px * _ONE).astype(np.int32)
        for i in np.flatnonzero(visible[1:]) + 1:
            cv2.fillConvexPoly(img, pts[i], COLORS["vehicle"], cv2.LINE_8, _SHIFT)
        cv2.fillConvexPoly(img, pts[0], COLORS["ego"], cv2.LINE_8, _SHIFT)
        return img

"""What a simulator backend must provide; a CARLA backend would be one more module of this shape.

A backend owns the simulator and nothing else: it spawns the ego on the task's route, applies
physical controls, and reports the world as `Scene` arrays plus three simulator-judged events.
Observation, reward, cost and metrics are computed by vlsafe from those, identically for all
backends (see `vlsafe.envs.driving_env`).
"""

from __future__ import annotations

import abc
from dataclasses import dataclass

from vlsafe.envs.scene import RoadMap, Route, Vehicles

__all__ = ["Backend", "BackendEvents", "BackendSpec"]


@dataclass(frozen=True)
class BackendEvents:
    """Simulator-judged facts about the ego after the last step."""

    collision: bool  # touching another vehicle or an obstacle now
    off_road: bool  # outside the drivable road (MetaDrive: also over a solid line / sidewalk)
    arrived: bool  # reached the destination of the route


@dataclass(frozen=True)
class BackendSpec:
    """What a backend needs to know about the task; built from `TaskConfig` by the env.

    task: 'four-lane' | 'left-turn' | 'right-turn' | 'navigation'
    traffic_density: expected vehicles per 10 m of lane (MetaDrive's meaning; other backends map it)
    map_seed: the procedural map / scenario seed for this episode
    """

    task: str
    traffic_density: float
    map_seed: int
    max_steps: int


class Backend(abc.ABC):
    """One simulator instance. Coordinates: right-handed, metres, heading CCW from +x."""

    name: str = "abstract"
    dt: float = 0.1  # simulated seconds per env step

    @abc.abstractmethod
    def reset(self, spec: BackendSpec, seed: int) -> tuple[RoadMap, Route]:
        """Start an episode on map `spec.map_seed` (traffic randomised by `seed`); return its road and route."""

    @abc.abstractmethod
    def step(self, acceleration: float, steering: float) -> None:
        """Advance one env step (`dt` seconds).

        acceleration: requested longitudinal acceleration in m/s^2 (negative = brake);
        steering: normalised steering in [-1, 1], positive turns left (heading increases).
        """

    @abc.abstractmethod
    def vehicles(self) -> Vehicles:
        """All vehicles now, row 0 the ego; only those within `perception_radius` m need be listed."""

    @abc.abstractmethod
    def events(self) -> BackendEvents:
        """Collision / off-road / arrival as the simulator judges them after the last step."""

    def close(self) -> None:  # noqa: B027 - optional for backends without resources
        """Free simulator resources."""

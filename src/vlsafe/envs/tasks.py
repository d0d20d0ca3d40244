"""The paper's four driving tasks, their shift variants, and the one config object per task.

A task is (task name, variant, backend). `task_config("four-lane", "metadrive", "dense")` gives
the resolved `TaskConfig`; `vlsafe.envs.make` builds the env; the same combinations are
registered with gymnasium as ids like `vlsafe/FourLane-MetaDrive-v0` and
`vlsafe/FourLaneDense-Highway-v0`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from vlsafe.config import ConfigError, apply_overrides, closest, from_dict
from vlsafe.envs.bev import BEVConfig
from vlsafe.envs.reward import CostConfig, RewardConfig

__all__ = ["TASKS", "TASK_DEFAULTS", "VARIANTS", "BACKEND_NAMES", "ObservationConfig", "TaskConfig", "task_config", "gym_id",
           "parse_task", "all_task_ids"]

TASKS: dict[str, str] = {
    "four-lane": "Drive along a four-lane road in traffic to its far end.",
    "left-turn": "Cross an intersection turning left to a fixed exit.",
    "right-turn": "Cross an intersection turning right to a fixed exit.",
    "navigation": "Follow a multi-segment route (curves, junctions) to a distant destination.",
}
# Distribution shifts for generalisation: traffic density and maps never seen in training.
# Training maps are seeds [0, 1000); 'unseen' draws from [10000, 11000) (MetaDrive's maps are 0..99999).
VARIANTS: dict[str, dict] = {
    "": {},
    "sparse": {"traffic_density": 0.05},
    "dense": {"traffic_density": 0.3},
    "unseen": {"map_seed_start": 10_000},
}
BACKEND_NAMES = {"metadrive": "MetaDrive", "highway": "Highway"}
# Per-task defaults that differ from TaskConfig's. Navigation routes run up to ~430 m (MetaDrive) and
# ~500 m (highway-env): with the expert's slow-down in curves and at junctions that is up to ~75 s,
# more than 500 steps of 0.1 s, so an expert that never crashed still timed out on 1 route in 5.
TASK_DEFAULTS: dict[str, dict] = {"navigation": {"max_steps": 1000}}


@dataclass(frozen=True)
class ObservationConfig:
    """kind 'bev' (uint8 image), 'vector' (floats) or 'both' (a dict of the two)."""

    kind: Literal["bev", "vector", "both"] = "bev"
    bev: BEVConfig = field(default_factory=BEVConfig)
    # the vector also carries, per nearest car, its predicted closest approach along the lanes it
    # may follow (envs.observation.CONFLICT_COLUMNS: what the expert yields on); datasets recorded
    # with it have 88 columns, and `policy.conflict_input` reads them
    conflict: bool = False


@dataclass(frozen=True)
class TaskConfig:
    """Everything that defines one driving task; saved with every artifact made from it."""

    task: Literal["four-lane", "left-turn", "right-turn", "navigation"] = "four-lane"
    backend: Literal["metadrive", "highway"] = "metadrive"
    variant: Literal["", "sparse", "dense", "unseen"] = ""
    traffic_density: float = 0.15  # expected vehicles per 10 m of lane
    # non-empty: each episode drives at one of these densities instead, fixed by its episode seed
    # (mixed-density data: does p(s) let a policy slow down where the scene looks crowded?).
    # Evaluation drives `traffic_density` (or a variant's) whatever the data was recorded at
    # (evaluation.evaluate.make_env)
    traffic_densities: tuple[float, ...] = ()
    map_seed_start: int = 0
    num_maps: int = 1000  # episode seed s drives on map map_seed_start + s % num_maps
    max_steps: int = 500  # navigation: 1000 (TASK_DEFAULTS)
    action: Literal["discrete", "continuous"] = "discrete"
    observation: ObservationConfig = field(default_factory=ObservationConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    cost: CostConfig = field(default_factory=CostConfig)
    terminate_on_collision: bool = True
    terminate_on_off_road: bool = True
    # Steps driven on after the first terminating event (collision / leaving the road) before the
    # episode ends; 0 ends it at once. Datasets use > 0 so that unsafe frames are a few percent of
    # the data instead of one frame per crash; evaluation always ends at once (`for_evaluation`).
    steps_after_crash: int = 0

    def __post_init__(self) -> None:
        if not 0.0 <= self.traffic_density <= 1.0:
            raise ConfigError(f"traffic_density: expected 0..1 vehicles per 10 m of lane, got {self.traffic_density}")
        if any(not 0.0 <= d <= 1.0 for d in self.traffic_densities):
            raise ConfigError(f"traffic_densities: expected densities in 0..1, got {list(self.traffic_densities)}")
        if self.num_maps < 1 or self.max_steps < 1:
            raise ConfigError(f"num_maps and max_steps must be >= 1, got {self.num_maps}, {self.max_steps}")
        if self.steps_after_crash < 0:
            raise ConfigError(f"steps_after_crash: expected >= 0, got {self.steps_after_crash}")

    def density_for(self, episode_seed: int) -> float:
        """The traffic density episode `episode_seed` drives at: `traffic_density`, or one of
        `traffic_densities` drawn from the seed alone (the same episode always gets the same)."""
        if not self.traffic_densities:
            return self.traffic_density
        pick = np.random.default_rng([int(episode_seed) & 0xFFFFFFFF, 23]).integers(len(self.traffic_densities))
        return float(self.traffic_densities[pick])

    def for_evaluation(self) -> "TaskConfig":
        """The task as policies are scored on it: an episode ends at its first collision/road exit."""
        return dataclasses.replace(self, steps_after_crash=0)

    @property
    def name(self) -> str:
        return f"{self.task}:{self.variant}" if self.variant else self.task


def parse_task(name: str) -> tuple[str, str]:
    """'four-lane:dense' -> ('four-lane', 'dense'), with one-line errors listing what is valid."""
    task, _, variant = name.partition(":")
    if task not in TASKS:
        raise ConfigError(f"unknown task {task!r}{closest(task, TASKS)}; valid tasks: {', '.join(TASKS)}")
    if variant not in VARIANTS:
        valid = ", ".join(v for v in VARIANTS if v)
        raise ConfigError(f"unknown variant {variant!r} of task {task!r}{closest(variant, VARIANTS)}; valid variants: {valid}")
    return task, variant


def task_config(name: str = "four-lane", backend: str = "metadrive", variant: str = "",
                overrides: list[str] | tuple[str, ...] = (), **fields) -> TaskConfig:
    """Resolve a task by name ('four-lane' or 'four-lane:dense'), backend and dotted overrides."""
    task, v = parse_task(name)
    variant = variant or v
    if variant not in VARIANTS:
        raise ConfigError(f"unknown variant {variant!r}{closest(variant, VARIANTS)}; valid variants: "
                          f"{', '.join(x for x in VARIANTS if x)}")
    if backend not in BACKEND_NAMES:
        raise ConfigError(f"unknown backend {backend!r}{closest(backend, BACKEND_NAMES)}; valid backends: "
                          f"{', '.join(BACKEND_NAMES)}")
    data = {"task": task, "backend": backend, "variant": variant, **TASK_DEFAULTS.get(task, {}), **VARIANTS[variant]}
    cfg = from_dict(TaskConfig, data)
    if fields:
        cfg = from_dict(TaskConfig, {**dataclasses.asdict(cfg), **fields})
    return apply_overrides(cfg, overrides)


def gym_id(task: str, backend: str, variant: str = "") -> str:
    camel = "".join(part.capitalize() for part in task.split("-")) + variant.capitalize()
    return f"vlsafe/{camel}-{BACKEND_NAMES[backend]}-v0"


def all_task_ids() -> list[tuple[str, str, str, str]]:
    """(gym id, task, backend, variant) for every registered combination."""
    return [(gym_id(t, b, v), t, b, v) for t in TASKS for v in VARIANTS for b in BACKEND_NAMES]

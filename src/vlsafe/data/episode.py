"""One recorded episode, in Minari's layout (T+1 observations, T actions) plus costs and safety.

Row t of `action`, `reward`, `cost`, `terminated`, `truncated` and every signal belongs to the
transition from observation t to observation t+1.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["Episode", "SIGNALS", "EpisodeRecorder"]

# Per-step ground truth kept next to each transition (all float32 on disk), read from env info.
SIGNALS = ("speed", "ttc", "min_gap", "lane_offset", "collision", "off_lane", "off_road", "arrived",
           "distance", "waypoints", "route_progress")


@dataclass(frozen=True)
class Episode:
    seed: int
    map_seed: int
    behaviour: str
    dt: float
    bev: np.ndarray  # (T+1, S, S, 3) uint8
    vector: np.ndarray  # (T+1, V) float32
    action: np.ndarray  # (T,) int64 discrete index, or (T, 2) float32 continuous
    reward: np.ndarray  # (T,) float32
    cost: np.ndarray  # (T,) float32
    terminated: np.ndarray  # (T,) bool
    truncated: np.ndarray  # (T,) bool
    signals: dict[str, np.ndarray] = field(default_factory=dict)  # name -> (T,) float32
    # what the noise-free expert would have done at each state (`collect --expert-labels`), same
    # dtype and shape as `action`: a clone fitted on it learns the expert's way back from the noisy
    # and reckless drivers' mistakes (DART's relabelling) instead of copying the mistakes
    expert_action: np.ndarray | None = None

    def __post_init__(self) -> None:
        T = len(self.reward)
        assert self.bev.shape[0] == T + 1 and self.vector.shape[0] == T + 1, (
            f"observations must have T+1 = {T + 1} rows: bev {self.bev.shape}, vector {self.vector.shape}")
        for name in ("action", "cost", "terminated", "truncated"):
            assert len(getattr(self, name)) == T, f"{name} has {len(getattr(self, name))} rows, expected T = {T}"
        for name, arr in self.signals.items():
            assert arr.shape == (T,), f"signal {name} shape {arr.shape}, expected ({T},)"
        if self.expert_action is not None:
            assert self.expert_action.shape == self.action.shape, (
                f"expert_action shape {self.expert_action.shape}, expected the action's {self.action.shape}")

    @property
    def steps(self) -> int:
        return len(self.reward)


class EpisodeRecorder:
    """Collects one episode from env.reset/env.step (observation kind 'both') into an Episode."""

    def __init__(self, seed: int, behaviour: str, dt: float):
        self.seed, self.behaviour, self.dt = seed, behaviour, dt
        self.bev: list[np.ndarray] = []
        self.vector: list[np.ndarray] = []
        self.rows: dict[str, list] = {k: [] for k in ("action", "reward", "cost", "terminated", "truncated",
                                                      "expert_action")}
        self.signals: dict[str, list] = {k: [] for k in SIGNALS}
        self.map_seed = -1

    def start(self, obs: dict, info: dict) -> None:
        self.bev.append(obs["bev"])
        self.vector.append(obs["vector"])
        self.map_seed = int(info["map_seed"])

    def add(self, action, obs: dict, reward: float, terminated: bool, truncated: bool, info: dict,
            expert_action=None) -> None:
        """`expert_action`: the expert's action at the state `action` was taken in (given at every
        step of an episode or at none)."""
        if expert_action is not None:
            self.rows["expert_action"].append(expert_action)
        self.bev.append(obs["bev"])
        self.vector.append(obs["vector"])
        for key, value in (("action", action), ("reward", reward), ("cost", info["cost"]),
                           ("terminated", terminated), ("truncated", truncated)):
            self.rows[key].append(value)
        for key in SIGNALS:
            self.signals[key].append(float(info[key]))

    def finish(self) -> Episode:
        action = np.asarray(self.rows["action"])
        action = action.astype(np.int64) if action.ndim == 1 else action.astype(np.float32)
        expert = self.rows["expert_action"]
        assert not expert or len(expert) == len(action), "expert_action given at some steps only"
        return Episode(
            seed=self.seed, map_seed=self.map_seed, behaviour=self.behaviour, dt=self.dt,
            bev=np.stack(self.bev).astype(np.uint8), vector=np.stack(self.vector).astype(np.float32), action=action,
            reward=np.asarray(self.rows["reward"], np.float32), cost=np.asarray(self.rows["cost"], np.float32),
            terminated=np.asarray(self.rows["terminated"], bool), truncated=np.asarray(self.rows["truncated"], bool),
            signals={k: np.asarray(v, np.float32) for k, v in self.signals.items()},
            expert_action=np.asarray(expert).astype(action.dtype) if expert else None,
        )

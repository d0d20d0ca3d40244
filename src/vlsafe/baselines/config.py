"""One typed config for every library baseline; what each algorithm needs is checked here, before
any data is read or any simulator started."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from vlsafe.config import ConfigError

__all__ = ["ALGOS", "OFFLINE", "ONLINE", "COST_AWARE", "CONTINUOUS_ONLY", "DISCRETE_ONLY", "BaselineConfig"]

COST_AWARE = ("bcql", "cpq")  # OSRL: BCQ-Lag and CPQ, offline, learning from the costs too
OFFLINE = ("bc", "cql", "iql") + COST_AWARE  # d3rlpy and OSRL, trained on a dataset
ONLINE = ("ppo", "sac", "dqn")  # Stable-Baselines3, trained in the simulator
ALGOS = OFFLINE + ONLINE
CONTINUOUS_ONLY = ("iql", "sac") + COST_AWARE  # the libraries have no discrete form of these
DISCRETE_ONLY = ("dqn",)
DEFAULT_STEPS = {"bc": 20_000, "cql": 20_000, "iql": 20_000, "bcql": 20_000, "cpq": 20_000, "ppo": 100_000,
                 "sac": 100_000, "dqn": 100_000}


@dataclass(frozen=True)
class BaselineConfig:
    algo: Literal["bc", "cql", "iql", "bcql", "cpq", "ppo", "sac", "dqn"] = "bc"
    observation: Literal["vector", "bev"] = "vector"  # bev: the 64 px frame through the library's CNN
    # discrete: the paper's 15 actions; continuous: (acceleration, steering). Empty = the algorithm's
    # own (continuous for iql and sac, discrete otherwise); offline data's discrete actions are fed
    # to continuous learners as the (acceleration, steering) they stand for.
    action: Literal["", "discrete", "continuous"] = ""
    steps: int = 0  # gradient steps (offline) or environment steps (online); 0 = DEFAULT_STEPS[algo]
    batch_size: int = 256
    learning_rate: float = 0.0  # 0 = the library's default for the algorithm
    gamma: float = 0.99
    reward_scale: float = 0.01  # offline: rewards x this (a crash is about -390) so Q-values stay O(1)
    cost_limit: float = 10.0  # bcql, cpq: the episode cost budget they keep below (cost steps)
    seed: int = 0
    threads: int = 1
    n_envs: int = 2  # online: parallel simulators, one engine per process
    train_seeds: int = 500  # online: episodes drive seeds 0..train_seeds-1, the datasets' range (eval uses 700+)
    log_every: int = 1000  # steps between metric lines
    checkpoint_every: int = 0  # steps between checkpoints; 0 = every tenth of the run

    def __post_init__(self) -> None:
        if self.algo not in ALGOS:
            raise ConfigError(f"algo: expected one of {', '.join(ALGOS)}, got {self.algo!r}")
        if self.action == "discrete" and self.algo in CONTINUOUS_ONLY:
            raise ConfigError(f"action=discrete: {self.algo} has continuous actions only in its library; "
                              "use action=continuous (the default for it)")
        if self.algo in COST_AWARE and self.observation != "vector":
            raise ConfigError(f"observation={self.observation}: OSRL's {self.algo} has MLP networks only; use observation=vector")
        if self.cost_limit < 0:
            raise ConfigError(f"cost_limit: expected >= 0, got {self.cost_limit}")
        if self.action == "continuous" and self.algo in DISCRETE_ONLY:
            raise ConfigError(f"action=continuous: {self.algo} has discrete actions only")
        for name in ("steps", "log_every", "checkpoint_every"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name}: expected >= 0, got {getattr(self, name)}")
        for name in ("batch_size", "threads", "n_envs", "train_seeds"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}: expected >= 1, got {getattr(self, name)}")
        if not 0 < self.gamma <= 1 or self.reward_scale <= 0 or self.learning_rate < 0:
            raise ConfigError(f"gamma in (0, 1], reward_scale > 0, learning_rate >= 0 expected, got "
                              f"{self.gamma}, {self.reward_scale}, {self.learning_rate}")

    @property
    def offline(self) -> bool:
        return self.algo in OFFLINE

    @property
    def action_mode(self) -> str:
        return self.action or ("continuous" if self.algo in CONTINUOUS_ONLY else "discrete")

    @property
    def total_steps(self) -> int:
        return self.steps or DEFAULT_STEPS[self.algo]

    @property
    def every(self) -> int:
        return self.checkpoint_every or max(1, self.total_steps // 10)

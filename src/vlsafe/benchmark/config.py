"""The benchmark's one typed config: which grid of cells to run, and how big each stage is.

A cell is one plain run of a `vlsafe` command (collect, a data subset and its labels, train-wm,
train-policy or baseline train, eval). The grid is methods x tasks x training seeds x data
fractions, each trained policy driven under every evaluation condition. Presets by name, dotted
`--set` overrides on top, the resolved config saved with the results.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from vlsafe.config import ConfigError, apply_overrides

__all__ = ["BenchmarkConfig", "DataStage", "LabelStage", "WorldModelStage", "PolicyStage", "BaselineStage",
           "EvalStage", "PRESETS", "MAP_VARIETY", "IN_HOUSE", "OFFLINE_LIBRARY", "ONLINE_LIBRARY", "CONDITIONS",
           "resolve_benchmark"]

# In-house methods train a policy on one world model; "bc" is the behaviour head π̂_b of the
# vl-safe run with the same training seed (the README's bc row), so it costs no extra training.
IN_HOUSE = ("vl-safe", "dreamer-offline", "lagrangian", "fosp", "bc")
# Library baselines by the benchmark's names: offline ones learn from the same data fraction
# (d3rlpy-bc is d3rlpy's behaviour cloning, named apart from π̂_b), online ones from a budget of
# environment steps in the simulator and have no data fraction.
OFFLINE_LIBRARY = {"d3rlpy-bc": "bc", "cql": "cql", "iql": "iql", "bcql": "bcql", "cpq": "cpq"}
ONLINE_LIBRARY = {"ppo": "ppo", "sac": "sac", "dqn": "dqn"}
# Evaluation conditions: the training task itself, the traffic-density shifts, maps outside the
# training range, and the same task driven on the other simulator (no retraining for any).
CONDITIONS = ("default", "sparse", "dense", "unseen", "cross-sim")
# `:unseen` (maps 10000+) is a shift only where a map seed changes the road: four-lane and the
# turns are fixed block sequences (a new map seed there is new traffic, which `default` covers).
MAP_VARIETY = ("navigation",)
ACTOR_MODES = ("greedy", "sampled")


@dataclass(frozen=True)
class DataStage:
    preset: str = "small"  # vlsafe collect --preset (tiny, small, full)
    episodes: int = 0  # > 0: exactly this many episodes instead of the preset's size
    steps: int = 0  # > 0: collect until this many steps instead of the preset's size (a dataset-size study)
    seed_start: int = 0
    workers: int = 1  # collect's own processes inside the cell
    task_overrides: tuple[str, ...] = ()  # TaskConfig overrides of the recorded task, e.g. max_steps=80
    # behaviour mixture of the recorded episodes, e.g. expert:0.75,noisy:0.25; empty: the task's own
    # (experts.behaviours.default_mixture)
    mixture: str = ""
    # record the expert's action at every state (collect --expert-labels), for policy.action_labels=expert
    expert_labels: bool = False
    subset_seed: int = 0  # the permutation that draws the nested trajectory subsets


@dataclass(frozen=True)
class LabelStage:
    model: str = ""  # drive-clip model name or folder; empty = vlsafe label's default
    prompts: str = "paper-v1"


@dataclass(frozen=True)
class WorldModelStage:
    preset: str = "xs"
    steps: int = 3000
    overrides: tuple[str, ...] = ("seq_len=32",)


@dataclass(frozen=True)
class PolicyStage:
    steps: int = 2000
    overrides: tuple[str, ...] = ("eval_every=0",)


@dataclass(frozen=True)
class BaselineStage:
    offline_steps: int = 0  # gradient steps; 0 = the library algorithm's default
    online_steps: int = 50_000  # environment steps of the online baselines (recorded beside their results)
    overrides: tuple[str, ...] = ()


@dataclass(frozen=True)
class EvalStage:
    episodes: int = 20  # per training seed, the same episode seeds for every method (paired)
    seed_start: int = 700  # reported seeds: never used for tuning (train-policy tunes on 500+)
    actors: tuple[str, ...] = ("greedy",)  # greedy and/or sampled
    videos: bool = True  # best and worst episode of each default-condition greedy cell, for the report
    cost_threshold: float = 10.0


@dataclass(frozen=True)
class BenchmarkConfig:
    tasks: tuple[str, ...] = ("four-lane", "left-turn", "right-turn", "navigation")
    backend: str = "metadrive"
    methods: tuple[str, ...] = ("vl-safe", "dreamer-offline", "lagrangian", "fosp", "bc", "d3rlpy-bc", "cql", "iql")
    seeds: tuple[int, ...] = (0, 1, 2)  # training seeds
    fractions: tuple[float, ...] = (0.1, 0.3, 1.0)  # nested trajectory-level subsets of the dataset
    conditions: tuple[str, ...] = ("default", "sparse", "dense", "unseen", "cross-sim")
    reference: str = "vl-safe"  # paired differences and probabilities of improvement are against it
    workers: int = 2  # cells at a time on the local process pool
    device: str = "cpu"  # cuda: world-model and policy cells train on a GPU (and declare one to Ray)
    gpus_per_cell: float = 1.0  # GPUs a training cell declares with device cuda; 0.25 packs four on one
    data: DataStage = field(default_factory=DataStage)
    labels: LabelStage = field(default_factory=LabelStage)
    world_model: WorldModelStage = field(default_factory=WorldModelStage)
    policy: PolicyStage = field(default_factory=PolicyStage)
    baseline: BaselineStage = field(default_factory=BaselineStage)
    eval: EvalStage = field(default_factory=EvalStage)

    def __post_init__(self) -> None:
        from vlsafe.envs.tasks import BACKEND_NAMES, TASKS

        known = IN_HOUSE + tuple(OFFLINE_LIBRARY) + tuple(ONLINE_LIBRARY)
        checks = [("tasks", self.tasks, TASKS), ("methods", self.methods, known), ("conditions", self.conditions, CONDITIONS),
                  ("eval.actors", self.eval.actors, ACTOR_MODES)]
        for name, values, valid in checks:
            if not values:
                raise ConfigError(f"{name}: expected at least one of {', '.join(valid)}")
            for v in values:
                if v not in valid:
                    raise ConfigError(f"{name}: unknown {v!r}; expected some of {', '.join(valid)}")
            if len(set(values)) != len(values):
                raise ConfigError(f"{name}: {list(values)} names one twice")
        if self.backend not in BACKEND_NAMES:
            raise ConfigError(f"backend: expected one of {', '.join(BACKEND_NAMES)}, got {self.backend!r}")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds) or min(self.seeds) < 0:
            raise ConfigError(f"seeds: expected distinct training seeds >= 0, got {list(self.seeds)}")
        if not self.fractions or any(not 0 < f <= 1 for f in self.fractions) or len(set(self.fractions)) != len(self.fractions):
            raise ConfigError(f"fractions: expected distinct numbers in (0, 1], got {list(self.fractions)}")
        if self.reference not in self.methods:
            raise ConfigError(f"reference: {self.reference!r} is not among methods {list(self.methods)}")
        for name, value in (("workers", self.workers), ("world_model.steps", self.world_model.steps),
                            ("policy.steps", self.policy.steps), ("eval.episodes", self.eval.episodes),
                            ("baseline.online_steps", self.baseline.online_steps)):
            if value < 1:
                raise ConfigError(f"{name}: expected >= 1, got {value}")
        for name, value in (("data.episodes", self.data.episodes), ("data.steps", self.data.steps),
                            ("data.seed_start", self.data.seed_start),
                            ("eval.seed_start", self.eval.seed_start), ("baseline.offline_steps", self.baseline.offline_steps)):
            if value < 0:
                raise ConfigError(f"{name}: expected >= 0, got {value}")
        self._check_placement()
        self._check_data()

    def _check_data(self) -> None:
        if self.data.workers < 1:
            raise ConfigError(f"data.workers: expected >= 1, got {self.data.workers}")
        if self.data.steps and self.data.episodes:
            raise ConfigError(f"data.steps, data.episodes: give at most one, got {self.data.steps} and {self.data.episodes}")
        if self.data.mixture:
            from vlsafe.experts.behaviours import parse_mixture

            parse_mixture(self.data.mixture)  # a misspelt behaviour is refused before any cell runs

    def _check_placement(self) -> None:
        if self.device != "cpu" and not re.fullmatch(r"cuda(:\d+)?", self.device):
            raise ConfigError(f"device: expected cpu, cuda or cuda:N, got {self.device!r}")
        if not 0 < self.gpus_per_cell <= 8:
            raise ConfigError(f"gpus_per_cell: expected a number in (0, 8], got {self.gpus_per_cell}")


# `smoke` is CI's: one task, tiny everything, every kind of cell and a shift, in about two minutes
# on 2 cores. `small` is the committed benchmark's grid; `full` the paper-sized one.
PRESETS: dict[str, dict[str, Any]] = {
    "smoke": {
        "tasks": ("four-lane",), "methods": ("vl-safe", "dreamer-offline", "bc", "d3rlpy-bc"), "seeds": (0,),
        "fractions": (0.5, 1.0), "conditions": ("default", "dense"),
        "data": DataStage(preset="tiny", episodes=6, task_overrides=("max_steps=60",)),
        "world_model": WorldModelStage(steps=12, overrides=("batch_size=4", "seq_len=16", "log_every=4")),
        "policy": PolicyStage(steps=20, overrides=("eval_every=0", "starts=16", "log_every=5", "policy.bc_steps=10")),
        "baseline": BaselineStage(offline_steps=200, online_steps=500, overrides=("log_every=100",)),
        "eval": EvalStage(episodes=2),
    },
    "small": {},
    "full": {
        "methods": IN_HOUSE + tuple(OFFLINE_LIBRARY) + tuple(ONLINE_LIBRARY),
        "data": DataStage(preset="full", workers=2),
        "world_model": WorldModelStage(preset="s", steps=20_000, overrides=("seq_len=64",)),
        "policy": PolicyStage(steps=10_000),
        "eval": EvalStage(episodes=50, actors=("greedy", "sampled")),
    },
}


def resolve_benchmark(preset: str = "small", overrides: list[str] | tuple[str, ...] = ()) -> BenchmarkConfig:
    """The preset's config with dotted KEY=VALUE overrides, validated before any cell runs."""
    if preset not in PRESETS:
        raise ConfigError(f"unknown benchmark preset {preset!r}; valid presets: {', '.join(PRESETS)}")
    return apply_overrides(BenchmarkConfig(**PRESETS[preset]), overrides)

"""What the evaluator asks of a trained policy, whatever trained it: one small interface.

A world-model policy filters BEV frames through its RSSM, a d3rlpy network reads the vector or the
frame, a Stable-Baselines3 policy its own observation: each run folder says what it is, and
`load_driver` turns it into a `Driver` the simulator loop can call. The loaders are imported
lazily by name, so evaluating one kind of run never imports another kind's library.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

from vlsafe.config import ConfigError

__all__ = ["Driver", "LoadedRun", "KINDS", "run_kind", "load_driver"]


class Driver(Protocol):
    """`driver(env) -> action` in the env's action mode, once per step of an episode.

    `action_mode` ('discrete' or 'continuous') is the mode it emits, so the evaluator can build an
    environment that takes it; `p_safe` and `cost` are the model's latest safety estimates (drawn on
    videos), None for methods without a world model.
    """

    action_mode: str
    p_safe: float | None
    cost: float | None

    def __call__(self, env: Any) -> Any: ...


@dataclass
class LoadedRun:
    """A run folder turned into a driver: the method's name, the task it was trained on (a
    TaskConfig dict), and facts worth reporting beside its metrics (budgets, library versions)."""

    path: Path
    driver: Driver
    method: str
    task: dict[str, Any]
    facts: dict[str, Any] = field(default_factory=dict)


# kind -> (file that marks a run folder of this kind, "module:loader"); the loader is called as
# loader(path, device=..., greedy=..., actor=..., posterior=...) -> LoadedRun
KINDS: dict[str, tuple[str, str]] = {
    "policy": ("checkpoint.json", "vlsafe.policy.agent:load_driver"),
    "baseline": ("baseline.json", "vlsafe.baselines.run:load_driver"),
}


def run_kind(run: str | Path) -> str:
    """Which kind of run a folder holds, from the file that marks it; one-line error otherwise."""
    run = Path(run)
    if not run.is_dir():
        raise ConfigError(f"{run}: no such run folder")
    for kind, (marker, _) in KINDS.items():
        if (run / marker).exists():
            return kind
    markers = ", ".join(m for m, _ in KINDS.values())
    raise ConfigError(f"{run}: not a run folder (none of {markers}); expected a train-policy or baseline run")


def load_driver(run: str | Path, device: str = "cpu", greedy: bool = True, actor: str = "policy",
                posterior: str = "mode") -> LoadedRun:
    kind = run_kind(run)
    module, name = KINDS[kind][1].split(":")
    loader: Callable[..., LoadedRun] = getattr(importlib.import_module(module), name)
    return loader(Path(run), device=device, greedy=greedy, actor=actor, posterior=posterior)

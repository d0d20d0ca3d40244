"""Driving tasks as gymnasium environments (four-lane, left-turn, right-turn, navigation).

`make("four-lane", backend="metadrive")` or `gymnasium.make("vlsafe/FourLane-MetaDrive-v0")`.
"""

from __future__ import annotations

import gymnasium as gym

from vlsafe.envs.driving_env import DrivingEnv
from vlsafe.envs.tasks import TASKS, VARIANTS, TaskConfig, all_task_ids, gym_id, task_config

__all__ = ["make", "DrivingEnv", "TaskConfig", "task_config", "TASKS", "VARIANTS", "gym_id", "register_all",
           "from_config"]


def make(task: str = "four-lane", backend: str = "metadrive", variant: str = "", overrides=(),
         render_mode: str | None = None, **fields) -> DrivingEnv:
    """Build a task env; `overrides` are dotted 'key=value' strings, `fields` TaskConfig fields."""
    return DrivingEnv(task_config(task, backend, variant, overrides, **fields), render_mode=render_mode)


def from_config(config: dict, render_mode: str | None = None) -> DrivingEnv:
    """The env of a full TaskConfig dict (a dataset manifest's `task`): the entry point that
    exported datasets record, so `minari`'s recover_environment() rebuilds the exact task."""
    from vlsafe.config import from_dict

    return DrivingEnv(from_dict(TaskConfig, config), render_mode=render_mode)


def _entry(task: str, backend: str, variant: str, **kwargs) -> DrivingEnv:
    render_mode = kwargs.pop("render_mode", None)
    overrides = kwargs.pop("overrides", ())
    return DrivingEnv(task_config(task, backend, variant, overrides, **kwargs), render_mode=render_mode)


def register_all() -> None:
    for env_id, task, backend, variant in all_task_ids():
        if env_id not in gym.registry:
            gym.register(id=env_id, entry_point=_entry,
                         kwargs={"task": task, "backend": backend, "variant": variant},
                         disable_env_checker=True)


register_all()

"""Stable-Baselines3's online learners (PPO, SAC, DQN) in the vlsafe simulator.

`n_envs` simulators run in parallel, one per process (MetaDrive allows one engine per process);
episodes drive seeds 0..train_seeds-1 (the datasets' range), never the reported 700+. Every
environment step counts against `steps`, the budget a results table must show beside the row.

Checkpoints are SB3's own zip (`model.save`). It holds cloudpickled objects next to the weights,
so it is never read with `PPO.load`: the network is rebuilt from the run's JSON config and only
the zip's tensors are loaded (`load_from_zip_file(load_data=False)`, which reads them with
`torch.load(weights_only=True)`). A resumed run restarts DQN's and SAC's replay buffers empty.
"""

from __future__ import annotations

import contextlib
import io
import time
from functools import partial
from pathlib import Path
from typing import Any, Callable

import gymnasium as gym
import numpy as np

from vlsafe.baselines.config import BaselineConfig
from vlsafe.config import ConfigError, from_dict
from vlsafe.envs.driving_env import DrivingEnv
from vlsafe.envs.observation import vector_space
from vlsafe.envs.tasks import TaskConfig

__all__ = ["sb3", "CHECKPOINT", "training_task", "train_online", "policy_spaces", "load_policy_net"]

CHECKPOINT = "model.zip"


def sb3():
    """stable_baselines3, imported quietly: its compatibility shim imports the old `gym` (installed
    for d3rlpy) wherever an env is wrapped, and `gym` prints a deprecation banner when imported.
    Importing it here first, silenced, leaves nothing to print later in this process."""
    with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
        with contextlib.suppress(ImportError):
            import gym  # noqa: F401
        import stable_baselines3 as lib
    return lib


def training_task(task: dict[str, Any], cfg: BaselineConfig) -> dict[str, Any]:
    """The task as the learner sees it: its observation kind and action mode, episodes ending at
    the first crash (as in evaluation)."""
    data = {**task, "action": cfg.action_mode, "steps_after_crash": 0}
    data["observation"] = {**data.get("observation", {}), "kind": cfg.observation}
    return data


class TrainingSeeds(gym.Wrapper):
    """Episodes on seeds drawn from 0..n-1 (not the evaluation's 700+), and the episode's summed
    cost in the last step's info (SB3's Monitor only knows reward)."""

    def __init__(self, env: gym.Env, n: int, seed: int):
        super().__init__(env)
        self.n, self.rng, self.cost = n, np.random.default_rng(seed), 0.0

    def reset(self, *, seed=None, options=None):
        self.cost = 0.0
        return self.env.reset(seed=int(self.rng.integers(0, self.n)), options=options)

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.cost += float(info["cost"])
        if terminated or truncated:
            info = {**info, "episode_cost": self.cost}
        return obs, reward, terminated, truncated, info


def _make_env(task: dict[str, Any], n: int, seed: int):
    sb3()  # in a simulator process too: silence the old gym before SB3 wraps this env
    from stable_baselines3.common.monitor import Monitor

    return Monitor(TrainingSeeds(DrivingEnv(from_dict(TaskConfig, task)), n, seed))


def policy_spaces(task: dict[str, Any], cfg: BaselineConfig) -> tuple[gym.Space, gym.Space]:
    """The spaces the policy network was built on (images channel-first, as SB3 transposes them)."""
    from vlsafe.envs.actions import action_space

    size = int(task.get("observation", {}).get("bev", {}).get("size", 64))
    obs = gym.spaces.Box(0, 255, shape=(3, size, size), dtype=np.uint8) if cfg.observation == "bev" else vector_space()
    return obs, action_space(cfg.action_mode)


def _algo(cfg: BaselineConfig):
    lib = sb3()
    return {"ppo": lib.PPO, "sac": lib.SAC, "dqn": lib.DQN}[cfg.algo]


def _policy_name(cfg: BaselineConfig) -> str:
    return "CnnPolicy" if cfg.observation == "bev" else "MlpPolicy"


def train_online(cfg: BaselineConfig, task: dict[str, Any], out: Path, start: int, log: Callable[[str], None],
                 write_metrics: Callable[[dict[str, float]], None], save_state: Callable[[int], None]) -> tuple[Any, dict]:
    lib = sb3()
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv

    task = training_task(task, cfg)
    fns = [partial(_make_env, task, cfg.train_seeds, cfg.seed * 1000 + i) for i in range(cfg.n_envs)]
    env = SubprocVecEnv(fns) if cfg.n_envs > 1 else DummyVecEnv(fns)
    kwargs: dict[str, Any] = {"gamma": cfg.gamma, "seed": cfg.seed, "device": "cpu", "verbose": 0}
    if cfg.learning_rate:
        kwargs["learning_rate"] = cfg.learning_rate
    if cfg.algo == "ppo":  # a rollout no longer than the budget, so short runs (tests) learn at all
        kwargs["n_steps"] = min(2048, max(16, cfg.total_steps // cfg.n_envs))
        kwargs["batch_size"] = min(64, kwargs["n_steps"] * cfg.n_envs)
    else:
        kwargs["batch_size"] = cfg.batch_size
        kwargs["buffer_size"] = min(100_000, cfg.total_steps)  # frames: 100k x 12 KB = 1.2 GB at most
        kwargs["learning_starts"] = min(1000, cfg.total_steps // 10)
    model = _algo(cfg)(_policy_name(cfg), env, **kwargs)
    if start:
        model.set_parameters(str(out / CHECKPOINT), exact_match=True)  # tensors only (weights_only=True)
        model.num_timesteps = start
        log(f"resumed at environment step {start}")
    total = cfg.total_steps
    log(f"stable-baselines3 {lib.__version__} {cfg.algo} ({_policy_name(cfg)}, {cfg.action_mode} actions) on "
        f"{task['task']}@{task.get('backend', 'metadrive')}, {cfg.n_envs} simulator(s), {total:,} environment steps")

    class Progress(BaseCallback):
        def _on_training_start(self) -> None:
            self.t0, self.s0, self.last_log, self.last_save = time.perf_counter(), self.num_timesteps, start, start
            self.done: list[tuple[float, float, int]] = []

        def _on_step(self) -> bool:
            for info in self.locals["infos"]:
                if "episode" in info:
                    self.done.append((info["episode"]["r"], info.get("episode_cost", 0.0), info["episode"]["l"]))
            step = self.num_timesteps
            if step - self.last_log >= cfg.log_every or (step >= total > self.last_log):
                self.last_log = step
                rate = (step - self.s0) / (time.perf_counter() - self.t0)
                row = {"step": step, "perf/env_steps_per_s": rate}
                if self.done:
                    r, c, n = (float(np.mean(x)) for x in zip(*self.done))
                    row.update({"rollout/return": r, "rollout/cost": c, "rollout/length": n,
                                "rollout/episodes": float(len(self.done))})
                write_metrics(row)
                ep = (f" {len(self.done)} episodes: return {row['rollout/return']:.1f} cost {row['rollout/cost']:.2f}"
                      if self.done else "")
                log(f"  env step {step}/{total}{ep} {rate:.0f} steps/s, ETA {(total - step) / max(rate, 1e-9):.0f}s")
                self.done = []
            if step - self.last_save >= cfg.every or (step >= total > self.last_save):
                self.last_save = step
                tmp = out / "model.tmp.zip"
                self.model.save(str(tmp))
                tmp.replace(out / CHECKPOINT)
                save_state(step)
            return True

    try:
        model.learn(total_timesteps=max(total - start, 0), callback=Progress(), reset_num_timesteps=False)
    finally:
        env.close()
    return model, {"environment_steps": int(model.num_timesteps), "n_envs": cfg.n_envs}


def load_policy_net(cfg: BaselineConfig, task: dict[str, Any], path: Path):
    """The trained policy network from an SB3 zip, rebuilt from the config; no unpickling."""
    sb3()
    from stable_baselines3.common.save_util import load_from_zip_file

    obs_space, act_space = policy_spaces(task, cfg)
    policy = _algo(cfg).policy_aliases[_policy_name(cfg)](obs_space, act_space, lambda _: 0.0)
    try:
        _, params, _ = load_from_zip_file(str(path), device="cpu", load_data=False)
    except Exception as err:  # noqa: BLE001 - a torn or foreign zip ends here
        raise ConfigError(f"{path}: not a Stable-Baselines3 model file ({type(err).__name__})") from None
    if "policy" not in params:
        raise ConfigError(f"{path}: holds no policy weights")
    policy.load_state_dict(params["policy"])
    return policy.eval()

"""A library baseline's run folder: train (resumable), and load as a driver for `vlsafe eval`.

RUN/baseline.json holds the resolved config, the task, the data or environment budget, the
library versions and the last saved step; RUN/model.d3 (d3rlpy) or RUN/model.zip (SB3) the
weights; RUN/metrics.jsonl the curves. A second `fit` into the same folder with the same config
continues from the saved step; another config is refused before any work.
"""

from __future__ import annotations

import json
import time
from importlib import metadata
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from vlsafe.baselines import offline, online
from vlsafe.baselines.config import COST_AWARE, BaselineConfig
from vlsafe.config import ConfigError, from_dict, to_dict
from vlsafe.data.store import EpisodeStore
from vlsafe.envs.tasks import TaskConfig, parse_task
from vlsafe.evaluation.driver import LoadedRun
from vlsafe.manifest import code_version, read_json
from vlsafe.runlog import MetricsLog, dumps

__all__ = ["fit", "load_driver", "MARKER"]

MARKER = "baseline.json"
LIBRARY = {"bc": "d3rlpy", "cql": "d3rlpy", "iql": "d3rlpy", "bcql": "osrl-lib", "cpq": "osrl-lib",
           "ppo": "stable-baselines3", "sac": "stable-baselines3", "dqn": "stable-baselines3"}


def _versions(cfg: BaselineConfig) -> dict[str, str]:
    return {name: metadata.version(name) for name in (LIBRARY[cfg.algo], "torch", "gymnasium")}


def _write(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(dumps(data, indent=1))
    tmp.replace(path)


def fit(cfg: BaselineConfig, out: str | Path, data: str | Path | None = None, task: str | None = None,
        log: Callable[[str], None] = print) -> dict[str, Any]:
    """Train `cfg.algo`: offline on the dataset `data`, or online on `task` (NAME[:VARIANT]; the
    dataset's task when only `data` is given). Returns the run's baseline.json content."""
    out = Path(out)
    if cfg.offline and data is None:
        raise ConfigError(f"--algo {cfg.algo} learns offline: give --data DATASET")
    store = None
    if data is not None:
        store = EpisodeStore(data)
        manifest = store.validate(checksums=False)
        task_dict = manifest.get("task") or manifest["identity"]["task"]
    elif task is not None:
        name, variant = parse_task(task)
        task_dict = to_dict(TaskConfig(task=name, variant=variant))
    else:
        raise ConfigError(f"--algo {cfg.algo} learns online: give --task NAME (or --data DATASET for its task)")
    if task is not None and data is not None:
        name, variant = parse_task(task)
        task_dict = {**task_dict, "task": name, "variant": variant}
    # what makes two runs the same run; the budget and the logging cadence may change on resume
    ident_cfg = {k: v for k, v in to_dict(cfg).items() if k not in ("steps", "log_every", "checkpoint_every")}
    identity = {"baseline": ident_cfg, "data": str(data) if data is not None else None, "task": task_dict}
    start = 0
    if (out / MARKER).exists():
        prev = read_json(out / MARKER, "a baseline run's baseline.json", ("identity", "step"))
        if prev["identity"] != json.loads(dumps(identity)):
            raise ConfigError(f"{out}: holds a baseline run of another config or dataset; use another --out")
        start = int(prev["step"])
        if start >= cfg.total_steps:
            log(f"{out}: finished at step {start}")
            return prev
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    t0 = time.perf_counter()
    state = {"identity": identity, "config": to_dict(cfg), "method": cfg.algo, "library": _versions(cfg),
             "code_version": code_version(), "step": start, "wall_s": 0.0}
    if start:
        state["wall_s"] = float(read_json(out / MARKER, "a baseline run's baseline.json").get("wall_s", 0.0))
    wall0 = state["wall_s"]
    metrics = MetricsLog(out)

    def save_state(step: int) -> None:
        state.update(step=step, wall_s=wall0 + time.perf_counter() - t0)
        _write(out / MARKER, state)

    try:
        if cfg.algo in COST_AWARE:
            from vlsafe.baselines import osrl

            _, budget = osrl.train_osrl(cfg, store, task_dict, out, start, log, metrics.write, save_state)
        elif cfg.offline:
            _, budget = offline.train_offline(cfg, store, out, start, log, metrics.write, save_state)
        else:
            _, budget = online.train_online(cfg, task_dict, out, start, log, metrics.write, save_state)
    finally:
        metrics.close()
    state["budget"] = {**budget, "wall_s": state["wall_s"], "threads": cfg.threads}
    _write(out / MARKER, state)
    log(f"wrote {out}/{MARKER} and the weights ({state['wall_s']:.0f}s)")
    return state


class BaselineDriver:
    """A library policy behind the evaluator's `Driver` interface: it reads the observation it was
    trained on from the env and answers in its own action mode; no world model, so no p̂(safe)."""

    p_safe = cost = None

    def __init__(self, act: Callable[[np.ndarray], Any], observation: str, action_mode: str):
        self.act, self.observation, self.action_mode = act, observation, action_mode

    def __call__(self, env) -> Any:
        obs = env.observation(self.observation)
        if self.observation == "bev":
            obs = np.ascontiguousarray(obs.transpose(2, 0, 1))  # both libraries' CNNs are channel-first
        a = self.act(obs)
        return int(np.asarray(a).reshape(-1)[0]) if self.action_mode == "discrete" else \
            np.asarray(a, np.float32).reshape(2)


def load_driver(run: Path, device: str = "cpu", greedy: bool = True, actor: str = "policy",
                posterior: str = "mode") -> LoadedRun:  # posterior: unused, a library baseline has no world model
    if actor != "policy":
        raise ConfigError(f"{run}: --actor {actor} is for train-policy runs; a library baseline has one policy")
    state = read_json(run / MARKER, "a baseline run's baseline.json", ("identity", "config", "step"))
    try:
        cfg = from_dict(BaselineConfig, state["config"])
        task = state["identity"]["task"]
    except (KeyError, TypeError):
        raise ConfigError(f"{run}/{MARKER}: no baseline identity (is this a baseline run folder?)") from None
    if state["step"] < 1:
        raise ConfigError(f"{run}: no saved weights yet (step 0)")
    if cfg.algo in COST_AWARE:
        from vlsafe.baselines import osrl
        from vlsafe.envs.observation import vector_space

        model = osrl.load_model(cfg, vector_space().shape[0], int(task.get("max_steps", 500)), run / osrl.CHECKPOINT)
        # CPQ's act raises unless with_logprob=True (an OSRL bug); BCQ-Lag ignores both flags (it always samples)
        act = lambda obs: model.act(obs, greedy, True)[0]  # noqa: E731
    elif cfg.offline:
        algo = offline.make_algo(cfg, device="cpu")
        obs_space, act_space = online.policy_spaces(task, cfg)
        algo.create_impl(obs_space.shape, int(act_space.n) if cfg.action_mode == "discrete" else act_space.shape[0])
        offline.load_weights(algo, run / offline.CHECKPOINT)
        fn = algo.predict if greedy else algo.sample_action
        act = lambda obs: fn(obs[None])[0]  # noqa: E731
    else:
        policy = online.load_policy_net(cfg, task, run / online.CHECKPOINT)
        act = lambda obs: policy.predict(obs, deterministic=greedy)[0]  # noqa: E731
    facts = {"library": state.get("library"), "budget": state.get("budget"), "step": state["step"]}
    return LoadedRun(path=run, driver=BaselineDriver(act, cfg.observation, cfg.action_mode), method=cfg.algo,
                     task={**task, "observation": {**task.get("observation", {}), "kind": cfg.observation}}, facts=facts)

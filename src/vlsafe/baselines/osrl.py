"""OSRL's cost-aware offline learners, BCQ-Lag (`BCQL`) and CPQ, on a vlsafe dataset.

`osrl-lib` 0.1.0 pins torch ~1.13, so it is installed without its dependencies (Makefile); its
algorithm modules run unmodified on vlsafe's torch 2.13 / gymnasium 1.0 stack. Each of them
imports `DummyLogger` and `WandbLogger` from `fsrl.utils` (the `fast-safe-rl` package), whose
logger module imports tensorboard and wandb at import time; vlsafe never uses OSRL's loggers, so
where `fsrl` is not installed `_fsrl_loggers` registers a module with those two names only
(training statistics reach vlsafe through `Stats.store`, the method OSRL's trainers call).

Both learners act in continuous (acceleration, steering): the recorded discrete actions are fed as
the values they stand for, and the policy is evaluated with `action=continuous`. Observations are
the 70-float vector (OSRL's networks are MLPs). `cost_limit` is the episode cost budget κ the
Lagrangian (BCQ-Lag) or the cost-critic threshold (CPQ) keeps below; OSRL turns it into a per-step
Q threshold with `episode_len` (the task's max_steps).

Weights are saved as safetensors (the model's state_dict, tensors only). CPQ's `log_alpha`,
BCQ-Lag's PID controller state and the optimisers live outside `state_dict()` in OSRL, so a resumed
run restarts them.
"""

from __future__ import annotations

import math
import sys
import time
import types
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from vlsafe.baselines.config import BaselineConfig
from vlsafe.baselines.offline import continuous_actions
from vlsafe.config import ConfigError
from vlsafe.data.store import DatasetError, EpisodeStore

__all__ = ["CHECKPOINT", "make_model", "train_osrl", "load_model"]

CHECKPOINT = "model.safetensors"


def _fsrl_loggers() -> None:
    """`fsrl.utils.DummyLogger`/`WandbLogger`, the only names OSRL's algorithm modules import from
    fsrl, without fsrl's tensorboard and wandb imports (a real fsrl installation is used as is)."""
    try:
        import fsrl.utils  # noqa: F401
        return
    except ImportError:
        pass

    class DummyLogger:
        def store(self, tab=None, **kwargs) -> None:
            pass

    fsrl = types.ModuleType("fsrl")
    fsrl.__path__ = []  # a package, so `fsrl.utils` resolves
    utils = types.ModuleType("fsrl.utils")
    utils.DummyLogger = utils.WandbLogger = DummyLogger
    fsrl.utils = utils
    sys.modules.setdefault("fsrl", fsrl)
    sys.modules.setdefault("fsrl.utils", utils)


def algorithms():
    _fsrl_loggers()
    try:
        from osrl.algorithms import BCQL, CPQ, BCQLTrainer, CPQTrainer
    except ImportError as err:
        raise ConfigError(f"OSRL is not installed ({err}); run `make` or `pip install --no-deps osrl-lib==0.1.0`") from None
    return {"bcql": (BCQL, BCQLTrainer), "cpq": (CPQ, CPQTrainer)}


class Stats:
    """Where OSRL's trainers report their losses (`logger.store(**stats)`)."""

    def __init__(self):
        self.rows: dict[str, list[float]] = {}

    def store(self, tab=None, **kwargs) -> None:
        for k, v in kwargs.items():
            self.rows.setdefault(k, []).append(float(v))

    def take(self) -> dict[str, float]:
        out = {k: float(np.mean(v)) for k, v in self.rows.items()}
        self.rows = {}
        return out


def make_model(cfg: BaselineConfig, obs_dim: int, episode_len: int, stats: Stats | None = None):
    """OSRL's model and trainer with OSRL's own default hyperparameters for the algorithm."""
    model_cls, trainer_cls = algorithms()[cfg.algo]
    common = dict(state_dim=obs_dim, action_dim=2, max_action=1.0, a_hidden_sizes=[256, 256], c_hidden_sizes=[256, 256],
                  vae_hidden_sizes=400, sample_action_num=10, gamma=cfg.gamma, tau=0.005, beta=0.5, num_q=2, num_qc=2,
                  cost_limit=cfg.cost_limit, episode_len=episode_len, device="cpu")
    if cfg.algo == "bcql":
        model = model_cls(phi=0.05, lmbda=0.75, PID=[0.1, 0.003, 0.001], **common)
        lr = dict(actor_lr=cfg.learning_rate or 1e-3, critic_lr=cfg.learning_rate or 1e-3, vae_lr=1e-3)
    else:
        model = model_cls(qc_scalar=1.5, **common)
        lr = dict(actor_lr=cfg.learning_rate or 1e-4, critic_lr=cfg.learning_rate or 1e-3, alpha_lr=1e-4, vae_lr=1e-3)
    trainer = trainer_cls(model, None, logger=stats or Stats(), device="cpu", **lr)
    return model, trainer


def transitions(store: EpisodeStore, reward_scale: float) -> dict[str, np.ndarray]:
    """Every transition of the dataset as flat arrays (vector observations, continuous actions,
    rewards x `reward_scale`: OSRL's trainers leave scaling to its dataset class, not used here)."""
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("obs", "next", "act", "reward", "cost", "done")}
    for entry in store.entries():
        seed = int(entry["seed"])
        with store.open(seed) as f:
            try:
                vec, act = f["vector"][()], f["action"][()]
                reward, cost, terminated = f["reward"][()], f["cost"][()], f["terminated"][()]
            except KeyError as err:
                raise DatasetError(f"{store.path(seed)}: missing dataset {err}") from None
        T = len(reward)
        parts["obs"].append(vec[:T])
        parts["next"].append(vec[1:T + 1])
        parts["act"].append(continuous_actions(act) if act.ndim == 1 else act.astype(np.float32))
        parts["reward"].append(reward * reward_scale)
        parts["cost"].append(cost)
        parts["done"].append(terminated.astype(np.float32))
    return {k: np.concatenate(v).astype(np.float32) for k, v in parts.items()}


def _save(model, path: Path) -> None:
    from safetensors.torch import save_file

    tmp = path.with_suffix(".tmp")
    save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, str(tmp))
    tmp.replace(path)


def load_model(cfg: BaselineConfig, obs_dim: int, episode_len: int, path: Path):
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    model, _ = make_model(cfg, obs_dim, episode_len)
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise ConfigError(f"{path}: not a safetensors weights file ({type(err).__name__})") from None
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise ConfigError(f"{path}: weights of another model ({str(err).splitlines()[0]})") from None
    return model.eval()


def train_osrl(cfg: BaselineConfig, store: EpisodeStore, task: dict[str, Any], out: Path, start: int,
               log: Callable[[str], None], write_metrics: Callable[[dict[str, float]], None],
               save_state: Callable[[int], None]) -> tuple[Any, dict]:
    data = transitions(store, cfg.reward_scale)
    n, obs_dim = data["obs"].shape
    episode_len = int(task.get("max_steps", 500))
    stats = Stats()
    torch.manual_seed(cfg.seed + start)
    model, trainer = make_model(cfg, obs_dim, episode_len, stats)
    if start:
        model.load_state_dict(load_model(cfg, obs_dim, episode_len, out / CHECKPOINT).state_dict())
        log(f"resumed at step {start} (OSRL's multipliers and optimisers restart)")
    from importlib import metadata

    log(f"osrl-lib {metadata.version('osrl-lib')} {cfg.algo} on {n:,} transitions ({int((data['cost'] > 0).sum())} "
        f"with a cost), cost limit {cfg.cost_limit:g} per {episode_len}-step episode")
    rng = np.random.default_rng([cfg.seed, start])
    total, t0 = cfg.total_steps, time.perf_counter()
    for step in range(start + 1, total + 1):
        idx = rng.integers(0, n, cfg.batch_size)
        batch = [torch.from_numpy(data[k][idx]) for k in ("obs", "next", "act", "reward", "cost", "done")]
        trainer.train_one_step(*batch)
        if step % cfg.log_every == 0 or step == total:
            row = stats.take()
            bad = [k for k, v in row.items() if not math.isfinite(v)]
            if bad:
                raise ConfigError(f"{out}: {bad[0]} is {row[bad[0]]} at step {step}; stopped, the last checkpoint is kept")
            rate = (step - start) / (time.perf_counter() - t0)
            write_metrics({"step": step, **row, "perf/steps_per_s": rate})
            keys = [k for k in row if k.startswith("loss/")]
            log(f"  step {step}/{total} " + " ".join(f"{k[5:]} {row[k]:.4f}" for k in keys)
                + f" {rate:.0f} steps/s, ETA {(total - step) / max(rate, 1e-9):.0f}s")
        if step % cfg.every == 0 or step == total:
            _save(model, out / CHECKPOINT)
            save_state(step)
    return model, {"gradient_steps": total, "transitions": int(n), "cost_steps": int((data["cost"] > 0).sum())}

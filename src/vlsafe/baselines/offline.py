"""d3rlpy's offline learners (DiscreteBC/BC, DiscreteCQL/CQL, IQL) on a vlsafe dataset.

The dataset is streamed episode by episode from the HDF5 store into d3rlpy's replay buffer, keeping
only the observation the learner reads (the 70-float vector, or the 64 px frame channel-first), so
nothing is held twice. d3rlpy has no cost: the per-transition costs are kept beside the buffer
(`Converted.costs`) for cost-aware learners and the dataset's own statistics.

Checkpoints are d3rlpy's `save_model` file (a `torch.save` of the networks' and optimisers' state
dicts) and are read back with `torch.load(weights_only=True)`: tensors and plain containers only,
never pickled objects. d3rlpy's `load_learnable` (a plain `pickle.load`) is never used.
"""

from __future__ import annotations

import contextlib
import io
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from vlsafe.baselines.config import BaselineConfig
from vlsafe.config import ConfigError
from vlsafe.data.store import DatasetError, EpisodeStore
from vlsafe.envs.actions import DISCRETE_ACTIONS, MAX_ACCELERATION, action_space

__all__ = ["d3rlpy", "Converted", "to_mdp_dataset", "make_algo", "train_offline", "save_weights", "load_weights", "CHECKPOINT"]

CHECKPOINT = "model.d3"


def d3rlpy():
    """d3rlpy, imported quietly: it imports the old `gym`, which prints a deprecation banner."""
    with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
        import d3rlpy as lib
    return lib


def continuous_actions(index: np.ndarray) -> np.ndarray:
    """The (acceleration, steering) in [-1, 1]^2 that each discrete action index stands for."""
    acc_steer = DISCRETE_ACTIONS[index]
    return np.stack([acc_steer[:, 0] / MAX_ACCELERATION, acc_steer[:, 1]], axis=1).astype(np.float32)


@dataclass
class Converted:
    dataset: Any  # d3rlpy.dataset.ReplayBuffer (an MDPDataset)
    costs: list[np.ndarray]  # per episode, (T,) float32, in the buffer's episode order
    seeds: list[int]
    transitions: int


def to_mdp_dataset(store: EpisodeStore, observation: str, action: str, reward_scale: float = 1.0) -> Converted:
    """A vlsafe dataset as d3rlpy's replay buffer: per episode T transitions (the T+1-th observation
    is only a next observation: d3rlpy takes it as terminal/timeout by the episode's flag)."""
    lib = d3rlpy()
    from d3rlpy.dataset import Episode, InfiniteBuffer, ReplayBuffer

    buffer, costs, seeds, n = None, [], [], 0
    for entry in store.entries():
        seed = int(entry["seed"])
        with store.open(seed) as f:
            try:
                obs = f["vector"][()] if observation == "vector" else np.ascontiguousarray(
                    f["bev"][()].transpose(0, 3, 1, 2))  # (T+1, 3, H, W): d3rlpy's pixel encoder is channel-first
                act = f["action"][()]
                reward, cost, terminated = f["reward"][()], f["cost"][()], f["terminated"][()]
            except KeyError as err:
                raise DatasetError(f"{store.path(seed)}: missing dataset {err}") from None
        if act.ndim == 1 and action == "continuous":
            act = continuous_actions(act)
        elif act.ndim == 2 and action == "discrete":
            raise ConfigError(f"{store.root}: the dataset holds continuous actions; this learner needs discrete ones")
        T = len(reward)
        act = act.reshape(T, 1) if act.ndim == 1 else act
        ep = Episode(observations=obs[:T], actions=act, rewards=(reward * reward_scale).reshape(T, 1).astype(np.float32),
                     terminated=bool(terminated[-1]))
        if buffer is None:
            space = lib.ActionSpace.DISCRETE if action == "discrete" else lib.ActionSpace.CONTINUOUS
            size = action_space(action).n if action == "discrete" else 2
            buffer = ReplayBuffer(InfiniteBuffer(), episodes=[ep], action_space=space, action_size=size,
                                  observation_signature=ep.observation_signature,
                                  action_signature=ep.action_signature, reward_signature=ep.reward_signature)
        else:
            buffer.append_episode(ep)
        costs.append(np.asarray(cost, np.float32))
        seeds.append(seed)
        n += T
    if buffer is None:
        raise DatasetError(f"{store.manifest_path}: lists no episodes")
    return Converted(dataset=buffer, costs=costs, seeds=seeds, transitions=n)


def make_algo(cfg: BaselineConfig, device: str = "cpu"):
    """The d3rlpy algorithm for `cfg` (networks not built yet: `create_impl` or `build_with_dataset`)."""
    lib = d3rlpy()
    from d3rlpy.models.encoders import PixelEncoderFactory, VectorEncoderFactory
    from d3rlpy.preprocessing import MultiplyRewardScaler, PixelObservationScaler

    discrete = cfg.action_mode == "discrete"
    enc = PixelEncoderFactory() if cfg.observation == "bev" else VectorEncoderFactory(hidden_units=[256, 256])
    common: dict[str, Any] = dict(batch_size=cfg.batch_size, gamma=cfg.gamma,
                                  observation_scaler=PixelObservationScaler() if cfg.observation == "bev" else None)
    lr = {"learning_rate": cfg.learning_rate} if cfg.learning_rate else {}
    two_lr = {"actor_learning_rate": cfg.learning_rate, "critic_learning_rate": cfg.learning_rate} if cfg.learning_rate else {}
    if cfg.algo == "bc":
        conf = (lib.algos.DiscreteBCConfig if discrete else lib.algos.BCConfig)(encoder_factory=enc, **common, **lr)
    elif cfg.algo == "cql":
        common["reward_scaler"] = MultiplyRewardScaler(1.0)  # rewards are scaled at conversion (reward_scale)
        if discrete:
            conf = lib.algos.DiscreteCQLConfig(encoder_factory=enc, **common, **lr)
        else:
            conf = lib.algos.CQLConfig(actor_encoder_factory=enc, critic_encoder_factory=enc, **common, **two_lr)
    else:  # iql: continuous only
        conf = lib.algos.IQLConfig(actor_encoder_factory=enc, critic_encoder_factory=enc, value_encoder_factory=enc,
                                   **common, **two_lr)
    return conf.create(device=device)


def _modules(algo) -> dict[str, Any]:
    return algo.impl.modules.create_checkpointer("cpu:0").modules


def save_weights(algo, path: Path) -> None:
    """d3rlpy's own checkpoint format, written to a temp file and renamed (never half-written)."""
    tmp = path.with_suffix(".tmp")
    algo.save_model(str(tmp))
    tmp.replace(path)


def load_weights(algo, path: Path) -> None:
    """A `save_model` file into a built algorithm, without unpickling anything."""
    try:
        states = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - pickles, garbage and truncation all end here
        raise ConfigError(f"{path}: not a d3rlpy weights file ({type(err).__name__})") from None
    modules = _modules(algo)
    if not isinstance(states, dict) or set(states) != set(modules):
        raise ConfigError(f"{path}: holds {sorted(states) if isinstance(states, dict) else type(states).__name__}, "
                          f"expected the modules {sorted(modules)} of this algorithm")
    for name, module in modules.items():
        module.load_state_dict(states[name])


def train_offline(cfg: BaselineConfig, store: EpisodeStore, out: Path, start: int, log: Callable[[str], None],
                  write_metrics: Callable[[dict[str, float]], None], save_state: Callable[[int], None]) -> tuple[Any, dict]:
    """`cfg.total_steps` gradient steps from `start` (a resumed run continues from its checkpoint)."""
    lib = d3rlpy()
    lib.seed(cfg.seed + start)  # a resumed run draws other batches than a fresh one would: stated in the README
    data = to_mdp_dataset(store, cfg.observation, cfg.action_mode, cfg.reward_scale)
    cost_steps = int(sum((c > 0).sum() for c in data.costs))
    log(f"d3rlpy {lib.__version__} {cfg.algo} on {data.transitions:,} transitions of {len(data.seeds)} episodes "
        f"({cost_steps} with a cost), {cfg.observation} observations, {cfg.action_mode} actions")
    algo = make_algo(cfg)
    algo.build_with_dataset(data.dataset)
    if start:
        load_weights(algo, out / CHECKPOINT)
        log(f"resumed at step {start}")
    total, t0, acc = cfg.total_steps, time.perf_counter(), {}
    for step in range(start + 1, total + 1):
        batch = data.dataset.sample_transition_batch(cfg.batch_size)
        losses = algo.update(batch)
        for k, v in losses.items():
            acc.setdefault(k, []).append(float(v))
        bad = [k for k, v in losses.items() if not math.isfinite(float(v))]
        if bad:
            raise ConfigError(f"{out}: {bad[0]} is {losses[bad[0]]} at step {step}; stopped, the last checkpoint is kept")
        if step % cfg.log_every == 0 or step == total:
            rate = (step - start) / (time.perf_counter() - t0)
            row = {"step": step, **{f"loss/{k}": float(np.mean(v)) for k, v in acc.items()}, "perf/steps_per_s": rate}
            write_metrics(row)
            log(f"  step {step}/{total} " + " ".join(f"{k} {float(np.mean(v)):.4f}" for k, v in acc.items())
                + f" {rate:.0f} steps/s, ETA {(total - step) / max(rate, 1e-9):.0f}s")
            acc = {}
        if step % cfg.every == 0 or step == total:
            save_weights(algo, out / CHECKPOINT)
            save_state(step)
    return algo, {"gradient_steps": total, "transitions": data.transitions, "episodes": len(data.seeds),
                  "cost_steps": cost_steps}

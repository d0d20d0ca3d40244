"""`vlsafe train-wm`: fit the world model offline on a (labelled) dataset.

The loop is the plain one: sample a batch of sequences, compute the world-model loss, AdamW
with gradient clipping, log, checkpoint. Held-out episodes (every `held_out_every`-th seed) are
never trained on; `vlsafe.worldmodel.evaluate` scores the model on them.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from vlsafe.config import ConfigError, apply_overrides, from_dict, to_dict
from vlsafe.data.cost_source import check_cost_source, collision_scale
from vlsafe.data.sampler import SequenceSampler
from vlsafe.data.store import DatasetError, EpisodeStore, dataset_checksum
from vlsafe.runlog import MetricsLog
from vlsafe.training.checkpoint import (
    CheckpointError,
    NonFiniteError,
    load_checkpoint,
    read_checkpoint_meta,
    resume_checkpoint,
    save_checkpoint,
)
from vlsafe.training.distributed import LossModule, NullLog, ranks
from vlsafe.training.heap import reuse_freed_memory
from vlsafe.training.precision import autocast, resolve_precision
from vlsafe.worldmodel.rssm import PRESETS, WorldModel, WorldModelConfig

__all__ = ["TrainWMConfig", "resolve_config", "fit", "to_torch", "split_seeds", "load_world_model"]


@dataclass(frozen=True)
class TrainWMConfig:
    model: WorldModelConfig = field(default_factory=WorldModelConfig)
    steps: int = 2000
    batch_size: int = 16
    seq_len: int = 64
    lr: float = 3e-4
    weight_decay: float = 0.0
    eps: float = 1e-8
    grad_clip: float = 100.0
    log_every: int = 25
    checkpoint_every: int = 250
    windows: str = "uniform"  # sequence windows: every step equally likely ("uniform") or inside episodes ("inside")
    focus: float = 0.0  # fraction of windows drawn around unsafe steps (a cost within 10 steps, p(safe) < 0.5)
    held_out_every: int = 10  # seeds whose index % held_out_every == 0 are held out
    labels: str = "auto"  # 'auto' (the dataset's VLM labels, required), 'none' (no safety head loss), or a label key
    # "vlm": learn without the simulator's cost labels: cost = 1 − p(safe), the reward without its
    # crash term (vlsafe.data.cost_source); the policies trained on this model inherit it
    cost_source: str = "simulator"
    seed: int = 0
    threads: int = 0  # torch CPU threads; 0 = torch's default
    precision: str = "auto"  # fp32, bf16 (autocast) or auto (per preset and device: training/precision.py)
    reuse_memory: bool = True  # keep freed CPU memory in the heap instead of fresh pages every step (training/heap.py)


def resolve_config(preset: str = "xs", overrides: list[str] | tuple[str, ...] = ()) -> TrainWMConfig:
    if preset not in PRESETS:
        raise ConfigError(f"unknown world-model preset {preset!r}; valid presets: {', '.join(PRESETS)}")
    cfg = apply_overrides(TrainWMConfig(model=from_dict(WorldModelConfig, {"preset": preset, **PRESETS[preset]})), overrides)
    small = [f"{k} (got {getattr(cfg, k)})" for k, lo in (("steps", 1), ("batch_size", 1), ("seq_len", 2),
                                                           ("log_every", 1), ("checkpoint_every", 1),
                                                           ("held_out_every", 0), ("threads", 0))
             if getattr(cfg, k) < lo]
    if small:
        raise ConfigError("train-wm: steps, batch_size, log_every, checkpoint_every must be >= 1, seq_len >= 2, "
                          f"held_out_every and threads >= 0: {', '.join(small)}")
    if not cfg.lr > 0:
        raise ConfigError(f"train-wm: lr must be > 0, got {cfg.lr}")
    if cfg.windows not in ("uniform", "inside") or not 0.0 <= cfg.focus < 1.0:
        raise ConfigError(f"train-wm: windows must be uniform or inside and 0 <= focus < 1, got {cfg.windows!r}, {cfg.focus}")
    if check_cost_source(cfg.cost_source) == "vlm" and cfg.labels == "none":
        raise ConfigError("train-wm: cost_source=vlm takes the cost from the VLM's labels; labels=none has none")
    resolve_precision(cfg.precision, cfg.model.preset, "cpu")  # refuses an unknown name before any work
    return cfg


def split_seeds(store: EpisodeStore, every: int) -> tuple[list[int], list[int]]:
    seeds = sorted(int(e["seed"]) for e in store.entries())
    held = [s for i, s in enumerate(seeds) if every > 0 and i % every == 0]
    train = [s for s in seeds if s not in set(held)] or seeds
    return train, held


def to_torch(batch: dict[str, np.ndarray], action_dim: int, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    out = {k: torch.as_tensor(v, device=device) for k, v in batch.items() if k not in ("episode", "step")}
    a = out["action"]
    if a.dim() == 2:  # discrete indices -> one-hot; the zero action before a reset stays all-zero
        first = out["is_first"]
        out["action"] = F.one_hot(a.long().clamp(min=0), action_dim).float() * (~first)[..., None].float()
    else:
        out["action"] = a.float()
    for k in ("reward", "cost"):
        out[k] = out[k].float()
    return out


def training_labels(store: EpisodeStore, choice: str) -> dict[int, np.ndarray] | None:
    if choice == "none":
        return None
    try:
        from vlsafe.vlm.label import load_labels
    except ImportError:  # the VLM stage is not installed in this checkout
        load_labels = None
    try:
        if load_labels is None:
            raise DatasetError("no label loader")
        return load_labels(store, None if choice == "auto" else choice)
    except (DatasetError, FileNotFoundError) as err:
        raise DatasetError(f"{store.root}: no usable VLM labels ({err}); run `vlsafe label {store.root}` first, "
                           f"or train without the safety head: --set labels=none") from None


def label_set_used(store: EpisodeStore, choice: str) -> str | None:
    """The key of the label set `choice` names on this dataset now ('auto': the newest). train-wm
    records it, so that train-policy and eval-wm read the labels the world model learned from even
    after a newer label set is added to the dataset."""
    if choice == "none":
        return None
    if choice != "auto":
        return choice
    from vlsafe.vlm.label import list_labels

    sets = list_labels(store)
    return sets[-1]["key"] if sets else None


def run_label_choice(wm_conf: dict[str, Any], same_data: bool = True) -> str:
    """What a train-wm run's config says to load as labels: the set it recorded using (runs made
    before that was recorded, or another dataset: the run's `labels` setting)."""
    choice = (wm_conf.get("train") or {}).get("labels", "auto")
    return (wm_conf.get("labels_used") or choice) if same_data and choice != "none" else choice


def _labels_to_use(store: EpisodeStore, choice: str, out: Path) -> str | None:
    """`choice` resolved on this dataset; a resumed 'auto' run keeps the set it started with."""
    used = label_set_used(store, choice)
    if choice == "auto" and (out / "config.json").exists():
        from vlsafe.vlm.label import list_labels

        try:
            before = json.loads((out / "config.json").read_text()).get("labels_used")
        except (json.JSONDecodeError, AttributeError):
            before = None
        if before in {s["key"] for s in list_labels(store)}:
            used = before
    return used


def _identity(store: EpisodeStore, cfg: TrainWMConfig) -> dict[str, Any]:
    ident = {"model": to_dict(cfg.model), "data": dataset_checksum(store),
             "labels": cfg.labels, "batch_size": cfg.batch_size, "seq_len": cfg.seq_len, "seed": cfg.seed}
    if cfg.cost_source != "simulator":  # runs made before the switch existed keep their identity
        ident["cost_source"] = cfg.cost_source
    return ident


def _check_dataset(store: EpisodeStore, model: WorldModelConfig) -> dict[str, Any]:
    """The manifest, once every episode file has been checked (frame size, finite numbers,
    checksums): a bad dataset is refused before the run folder is created."""
    man = store.manifest()
    if man.get("complete") and int(man.get("bev_size", 64)) != model.image_size:
        raise DatasetError(f"{store.root}: frames are {man.get('bev_size')} px, the world model needs {model.image_size} px")
    return store.validate(image_size=model.image_size)


def load_world_model(run: str | Path, device: str = "cpu") -> tuple[WorldModel, dict[str, Any]]:
    """A trained world model from a train-wm run folder (weights only, no optimizer)."""
    run = Path(run)
    if not (run / "checkpoint.json").exists() and not (run / "checkpoint.safetensors").exists():
        raise CheckpointError(f"{run}: no checkpoint.json (is this a train-wm run folder?)")
    meta = read_checkpoint_meta(run)
    try:
        model = WorldModel(from_dict(WorldModelConfig, meta["identity"]["model"])).to(device)
    except (KeyError, TypeError):
        raise CheckpointError(f"{run}/checkpoint.json: no world-model identity (is this a train-wm run folder?)") from None
    load_checkpoint(run, model, device=device)
    return model.eval(), meta


def _saved_step(folder: Path) -> str:
    """What a stopped run leaves, for its one-line error."""
    try:
        return f"the last checkpoint (step {read_checkpoint_meta(folder)['step']}) is kept"
    except CheckpointError:
        return "no checkpoint was written"


def _rank_sampler(store: EpisodeStore, cfg: TrainWMConfig, rk, train_seeds: list[int], labels, meta,
                  scale: float = 0.0) -> SequenceSampler:
    """One rank: the run's own sampler stream, resumed exactly. Several: each rank its shard of the
    training episodes, its share of the global batch, and its own seed (reseeded at the step it
    resumes at, whatever number of ranks wrote the checkpoint)."""
    step = int(meta["step"]) if meta else 0
    shard = train_seeds[rk.rank::rk.world] if rk.distributed and len(train_seeds) >= rk.world else train_seeds
    seed = cfg.seed if not rk.distributed else [cfg.seed, rk.rank, step]
    sampler = SequenceSampler(store, cfg.seq_len, cfg.batch_size // rk.world, seed=seed, seeds=shard, labels=labels,
                              keys=("bev", "vector") if cfg.model.ego else ("bev",), windows=cfg.windows,
                              focus=cfg.focus, cost_source=cfg.cost_source, collision_scale=scale)
    if meta is not None and not rk.distributed and int(meta.get("world_size", 1)) == 1:
        sampler.rng.bit_generator.state = meta["sampler_rng"]
    return sampler


def fit(data: str | Path, out: str | Path, cfg: TrainWMConfig, device: str = "cpu",
        log: Callable[[str], None] = print) -> WorldModel:
    store = EpisodeStore(data)
    man = _check_dataset(store, cfg.model)
    out = Path(out)
    labels_used = _labels_to_use(store, cfg.labels, out)
    labels = training_labels(store, labels_used or cfg.labels)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    task = man.get("task", {})
    scale = collision_scale(store, task, "cost_source=vlm") if cfg.cost_source == "vlm" else 0.0
    action_dim = 15 if task.get("action", "discrete") == "discrete" else 2
    if cfg.model.action_dim != action_dim:
        cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, action_dim=action_dim))
    ident = _identity(store, cfg)
    rk = ranks(device)
    if cfg.batch_size % rk.world:
        raise ConfigError(f"train-wm: batch_size {cfg.batch_size} (the global batch) must divide by the {rk.world} ranks")
    log = log if rk.main else (lambda _: None)
    torch.manual_seed(cfg.seed)  # the same initial weights on every rank
    model = WorldModel(cfg.model).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, eps=cfg.eps, weight_decay=cfg.weight_decay)
    train_seeds, held = split_seeds(store, cfg.held_out_every)
    step = 0
    meta = resume_checkpoint(out, ident, model, opt, device)
    if meta is not None:
        step = int(meta["step"])
    sampler = _rank_sampler(store, cfg, rk, train_seeds, labels, meta, scale)
    if meta is not None:
        log(f"resuming {out} from step {step} ({meta.get('world_size', 1)} rank(s) wrote it, {rk.world} now)")
    if labels_used:
        log(f"  labels {labels_used} (labels={cfg.labels})")
    if rk.main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text(json.dumps({"train": to_dict(cfg), "data": str(store.root),
                                                     "held_out_seeds": held, "identity": ident,
                                                     "labels_used": labels_used,
                                                     "ranks": rk.world, "global_batch": cfg.batch_size}, indent=1))
    metrics_log = MetricsLog(out) if rk.main else NullLog()
    step_model = torch.nn.parallel.DistributedDataParallel(LossModule(model)) if rk.distributed else LossModule(model)
    precision = resolve_precision(cfg.precision, cfg.model.preset, device)
    heap = cfg.reuse_memory and reuse_freed_memory()
    log(f"  precision {precision} (precision={cfg.precision}, preset {cfg.model.preset}, {device}); "
        f"freed memory {'kept in the heap' if heap else 'returned to the system'}")
    t0, step0 = time.perf_counter(), step
    model.train()
    while step < cfg.steps:
        batch = to_torch(sampler.sample(), cfg.model.action_dim, device)
        with autocast(precision, device):
            loss, metrics, _ = step_model(batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        # the step's one host sync: stop before the optimizer writes NaN into the weights
        if not rk.all_true(torch.isfinite(loss) & torch.isfinite(grad_norm)):
            metrics_log.close()
            sampler.close()
            raise NonFiniteError(f"{out}: loss {loss.item()} / gradient norm {grad_norm.item()} at step {step + 1}; "
                                 f"stopped, {_saved_step(out)}")
        opt.step()
        step += 1
        if step % cfg.log_every == 0 or step == cfg.steps:
            rate = (step - step0) / (time.perf_counter() - t0)
            row = {"step": step, "wm/loss": rk.all_mean(loss).item(), "wm/grad_norm": grad_norm.item(),
                   **{k: float(rk.all_mean(torch.as_tensor(v))) for k, v in metrics.items()}, "perf/steps_per_s": rate}
            metrics_log.write(row)
            log(f"  step {step}/{cfg.steps} loss {row['wm/loss']:.2f} (image {row['wm/image_loss']:.1f}, "
                f"cost {row['wm/cost_loss']:.3f}, kl {row['wm/kl']:.2f}) {rate:.2f} steps/s, "
                f"ETA {(cfg.steps - step) / max(rate, 1e-9):.0f}s")
        if rk.main and (step % cfg.checkpoint_every == 0 or step == cfg.steps):
            save_checkpoint(out, model, opt, {"step": step, "identity": ident, "world_size": rk.world,
                                              "global_batch": cfg.batch_size,
                                              "sampler_rng": sampler.rng.bit_generator.state})
    metrics_log.close()
    sampler.close()
    if rk.distributed:
        torch.distributed.barrier()  # rank 0's last checkpoint is on disk before any rank returns
        rk.close()  # leave the process group before exit: a rank that exits inside it was aborted by gloo's threads
    return model.eval()

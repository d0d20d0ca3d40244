"""`vlsafe train-policy`: learn an actor-critic in the imagination of a trained world model.

The world model is loaded from a train-wm run and frozen. Start states are the posteriors of
every step of the world model's training episodes (held-out episodes stay unseen). The simulator
is only used to evaluate, every `eval_every` updates, a few episodes on maps the dataset never
drove (seeds from `eval_seed_start`).

A policy run folder is self-contained: its checkpoint holds the world model too, so `vlsafe eval`
needs neither the dataset nor the world-model run.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from vlsafe.config import ConfigError, apply_overrides, from_dict, to_dict
from vlsafe.data.cost_source import collision_scale
from vlsafe.data.store import EpisodeStore
from vlsafe.evaluation.evaluate import make_env, simulate
from vlsafe.evaluation.metrics import aggregate
from vlsafe.manifest import read_json
from vlsafe.policy.actor_critic import ImaginationLearner, PolicyConfig, method_config
from vlsafe.policy.agent import DrivingAgent, start_states
from vlsafe.runlog import MetricsLog
from vlsafe.training.checkpoint import (
    CheckpointError,
    NonFiniteError,
    load_checkpoint,
    read_checkpoint_meta,
    resume_checkpoint,
    save_checkpoint,
)
from vlsafe.training.distributed import LossModule, NullLog, Ranks, ranks
from vlsafe.training.precision import autocast, resolve_precision
from vlsafe.worldmodel.rssm import WorldModel, WorldModelConfig
from vlsafe.worldmodel.train import load_world_model, run_label_choice, training_labels

__all__ = ["TrainPolicyConfig", "Policy", "resolve_config", "fit", "load_policy"]


@dataclass(frozen=True)
class TrainPolicyConfig:
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    steps: int = 2000  # updates, the first policy.bc_steps of them for π̂_b and the critics only
    starts: int = 256  # dataset posterior states per update (and as many imagined ones)
    log_every: int = 50
    checkpoint_every: int = 250
    eval_every: int = 500  # simulator evaluation every N updates (0: never)
    eval_episodes: int = 3
    eval_seed_start: int = 500  # maps the default datasets (seeds from 0) do not hold
    seed: int = 0
    threads: int = 0  # torch CPU threads; 0 = torch's default
    precision: str = "auto"  # fp32, bf16 (autocast) or auto: bf16 on CUDA, fp32 on CPU (small MLPs: no gain measured)


def resolve_config(method: str = "vl-safe", overrides: list[str] | tuple[str, ...] = ()) -> TrainPolicyConfig:
    for text in overrides:  # a method named in an override brings its flags, as --method does
        if text.replace(" ", "").startswith("policy.method="):
            method = text.split("=", 1)[1].strip()
    cfg = apply_overrides(TrainPolicyConfig(policy=method_config(method)), overrides)
    if cfg.steps < 1 or cfg.starts < 1 or cfg.eval_every < 0 or cfg.eval_episodes < 1:
        raise ConfigError("train-policy: need steps >= 1, starts >= 1, eval_every >= 0, eval_episodes >= 1")
    resolve_precision(cfg.precision, None, "cpu")  # refuses an unknown name before any work
    return cfg


class Policy(nn.Module):
    """What a policy run saves: the frozen world model and the learner (actor and critics)."""

    def __init__(self, wm: WorldModelConfig, policy: PolicyConfig):
        super().__init__()
        self.world_model = WorldModel(wm)
        self.learner = ImaginationLearner(policy, wm.feat, wm.action_dim, discrete=wm.action_dim == 15,
                                          deter=wm.deter)
        self.world_model.requires_grad_(False)


# policy fields added after runs were on disk, with the value those runs had
EARLIER_POLICY = {"actor_input": "feat", "value_input": "feat", "collision_reward": True, "p_constant": 0.9}


def _upgrade_identity(ident: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(ident.get("policy"), dict):
        return ident
    return {**ident, "policy": {**EARLIER_POLICY, **ident["policy"]}}


def load_policy(run: str | Path, device: str = "cpu") -> tuple[Policy, dict[str, Any]]:
    """A trained policy and its run config (task, method, world model) from a train-policy folder."""
    run = Path(run)
    if not (run / "config.json").exists() or not (run / "checkpoint.json").exists():
        raise CheckpointError(f"{run}: no config.json/checkpoint.json (is this a train-policy run folder?)")
    conf = read_json(run / "config.json", "a train-policy run's config", ("identity", "task"))
    try:
        fields = _upgrade_identity(conf["identity"])["policy"]  # a run saved before a field existed
        policy = Policy(from_dict(WorldModelConfig, conf["identity"]["world_model"]["model"]),
                        from_dict(PolicyConfig, fields)).to(device)
    except (KeyError, TypeError, AttributeError):
        raise CheckpointError(f"{run}/config.json: no policy identity (is this a train-policy run folder?)") from None
    meta = load_checkpoint(run, policy, device=device)
    policy.learner.load_extra_state(meta["learner"])
    return policy.eval(), conf


@torch.no_grad()
def _data_disagreement(world: WorldModel, learner: ImaginationLearner, data: dict[str, torch.Tensor]) -> float:
    """u_data: the ensemble's mean disagreement on the dataset's own transitions (state, action taken)."""
    keep = data["has_next"]
    feat = world.feat({"deter": data["deter"][keep], "stoch": data["stoch"][keep]})
    action = learner._action_input(data["action"][keep])
    u = torch.cat([world.disagreement(f, a) for f, a in zip(feat.split(4096), action.split(4096))])
    return max(float(u.mean()), 1e-8)


def _resume(out: Path, ident: dict, policy: Policy, opt, device: str, seed: int, rk: Ranks,
            log: Callable[[str], None]) -> tuple[int, np.random.Generator]:
    """The step to start at and the start-state sampler: one process resumes its own stream
    exactly; under torchrun, or from a checkpoint other ranks wrote, each rank is reseeded at it."""
    rng = np.random.default_rng(seed)
    step, written_by = 0, 1
    meta = resume_checkpoint(out, ident, policy, opt, device, inputs="world model", upgrade=_upgrade_identity)
    if meta is not None:
        policy.learner.load_extra_state(meta["learner"])
        step, written_by = int(meta["step"]), int(meta.get("world_size", 1))
        if written_by == 1 and not rk.distributed:
            rng.bit_generator.state = meta["start_rng"]
        log(f"resuming {out} from step {step}" + (f" ({written_by} rank(s) wrote it, {rk.world} now)"
                                                 if rk.world != written_by else ""))
    if rk.distributed or written_by != 1:
        rng = np.random.default_rng([seed, rk.rank, step])
    return step, rng


def _stop_unless_finite(row: dict, rk: Ranks, out: Path, step: int, metrics_log, device: str) -> None:
    """The update's one host sync: stop before a checkpoint could hold what this update did (every
    rank together, or none)."""
    losses = {k: v for k, v in row.items() if k.endswith("loss")}
    if rk.all_true(torch.isfinite(torch.stack([torch.as_tensor(v, dtype=torch.float32, device=device)
                                               for v in losses.values()])).all()):
        return
    values = {k: float(v) for k, v in losses.items()}
    bad = [k for k, v in values.items() if not math.isfinite(v)]
    metrics_log.close()
    kept = (f"the last checkpoint (step {read_checkpoint_meta(out)['step']}) is kept"
            if (out / "checkpoint.safetensors").exists() else "no checkpoint was written")
    raise NonFiniteError(f"{out}: {bad[0]} is {values[bad[0]]} at update {step}; stopped, {kept}")


def _refuse_missing_inputs(policy: PolicyConfig, wm: WorldModel, wm_run: Path, store: EpisodeStore,
                           task: dict) -> None:
    """A setting that reads what the world model or the dataset does not hold, refused before any work."""
    conflict = bool((task.get("observation") or {}).get("conflict"))
    if policy.conflict_input and not conflict:
        raise ConfigError(f"{store.manifest_path}: policy.conflict_input reads the vector's conflict columns, and this "
                          f"dataset was recorded without them (collect --set observation.conflict=true)")
    if policy.approach_input and conflict:
        raise ConfigError(f"{store.manifest_path}: policy.approach_input appends its columns where this dataset "
                          f"(observation.conflict=true) stores the conflict columns; use policy.conflict_input")
    if policy.uncertainty > 0 and not wm.config.ensemble:
        raise ConfigError(f"{wm_run}: policy.uncertainty > 0 needs a world model with an ensemble "
                          f"(train-wm --set model.ensemble=5); this one has none")
    if policy.action_labels == "expert" and not store.manifest().get("expert_labels"):
        raise ConfigError(f"{store.manifest_path}: policy.action_labels=expert needs the expert's action at every "
                          f"state, and this dataset was recorded without it (collect --expert-labels)")


def fit(world_model_run: str | Path, out: str | Path, cfg: TrainPolicyConfig, device: str = "cpu",
        log: Callable[[str], None] = print) -> Policy:
    wm_run, out = Path(world_model_run), Path(out)
    wm, wm_meta = load_world_model(wm_run, device)
    wm_conf = read_json(wm_run / "config.json", "a train-wm run's config", ("data", "held_out_seeds"))
    store = EpisodeStore(wm_conf["data"])
    manifest = store.manifest()
    task = manifest.get("task") or manifest["identity"]["task"]
    # a world model that learned without the simulator's cost labels passes that on: the data's
    # cost is the VLM's 1 − p(safe) and its reward has no crash term here too
    cost_source = (wm_conf.get("train") or {}).get("cost_source", "simulator")
    p_safe = training_labels(store, run_label_choice(wm_conf)) if cost_source == "vlm" else None
    scale = 0.0 if cfg.policy.collision_reward and cost_source == "simulator" else collision_scale(
        store, task, "cost_source=vlm" if cost_source == "vlm" else "policy.collision_reward=false")
    _refuse_missing_inputs(cfg.policy, wm, wm_run, store, task)
    rk = ranks(device)
    if cfg.starts % rk.world:
        raise ConfigError(f"train-policy: starts {cfg.starts} (the global batch) must divide by the {rk.world} ranks")
    log = log if rk.main else (lambda _: None)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    ident = {"policy": to_dict(cfg.policy), "world_model": {**wm_meta["identity"], "step": wm_meta["step"]},
             "starts": cfg.starts, "seed": cfg.seed}
    torch.manual_seed(cfg.seed)
    policy = Policy(wm.config, cfg.policy).to(device)
    policy.world_model.load_state_dict(wm.state_dict())
    learner, world = policy.learner, policy.world_model.eval()
    opt = learner.make_optimizer()
    step, rng = _resume(out, ident, policy, opt, device, cfg.seed, rk, log)
    held = set(wm_conf["held_out_seeds"])
    seeds = [int(e["seed"]) for e in store.entries() if int(e["seed"]) not in held]
    if rk.main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text(json.dumps({"train": to_dict(cfg), "world_model_run": str(wm_run), "task": task,
                                                     "data": str(store.root), "identity": ident,
                                                     "ranks": rk.world, "global_batch": cfg.starts}, indent=1))
    t0 = time.perf_counter()
    with torch.random.fork_rng(devices=[]):  # the same posterior samples in a fresh and a resumed run
        torch.manual_seed(cfg.seed)
        data = start_states(world, store, seeds, gamma=cfg.policy.gamma, cost_gamma=cfg.policy.cost_gamma,
                            collision_scale=scale, p_safe=p_safe, expert_actions=cfg.policy.action_labels == "expert",
                            approach=cfg.policy.approach_input)
    data = {k: v.to(device) for k, v in data.items()}
    M = len(data["deter"])
    # fixed return scales: the critics regress returns / scale, so that a crash (−390) and an
    # ordinary stretch of road (+100) are both numbers an MLP fits; set from the data, not learned
    scale_r = max(1.0, float(data["return_reward"].std()))
    scale_c = max(0.01, float(data["return_cost"].std()))
    learner.set_scales(scale_r, scale_c)
    if learner.actor.standardise:  # the same statistics for the actor, π̂_b and V_b, saved with them
        cols = data["vector"][:, list(learner.actor.columns)]
        learner.actor.set_column_stats(cols)
        learner.behaviour.set_column_stats(cols)
    if cfg.policy.uncertainty > 0:
        learner.u_data.fill_(_data_disagreement(world, learner, data))
        log(f"  ensemble disagreement on the data's transitions: {float(learner.u_data):.4f} (u_data)")
    log(f"  {M} start states from {len(seeds)} training episodes in {time.perf_counter() - t0:.0f}s; "
        f"return scales: reward {scale_r:.1f}, cost {scale_c:.3f}")
    if cfg.steps <= cfg.policy.bc_steps:  # legal for a run resumed later, a trap for one that stops here
        log(f"  warning: steps {cfg.steps} <= policy.bc_steps {cfg.policy.bc_steps}: the actor starts as π̂_b's "
            f"copy after update {cfg.policy.bc_steps}, so this run's actor stays untrained (it drives nowhere)")
    keys = ("deter", "stoch", "action", "reward", "cost", "done", "has_next", "return_reward", "return_cost")
    keys += ("vector",) if cfg.policy.vector_columns else ()  # only an actor that reads it pays for the gather
    keys += ("expert_action",) if cfg.policy.action_labels == "expert" else ()
    keys += ("return_reach",) if cfg.policy.data_reachability else ()
    metrics_log = MetricsLog(out) if rk.main else NullLog()
    loss_fn = None
    if rk.distributed:  # DDP averages the gradients; the learner's batch statistics are ranks' means
        learner.distribute(rk.all_mean, rk.world)
        loss_fn = torch.nn.parallel.DistributedDataParallel(LossModule(learner, "losses"), find_unused_parameters=True)
        # the imagined rollouts' samples differ between ranks (the weights and start states do not)
        torch.manual_seed(int(np.random.SeedSequence([cfg.seed, rk.rank, step]).generate_state(1)[0]))
    # the learner's MLPs are small: bf16 pays on a GPU only ("auto"), fp32 elsewhere unless asked
    precision = resolve_precision(cfg.precision, None, device)
    env = None
    t0, step0 = time.perf_counter(), step
    while step < cfg.steps:
        idx = torch.as_tensor(rng.integers(0, M, cfg.starts // rk.world), device=device)
        nxt = data["next"][idx]
        with autocast(precision, device):
            row = learner.update(world, {k: data[k][idx] for k in keys},
                                 {"deter": data["deter"][nxt], "stoch": data["stoch"][nxt]}, opt, loss_fn)
        step += 1
        _stop_unless_finite(row, rk, out, step, metrics_log, device)
        evaluate = rk.main and bool(cfg.eval_every) and (step % cfg.eval_every == 0 or step == cfg.steps)
        if evaluate or step % cfg.log_every == 0 or step == cfg.steps:
            # tensors are read out only when written; under torchrun as the ranks' mean (the global batch's)
            means = rk.all_mean(torch.stack([torch.as_tensor(v, dtype=torch.float32, device=device).reshape(())
                                             for v in row.values()]))
            row = dict(zip(row, means.tolist()))
            if evaluate:
                env = env or make_env(task)
                agent = DrivingAgent(policy.world_model, learner.actor, device=device)
                runs = simulate(agent, env, range(cfg.eval_seed_start, cfg.eval_seed_start + cfg.eval_episodes))
                agg = aggregate([r.metrics for r in runs])
                row.update({f"eval/{k}": v for k, v in agg.items() if k != "episodes"})
                log(f"  step {step}: eval over {cfg.eval_episodes} episodes: return {agg['Return']:.1f}, "
                    f"cost {agg['Cost']:.2f}, AR {agg['AR']:.2f}, CR {agg['CR']:.2f}")
            rate = (step - step0) / (time.perf_counter() - t0)
            row = {"step": step, **row, "perf/steps_per_s": rate}
            metrics_log.write(row)
            imagined = (f" imagined return {row['imag/return']:.2f} cost {row['imag/cost_return']:.3f}"
                        f" λ {row['lagrange/lambda']:.2f}" if "imag/return" in row else "")
            log(f"  step {step}/{cfg.steps}{imagined} p_safe {row['actor/p_safe']:.2f} entropy {row['actor/entropy']:.2f} "
                f"data weight {row['actor/data_weight_mean']:.2f} {rate:.1f} steps/s, "
                f"ETA {(cfg.steps - step) / max(rate, 1e-9):.0f}s")
        if step % cfg.checkpoint_every == 0 or step == cfg.steps:
            rk.check_replicas(learner, str(out))
            if rk.main:
                save_checkpoint(out, policy, opt, {"step": step, "identity": ident, "learner": learner.extra_state(),
                                                   "start_rng": rng.bit_generator.state, "world_size": rk.world,
                                                   "global_batch": cfg.starts})
    metrics_log.close()
    if env is not None:
        env.close()
    if rk.distributed:
        torch.distributed.barrier()  # rank 0's last checkpoint is on disk before any rank returns
        rk.close()
    return policy.eval()

"""`vlsafe collect`: record episodes of a behaviour mixture into an EpisodeStore, in parallel.

Episode seeds are `seed_start, seed_start + 1, ...`; each seed fixes the map, the traffic and the
behaviour, so the dataset is a pure function of the config. Workers are processes (one
simulator each: MetaDrive allows one engine per process). Every finished episode is a file
under its final name, so a killed run is resumed by running the same command again: finished
seeds are kept, and collection continues with the missing ones. With a step budget the dataset
is the shortest prefix of seeds whose steps reach the budget, so a resumed run and an
uninterrupted one hold exactly the same episodes.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from concurrent.futures import FIRST_COMPLETED, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from vlsafe.config import ConfigError, to_dict
from vlsafe.data.episode import EpisodeRecorder
from vlsafe.data.store import DatasetMismatchError, EpisodeStore
from vlsafe.experts.behaviours import default_mixture, make_driver, parse_mixture, pick_behaviour
from vlsafe.runlog import dumps

__all__ = ["CollectConfig", "PRESETS", "collect"]

# Dataset sizes per task. `tiny` is for tests and the demo.
PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {"steps": 1_500, "max_steps": 300},
    "small": {"steps": 50_000},
    "full": {"steps": 500_000},
}


@dataclass(frozen=True)
class CollectConfig:
    task: str = "four-lane"  # NAME or NAME:VARIANT
    backend: str = "metadrive"
    steps: int = 0  # collect until this many steps (0: use `episodes`)
    episodes: int = 0
    # behaviour:weight,...; empty: the task's own (experts.behaviours.default_mixture: reckless-free on
    # MetaDrive's left-turn, expert:0.5,noisy:0.25,reckless:0.25 elsewhere)
    mixture: str = ""
    seed_start: int = 0
    workers: int = 1
    bev_size: int = 64
    max_steps: int = 0  # 0: the task's own (500 steps; navigation 1000, TASK_DEFAULTS)
    # steps recorded after a crash before the episode ends (TaskConfig.steps_after_crash): the
    # world model then sees unsafe frames; 0 reproduces the datasets made before this field
    steps_after_crash: int = 30
    task_overrides: tuple[str, ...] = field(default_factory=tuple)
    # also record, at every step, the action the noise-free expert would take there (Episode.expert_action):
    # for `policy.action_labels=expert`, a clone that learns the way back from the other drivers' mistakes
    expert_labels: bool = False

    def validate(self) -> None:
        if (self.steps > 0) == (self.episodes > 0):
            raise ConfigError(f"collect: give exactly one of steps or episodes (> 0), got steps={self.steps}, "
                              f"episodes={self.episodes}")
        if self.max_steps < 0:
            raise ConfigError(f"collect: max_steps must be >= 0 (0: the task's own), got {self.max_steps}")
        if self.workers < 1:
            raise ConfigError(f"collect: workers must be >= 1, got {self.workers}")
        parse_mixture(self.behaviour_mixture)

    @property
    def behaviour_mixture(self) -> str:
        """The mixture recorded: the one given, else the task's default."""
        return self.mixture or default_mixture(self.task, self.backend)

    def task_config(self):
        from vlsafe.envs.tasks import task_config

        steps = [f"max_steps={self.max_steps}"] if self.max_steps > 0 else []
        return task_config(self.task, self.backend, overrides=[
            "observation.kind=both", f"observation.bev.size={self.bev_size}", *steps,
            f"steps_after_crash={self.steps_after_crash}", *self.task_overrides])


# -- worker side ---------------------------------------------------------------------------------
_ENV = None
_STORE: EpisodeStore | None = None
_MIXTURE: dict[str, float] = {}
_EXPERT_LABELS = False


def _init_worker(task_cfg_json: str, root: str, mixture: str, expert_labels: bool = False) -> None:
    global _ENV, _STORE, _MIXTURE, _EXPERT_LABELS
    import cv2

    cv2.setNumThreads(1)  # one process per core: library thread pools would only fight over the cores
    from vlsafe.config import from_dict
    from vlsafe.envs.driving_env import DrivingEnv
    from vlsafe.envs.tasks import TaskConfig

    _ENV = DrivingEnv(from_dict(TaskConfig, json.loads(task_cfg_json)))
    _STORE = EpisodeStore(root)
    _MIXTURE = parse_mixture(mixture)
    _EXPERT_LABELS = expert_labels


def _collect_one(seed: int) -> dict[str, Any]:
    assert _ENV is not None and _STORE is not None, "worker not initialised"
    behaviour = pick_behaviour(_MIXTURE, seed)
    driver = make_driver(behaviour, seed)
    # the expert asked at every state the episode's own driver reaches (it reads the scene, never
    # drives); the expert behaviour is its own label
    shadow = make_driver("expert", seed) if _EXPERT_LABELS and behaviour != "expert" else None
    rec = EpisodeRecorder(seed, behaviour, _ENV.dt)
    obs, info = _ENV.reset(seed=seed)
    rec.start(obs, info)
    while True:
        expert = shadow.act(_ENV) if shadow is not None else None
        action = driver.act(_ENV)
        obs, reward, terminated, truncated, info = _ENV.step(action)
        label = (expert if shadow is not None else action) if _EXPERT_LABELS else None
        rec.add(action, obs, reward, terminated, truncated, info, expert_action=label)
        if terminated or truncated:
            break
    return _STORE.write(rec.finish())


# -- driver side ---------------------------------------------------------------------------------
def _identity(cfg: CollectConfig, task_cfg) -> dict[str, Any]:
    """What must match for a resumed run to continue an existing dataset."""
    ident = to_dict(cfg)
    ident.pop("workers")
    if not ident["expert_labels"]:  # datasets from before the field keep the identity they were made with
        ident.pop("expert_labels")
    return {"collect": ident, "task": to_dict(task_cfg)}


def _load_progress(store: EpisodeStore) -> dict[int, dict[str, Any]]:
    done: dict[int, dict[str, Any]] = {}
    log = store.root / "progress.jsonl"
    if log.exists():
        for line in log.read_text().splitlines():
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut by a kill
            done[int(entry["seed"])] = entry
    on_disk = set(store.seeds_on_disk())
    done = {s: e for s, e in done.items() if s in on_disk and store.path(s).stat().st_size == e["bytes"]}
    for seed in sorted(on_disk - set(done)):  # renamed into place, but killed before logging
        done[seed] = EpisodeStore.entry(store.read(seed), store.path(seed))
    return done


def _prefix_complete(cfg: CollectConfig, done: dict[int, dict[str, Any]]) -> int | None:
    """Number of seeds that form the finished dataset, or None if not finished yet."""
    if cfg.episodes:
        return cfg.episodes if all(cfg.seed_start + i in done for i in range(cfg.episodes)) else None
    total, n = 0, 0
    while cfg.seed_start + n in done:
        total += done[cfg.seed_start + n]["steps"]
        n += 1
        if total >= cfg.steps:
            return n
    return None


@contextmanager
def _single_threaded_children():
    """Workers inherit the environment at spawn: give them single-threaded BLAS/OpenMP/Blosc."""
    from vlsafe.cluster import SINGLE_THREAD_ENV

    old = {k: os.environ.get(k) for k in SINGLE_THREAD_ENV}
    os.environ.update(SINGLE_THREAD_ENV)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def collect(cfg: CollectConfig, out: str | Path, log: Callable[[str], None] = print, cluster: str = "local",
            address: str | None = None) -> EpisodeStore:
    """Record `cfg`'s episodes into `out` (resumed if it holds a part of them). `cluster`: where the
    workers run (vlsafe.cluster: local processes or Ray actors); seeds are fixed per episode, so
    the dataset is the same whatever the number or kind of workers."""
    from vlsafe.cluster import check_cluster

    check_cluster(cluster, address)
    cfg.validate()
    # resolved before the identity: a dataset records the mixture it holds, whoever chose it
    cfg = dataclasses.replace(cfg, mixture=cfg.behaviour_mixture)
    task_cfg = cfg.task_config()
    if task_cfg.observation.bev.size != cfg.bev_size:  # `--set observation.bev.size=N` wins: record what is drawn
        cfg = dataclasses.replace(cfg, bev_size=task_cfg.observation.bev.size)
    store = EpisodeStore(out)
    ident = _identity(cfg, task_cfg)
    if store.manifest_path.exists():
        old = store.manifest()
        if old.get("identity") != ident:
            raise DatasetMismatchError(f"{store.root}: holds a dataset collected with a different config "
                               f"(task/mixture/seeds/size); use another --out or delete it")
    store.clean_partial()
    store.write_manifest({"stage": "collect", "identity": ident, "complete": False})
    done = _load_progress(store)
    if done:
        log(f"resuming: {len(done)} finished episodes found in {store.root}")
    target_text = f"{cfg.episodes} episodes" if cfg.episodes else f"{cfg.steps} steps"
    log(f"collect {cfg.task}@{cfg.backend} -> {store.root}: {target_text}, mixture {cfg.mixture}, "
        f"{cfg.workers} {cluster} worker(s)")

    t0, steps0, len0, last = time.perf_counter(), sum(e["steps"] for e in done.values()), len(done), 0.0
    progress = open(store.root / "progress.jsonl", "a")
    next_seed = cfg.seed_start
    from vlsafe.cluster import worker_pool

    with _single_threaded_children(), worker_pool(
            cluster, cfg.workers, _init_worker, (json.dumps(to_dict(task_cfg)), str(store.root.resolve()), cfg.mixture,
                                                cfg.expert_labels),
            address=address) as pool:
        pending: dict[Any, int] = {}
        while _prefix_complete(cfg, done) is None:
            while len(pending) < 2 * cfg.workers:
                while next_seed in done or next_seed in pending.values():
                    next_seed += 1
                if cfg.episodes and next_seed >= cfg.seed_start + cfg.episodes:
                    break
                pending[pool.submit(_collect_one, next_seed)] = next_seed
                next_seed += 1
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in finished:
                pending.pop(fut)
                entry = fut.result()
                done[int(entry["seed"])] = entry
                progress.write(dumps(entry) + "\n")
                progress.flush()
            now = time.perf_counter()
            if now - last > 2.0:
                last = now
                steps = sum(e["steps"] for e in done.values())
                rate = (steps - steps0) / max(now - t0, 1e-9)
                if cfg.steps:
                    eta = max(cfg.steps - steps, 0) / max(rate, 1e-9)
                    frac = f"{steps}/{cfg.steps} steps"
                else:
                    n_done = sum(cfg.seed_start + i in done for i in range(cfg.episodes))
                    eta = (cfg.episodes - n_done) * (now - t0) / max(len(done) - len0, 1)
                    frac = f"{n_done}/{cfg.episodes} episodes, {steps} steps"
                log(f"  {frac}, {rate:.0f} steps/s, ETA {eta:.0f}s")
        for fut in pending:
            fut.cancel()
    progress.close()

    n = _prefix_complete(cfg, done)
    keep = [cfg.seed_start + i for i in range(n)]
    # finished beyond the budget, including the episodes still running when the budget was met
    # (the pool's shutdown lets them finish and write): not part of this dataset
    for seed in set(store.seeds_on_disk()) - set(keep):
        store.path(seed).unlink(missing_ok=True)
    store.clean_partial()
    entries = [done[s] for s in keep]
    store.write_manifest({
        "stage": "collect", "identity": ident, "complete": True, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "code_version": _code_version(), "task": ident["task"], "mixture": parse_mixture(cfg.mixture),
        "seeds": [keep[0], keep[-1]],
        "expert_labels": cfg.expert_labels, "bev_size": task_cfg.observation.bev.size, "dt": _dt(store, keep[0]),
        "totals": {"episodes": len(entries), "steps": sum(e["steps"] for e in entries),
                   "bytes": sum(e["bytes"] for e in entries)},
        "episodes": entries,
    })
    (store.root / "progress.jsonl").unlink(missing_ok=True)
    total = sum(e["steps"] for e in entries)
    log(f"done: {len(entries)} episodes, {total} steps in {time.perf_counter() - t0:.0f}s")
    return store


def _dt(store: EpisodeStore, seed: int) -> float:
    with store.open(seed) as f:
        return float(f.attrs["dt"])


def _code_version() -> str:
    from vlsafe.manifest import code_version

    return code_version()


def with_preset(name: str, **fields) -> CollectConfig:
    if name not in PRESETS:
        raise ConfigError(f"unknown dataset preset {name!r}; valid presets: {', '.join(PRESETS)}")
    return dataclasses.replace(CollectConfig(), **{**PRESETS[name], **fields})

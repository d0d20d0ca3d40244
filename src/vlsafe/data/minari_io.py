"""Export to and import from the Farama Minari format, so other offline-RL tools read our data.

Observations are exported as a Dict {bev, vector}; cost, the safety signals and (when the dataset
is labelled) the VLM's p(safe) travel in `infos` (T+1 rows, the reset row first, as Minari stores
infos). Images are stored lossless (Minari's default JPEG encoding would change the pixels the VLM
labels) and then gzip-compressed in chunks of frames: Minari writes its arrays uncompressed, and
gzip is the filter every HDF5 reader has (vlsafe's own store uses Blosc, which needs
`import hdf5plugin`). The environment spec is recorded with the entry point
`vlsafe.envs:from_config` and the dataset's full task config, so `recover_environment()` rebuilds
the task. Each episode keeps its seed, behaviour and map seed as Minari episode metadata, and the
dataset metadata holds vlsafe's task, dt and label provenance, so import restores them.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from contextlib import contextmanager
from pathlib import Path

import gymnasium as gym
import h5py
import numpy as np

from vlsafe.data.episode import SIGNALS, Episode
from vlsafe.data.store import FRAME_CHUNK, DatasetError, EpisodeStore

__all__ = ["export_minari", "import_minari"]


@contextmanager
def _minari_root(root: Path):
    old = os.environ.get("MINARI_DATASETS_PATH")
    # absolute: Minari joins a relative root onto paths already under it (a relative --out wrote
    # to minari_root/.../minari_root/... and failed)
    os.environ["MINARI_DATASETS_PATH"] = str(Path(root).resolve())
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("MINARI_DATASETS_PATH", None)
        else:
            os.environ["MINARI_DATASETS_PATH"] = old


def _spaces(ep: Episode) -> tuple[gym.Space, gym.Space]:
    s = ep.bev.shape[1]
    obs = gym.spaces.Dict({"bev": gym.spaces.Box(0, 255, (s, s, 3), np.uint8),
                           "vector": gym.spaces.Box(-np.inf, np.inf, ep.vector.shape[1:], np.float32)})
    act = gym.spaces.Discrete(15) if ep.action.ndim == 1 else gym.spaces.Box(-1, 1, (2,), np.float32)
    return obs, act


def _env(task: dict) -> gym.Env | None:
    """An env made from a spec that serialises (string entry point, JSON kwargs), or None for a
    dataset without a task config (one imported from elsewhere)."""
    if not task.get("task") or not task.get("backend"):
        return None
    from gymnasium.envs.registration import EnvSpec

    from vlsafe.envs.tasks import gym_id

    spec = EnvSpec(id=gym_id(task["task"], task["backend"], task.get("variant", "")), entry_point="vlsafe.envs:from_config",
                   kwargs={"config": task}, disable_env_checker=True)
    return gym.make(spec)


def _compress(h5_path: Path) -> None:
    """Rewrite Minari's data file with its arrays gzip-compressed (a copy, then a rename: HDF5 does
    not give back the space of a deleted dataset). Images are chunked by FRAME_CHUNK frames, so a
    sequence decompresses only the frames it reads; small per-step arrays are stored contiguous."""
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".hdf5", dir=h5_path.parent)
    os.close(fd)

    def copy(src: h5py.Group, dst: h5py.Group) -> None:
        dst.attrs.update(dict(src.attrs))
        for name, item in src.items():
            if isinstance(item, h5py.Group):
                copy(item, dst.create_group(name, track_order=True))
            elif item.dtype.kind in "biuf" and item.ndim >= 2 and item.size >= 1024:
                chunks = (min(FRAME_CHUNK, len(item)),) + item.shape[1:]
                dst.create_dataset(name, data=item[()], chunks=chunks, compression="gzip", compression_opts=4)
                dst[name].attrs.update(dict(item.attrs))
            else:
                dst.create_dataset(name, data=item[()])
                dst[name].attrs.update(dict(item.attrs))

    try:
        with h5py.File(h5_path, "r") as src, h5py.File(tmp, "w", track_order=True) as dst:
            copy(src, dst)
        os.chmod(tmp, os.stat(h5_path).st_mode)
        os.replace(tmp, h5_path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _labels(store: EpisodeStore) -> tuple[dict | None, dict[int, np.ndarray]]:
    try:
        from vlsafe.vlm.label import list_labels, read_labels
    except ImportError:
        return None, {}
    if not list_labels(store):
        return None, {}
    prov, p_safe, _ = read_labels(store)
    return prov, p_safe


def export_minari(store: EpisodeStore, out_root: str | Path, dataset_id: str | None = None) -> str:
    """Write `store` as Minari dataset `dataset_id` under `out_root`; returns the id."""
    import minari
    from minari.data_collector import EpisodeBuffer

    manifest = store.validate()
    task = manifest.get("task", {})
    dataset_id = dataset_id or f"vlsafe/{task.get('task', 'task')}-{task.get('backend', 'sim')}-v0"
    prov, p_safe = _labels(store)
    buffers, spaces, episode_meta = [], None, []
    for i, ep in enumerate(store):
        spaces = spaces or _spaces(ep)
        zero = np.zeros(1, np.float32)
        infos = {"cost": np.concatenate([zero, ep.cost])}
        infos.update({k: np.concatenate([zero, ep.signals[k]]) for k in SIGNALS if k in ep.signals})
        if ep.expert_action is not None:  # `collect --expert-labels`: T+1 rows as infos are, a blank reset row first
            infos["expert_action"] = np.concatenate([np.zeros_like(ep.expert_action[:1]), ep.expert_action])
        if ep.seed in p_safe:
            infos["p_safe"] = np.asarray(p_safe[ep.seed], np.float32)  # per observation: already T+1 rows
        buffers.append(EpisodeBuffer(id=i, seed=ep.seed, observations={"bev": ep.bev, "vector": ep.vector},
                                     actions=ep.action, rewards=ep.reward, terminations=ep.terminated,
                                     truncations=ep.truncated, infos=infos))
        episode_meta.append({"behaviour": ep.behaviour, "map_seed": ep.map_seed})
    if not buffers:
        raise DatasetError(f"{store.root}: no episodes to export")
    dt = store.dt()
    env = _env(task)
    try:
        with _minari_root(Path(out_root)), warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=UserWarning, module="minari")  # author, permalink, eval_env unset
            ds = minari.create_dataset_from_buffers(
                dataset_id, buffers, env=env, observation_space=spaces[0], action_space=spaces[1],
                algorithm_name="vlsafe-collect", description=f"vlsafe {task.get('task')}@{task.get('backend')}; cost, "
                f"safety signals{' and VLM p(safe)' if prov else ''} in infos", jpeg_encoding=False)
            ds.storage.update_episode_metadata(episode_meta, range(len(episode_meta)))
            labels = None if prov is None else {k: prov.get(k) for k in ("key", "model", "prompts", "prob")}
            ds.storage.update_metadata({"vlsafe": {"task": task, "dt": dt, "bev_size": spaces[0]["bev"].shape[0],
                                                   "labels": labels, "source": str(store.root)}})
            _compress(Path(ds.storage.data_path) / "main_data.hdf5")
            ds.storage.update_metadata({"dataset_size": ds.storage.get_size()})
    finally:
        if env is not None:
            env.close()
    return dataset_id


def import_minari(dataset_id: str, root: str | Path, out: str | Path, dt: float | None = None) -> EpisodeStore:
    """Read a Minari dataset with {bev, vector} observations and cost in infos into a vlsafe store.

    Seeds, behaviours, map seeds, task and dt come back from a vlsafe export's metadata; `dt`
    (default 0.1 s) is used only where the dataset does not record one."""
    import minari

    store = EpisodeStore(out)
    if store.manifest_path.exists():
        raise DatasetError(f"{store.root}: already holds a dataset; import into a new folder")
    with _minari_root(Path(root)):
        try:
            ds = minari.load_dataset(dataset_id)
        except (FileNotFoundError, ValueError) as err:
            raise DatasetError(f"{root}: cannot load Minari dataset {dataset_id!r} ({err})") from None
        extra = ds.storage.metadata.get("vlsafe") or {}
        step_dt = float(extra.get("dt") or dt or 0.1)
        metas = list(ds.storage.get_episode_metadata(ds.episode_indices))
        episodes = []
        for ep, meta in zip(ds.iterate_episodes(), metas, strict=True):
            obs = ep.observations
            if not isinstance(obs, dict) or "bev" not in obs or "cost" not in ep.infos:
                got = list(obs) if isinstance(obs, dict) else type(obs).__name__
                raise DatasetError(f"{dataset_id}: expected observations {{bev, vector}} and infos['cost'] "
                                   f"(a vlsafe export), got observation keys {got}")
            signals = {k: np.asarray(ep.infos[k][1:], np.float32) for k in SIGNALS if k in ep.infos}
            action = np.asarray(ep.actions)
            expert = np.asarray(ep.infos["expert_action"][1:]).astype(action.dtype) if "expert_action" in ep.infos else None
            seed = int(meta["seed"]) if meta.get("seed") is not None else int(ep.id)
            episodes.append(Episode(
                seed=seed, map_seed=int(meta.get("map_seed", -1)), behaviour=str(meta.get("behaviour", "imported")),
                dt=step_dt, bev=np.asarray(obs["bev"], np.uint8), vector=np.asarray(obs["vector"], np.float32),
                action=action, expert_action=expert, reward=np.asarray(ep.rewards, np.float32),
                cost=np.asarray(ep.infos["cost"][1:], np.float32), terminated=np.asarray(ep.terminations, bool),
                truncated=np.asarray(ep.truncations, bool), signals=signals))
    seeds = [e.seed for e in episodes]
    if len(set(seeds)) != len(seeds):
        raise DatasetError(f"{dataset_id}: episode seeds repeat; cannot store one file per seed")
    entries = [store.write(e) for e in episodes]
    store.write_manifest({"stage": "import", "source": {"minari_id": dataset_id, "root": str(root)}, "complete": True,
                          "task": extra.get("task", {}), "bev_size": int(episodes[0].bev.shape[1]) if episodes else None,
                          "dt": step_dt, "seeds": [min(seeds), max(seeds)] if seeds else [],
                          "expert_labels": bool(episodes) and all(e.expert_action is not None for e in episodes),
                          "totals": {"episodes": len(entries), "steps": sum(e["steps"] for e in entries),
                                     "bytes": sum(e["bytes"] for e in entries)},
                          "episodes": entries})
    return store

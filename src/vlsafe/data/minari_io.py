"""Export to and import from the Farama Minari format, so other offline-RL tools read our data.

Observations are exported as a Dict {bev, vector}; cost and the safety signals travel in
`infos` (T+1 rows, the reset row first, as Minari stores infos). Images are stored lossless
(Minari's default JPEG encoding would change the pixels the VLM labels).
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

import gymnasium as gym
import numpy as np

from vlsafe.data.episode import SIGNALS, Episode
from vlsafe.data.store import DatasetError, EpisodeStore

__all__ = ["export_minari", "import_minari"]


@contextmanager
def _minari_root(root: Path):
    old = os.environ.get("MINARI_DATASETS_PATH")
    os.environ["MINARI_DATASETS_PATH"] = str(root)
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


def export_minari(store: EpisodeStore, out_root: str | Path, dataset_id: str | None = None) -> str:
    """Write `store` as Minari dataset `dataset_id` under `out_root`; returns the id."""
    import minari
    from minari.data_collector import EpisodeBuffer

    manifest = store.manifest()
    task = manifest.get("task", {})
    dataset_id = dataset_id or f"vlsafe/{task.get('task', 'task')}-{task.get('backend', 'sim')}-v0"
    buffers, spaces = [], None
    for i, ep in enumerate(store):
        spaces = spaces or _spaces(ep)
        zero = np.zeros(1, np.float32)
        infos = {"cost": np.concatenate([zero, ep.cost])}
        infos.update({k: np.concatenate([zero, ep.signals[k]]) for k in SIGNALS if k in ep.signals})
        buffers.append(EpisodeBuffer(id=i, seed=ep.seed, observations={"bev": ep.bev, "vector": ep.vector},
                                     actions=ep.action, rewards=ep.reward, terminations=ep.terminated,
                                     truncations=ep.truncated, infos=infos))
    if not buffers:
        raise DatasetError(f"{store.root}: no episodes to export")
    with _minari_root(Path(out_root)):
        minari.create_dataset_from_buffers(
            dataset_id, buffers, observation_space=spaces[0], action_space=spaces[1], algorithm_name="vlsafe-collect",
            description=f"vlsafe {task.get('task')}@{task.get('backend')}; cost and safety signals in infos",
            jpeg_encoding=False)
    return dataset_id


def import_minari(dataset_id: str, root: str | Path, out: str | Path, dt: float = 0.1) -> EpisodeStore:
    """Read a Minari dataset with {bev, vector} observations and cost in infos into a vlsafe store."""
    import minari

    with _minari_root(Path(root)):
        try:
            ds = minari.load_dataset(dataset_id)
        except (FileNotFoundError, ValueError) as err:
            raise DatasetError(f"{root}: cannot load Minari dataset {dataset_id!r} ({err})") from None
        store = EpisodeStore(out)
        entries = []
        for ep in ds.iterate_episodes():
            obs = ep.observations
            if not isinstance(obs, dict) or "bev" not in obs or "cost" not in ep.infos:
                got = list(obs) if isinstance(obs, dict) else type(obs).__name__
                raise DatasetError(f"{dataset_id}: expected observations {{bev, vector}} and infos['cost'] "
                                   f"(a vlsafe export), got observation keys {got}")
            signals = {k: np.asarray(ep.infos[k][1:], np.float32) for k in SIGNALS if k in ep.infos}
            episode = Episode(seed=int(ep.id), map_seed=-1, behaviour="imported", dt=dt,
                              bev=np.asarray(obs["bev"], np.uint8), vector=np.asarray(obs["vector"], np.float32),
                              action=np.asarray(ep.actions), reward=np.asarray(ep.rewards, np.float32),
                              cost=np.asarray(ep.infos["cost"][1:], np.float32),
                              terminated=np.asarray(ep.terminations, bool), truncated=np.asarray(ep.truncations, bool),
                              signals=signals)
            entries.append(store.write(episode))
    store.write_manifest({"stage": "import", "source": {"minari_id": dataset_id, "root": str(root)}, "complete": True,
                          "task": {}, "totals": {"episodes": len(entries), "steps": sum(e["steps"] for e in entries)},
                          "episodes": entries})
    return store

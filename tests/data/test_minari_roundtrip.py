"""The Minari bridge both ways, checked with Minari's own load_dataset and recover_environment."""

import os

import h5py
import numpy as np
import pytest

from vlsafe.data.collect import CollectConfig, collect
from vlsafe.data.minari_io import export_minari, import_minari
from vlsafe.data.store import DatasetError
from vlsafe.vlm.label import label_dataset, load_labels
from vlsafe.vlm.scorer import load_scorer


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """Highway (dt 0.2 s) episodes from seed 100, labelled, exported."""
    root = tmp_path_factory.mktemp("minari")
    cfg = CollectConfig(task="left-turn", backend="highway", episodes=3, seed_start=100, max_steps=30,
                        mixture="expert:0.5,reckless:0.5", task_overrides=("traffic_density=0.3",))
    store = collect(cfg, root / "ds", log=lambda *_: None)
    label_dataset(store, load_scorer("drive-clip", threads=1), log=lambda *_: None)
    dataset_id = export_minari(store, root / "minari")
    return store, root / "minari", dataset_id


def test_minari_reads_the_export_with_costs_labels_and_environment(exported):
    import minari

    store, mroot, dataset_id = exported
    old = os.environ.get("MINARI_DATASETS_PATH")
    os.environ["MINARI_DATASETS_PATH"] = str(mroot)
    try:
        ds = minari.load_dataset(dataset_id)
        labels = load_labels(store)
        metas = list(ds.storage.get_episode_metadata(ds.episode_indices))
        for m, ep in zip(metas, ds.iterate_episodes(), strict=True):
            mine = store.read(m["seed"])
            assert m["behaviour"] == mine.behaviour and m["map_seed"] == mine.map_seed
            assert np.array_equal(ep.observations["bev"], mine.bev) and np.array_equal(ep.actions, mine.action)
            assert np.array_equal(ep.infos["cost"][1:], mine.cost) and np.array_equal(ep.terminations, mine.terminated)
            assert np.array_equal(ep.infos["ttc"][1:], mine.signals["ttc"])
            assert np.array_equal(ep.infos["p_safe"], labels[m["seed"]])
        assert sorted(m["seed"] for m in metas) == [100, 101, 102]
        env = ds.recover_environment()
        try:
            obs, _ = env.reset(seed=100)
            assert env.unwrapped.config.task == "left-turn" and env.unwrapped.config.backend == "highway"
            assert env.observation_space == ds.observation_space and obs["bev"].shape == (64, 64, 3)
        finally:
            env.close()
    finally:
        if old is None:
            del os.environ["MINARI_DATASETS_PATH"]
        else:
            os.environ["MINARI_DATASETS_PATH"] = old
    with h5py.File(next(mroot.rglob("main_data.hdf5"))) as f:
        assert f["episode_0/observations/bev"].compression == "gzip"  # a filter every HDF5 reader has


def test_import_keeps_seeds_behaviour_task_and_dt(exported, tmp_path):
    store, mroot, dataset_id = exported
    back = import_minari(dataset_id, mroot, tmp_path / "back")
    assert [e["seed"] for e in back.entries()] == [100, 101, 102]
    man, orig = back.validate(), store.manifest()
    assert man["task"] == orig["task"] and man["dt"] == orig["dt"] == 0.2 and man["bev_size"] == 64
    for e in store.entries():
        a, b = store.read(e["seed"]), back.read(e["seed"])
        assert (a.behaviour, a.map_seed, a.dt) == (b.behaviour, b.map_seed, b.dt)
        for name in ("bev", "vector", "action", "reward", "cost", "terminated", "truncated"):
            assert np.array_equal(getattr(a, name), getattr(b, name)), name
        assert all(np.array_equal(a.signals[k], b.signals[k]) for k in a.signals)
    with pytest.raises(DatasetError, match="already holds a dataset"):
        import_minari(dataset_id, mroot, tmp_path / "back")


def test_a_relative_minari_root_works_as_the_readme_writes_it(exported, tmp_path, monkeypatch):
    """`vlsafe data export data/lt --minari --out minari_root`: a relative root once wrote to
    minari_root/<id>/data/minari_root/<id>/data/ and failed."""
    store, _, _ = exported
    monkeypatch.chdir(tmp_path)
    dataset_id = export_minari(store, "minari_root", "vlsafe/rel-v0")
    assert (tmp_path / "minari_root" / "vlsafe" / "rel-v0" / "data" / "main_data.hdf5").exists()
    back = import_minari(dataset_id, "minari_root", "back")
    assert [e["seed"] for e in back.entries()] == [100, 101, 102]

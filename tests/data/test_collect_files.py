"""A collected folder holds exactly the episodes its manifest lists, at the size the manifest says."""

import h5py
import hdf5plugin  # noqa: F401 - the Blosc filter of the image arrays

from vlsafe.data.collect import CollectConfig, collect


def test_no_stray_episodes_and_the_bev_size_override_is_recorded(tmp_path):
    # a step budget met while two workers still drive: their episodes finish during shutdown
    cfg = CollectConfig(task="four-lane", backend="highway", steps=120, max_steps=40, workers=2,
                        task_overrides=("observation.bev.size=48",))
    store = collect(cfg, tmp_path / "ds", log=lambda *_: None)
    listed = sorted((store.root / e["file"]).name for e in store.entries())
    assert sorted(p.name for p in store.episodes_dir.iterdir()) == listed
    assert store.verify() == [] and store.strays() == []
    man = store.validate()
    assert man["bev_size"] == 48 and man["identity"]["collect"]["bev_size"] == 48
    with h5py.File(store.root / store.entries()[0]["file"]) as f:
        assert f["bev"].shape[1:] == (48, 48, 3)

"""The offline dataset on real collected episodes: round trip, sampler, resume, corruption, Minari."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from vlsafe.config import ConfigError
from vlsafe.data.collect import CollectConfig, collect
from vlsafe.data.episode import Episode
from vlsafe.data.sampler import SequenceSampler
from vlsafe.data.store import DatasetError, EpisodeStore
from vlsafe.experts.behaviours import parse_mixture

TINY = dict(task="four-lane", backend="highway", episodes=5, workers=1, max_steps=60,
            mixture="expert:0.5,noisy:0.3,reckless:0.2")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> EpisodeStore:
    return collect(CollectConfig(**TINY), tmp_path_factory.mktemp("tiny") / "ds", log=lambda *_: None)


def test_round_trip_write_read_same_arrays(tiny, tmp_path):
    ep = next(iter(tiny))
    assert ep.bev.dtype == np.uint8 and ep.bev.shape[1:] == (64, 64, 3) and len(ep.bev) == ep.steps + 1
    copy = EpisodeStore(tmp_path / "copy")
    copy.write(ep)
    back = copy.read(ep.seed)
    for name in ("bev", "vector", "action", "reward", "cost", "terminated", "truncated"):
        assert np.array_equal(getattr(ep, name), getattr(back, name)), name
    assert back.signals.keys() == ep.signals.keys()
    assert all(np.array_equal(ep.signals[k], back.signals[k]) for k in ep.signals)
    assert (back.seed, back.map_seed, back.behaviour, back.dt) == (ep.seed, ep.map_seed, ep.behaviour, ep.dt)
    man = tiny.manifest()
    assert man["complete"] and man["totals"]["episodes"] == 5 and len(man["episodes"]) == 5
    assert tiny.verify() == []


def test_sampler_stays_inside_episodes_and_covers_their_ends(tiny):
    sampler = SequenceSampler(tiny, length=16, batch_size=8, seed=0, keys=("bev", "vector"))
    seen_last = set()
    for _ in range(60):
        b = sampler.sample()
        assert b["bev"].shape == (8, 16, 64, 64, 3) and b["action"].shape[:2] == (8, 16)
        for i in range(8):
            valid = b["valid"][i]
            assert len(set(b["episode"][i][valid])) == 1, "a sequence crossed an episode boundary"
            assert not b["is_first"][i][valid][1:].any()  # a window may start before the episode: padding, then is_first
            assert np.all(np.diff(b["step"][i][valid]) == 1)
            seen_last.update(int(e) for e in b["episode"][i][b["is_last"][i]])
    assert seen_last == {e["seed"] for e in tiny.entries()}, "the last step of some episode was never sampled"
    # Dreamer layout: step k carries the action that led to observation k
    ep = tiny.read(tiny.entries()[0]["seed"])
    one = SequenceSampler(tiny, length=ep.steps + 1, batch_size=1, seed=1, windows="inside")
    one.seeds, one.small, one.steps = one.seeds[:1], one.small[:1], one.steps[:1]
    one.windows = np.array([1])
    s = one.sample()
    assert np.array_equal(s["bev"][0], ep.bev) and np.array_equal(s["action"][0, 1:], ep.action)
    assert s["reward"][0, 0] == 0 and np.allclose(s["reward"][0, 1:], ep.reward)


def test_sampler_crosses_episodes_only_when_asked(tiny):
    sampler = SequenceSampler(tiny, length=48, batch_size=16, seed=0, cross_episodes=True)
    crossed = 0
    for _ in range(10):
        b = sampler.sample()
        for i in range(16):
            eps = b["episode"][i][b["valid"][i]]
            if len(set(eps)) > 1:
                crossed += 1
                boundary = np.flatnonzero(np.diff(eps)) + 1
                assert b["is_first"][i][boundary].all()
    assert crossed > 0


def test_short_episodes_are_padded_not_dropped(tiny):
    inside = SequenceSampler(tiny, length=200, batch_size=4, seed=0, windows="inside")  # longer than any episode (<= 61 steps)
    b = inside.sample()
    assert b["bev"].shape[1] == 200 and not b["valid"][:, 61:].any() and b["valid"][:, 0].all()
    uniform = SequenceSampler(tiny, length=200, batch_size=16, seed=0)  # the episode anywhere in the window
    b = uniform.sample()
    for valid in b["valid"]:
        idx = np.flatnonzero(valid)
        assert 1 <= len(idx) <= 61 and np.all(np.diff(idx) == 1)  # one piece of one episode, padded around


def test_truncated_and_corrupt_files_are_named(tiny, tmp_path):
    import shutil

    ds = EpisodeStore(tmp_path / "ds")
    shutil.copytree(tiny.root, ds.root)
    seeds = [e["seed"] for e in ds.entries()]
    path = ds.path(seeds[0])
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DatasetError, match=str(path)):
        ds.read(seeds[0])
    # flip bytes inside the compressed image chunks of another episode
    path2 = ds.path(seeds[1])
    with h5py.File(path2, "r") as f:
        offset = f["bev"].id.get_chunk_info(0).byte_offset
    raw = bytearray(path2.read_bytes())
    raw[offset + 10: offset + 200] = os.urandom(190)
    path2.write_bytes(bytes(raw))
    with pytest.raises(DatasetError, match=str(path2)):
        ds.read(seeds[1])
    problems = ds.verify()
    assert any(str(path) in p for p in problems) and any(str(path2) in p for p in problems)


def test_other_config_refused_and_bad_mixture(tiny):
    with pytest.raises(DatasetError, match="different config"):
        collect(CollectConfig(**{**TINY, "mixture": "expert:1"}), tiny.root, log=lambda *_: None)
    with pytest.raises(ConfigError, match="unknown behaviour 'expret' \\(did you mean 'expert'\\?\\)"):
        parse_mixture("expret:0.5,noisy:0.5")
    with pytest.raises(ConfigError, match="exactly one of steps or episodes"):
        CollectConfig(steps=10, episodes=3).validate()


def test_minari_export_loads_in_minari_and_imports_back(tiny, tmp_path):
    import minari

    from vlsafe.data.minari_io import export_minari, import_minari

    dataset_id = export_minari(tiny, tmp_path / "minari")
    os.environ["MINARI_DATASETS_PATH"] = str(tmp_path / "minari")
    try:
        ds = minari.load_dataset(dataset_id)
        assert ds.total_episodes == 5
        first = next(ds.iterate_episodes())
        ep = tiny.read(tiny.entries()[0]["seed"])
        assert np.array_equal(first.observations["bev"], ep.bev)
        assert np.allclose(first.infos["cost"][1:], ep.cost)
    finally:
        del os.environ["MINARI_DATASETS_PATH"]
    back = import_minari(dataset_id, tmp_path / "minari", tmp_path / "imported")
    assert len(back.entries()) == 5
    assert np.array_equal(back.read(0).bev, ep.bev) and np.array_equal(back.read(0).action, ep.action)


def _episodes(store: EpisodeStore) -> dict[int, Episode]:
    return {e["seed"]: store.read(e["seed"]) for e in store.entries()}


def test_resume_after_sigkill_gives_the_same_episodes(tmp_path):
    args = ["--task", "four-lane", "--backend", "highway", "--steps", "400", "--workers", "2",
            "--set", "max_steps=60", "--mixture", "expert:0.5,noisy:0.5"]
    cmd = [sys.executable, "-m", "vlsafe.cli", "collect", *args]
    killed = tmp_path / "killed"
    proc = subprocess.Popen(cmd + ["--out", str(killed)], start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and len(list((killed / "episodes").glob("ep_*.h5"))) < 2:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)  # the collector and its workers, mid-episode
    proc.wait()
    finished = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in (killed / "episodes").glob("ep_*.h5")}
    assert len(finished) >= 2 and not EpisodeStore(killed).manifest()["complete"]
    r = subprocess.run(cmd + ["--out", str(killed)], check=True, capture_output=True, text=True)
    assert f"resuming: {len(finished)} finished episodes found" in r.stdout
    kept = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in (killed / "episodes").glob("ep_*.h5")}
    listed = {Path(e["file"]).name for e in EpisodeStore(killed).entries()}
    assert set(kept) == listed  # nothing beyond the manifest
    reused = set(finished) & listed
    assert reused and all(kept[n] == finished[n] for n in reused), "a finished episode was collected again"
    straight = tmp_path / "straight"
    subprocess.run(cmd + ["--out", str(straight), "--workers", "1"], check=True, capture_output=True)
    a, b = _episodes(EpisodeStore(killed)), _episodes(EpisodeStore(straight))
    assert sorted(a) == sorted(b) and sum(e.steps for e in a.values()) >= 400
    assert [e["sha256"] for e in EpisodeStore(killed).entries()] == [e["sha256"] for e in EpisodeStore(straight).entries()]
    for seed in a:
        assert np.array_equal(a[seed].bev, b[seed].bev) and np.array_equal(a[seed].action, b[seed].action)
    assert not list((killed / "episodes").glob(".tmp-*"))


def test_expert_labels_record_the_experts_action_without_changing_the_drive(tiny, tmp_path):
    """`collect --expert-labels` asks the expert at every state the episode's own driver reaches:
    the episodes are the ones recorded without it (same actions, frames, rewards), the expert's
    episodes are their own labels, and where a noisy or reckless driver drives the label is often
    another action than the one taken. A subset keeps the labels; a dataset without them has none."""
    from vlsafe.data.minari_io import export_minari, import_minari
    from vlsafe.data.subset import make_subset

    store = collect(CollectConfig(**TINY, expert_labels=True), tmp_path / "ds", log=lambda *_: None)
    assert store.manifest()["expert_labels"] is True and "expert_labels" not in tiny.manifest()["identity"]["collect"]
    differ = {}
    for entry in store.entries():
        seed = int(entry["seed"])
        ep, plain = store.read(seed), tiny.read(seed)
        assert plain.expert_action is None
        np.testing.assert_array_equal(ep.action, plain.action)
        np.testing.assert_array_equal(ep.bev, plain.bev)
        np.testing.assert_array_equal(ep.reward, plain.reward)
        assert ep.expert_action.shape == ep.action.shape and ep.expert_action.dtype == ep.action.dtype
        differ[ep.behaviour] = differ.get(ep.behaviour, 0) + int((ep.expert_action != ep.action).sum())
    assert differ.get("expert") == 0, differ
    assert sum(n for b, n in differ.items() if b != "expert") >= 5, differ
    sub = make_subset(store.root, 0.5, tmp_path / "sub")
    assert sub.manifest()["expert_labels"] is True
    assert all(sub.read(int(e["seed"])).expert_action is not None for e in sub.entries())
    assert not store.verify()
    export_minari(store, tmp_path / "minari", "vlsafe/labelled-v0")
    back = import_minari("vlsafe/labelled-v0", tmp_path / "minari", tmp_path / "back")
    assert back.manifest()["expert_labels"] is True
    for entry in store.entries():
        seed = int(entry["seed"])
        np.testing.assert_array_equal(back.read(seed).expert_action, store.read(seed).expert_action)

"""The label cache is keyed by everything that changes a label: dataset content, model, prompt texts
and the p(safe) option. Whether a run computed anything is read from the scorer's calls, not time."""

import json
import shutil

import h5py
import pytest

from tests.vlm.synthetic import scripted_episode
from vlsafe.data.store import EpisodeStore
from vlsafe.vlm.drive_clip import DEFAULT_MODEL
from vlsafe.vlm.label import label_dataset
from vlsafe.vlm.prompts import PromptSet
from vlsafe.vlm.scorer import ProbConfig, load_scorer

QUIET = dict(log=lambda *_: None)


def dataset(root, seeds=range(3)) -> EpisodeStore:
    store = EpisodeStore(root)
    entries = [store.write(scripted_episode(s, crash=s % 2 == 0, steps=20)) for s in seeds]
    store.write_manifest({"stage": "collect", "complete": True, "bev_size": 64, "dt": 0.1,
                          "task": {"task": "four-lane", "backend": "scripted"}, "episodes": entries})
    return store


def counting(scorer):
    """The scorer, with a count of the frame batches it encodes."""
    scorer.calls = 0
    encode = scorer.encode_images

    def counted(frames):
        scorer.calls += 1
        return encode(frames)

    scorer.encode_images = counted
    return scorer


@pytest.fixture(scope="module")
def scorer():
    return counting(load_scorer("drive-clip", threads=1))


def run(store, scorer, prompts="paper-v1", prob=None):
    scorer.calls = 0
    ls = label_dataset(store, scorer, prompts, prob, **QUIET)
    return ls, scorer.calls


def test_same_inputs_hit_the_cache_without_encoding_a_frame(tmp_path, scorer):
    store = dataset(tmp_path / "ds")
    first, calls = run(store, scorer)
    assert not first.cached and calls == 3  # one batch per episode
    again, calls = run(store, scorer)
    assert again.cached and again.key == first.key and calls == 0


def test_another_model_prob_option_prompt_text_or_data_relabels(tmp_path, scorer):
    store = dataset(tmp_path / "ds")
    base, _ = run(store, scorer)
    keys = {base.key}

    other_model = tmp_path / "other-model"  # the same weights under another identity
    shutil.copytree(DEFAULT_MODEL, other_model)
    man = json.loads((other_model / "manifest.json").read_text())
    man["model_sha256"] = "0" * 64
    (other_model / "manifest.json").write_text(json.dumps(man))
    other = counting(load_scorer("drive-clip", str(other_model), threads=1))
    for ls, calls in (run(store, other),
                      run(store, scorer, prob=ProbConfig("softmax", logit_scale=10.0)),
                      run(store, scorer, prob=ProbConfig("calibrated", None, 2.0, 0.5))):
        assert not ls.cached and calls == 3 and ls.key not in keys
        keys.add(ls.key)

    paper = PromptSet("paper-v1", ("a safe road",), ("a crash",))  # the name kept, the text edited
    edited, calls = run(store, scorer, prompts=paper)
    assert not edited.cached and calls == 3 and edited.key not in keys
    keys.add(edited.key)

    changed = tmp_path / "changed"  # one episode different: the dataset checksum and so the key change
    shutil.copytree(store.root, changed)
    new = scripted_episode(7, crash=True, steps=20)
    moved = EpisodeStore(changed)
    (changed / "episodes" / "ep_000000002.h5").unlink()
    entry = moved.write(new)
    man = moved.manifest()
    man["episodes"] = [e for e in man["episodes"] if e["seed"] != 2] + [entry]
    moved.write_manifest(man)
    relabelled, calls = run(moved, scorer)
    assert not relabelled.cached and calls == 3 and relabelled.key not in keys
    with h5py.File(relabelled.path) as f:
        assert "ep_000000007" in f and "ep_000000002" not in f

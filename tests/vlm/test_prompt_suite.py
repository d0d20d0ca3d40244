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
from vlsafe.vlm.prompts import DEV_SUITE, HELDOUT_SUITE, get_prompt_set
from vlsafe.vlm.quality import auroc
from vlsafe.vlm.scorer import similarities_to_p_safe

FRAMES = Path(__file__).with_name("suite_frames.npz")


@pytest.fixture(scope="module")
def suite_frames():
    with np.load(FRAMES, allow_pickle=False) as z:
        return z["frames"], z["collision"], z["condition"]


@pytest.fixture(scope="module", params=sorted(PACKAGED))
def packaged_scorer(request):
    torch.set_num_threads(1)
    return load_scorer(request.param, threads=1)


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
    suite = {t.lower().strip(" .") for n in HELDOUT_SUITE + DEV_SUITE for t in get_prompt_set(n).texts}
    captions = {t.lower().strip(" .") for texts in cap.all_captions(generic=True).values() for t in texts}
    assert len(suite) == 2 * len(HELDOUT_SUITE + DEV_SUITE) and not suite & captions
    assert len(cap.phrasings("unsafe", generic=True)) > len(cap.phrasings("unsafe"))


# Known failure, kept visible: pair 4's safe prompt "... out of harm's way" sits nearer collision
# frames than clear-road ones (the frozen MiniLM text tower reads "harm", not its negation); AUROC
# 0.14 / 0.09 (MetaDrive / highway-env) with drive-clip-v1 and 0.15 / 0.05 with v2 on this set.
# strict: the day a model gets it right, this xfail fails and must be removed.
KNOWN_FAILURES = {"heldout-v1-4"}


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.xfail(strict=True, reason="negation in the text tower"))
                                  if n in KNOWN_FAILURES else n for n in HELDOUT_SUITE])
def test_every_held_out_pair_ranks_collisions_below_clear_road(name, suite_frames, packaged_scorer):
    frames, collision, condition = suite_frames
    ps = get_prompt_set(name)
    sims = packaged_scorer.similarities(frames, packaged_scorer.encode_texts(ps.texts))
    p = similarities_to_p_safe(sims, ps.n_safe, packaged_scorer.logit_scale)
    for backend in ("metadrive", "highway"):  # per simulator, so one cannot carry the other
        m = np.array([c.endswith(backend) for c in condition])
        assert auroc(1 - p[m], collision[m]) >= AUROC_FLOOR, f"{name} on {backend}"
    assert np.median(p[collision]) < np.median(p[~collision])


AUROC_FLOOR = 0.8

"""Captions for drive-clip's contrastive training, generated from each frame's scene semantics.

Every frame is tagged with the *concepts* its recorded ground truth supports (collision, near
miss, tailgating, lane departure, off-road, clear road, ...), read from the per-step signals a
dataset stores (`vlsafe.data.episode.SIGNALS`) and from the cost in the next few steps - the
look-ahead is what lets a single-frame score anticipate danger. Each concept has many phrasings
(subject x predicate x framing), and one is drawn per concept at every training step, so the image
tower learns the concept, not a sentence. The paper's prompts T1/T2 are never produced
(`assert_no_paper_prompts`); they are the held-out test of whether the learned space transfers.

Look-aheads are in seconds (`imminent_s`, `quiet_s`) and turned into frames with each dataset's
step `dt`: MetaDrive steps 0.1 s and highway-env 0.2 s, so a horizon in steps would mean twice the
time on one simulator. Two safe concepts are hard negatives of unsafe ones: `lane_change` (leaving
the lane centre on purpose, into room) against `lane_departure`, and `waiting` (stopped to give way)
against `imminent`; `near_miss` is the hard negative of `collision`.

Frame alignment follows the sampler's Dreamer layout: frame j (j >= 1) shows the state reached by
transition j-1, so it is described by signals[j-1] and cost[j-1]; frame 0 (the reset) by row 0.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass

import numpy as np

from vlsafe.vlm.prompts import PROMPT_SETS

__all__ = ["CaptionConfig", "CONCEPTS", "GENERIC", "NEGATED", "SAFE_CONCEPTS", "frame_signals", "frame_concepts", "phrasings",
           "all_captions", "assert_no_paper_prompts", "cost_at_frames"]


@dataclass(frozen=True)
class CaptionConfig:
    """Thresholds that turn signals into concepts (seconds, metres, frames)."""

    imminent_ttc: float = 1.5  # s: below this, a collision is imminent
    tailgate_ttc: float = 4.0  # s: below this (and above imminent), tailgating
    near_miss_gap: float = 1.5  # m: box-to-box gap of a near miss
    clear_gap: float = 20.0  # m: nothing closer than this is a clear road
    safe_gap: float = 4.0  # m: safe following in traffic keeps at least this gap ...
    safe_ttc: float = 6.0  # s: ... and this time to collision
    drift_offset: float = 1.0  # m from the lane centre: drifting (when the ego then leaves the lanes)
    centred_offset: float = 0.6  # m: well inside the lane
    imminent_s: float = 1.0  # a cost within this many seconds makes the frame 'imminent'
    quiet_s: float = 2.0  # a safe concept needs no cost within this many seconds
    waiting_speed: float = 1.0  # m/s: slower than this with no danger is 'waiting'

    def frames(self, seconds: float, dt: float) -> int:
        from vlsafe.data.horizon import horizon_steps

        return horizon_steps(seconds, dt)


# name -> (is_safe, predicates). Subjects and framings are shared; see `phrasings`.
CONCEPTS: dict[str, tuple[bool, tuple[str, ...]]] = {
    "collision": (False, (
        "has crashed into a green car", "is colliding with another vehicle", "is in a car crash",
        "hits a green vehicle", "overlaps a green car in a collision", "has a collision with traffic",
        "smashes into the car next to it", "is involved in a crash")),
    "imminent": (False, (
        "is about to crash", "is seconds away from a collision", "will hit the car ahead",
        "is on a collision course with a green car", "cannot stop before hitting another car",
        "is about to collide with traffic", "is heading straight into a crash")),
    "near_miss": (False, (
        "is dangerously close to a green car", "barely misses another vehicle", "has a near miss with traffic",
        "squeezes right next to another car", "almost touches a green vehicle",
        "has almost no space to the car beside it")),
    "tailgating": (False, (
        "is tailgating the car ahead", "follows the vehicle in front too closely",
        "closes in fast on the green car ahead", "drives too close behind another car",
        "is rapidly approaching the car in front", "leaves too little gap to the car ahead")),
    "lane_departure": (False, (
        "is drifting out of its lane", "crosses the lane markings", "is veering out of its lane",
        "swerves across the lane line", "is not staying in its lane", "wanders away from the blue route")),
    "off_road": (False, (
        "is leaving the road", "drives off the road", "is off the road surface", "runs off the asphalt",
        "has left the pavement", "is heading off the edge of the road")),
    "lane_change": (True, (
        "changes lanes into a free gap", "moves over to the next lane with room to spare",
        "switches lanes smoothly", "merges into the neighbouring lane safely",
        "overtakes with plenty of space", "shifts one lane over where the lane is empty")),
    "waiting": (True, (
        "waits for the other cars to pass", "has stopped to give way", "is standing still at a safe distance",
        "holds back and lets traffic go first", "slows down to yield", "pauses before entering the junction")),
    "clear_road": (True, (
        "drives on an empty road", "has the road ahead to itself", "cruises along a clear road",
        "travels with no other cars nearby", "follows the blue route on an open road",
        "drives alone in the middle of its lane")),
    "safe_traffic": (True, (
        "keeps a safe distance from the green cars", "drives calmly in traffic",
        "follows traffic at a safe gap", "stays in its lane among other cars",
        "shares the road safely with other vehicles", "keeps plenty of room to the cars around it")),
    "safe": (True, (
        "is driving safely", "is safe", "is in no danger", "drives carefully without incident",
        "drives without any crash", "is driving normally and safely", "is perfectly safe on the road",
        "has nothing to worry about")),
    "unsafe": (False, (
        "is in danger", "is driving dangerously", "is in an unsafe situation", "is at risk of a crash",
        "is driving unsafely", "is heading for trouble", "faces a dangerous situation", "is in serious trouble")),
}
SAFE_CONCEPTS = tuple(k for k, (safe, _) in CONCEPTS.items() if safe)
# Optional paraphrase augmentation of the generic concepts (DriveClipConfig.generic_phrasings):
# negated and everyday wordings, so that a user's plain sentence about safety lands near the right
# side. Written without looking at any evaluation prompt's distinctive words.
GENERIC: dict[str, tuple[str, ...]] = {
    "safe": ("is not in any danger", "is not about to crash", "has no collision", "is doing fine",
             "has nothing dangerous around it", "drives with no problems", "is not close to hitting anything",
             "shows no sign of trouble", "keeps out of trouble", "is driving well", "is okay",
             "drives in a normal way with space around it"),
    "unsafe": ("is not safe", "is about to have a crash", "is in a dangerous spot", "is driving badly",
               "could crash at any moment", "is likely to hit something", "is in a bad situation",
               "is getting into trouble", "is in peril", "drives in a reckless way", "is in a scary situation",
               "is headed for a collision or leaving the road"),
}
# Optional negated hard negatives (DriveClipConfig.negated_phrasings): the unsafe concepts'
# predicates above, negated, as captions of safe frames, so "not / no / without <hazard>" has to be
# read rather than matched on the hazard word. Derived from the caption predicates only, never from
# an evaluation prompt; chosen on the development suites (whose weakest pair is a negation).
NEGATED: tuple[str, ...] = (
    "has not crashed into any car", "is not colliding with another vehicle", "is not in a car crash",
    "does not hit any vehicle", "has no collision with traffic", "is nowhere near a collision",
    "will not hit the car ahead", "is not on a collision course", "can stop well before any other car",
    "is not dangerously close to any car", "has no near miss", "is not squeezed next to another car",
    "is not tailgating anyone", "does not follow the car in front too closely", "is not closing in on the car ahead",
    "is not drifting out of its lane", "does not cross the lane markings", "is not veering out of its lane",
    "is not leaving the road", "does not drive off the road", "has not left the pavement",
    "is not driving dangerously", "is not in an unsafe situation", "is at no risk of a crash",
    "is not heading for trouble", "faces no dangerous situation",
)
_SUBJECTS = ("the red car", "the red vehicle", "the ego car", "our red car", "the car in red", "the red automobile",
             "the controlled car", "the red one in the middle")
_FRAMES = ("{s} {p}.", "bird's-eye view: {s} {p}.", "a top-down traffic scene where {s} {p}.",
           "seen from above, {s} {p}.", "in this map view {s} {p}.", "{s} {p}, viewed from overhead.")


def phrasings(concept: str, limit: int = 0, generic: bool = False, negated: bool = False) -> list[str]:
    """Every phrasing of a concept (subject x predicate x framing), in a fixed order; `limit` keeps a
    spread-out subset; `generic` adds the GENERIC paraphrases, `negated` the NEGATED ones to 'safe'."""
    _, preds = CONCEPTS[concept]
    preds = preds + (GENERIC.get(concept, ()) if generic else ()) + (NEGATED if negated and concept == "safe" else ())
    out = []
    for frame, subj, pred in itertools.product(_FRAMES, _SUBJECTS, preds):
        text = frame.format(s=subj, p=pred)
        out.append(text[0].upper() + text[1:])
    if limit and limit < len(out):
        idx = np.linspace(0, len(out) - 1, limit).round().astype(int)
        out = [out[i] for i in idx]
    return out


def all_captions(limit: int = 0, generic: bool = False, negated: bool = False) -> dict[str, list[str]]:
    return {c: phrasings(c, limit, generic, negated) for c in CONCEPTS}


def _norm(text: str) -> str:
    return re.sub(r"[^a-z ]", "", text.lower()).strip()


def assert_no_paper_prompts(captions: dict[str, list[str]]) -> None:
    """Training captions must never contain any registered evaluation prompt (T1/T2 included)."""
    held_out = {_norm(t) for ps in PROMPT_SETS.values() for t in ps.texts}
    for concept, texts in captions.items():
        for t in texts:
            assert _norm(t) not in held_out, f"training caption of {concept!r} equals an evaluation prompt: {t!r}"


def cost_at_frames(cost: np.ndarray) -> np.ndarray:
    """(T,) transition costs -> (T+1,) per frame: frame j carries cost[j-1], frame 0 carries 0."""
    return np.concatenate([[0.0], np.asarray(cost, np.float64)]).astype(np.float32)


def frame_signals(signals: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """(T,) per-transition signals -> (T+1,) per frame (frame 0 repeats row 0)."""
    return {k: np.concatenate([v[:1], v]).astype(np.float32) for k, v in signals.items()}


def _future_any(x: np.ndarray, steps: int) -> np.ndarray:
    """out[t] = any(x[t+1 : t+1+steps])."""
    n = len(x)
    c = np.concatenate([[0], np.cumsum(x > 0)])
    hi = np.minimum(np.arange(n) + 1 + steps, n)
    lo = np.minimum(np.arange(n) + 1, n)
    return (c[hi] - c[lo]) > 0


def frame_concepts(signals: dict[str, np.ndarray], cost: np.ndarray, dt: float,
                   cfg: CaptionConfig = CaptionConfig()) -> np.ndarray:
    """(T+1, len(CONCEPTS)) bool: which concepts describe each frame of an episode stepped every `dt`
    seconds. Every frame gets exactly one of the generic 'safe' / 'unsafe' concepts, plus any
    specific ones that apply."""
    s = frame_signals(signals)
    c = cost_at_frames(cost)
    n = len(c)
    zeros = np.zeros(n, np.float32)
    ttc, gap = s.get("ttc", zeros + 100), s.get("min_gap", zeros + 80)
    offset = np.abs(s.get("lane_offset", zeros))
    collided, off_lane, off_road = s.get("collision", zeros) > 0, s.get("off_lane", zeros) > 0, s.get("off_road", zeros) > 0
    imminent, quiet_n = cfg.frames(cfg.imminent_s, dt), cfg.frames(cfg.quiet_s, dt)
    soon = _future_any(c, imminent)
    quiet = ~_future_any(c, quiet_n) & (c <= 0)
    leaving = (_future_any(s.get("off_road", zeros), imminent)
               | _future_any(s.get("off_lane", zeros), imminent))
    crash_soon = _future_any(s.get("collision", zeros), imminent)

    on = {
        "collision": collided | (gap <= 0.05),
        "off_road": off_road | (leaving & ~crash_soon & ~collided),
        # a lane change also moves the ego off its lane centre: only drifting that ends off the lanes counts
        "lane_departure": (off_lane | ((offset > cfg.drift_offset) & leaving)) & ~off_road,
        "imminent": ~collided & ((ttc < cfg.imminent_ttc) | (soon & crash_soon)),
        "near_miss": ~collided & (gap > 0.05) & (gap < cfg.near_miss_gap),
        "tailgating": (ttc >= cfg.imminent_ttc) & (ttc < cfg.tailgate_ttc),
    }
    unsafe = np.zeros(n, bool)
    for v in on.values():
        unsafe |= v
    unsafe |= soon | (c > 0)
    calm = quiet & ~unsafe & (offset < cfg.centred_offset)
    on["lane_change"] = quiet & ~unsafe & (offset >= cfg.centred_offset)
    on["waiting"] = quiet & ~unsafe & (s.get("speed", zeros + 10) < cfg.waiting_speed)
    on["clear_road"] = calm & (gap >= cfg.clear_gap) & (ttc >= cfg.safe_ttc)
    on["safe_traffic"] = calm & (gap < cfg.clear_gap) & (gap >= cfg.safe_gap) & (ttc >= cfg.safe_ttc)
    on["safe"] = ~unsafe
    on["unsafe"] = unsafe
    return np.stack([on[k] for k in CONCEPTS], axis=1)

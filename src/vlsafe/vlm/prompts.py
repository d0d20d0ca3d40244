"""Named, versioned prompt sets: the texts a VLM compares each BEV frame against.

A prompt set has one or more *safe* and one or more *unsafe* prompts; p(safe) is the softmax
mass on the safe side (scorer.py). The id (`name`) is part of every label's cache key, so a
changed text must get a new name (`paper-v2`, never an edited `paper-v1`). `paper-v1` is the
paper's T1/T2 pair character for character (PAPER.md) and the default everywhere.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from vlsafe.config import ConfigError, closest

__all__ = ["PromptSet", "PROMPT_SETS", "DEFAULT_PROMPTS", "HELDOUT_SUITE", "DEV_SUITE", "HELDOUT_SUITE_V2", "DEV_SUITE_V2",
           "SUITES", "get_prompt_set", "T1", "T2"]

T1 = "red vehicle is driving safely with no car accidents."
T2 = "The red car is deviating from its trajectory, driving off the road, or encountering an accident."


@dataclass(frozen=True)
class PromptSet:
    name: str
    safe: tuple[str, ...]
    unsafe: tuple[str, ...]
    note: str = ""

    def __post_init__(self) -> None:
        if not self.safe or not self.unsafe:
            raise ConfigError(f"prompt set {self.name!r}: needs at least one safe and one unsafe prompt")

    @property
    def texts(self) -> tuple[str, ...]:
        """All prompts, safe first: the column order of the similarity arrays."""
        return self.safe + self.unsafe

    @property
    def n_safe(self) -> int:
        return len(self.safe)

    @property
    def digest(self) -> str:
        """Hash of the texts, so two sets with one name but different texts never share a cache entry."""
        return hashlib.sha256(json.dumps([self.safe, self.unsafe]).encode()).hexdigest()[:12]

    def to_json(self) -> dict:
        return {"name": self.name, "safe": list(self.safe), "unsafe": list(self.unsafe), "digest": self.digest,
                "note": self.note}


PROMPT_SETS: dict[str, PromptSet] = {
    "paper-v1": PromptSet("paper-v1", (T1,), (T2,), note="VL-SAFE's T1 (safe) / T2 (unsafe), verbatim"),
    "plain-v1": PromptSet(
        "plain-v1",
        ("the red car drives safely in its lane with free road ahead.",),
        ("the red car is about to crash into a green car or leave the road.",),
        note="a plainer pair written for this project; not used in drive-clip training either"),
}
# The held-out prompt suite: plain-words pairs a user might write, fixed before drive-clip-v2 was
# trained and never trained on (training captions are checked against every registered set). A
# model is judged on its mean and its worst pair; none of these may be edited, only added as v2.
_HELDOUT_PAIRS = (
    ("a car driving normally on the road, nothing dangerous happening.", "a car about to have an accident."),
    ("the red car keeps its distance and stays in its lane.", "the red car is too close to other cars and may hit one."),
    ("an ordinary, uneventful moment of driving.", "a traffic accident is happening or about to happen."),
    ("the ego vehicle is under control and out of harm's way.",
     "the ego vehicle is in a risky spot where a crash is likely."),
    ("no hazards around the red car.", "the red car is in a hazardous situation."),
    ("a calm drive with enough space around the red car.",
     "the red car is crashing, swerving off the road or cutting someone off."),
)
HELDOUT_SUITE = tuple(f"heldout-v1-{i + 1}" for i in range(len(_HELDOUT_PAIRS)))
# The development suite: other plain-words pairs, for choosing between trained models on
# development data; the held-out suite above is only ever reported.
_DEV_PAIRS = (
    ("the red car is fine.", "the red car is in trouble."),
    ("a safe driving situation for the red car.", "a dangerous driving situation for the red car."),
    ("the red car is not going to hit anything.", "the red car is going to hit something."),
    ("nothing is wrong with how the red car is driving.", "the red car is driving badly and might crash."),
)
DEV_SUITE = tuple(f"dev-v1-{i + 1}" for i in range(len(_DEV_PAIRS)))
# Suites v2 (2026-11-25): 16 pairs written by a writer who saw no caption, no code and no result
# (prompted only with what the pictures show and "write as different users would"), split 8/8 at
# random (numpy seed 14) into a development and a held-out half before any model was trained
# with them in the registry. heldout-v1 had by then been looked at while choosing; heldout-v2 had not.
_DEV_PAIRS_V2 = (
    ('A top-down view of a red vehicle staying well inside its lane on the road.',
     'A top-down view of a red vehicle drifting off the edge of the road.'),
    ('The vehicle in red is not in any danger.',
     'The vehicle in red is in serious danger.'),
    ('red car cruising along, plenty of space around it',
     'red car boxed in, about to get hit'),
    ('The ego vehicle crosses the intersection safely without conflict.',
     'The ego vehicle is crashing at the intersection.'),
    ('My car stays on the road and between the lane lines.',
     'My car has left the road.'),
    ('The red car is not near any other vehicles.',
     'The red car is dangerously close to other vehicles.'),
    ('A safe driving situation for the ego car.',
     'A dangerous driving situation for the ego car.'),
    ('The red automobile maintains adequate clearance from the road boundary.',
     'The red automobile is crossing over the road boundary.'),
)
_HELDOUT_PAIRS_V2 = (
    ('The red car is driving safely in its lane.',
     'The red car is about to crash into another car.'),
    ('My car keeps a safe distance from the cars ahead.',
     'My car is way too close to the car in front.'),
    ('No collision here, the ego car is fine.',
     'The ego car is colliding with a green car.'),
    ('The car in the middle has lots of room between it and the others.',
     'The car in the middle is touching the blue car next to it.'),
    ('Everything looks normal for the red car.',
     'The red car is heading straight for a collision with oncoming traffic.'),
    ("Bird's-eye view: the red car is at a safe following distance, no risk of a rear-end collision.",
     "Bird's-eye view: the red car is tailgating and will rear-end the car ahead."),
    ('the red one is chilling in its lane, nothing to worry about',
     'yikes, the red one just smashed into a green car'),
    ('No cars are on a collision course with the vehicle in red.',
     'A green car is about to side-swipe the vehicle in red.'),
)
DEV_SUITE_V2 = tuple(f"dev-v2-{i + 1}" for i in range(len(_DEV_PAIRS_V2)))
HELDOUT_SUITE_V2 = tuple(f"heldout-v2-{i + 1}" for i in range(len(_HELDOUT_PAIRS_V2)))
for _names, _pairs, _note in ((HELDOUT_SUITE, _HELDOUT_PAIRS, "held-out prompt suite: never trained on"),
                              (DEV_SUITE, _DEV_PAIRS, "development prompt suite: model choice only"),
                              (DEV_SUITE_V2, _DEV_PAIRS_V2, "development prompt suite v2: model choice only"),
                              (HELDOUT_SUITE_V2, _HELDOUT_PAIRS_V2, "held-out prompt suite v2: never trained on")):
    for _name, (_safe, _unsafe) in zip(_names, _pairs):
        PROMPT_SETS[_name] = PromptSet(_name, (_safe,), (_unsafe,), note=_note)
SUITES = {"heldout": HELDOUT_SUITE, "dev": DEV_SUITE, "heldout-v2": HELDOUT_SUITE_V2, "dev-v2": DEV_SUITE_V2}
DEFAULT_PROMPTS = "paper-v1"


def get_prompt_set(name_or_path: str | PromptSet) -> PromptSet:
    """A registered set by name, or a JSON file {"name", "safe": [...], "unsafe": [...]}."""
    if isinstance(name_or_path, PromptSet):
        return name_or_path
    if name_or_path in PROMPT_SETS:
        return PROMPT_SETS[name_or_path]
    path = Path(name_or_path)
    if path.suffix == ".json" and path.exists():
        try:
            data = json.loads(path.read_text())
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ConfigError(f"{path}: not a JSON prompt set file ({err})") from None
        unknown = set(data) - {"name", "safe", "unsafe", "note"} if isinstance(data, dict) else {"(not an object)"}
        if unknown or "safe" not in data or "unsafe" not in data:
            raise ConfigError(f"{path}: a prompt set file needs keys name, safe, unsafe (optional note); "
                              f"got {sorted(data)}")
        return PromptSet(str(data.get("name", path.stem)), tuple(data["safe"]), tuple(data["unsafe"]),
                         str(data.get("note", "")))
    raise ConfigError(f"unknown prompt set {name_or_path!r}{closest(name_or_path, PROMPT_SETS)}; valid: "
                      f"{', '.join(PROMPT_SETS)} or a .json file")

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

__all__ = ["PromptSet", "PROMPT_SETS", "DEFAULT_PROMPTS", "get_prompt_set", "T1", "T2"]

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

"""Trajectory-level subsets of a dataset, for sample-efficiency curves (FISOR's and DSRL's 10/50/100%).

Subsets are nested: one permutation per behaviour, drawn from `seed`, and a fraction keeps the
first round(fraction x n) episodes of each behaviour, so the 10% subset lies inside the 30% one
and the behaviour mixture stays that of the whole. A subset is a dataset folder of its own
(episode files hard-linked where the file system allows, else copied) with its own manifest, so
it gets its own labels and world model and shares nothing trained with a larger fraction.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np

from vlsafe.data.store import DatasetError, EpisodeStore

__all__ = ["subset_seeds", "make_subset"]


def subset_seeds(entries: list[dict], fraction: float, seed: int = 0) -> list[int]:
    """The episode seeds a fraction keeps, in manifest order; at least one per behaviour present."""
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction: expected a number in (0, 1], got {fraction}")
    by_behaviour: dict[str, list[int]] = {}
    for e in entries:
        by_behaviour.setdefault(str(e["behaviour"]), []).append(int(e["seed"]))
    kept: set[int] = set()
    for i, name in enumerate(sorted(by_behaviour)):
        seeds = sorted(by_behaviour[name])
        order = np.random.default_rng([seed, i]).permutation(len(seeds))
        n = max(1, int(round(fraction * len(seeds))))
        kept.update(seeds[j] for j in order[:n])
    return [int(e["seed"]) for e in entries if int(e["seed"]) in kept]


def make_subset(src: str | Path, fraction: float, out: str | Path, seed: int = 0) -> EpisodeStore:
    """Write the `fraction` subset of dataset `src` to `out` (resumable: an existing identical subset is kept)."""
    source = EpisodeStore(src)
    manifest = source.manifest()
    if not manifest.get("complete"):
        raise DatasetError(f"{source.root}: an unfinished collection; finish it before taking subsets")
    entries = source.entries()
    keep = set(subset_seeds(entries, fraction, seed))
    ident = {"of": manifest.get("identity"), "fraction": fraction, "seed": seed}
    store = EpisodeStore(out)
    if store.manifest_path.exists():
        old = store.manifest()
        if old.get("subset") == ident and old.get("complete"):
            return store
        if old.get("subset") != ident:
            raise DatasetError(f"{store.root}: holds another dataset or subset; use another --out or delete it")
    store.episodes_dir.mkdir(parents=True, exist_ok=True)
    store.clean_partial()  # links or copies a killed run left half-made
    kept_entries = [e for e in entries if int(e["seed"]) in keep]
    for e in kept_entries:
        target = store.root / e["file"]
        if target.exists():
            continue
        tmp = target.with_name(".tmp-" + target.name)
        tmp.unlink(missing_ok=True)
        try:
            os.link(source.root / e["file"], tmp)
        except OSError:
            shutil.copyfile(source.root / e["file"], tmp)
        os.replace(tmp, target)
    data = {k: v for k, v in manifest.items() if k not in ("episodes", "totals", "seeds")}
    data.update(subset=ident, episodes=kept_entries, complete=True,
                totals={"episodes": len(kept_entries), "steps": sum(int(e["steps"]) for e in kept_entries),
                        "bytes": sum(int(e["bytes"]) for e in kept_entries)})
    store.write_manifest(data)
    return store

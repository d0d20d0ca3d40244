"""Episodes on disk: one compressed, chunked HDF5 file per episode, plus a manifest.

One file per episode, written to a temporary name and renamed into place, is what makes
collection resumable after a SIGKILL: a file under its final name is always a finished
episode, and anything else is discarded on the next run. Images are Blosc-LZ4-compressed in
chunks of a few frames, so a training sequence reads and decompresses only the chunks it
needs; LZ4 decompresses ~4x faster than gzip at a similar size on BEV frames (measured on our
frames: 181 vs 132 bytes per 64 px frame, 212 vs 57 sequence batches/s).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

import h5py
import hdf5plugin  # registers the Blosc filter for reading and writing
import numpy as np

from vlsafe.data.episode import SIGNALS, Episode

__all__ = ["DatasetError", "EpisodeStore", "episode_filename", "FRAME_CHUNK", "sha256_file", "dataset_checksum", "SIGNALS"]

FRAME_CHUNK = 16  # frames per compressed chunk of the image array
_ARRAYS = ("bev", "vector", "action", "reward", "cost", "terminated", "truncated")


class DatasetError(ValueError):
    """A dataset file or manifest is missing, corrupt, or does not match what was asked for."""


def episode_filename(seed: int) -> str:
    return f"ep_{seed:09d}.h5"


def dataset_checksum(store: "EpisodeStore") -> str:
    """Identity of a dataset's content: hash of its episodes' SHA-256 list (manifest order).

    Labels and world-model runs record it, so they can refuse a different dataset."""
    shas = [e["sha256"] for e in store.entries()]
    return hashlib.sha256("\n".join(shas).encode()).hexdigest()[:16]


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class EpisodeStore:
    """A dataset folder: `manifest.json` and `episodes/ep_<seed>.h5`."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.episodes_dir = self.root / "episodes"

    # -- writing ------------------------------------------------------------------------------
    def write(self, ep: Episode, compression_level: int = 5) -> dict[str, Any]:
        """Write one episode atomically; returns its manifest entry."""
        self.episodes_dir.mkdir(parents=True, exist_ok=True)
        final = self.episodes_dir / episode_filename(ep.seed)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".h5", dir=self.episodes_dir)
        os.close(fd)
        try:
            with h5py.File(tmp, "w") as f:
                f.attrs.update(seed=ep.seed, map_seed=ep.map_seed, behaviour=ep.behaviour, dt=ep.dt, steps=ep.steps)
                chunk = (min(FRAME_CHUNK, len(ep.bev)),) + ep.bev.shape[1:]
                f.create_dataset("bev", data=ep.bev, chunks=chunk,
                                 **hdf5plugin.Blosc(cname="lz4", clevel=compression_level,
                                                    shuffle=hdf5plugin.Blosc.NOSHUFFLE))
                for name in _ARRAYS[1:]:
                    f.create_dataset(name, data=getattr(ep, name), compression="gzip", compression_opts=4)
                g = f.create_group("signals")
                for name, arr in ep.signals.items():
                    g.create_dataset(name, data=arr)
                f.flush()
                os.fsync(f.id.get_vfd_handle())
            os.replace(tmp, final)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return self.entry(ep, final)

    @staticmethod
    def entry(ep: Episode, path: Path) -> dict[str, Any]:
        sig = ep.signals
        collided = sig.get("collision", np.zeros(ep.steps))
        return {
            "seed": ep.seed, "file": f"episodes/{path.name}", "steps": ep.steps, "behaviour": ep.behaviour,
            "map_seed": ep.map_seed, "return": float(ep.reward.sum()), "cost": float(ep.cost.sum()),
            "collisions": int((np.diff(np.concatenate([[0.0], collided])) > 0).sum()),
            "arrived": bool(sig["arrived"][-1] > 0) if "arrived" in sig else False,
            "bytes": path.stat().st_size, "sha256": sha256_file(path),
        }

    def clean_partial(self) -> int:
        """Remove temporary files left by a killed writer; returns how many."""
        n = 0
        if self.episodes_dir.exists():
            for p in self.episodes_dir.glob(".tmp-*"):
                p.unlink(missing_ok=True)
                n += 1
        return n

    # -- manifest -----------------------------------------------------------------------------
    @property
    def manifest_path(self) -> Path:
        return self.root / "manifest.json"

    def manifest(self) -> dict[str, Any]:
        try:
            return json.loads(self.manifest_path.read_text())
        except FileNotFoundError:
            raise DatasetError(f"{self.manifest_path}: no manifest; is {self.root} a vlsafe dataset?") from None
        except json.JSONDecodeError as err:
            raise DatasetError(f"{self.manifest_path}: not valid JSON ({err})") from None

    def write_manifest(self, data: dict[str, Any]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.manifest_path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(data, indent=1, default=float))
        os.replace(tmp, self.manifest_path)

    # -- reading ------------------------------------------------------------------------------
    def seeds_on_disk(self) -> list[int]:
        if not self.episodes_dir.exists():
            return []
        return sorted(int(p.stem[3:]) for p in self.episodes_dir.glob("ep_*.h5"))

    def entries(self) -> list[dict[str, Any]]:
        return self.manifest().get("episodes", [])

    def path(self, seed: int) -> Path:
        return self.episodes_dir / episode_filename(seed)

    def open(self, seed: int) -> h5py.File:
        path = self.path(seed)
        try:
            return h5py.File(path, "r")
        except FileNotFoundError:
            raise DatasetError(f"{path}: episode file missing") from None
        except OSError as err:
            raise DatasetError(f"{path}: cannot open, truncated or not HDF5 ({err})") from None

    def read(self, seed: int) -> Episode:
        path = self.path(seed)
        with self.open(seed) as f:
            try:
                arrays = {name: f[name][()] for name in _ARRAYS}
                signals = {name: f["signals"][name][()] for name in f["signals"]}
                attrs = dict(f.attrs)
            except KeyError as err:
                raise DatasetError(f"{path}: missing dataset {err}") from None
            except OSError as err:
                raise DatasetError(f"{path}: corrupt data ({err})") from None
        return Episode(seed=int(attrs["seed"]), map_seed=int(attrs["map_seed"]), behaviour=str(attrs["behaviour"]),
                       dt=float(attrs["dt"]), signals=signals, **arrays)

    def __iter__(self) -> Iterator[Episode]:
        for entry in self.entries():
            yield self.read(int(entry["seed"]))

    def verify(self) -> list[str]:
        """Check every manifest entry against its file's SHA-256; returns one-line problems."""
        problems = []
        for entry in self.entries():
            path = self.root / entry["file"]
            if not path.exists():
                problems.append(f"{path}: missing")
            elif sha256_file(path) != entry["sha256"]:
                problems.append(f"{path}: checksum mismatch (file changed or corrupt)")
        return problems


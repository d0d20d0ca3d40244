"""Random fixed-length sequences for world-model training, read from disk on demand.

Sequences are in Dreamer's layout: step k carries observation k, the action that led to it,
and the reward/cost received on arriving there; `is_first` marks an episode's reset
observation, `is_terminal` a termination. Only the image chunks a sequence touches are read
and decompressed; the small per-step arrays of all episodes are held in memory.

By default a sequence stays inside one episode and every step of every episode is equally
likely to be trained on (`windows="uniform"`): a window may start before the episode's first step
or run past its last, the part outside padded with `valid` False. Windows that had to fit inside
the episode (`windows="inside"`, the earlier sampler, kept for ablations) see an episode's last
step - where a crash is - in one window out of ~64 for a middle step. `focus` > 0 additionally
draws that fraction of windows around "unsafe" steps (a cost within `focus_s` seconds ahead, or a VLM
p(safe) below 0.5), at a uniform position in the window. With `cross_episodes=True` a sequence may
run on into the next episode instead, as DreamerV3's replay does.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Iterator

import h5py
import numpy as np

from vlsafe.data.cost_source import check_cost_source, reward_without_crash, vlm_cost
from vlsafe.data.horizon import horizon_steps
from vlsafe.data.store import DatasetError, EpisodeStore

__all__ = ["SequenceSampler"]


class SequenceSampler:
    def __init__(self, store: EpisodeStore, length: int = 64, batch_size: int = 16, seed: int = 0,
                 cross_episodes: bool = False, keys: tuple[str, ...] = ("bev",), max_open_files: int = 128,
                 seeds: list[int] | None = None, labels: dict[int, np.ndarray] | None = None,
                 windows: str = "uniform", focus: float = 0.0, focus_s: float = 1.0,
                 cost_source: str = "simulator", collision_scale: float = 0.0):
        """`seeds` restricts sampling to those episodes (a train/held-out split); `labels` maps an
        episode seed to per-observation p(safe) (T+1,), returned as `p_safe` aligned with `bev`.
        `cost_source="vlm"`: `cost` is 1 − p(safe) and `reward` loses its crash term
        (−collision_scale·|v|), vlsafe.data.cost_source."""
        if length < 1 or batch_size < 1:
            raise ValueError(f"length and batch_size must be >= 1, got {length}, {batch_size}")
        if windows not in ("uniform", "inside"):
            raise ValueError(f"windows: expected uniform or inside, got {windows!r}")
        if check_cost_source(cost_source) == "vlm" and labels is None:
            raise ValueError("cost_source='vlm' needs labels")
        if not 0.0 <= focus < 1.0 or focus_s < 0:
            raise ValueError(f"focus must be in [0, 1) and focus_s >= 0, got {focus}, {focus_s}")
        self.mode, self.focus = windows, focus
        self.store, self.length, self.batch_size = store, length, batch_size
        self.cross, self.keys = cross_episodes, keys
        self.rng = np.random.default_rng(seed)
        self._files: OrderedDict[int, tuple[h5py.File, dict]] = OrderedDict()
        self._max_open = max_open_files
        self.seeds, self.small = [], []
        wanted = None if seeds is None else set(seeds)
        for entry in store.entries():
            seed = int(entry["seed"])
            if wanted is not None and seed not in wanted:
                continue
            with store.open(seed) as f:
                T = int(f.attrs["steps"])
                small = {name: f[name][()] for name in ("action", "reward", "cost", "terminated")}
                small.update({f"signal/{k}": f["signals"][k][()] for k in f["signals"]})
            if labels is not None and (seed not in labels or len(labels[seed]) != T + 1):
                got = "none" if seed not in labels else f"{len(labels[seed])} frames"
                raise DatasetError(f"{store.path(seed)}: labels do not match the episode "
                                   f"({T + 1} frames, labels: {got})")
            if cost_source == "vlm":
                small["cost"] = vlm_cost(labels[seed])
                small["reward"] = reward_without_crash(small["reward"], small["signal/speed"],
                                                       small["signal/collision"], collision_scale)
            self.seeds.append(seed)
            self.small.append(self._dreamer_layout(small, T))
            if labels is not None:
                self.small[-1]["p_safe"] = np.asarray(labels[seed], np.float32)
        if not self.seeds:
            raise DatasetError(f"{store.root}: the dataset has no episodes")
        self.steps = np.array([len(s["reward"]) for s in self.small])  # T+1 Dreamer steps per episode
        self.offsets = np.concatenate([[0], np.cumsum(self.steps)])
        if self.mode == "uniform":  # starts -(L-1) .. T: each of the T+1 steps lies in exactly L windows
            self.windows = self.steps + length - 1
        else:  # every start whose window ends inside the episode (at least one if shorter)
            self.windows = np.maximum(self.steps - length + 1, 1)
        # global indices of "unsafe" steps: a cost within focus_s seconds ahead, or p(safe) < 0.5
        # (a cost is 0 or 1 from the simulator, 1 − p(safe) from the VLM: ≥ 0.5 counts)
        focus_steps = horizon_steps(focus_s, store.dt()) if focus_s else 0
        unsafe = []
        for i, small in enumerate(self.small):
            near = np.convolve((small["cost"] >= 0.5).astype(float), np.ones(focus_steps + 1), "full")[focus_steps:]
            flag = near > 0
            if "p_safe" in small:
                flag |= small["p_safe"] < 0.5
            unsafe.append(self.offsets[i] + np.flatnonzero(flag))
        self.unsafe = np.concatenate(unsafe) if unsafe else np.zeros(0, np.int64)

    @staticmethod
    def _dreamer_layout(small: dict[str, np.ndarray], T: int) -> dict[str, np.ndarray]:
        out = {}
        for name, arr in small.items():
            pad = np.zeros((1,) + arr.shape[1:], arr.dtype)
            out[name] = np.concatenate([pad, arr])  # step k holds transition k-1
        out["is_terminal"] = out.pop("terminated").astype(bool)
        out["is_first"] = np.zeros(T + 1, bool)
        out["is_first"][0] = True
        out["is_last"] = np.zeros(T + 1, bool)
        out["is_last"][-1] = True
        return out

    def _datasets(self, i: int) -> dict:
        """Open h5py datasets of episode i (looking a dataset up by name costs more than reading it)."""
        seed = self.seeds[i]
        hit = self._files.get(seed)
        if hit is None:
            f = self.store.open(seed)
            hit = (f, {})
            self._files[seed] = hit
            if len(self._files) > self._max_open:
                self._files.popitem(last=False)[1][0].close()
        else:
            self._files.move_to_end(seed)
        return hit

    def _read(self, i: int, key: str, start: int, stop: int) -> np.ndarray:
        try:
            f, cache = self._datasets(i)
            if key not in cache:
                cache[key] = f[key]
            return cache[key][start:stop]
        except (OSError, KeyError) as err:
            raise DatasetError(f"{self.store.path(self.seeds[i])}: corrupt or missing {key!r} ({err})") from None

    def _piece(self, i: int, start: int, n: int) -> dict[str, np.ndarray]:
        """n steps of episode i from Dreamer step `start` (n <= steps - start)."""
        out = {k: v[start:start + n] for k, v in self.small[i].items()}
        for key in self.keys:
            out[key] = self._read(i, key, start, start + n)
        out["valid"] = np.ones(n, bool)
        out["episode"] = np.full(n, self.seeds[i], np.int64)
        out["step"] = np.arange(start, start + n)
        return out

    def _sequence(self) -> dict[str, np.ndarray]:
        L = self.length
        if self.cross:
            g = int(self.rng.integers(0, max(self.offsets[-1] - L, 0) + 1))
            i = int(np.searchsorted(self.offsets, g, side="right") - 1)
            start, parts, need = g - self.offsets[i], [], L
            while need > 0 and i < len(self.seeds):
                n = min(need, self.steps[i] - start)
                parts.append(self._piece(i, start, n))
                need -= n
                i, start = i + 1, 0
            if need > 0:
                parts.append(self._padding(parts[0], need))
        elif self.mode == "inside":
            i = int(self.rng.choice(len(self.seeds), p=self.windows / self.windows.sum()))
            start = int(self.rng.integers(0, self.windows[i]))
            n = min(L, self.steps[i] - start)
            parts = [self._piece(i, start, n)]
            if n < L:
                parts.append(self._padding(parts[0], L - n))
        else:
            if self.focus and len(self.unsafe) and self.rng.random() < self.focus:
                g = int(self.unsafe[self.rng.integers(0, len(self.unsafe))])
                i = int(np.searchsorted(self.offsets, g, side="right") - 1)
                start = g - int(self.offsets[i]) - int(self.rng.integers(0, L))
            else:
                i = int(self.rng.choice(len(self.seeds), p=self.windows / self.windows.sum()))
                start = int(self.rng.integers(0, self.windows[i])) - (L - 1)
            lo, hi = max(start, 0), min(start + L, int(self.steps[i]))
            parts = [self._piece(i, lo, hi - lo)]
            if lo > start:
                parts.insert(0, self._padding(parts[0], lo - start))
            if start + L > hi:
                parts.append(self._padding(parts[0], start + L - hi))
        if len(parts) == 1:
            return parts[0]
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

    @staticmethod
    def _padding(like: dict[str, np.ndarray], n: int) -> dict[str, np.ndarray]:
        pad = {k: np.zeros((n,) + v.shape[1:], v.dtype) for k, v in like.items()}
        pad["episode"][:] = -1
        pad["step"][:] = -1
        return pad

    def sample(self) -> dict[str, np.ndarray]:
        """A batch: every key as (batch_size, length, ...)."""
        seqs = [self._sequence() for _ in range(self.batch_size)]
        return {k: np.stack([s[k] for s in seqs]) for k in seqs[0]}

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        while True:
            yield self.sample()

    def close(self) -> None:
        for f, _ in self._files.values():
            f.close()
        self._files.clear()

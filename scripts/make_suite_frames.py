"""Build tests/vlm/suite_frames.npz: a small fixed set of BEV frames, collision vs clear road, both simulators.

The held-out prompt test (tests/vlm/test_prompt_suite.py) asserts that every pair of the held-out
prompt suite ranks the collision frames below the clear-road frames. The frames are picked by
the recorded ground truth (the collision flag; the 'clear_road' caption concept), not by any
model's score, so the fixture does not favour a model. Stored without pickle (np.savez, plain
arrays). Usage: `python scripts/make_suite_frames.py DATASET... [--per 8] [--out tests/vlm/suite_frames.npz]`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from vlsafe.data.store import EpisodeStore
from vlsafe.vlm import captions as cap


def pick(store: EpisodeStore, per: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Up to `per` collision frames (the first frame after each collision onset) and `per` clear-road frames."""
    crash, clear = [], []
    names = list(cap.CONCEPTS)
    for entry in store.entries():
        ep = store.read(int(entry["seed"]))
        hit = cap.frame_signals(ep.signals)["collision"] > 0
        onsets = np.flatnonzero(hit & ~np.concatenate([[False], hit[:-1]]))
        crash += [ep.bev[j] for j in onsets]
        calm = np.flatnonzero(cap.frame_concepts(ep.signals, ep.cost, ep.dt)[:, names.index("clear_road")])
        if len(calm):
            clear.append(ep.bev[rng.choice(calm)])
    if not crash or not clear:
        raise SystemExit(f"{store.root}: {len(crash)} collision and {len(clear)} clear-road frames; need some of each")
    take = lambda xs: np.stack([xs[i] for i in rng.choice(len(xs), min(per, len(xs)), replace=False)])  # noqa: E731
    return take(crash), take(clear)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("data", nargs="+")
    ap.add_argument("--per", type=int, default=8, help="frames of each kind per dataset")
    ap.add_argument("--out", default="tests/vlm/suite_frames.npz")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    frames, unsafe, source = [], [], []
    for path in args.data:
        store = EpisodeStore(path)
        crash, clear = pick(store, args.per, rng)
        frames += [crash, clear]
        unsafe += [np.ones(len(crash), bool), np.zeros(len(clear), bool)]
        source += [store.condition()] * (len(crash) + len(clear))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, frames=np.concatenate(frames), collision=np.concatenate(unsafe),
                        condition=np.array(source))
    print(f"wrote {args.out}: {sum(len(f) for f in frames)} frames from {len(args.data)} datasets")


if __name__ == "__main__":
    main()

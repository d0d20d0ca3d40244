"""Dataset benchmarks: collection steps/s with 1 and 2 workers (target: 2 workers >= 1.7x one),
sampler throughput for batch 16x64 at 64 px from disk (target >= 20 batches/s), and bytes per
stored frame against raw uint8 (target <= 25%). All measured in the same run.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
from pathlib import Path

from vlsafe.data.collect import CollectConfig, collect
from vlsafe.data.sampler import SequenceSampler

SPEEDUP_TARGET, BATCHES_TARGET, BYTES_TARGET = 1.7, 20.0, 0.25


def collect_rate(root: Path, workers: int, steps: int, task: str, backend: str) -> tuple[float, float, Path]:
    """(wall-clock steps/s including process start-up, steady-state steps/s from the progress lines, folder)."""
    out = root / f"w{workers}"
    cfg = CollectConfig(task=task, backend=backend, steps=steps, workers=workers, max_steps=200)
    marks: list[tuple[float, int]] = []

    def log(line: str) -> None:
        m = re.match(r"\s+(\d+)/\d+ steps", line)
        if m:
            marks.append((time.perf_counter(), int(m.group(1))))

    t = time.perf_counter()
    store = collect(cfg, out, log=log)
    wall = time.perf_counter() - t
    total = store.manifest()["totals"]["steps"]
    steady = (marks[-1][1] - marks[0][1]) / (marks[-1][0] - marks[0][0]) if len(marks) > 1 else float("nan")
    return total / wall, steady, out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--task", default="four-lane")
    p.add_argument("--backend", default="metadrive")
    p.add_argument("--batches", type=int, default=40)
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        r1, s1, _ = collect_rate(root, 1, args.steps, args.task, args.backend)
        r2, s2, out = collect_rate(root, 2, args.steps, args.task, args.backend)
        print(f"collect {args.task}@{args.backend}: 1 worker {r1:.1f} steps/s, 2 workers {r2:.1f} steps/s "
              f"(wall clock incl. start-up): speed-up {r2 / r1:.2f} (target >= {SPEEDUP_TARGET})")
        print(f"collect {args.task}@{args.backend}: steady state (between progress lines) 1 worker {s1:.1f}, "
              f"2 workers {s2:.1f} steps/s: speed-up {s2 / s1:.2f} (target >= {SPEEDUP_TARGET})")
        from vlsafe.data.store import EpisodeStore

        store = EpisodeStore(out)
        man = store.manifest()
        frames = sum(e["steps"] + 1 for e in man["episodes"])
        size = man["bev_size"]
        per_frame = man["totals"]["bytes"] / frames
        raw = size * size * 3
        print(f"storage: {per_frame:.0f} bytes per stored step (frame + vector + action + signals) vs "
              f"{raw} raw uint8 frame bytes = {per_frame / raw:.3f} (target <= {BYTES_TARGET})")
        sampler = SequenceSampler(store, length=64, batch_size=16, seed=0)
        sampler.sample()
        t = time.perf_counter()
        for _ in range(args.batches):
            sampler.sample()
        rate = args.batches / (time.perf_counter() - t)
        print(f"sampler: {rate:.1f} batches/s of 16x64 at {size} px from disk "
              f"({rate * 16:.0f} sequences/s), ratio to target {rate / BATCHES_TARGET:.2f} (>= 1 meets {BATCHES_TARGET:.0f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

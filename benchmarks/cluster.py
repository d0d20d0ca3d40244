"""Ray against the local pool, measured in one run on this machine (`python benchmarks/cluster.py`).

- collect throughput (steps/s of wall clock, start-up included) with 1 and 2 Ray workers: the
  ratio is the scaling (target >= 1.6x on 2 cores);
- labelling throughput (frames/s) with 1 and 2 Ray Data workers;
- Ray's start-up overhead against the local process pool for the same small collect job.

Each figure starts its own private Ray instance on this machine (the start-up is part of it).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path


def _collect(cluster: str, workers: int, episodes: int, out: Path, task: str, backend: str) -> tuple[float, int]:
    import ray

    from vlsafe.data.collect import CollectConfig, collect

    t0 = time.perf_counter()
    store = collect(CollectConfig(task=task, backend=backend, episodes=episodes, workers=workers, max_steps=300),
                    out, cluster=cluster, log=lambda _: None)
    wall = time.perf_counter() - t0
    if ray.is_initialized():
        ray.shutdown()
    return wall, sum(e["steps"] for e in store.entries())


def _label(workers: int, src: Path, out: Path) -> tuple[float, int]:
    import ray

    from vlsafe.data.store import EpisodeStore
    from vlsafe.vlm.label import label_dataset
    from vlsafe.vlm.scorer import load_scorer

    shutil.copytree(src / "episodes", out / "episodes")
    shutil.copy(src / "manifest.json", out / "manifest.json")
    store = EpisodeStore(out)
    t0 = time.perf_counter()
    label_dataset(store, load_scorer("drive-clip", None, threads=1), log=lambda _: None, cluster="ray", workers=workers,
                  scorer_spec=("drive-clip", None))
    wall = time.perf_counter() - t0
    ray.shutdown()
    return wall, sum(e["steps"] + 1 for e in store.entries())


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--episodes", type=int, default=40)
    ap.add_argument("--task", default="four-lane")
    ap.add_argument("--backend", default="metadrive")
    args = ap.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="vlsafe-cluster-bench-"))
    try:
        rows = {}
        for cluster, workers in (("local", 1), ("ray", 1), ("ray", 2)):
            wall, steps = _collect(cluster, workers, args.episodes, tmp / f"c_{cluster}{workers}", args.task, args.backend)
            rows[(cluster, workers)] = (wall, steps)
            print(f"collect {cluster} x{workers}: {steps} steps in {wall:.1f} s = {steps / wall:.0f} steps/s", flush=True)
        r1, r2 = (rows[("ray", w)][1] / rows[("ray", w)][0] for w in (1, 2))
        print(f"collect, 2 Ray workers against 1: {r2 / r1:.2f}x (target >= 1.6x)")
        print(f"Ray start-up overhead, 1 worker: {rows[('ray', 1)][0] - rows[('local', 1)][0]:+.1f} s against the local "
              f"pool ({rows[('ray', 1)][0]:.1f} s vs {rows[('local', 1)][0]:.1f} s for the same {args.episodes} episodes)")
        lab = {}
        for workers in (1, 2):
            wall, frames = _label(workers, tmp / "c_local1", tmp / f"l{workers}")
            lab[workers] = frames / wall
            print(f"label ray x{workers}: {frames} frames in {wall:.1f} s = {frames / wall:.0f} frames/s", flush=True)
        print(f"label, 2 Ray Data workers against 1: {lab[2] / lab[1]:.2f}x")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()

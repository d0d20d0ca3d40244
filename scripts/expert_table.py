"""The scripted expert on every task x backend: AR, CR and how the other episodes ended.

    python scripts/expert_table.py --seed-start 9100 --episodes 100 [--workers 2] [--tasks ...] [--backends ...]

Each episode runs in a worker process (MetaDrive allows one engine per process); the expert reads
the scene, so the observation is the cheap vector one. Prints a Markdown table (README, "The expert")
and writes one JSON line per episode to --out.
"""

from __future__ import annotations

import argparse
import json
import os
from collections import Counter
from multiprocessing import Pool
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

_envs: dict = {}


def run(job: tuple[str, str, int]) -> dict:
    from vlsafe.envs import make
    from vlsafe.experts.behaviours import make_driver

    task, backend, seed = job
    if (task, backend) not in _envs:
        for env in _envs.values():
            env.close()
        _envs.clear()
        _envs[(task, backend)] = make(task, backend=backend, overrides=["observation.kind=vector"])
    env = _envs[(task, backend)]
    env.reset(seed=seed)
    driver = make_driver("expert", seed)
    steps = 0
    while True:
        _, _, terminated, truncated, info = env.step(driver.act(env))
        steps += 1
        if terminated or truncated:
            break
    end = ("arrived" if info["arrived"] else "collision" if info["collision"] else "off-road" if info["off_road"]
           else "timeout")
    return {"task": task, "backend": backend, "seed": seed, "end": end, "steps": steps,
            "route_m": round(info["route_length"], 1), "progress": round(info["route_progress"], 3)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seed-start", type=int, default=9100)
    p.add_argument("--episodes", type=int, default=100)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--tasks", nargs="+", default=["four-lane", "left-turn", "right-turn", "navigation"])
    p.add_argument("--backends", nargs="+", default=["metadrive", "highway"])
    p.add_argument("--out", default="runs/expert_table.jsonl")
    args = p.parse_args()
    jobs = [(t, b, s) for b in args.backends for t in args.tasks
            for s in range(args.seed_start, args.seed_start + args.episodes)]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    rows = []
    with Pool(args.workers) as pool, open(args.out, "w") as f:
        for i, r in enumerate(pool.imap(run, jobs, chunksize=max(1, args.episodes // args.workers))):
            rows.append(r)
            f.write(json.dumps(r) + "\n")
            if (i + 1) % args.episodes == 0:
                print(f"  {i + 1}/{len(jobs)} episodes", flush=True)
    print(f"\nexpert, seeds {args.seed_start}-{args.seed_start + args.episodes - 1}\n")
    print("| task | backend | AR | CR | off-road | timeout | episodes |")
    print("|---|---|---|---|---|---|---|")
    for b in args.backends:
        for t in args.tasks:
            c = Counter(r["end"] for r in rows if r["task"] == t and r["backend"] == b)
            n = sum(c.values())
            print(f"| {t} | {b} | {c['arrived'] / n:.2f} | {c['collision'] / n:.2f} | {c['off-road'] / n:.2f} | "
                  f"{c['timeout'] / n:.2f} | {n} |")


if __name__ == "__main__":
    main()

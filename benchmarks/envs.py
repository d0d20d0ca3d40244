"""Environment benchmarks: `python benchmarks/envs.py` (part of `make bench`).

Prints, per task and backend, steps/s of (a) the backend alone (simulator step + state
read-out, no observation: the reference), (b) the env with vector observations, (c) the env
with 64 px BEV observations, and the ratio (a)/(c) against the target <= 1.5. All three replay
the same recorded expert actions from the same seeds, so they simulate the same episodes. Then BEV frames/s
of the rasterizer alone on one core, replaying a recorded drive, against the target >= 2000 at
64 px. All numbers are measured in the same run on this machine.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time

import cv2

from vlsafe.envs import TASKS, make
from vlsafe.envs.backends import BackendSpec
from vlsafe.envs.bev import BEVConfig, BEVRasterizer
from vlsafe.experts import RouteFollower

RASTER_TARGET_FPS = 2000.0
STEP_RATIO_TARGET = 1.5


def record(task: str, backend: str, steps: int, seed: int = 0) -> tuple[list[int], set[int], tuple]:
    """Drive the scripted expert once; keep its discrete actions, the steps after which the
    episode ended, and (road, route, vehicles per step) for the rasterizer benchmark."""
    env = make(task, backend=backend, observation={"kind": "vector"})
    driver = RouteFollower()
    actions, ends, frames = [], set(), []
    try:
        env.reset(seed=seed)
        for i in range(steps):
            a = driver.act(env)
            _, _, terminated, truncated, _ = env.step(a)
            actions.append(a)
            frames.append(env.scene.vehicles)
            if terminated or truncated:
                ends.add(i)
                env.reset(seed=seed + len(ends))
        scene = (env.road, env.route, frames[-min(len(frames), 300):])
    finally:
        env.close()
    return actions, ends, scene


def replay_env(task: str, backend: str, kind: str, actions: list[int], ends: set[int], seed: int = 0) -> float:
    """Env steps/s replaying recorded actions (no driver cost), observation `kind`."""
    env = make(task, backend=backend, observation={"kind": kind})
    try:
        env.reset(seed=seed)
        t = time.perf_counter()
        for i, a in enumerate(actions):
            env.step(a)
            if i in ends:
                env.reset(seed=seed + 1 + sorted(ends).index(i))
        return len(actions) / (time.perf_counter() - t)
    finally:
        env.close()


def replay_backend(task: str, backend: str, actions: list[int], ends: set[int], seed: int = 0) -> float:
    """The backend alone (simulator step + state read-out + events), same actions, no observation."""
    from vlsafe.envs.actions import to_controls
    from vlsafe.envs.backends import make_backend
    from vlsafe.envs.tasks import task_config

    cfg = task_config(task, backend)
    sim = make_backend(backend)

    def spec(s):
        return BackendSpec(cfg.task, cfg.traffic_density, cfg.map_seed_start + s % cfg.num_maps, cfg.max_steps)

    try:
        sim.reset(spec(seed), seed)
        t = time.perf_counter()
        for i, a in enumerate(actions):
            sim.step(*to_controls(a, "discrete"))
            sim.vehicles()
            sim.events()
            if i in ends:
                s = seed + 1 + sorted(ends).index(i)
                sim.reset(spec(s), s)
        return len(actions) / (time.perf_counter() - t)
    finally:
        sim.close()


def bench_steps(tasks, backends, steps):
    rows, recorded = [], None
    for backend in backends:
        for task in tasks:
            actions, ends, scene = record(task, backend, steps)
            recorded = recorded or scene
            ref = replay_backend(task, backend, actions, ends)
            vec = replay_env(task, backend, "vector", actions, ends)
            bev = replay_env(task, backend, "bev", actions, ends)
            rows.append((task, backend, ref, vec, bev))
            print(f"{task:<11} {backend:<10} backend {ref:7.1f}  vector {vec:7.1f}  bev64 {bev:7.1f} steps/s   "
                  f"backend/bev = {ref / bev:4.2f} (target <= {STEP_RATIO_TARGET})", flush=True)
    return rows, recorded


def bench_raster(recorded, repeats: int = 3):
    road, route, frames = recorded
    cv2.setNumThreads(1)
    out = {}
    for size in (64, 128, 224):
        r = BEVRasterizer(BEVConfig(size=size))
        for v in frames[:5]:
            r.draw(road, route, v)
        best = 0.0
        for _ in range(repeats):
            t = time.perf_counter()
            for v in frames:
                r.draw(road, route, v)
            best = max(best, len(frames) / (time.perf_counter() - t))
        out[size] = best
        note = ""
        if size == 64:
            note = f"   ratio to target {best / RASTER_TARGET_FPS:4.2f} (>= 1 meets {RASTER_TARGET_FPS:.0f} fps)"
        print(f"rasterizer {size:>3} px: {best:8.0f} frames/s on one core over {len(frames)} recorded frames{note}")
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=500)
    p.add_argument("--tasks", default=",".join(TASKS))
    p.add_argument("--backends", default="metadrive,highway")
    args = p.parse_args(argv)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, python {sys.version.split()[0]}")
    _, recorded = bench_steps(args.tasks.split(","), args.backends.split(","), args.steps)
    bench_raster(recorded)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Environment benchmarks: `python benchmarks/envs.py` (part of `make bench`).

Prints, per task and backend, steps/s of (a) the backend alone (simulator step + state
read-out, no observation: the reference), (b) the env with vector observations, (c) the env
with 64 px BEV observations, and the ratio (a)/(c) against the target <= 1.5. Then BEV frames/s
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


def time_env(env, steps: int, seed: int = 0) -> tuple[float, list]:
    """Env steps/s with the route follower (its own cost included, as in data collection)."""
    driver = RouteFollower()
    env.reset(seed=seed)
    recorded = []
    t = time.perf_counter()
    for _ in range(steps):
        _, _, terminated, truncated, _ = env.step(driver.act(env))
        recorded.append(env.scene.vehicles)
        if terminated or truncated:
            env.reset(seed=seed + 1)
    return steps / (time.perf_counter() - t), recorded


def time_backend(env, steps: int, seed: int = 0) -> float:
    """The backend alone, replaying the same scripted controls, with no observation."""
    backend, cfg = env.backend, env.config
    driver = RouteFollower()
    env.reset(seed=seed)
    spec = BackendSpec(cfg.task, cfg.traffic_density, cfg.map_seed_start + seed % cfg.num_maps, cfg.max_steps)
    t = time.perf_counter()
    for _ in range(steps):
        backend.step(*driver.controls(env.scene, env.route_s))
        env._vehicles = backend.vehicles()  # keep the driver's view current, as the env would
        ev = backend.events()
        if ev.arrived or ev.collision or ev.off_road:
            env.road, env.route = backend.reset(spec, seed)
    return steps / (time.perf_counter() - t)


def bench_steps(tasks, backends, steps):
    rows, recorded = [], None
    for backend in backends:
        for task in tasks:
            env = make(task, backend=backend, observation={"kind": "vector"})
            try:
                ref = time_backend(env, steps)
                vec, _ = time_env(env, steps)
            finally:
                env.close()
            env = make(task, backend=backend, observation={"kind": "bev"})
            try:
                bev, rec = time_env(env, steps)
                if recorded is None:
                    recorded = (env.road, env.route, rec)
            finally:
                env.close()
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
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--tasks", default=",".join(TASKS))
    p.add_argument("--backends", default="metadrive,highway")
    args = p.parse_args(argv)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, python {sys.version.split()[0]}")
    _, recorded = bench_steps(args.tasks.split(","), args.backends.split(","), args.steps)
    bench_raster(recorded)
    return 0


if __name__ == "__main__":
    sys.exit(main())

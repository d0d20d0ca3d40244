"""Where a learned policy's crashes come from: replay them, and ask the expert at every state it reaches.

For each crash of a method's greedy evaluations in a `vlsafe benchmark` folder, the policy drives the
episode again (greedy, deterministic) and at every state the scripted expert (experts.route_follower)
is asked what it would do there, DAgger-style, without taking over. Over the last 50 steps before
the crash it counts the steps where the learner's acceleration is below the expert's ("slower":
holding or braking where the expert goes on), above it ("faster": going on where the expert yields),
and where the learner brakes although the expert's check predicts braking to meet a car (the
conflict columns' braking gap below the 1.5 m yield gap) and the expert accelerates out of its
path ("braked in path"). Needs data recorded with `observation.conflict=true` (the 88-column vector).

    python scripts/expert_disagreement.py runs/bench/conf-navigation-ho [--method vl-safe] [--out crashes.jsonl]
"""

from __future__ import annotations

import argparse
import glob
import json
import sys
from pathlib import Path

import numpy as np
import torch

from vlsafe.envs.actions import DISCRETE_ACTIONS
from vlsafe.envs.observation import CONFLICT_COLUMNS, CONFLICT_GAP_M
from vlsafe.evaluation.driver import load_driver
from vlsafe.evaluation.evaluate import make_env
from vlsafe.evaluation.runner import run_episode
from vlsafe.experts.route_follower import RouteFollower, RouteFollowerConfig

LAST = 50  # steps before the crash that are compared (5 s)


def crashes(bench: Path, method: str) -> list[tuple[str, int]]:
    """(policy run folder, episode seed) of every crash in the benchmark's greedy evaluations of `method`."""
    out = []
    for f in sorted(glob.glob(str(bench / "cells" / "eval" / f"*__{method}__*__greedy-*" / "eval" / "eval.json"))):
        result = json.loads(Path(f).read_text())
        run, episodes = next(iter(result["episodes"].items()))
        start = json.loads((Path(f).parents[1] / "done.json").read_text())["spec"]["seed_start"]
        out += [(run, start + i) for i, e in enumerate(episodes) if e["collisions"] > 0]
    return out


def replay(run: str, seed: int) -> dict:
    loaded = load_driver(run, greedy=True)
    if not (loaded.task.get("observation") or {}).get("conflict"):
        sys.exit(f"{run}: its task records no conflict columns (observation.conflict=true); nothing to compare")
    env = make_env(loaded.task, action=loaded.driver.action_mode)
    expert = RouteFollower()
    rows = []

    def drive(env) -> object:  # the learner acts; the expert is only asked
        vector = env.observation("vector")
        expert_action = expert.act(env)
        action = loaded.driver(env)
        rows.append((DISCRETE_ACTIONS[int(action)][0], DISCRETE_ACTIONS[int(expert_action)][0],
                     float(vector[CONFLICT_COLUMNS[-1]]) * CONFLICT_GAP_M))
        return action

    try:
        episode = run_episode(env, drive, seed)
    finally:
        env.close()
    x = np.array(rows[-LAST:])
    learner, teacher, brake_gap = x[:, 0], x[:, 1], x[:, 2]
    clear_out = (teacher > 0) & (brake_gap < RouteFollowerConfig.yield_gap_m)
    sign = lambda a: "".join("-0+"[int(np.sign(v)) + 1] for v in a)  # noqa: E731
    return {"run": run, "seed": seed, "steps": len(rows), "crashed": episode.metrics.collisions > 0,
            "slower": int((learner < teacher).sum()), "faster": int((learner > teacher).sum()),
            "braked_in_path": int((clear_out & (learner < 0)).sum()), "learner": sign(learner), "expert": sign(teacher)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("bench", type=Path)
    parser.add_argument("--method", default="vl-safe")
    parser.add_argument("--out", type=Path, help="also write one JSON line per crash here")
    args = parser.parse_args()
    if not (args.bench / "cells" / "eval").is_dir():
        sys.exit(f"{args.bench}: no cells/eval folder (expected a `vlsafe benchmark --out` folder)")
    torch.set_num_threads(1)
    todo = crashes(args.bench, args.method)
    print(f"{len(todo)} crashes of {args.method} (greedy) in {args.bench}", flush=True)
    out = open(args.out, "w") if args.out else None
    for run, seed in todo:
        r = replay(run, seed)
        kind = ("braked in path" if r["braked_in_path"] >= 5 else "late yield" if r["faster"] > r["slower"]
                else "hesitant")
        print(f"seed {seed} {Path(run).parent.name}: {r['steps']} steps, slower {r['slower']}, faster {r['faster']}, "
              f"braked in path {r['braked_in_path']} -> {kind}\n  learner {r['learner']}\n  expert  {r['expert']}",
              flush=True)
        if out:
            out.write(json.dumps({**r, "kind": kind}) + "\n")
    if out:
        out.close()


if __name__ == "__main__":
    main()

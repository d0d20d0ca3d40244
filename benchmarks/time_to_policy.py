"""Time to policy: wall clock of the README's four-lane `small` recipe, from a dataset to an evaluated policy.

`python benchmarks/run.py time-to-policy` (~40 min on 2 cores; not in the default `make bench`).
The stages are the README's commands, run as the CLI runs them, into a fresh folder:

1. `vlsafe train-wm DATA --preset xs --steps 3000 --set seq_len=32 --set threads=1 --eval`
   (the world model whose held-out quality the README states);
2. `vlsafe train-policy WM --method vl-safe --seed 0 --set threads=1 --set eval_every=0` (defaults);
3. `vlsafe eval POLICY --episodes 30` (greedy, episode seeds 700-729).

Prints each stage's minutes, the total against the target <= 120 min, and what came out: the world
model's held-out safety-head AUROC (posterior and imagined), cost-event AUROC and reconstruction
MSE against the README's figures, and the policy's Return / AR / CR.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

TARGET_MIN = 120.0
# the README's world-model table (four-lane, xs, 3,000 steps of 16 x 32)
README_WM = {"safety_auroc_vs_gt_0.5s": 0.913, "safety_auroc_imagined_5ahead_vs_gt_0.5s": 0.907, "cost_event_auroc": 0.997,
             "recon_mse": 0.0042}


def stage(name: str, cmd: list[str], log: Path) -> float:
    print(f"{name}: {' '.join(cmd)}  (log {log})", flush=True)
    t = time.perf_counter()
    with log.open("w") as f:
        rc = subprocess.call(cmd, stdout=f, stderr=subprocess.STDOUT)
    minutes = (time.perf_counter() - t) / 60
    if rc:
        sys.exit(f"{name} failed (exit {rc}); see {log}")
    print(f"{name}: {minutes:.1f} min", flush=True)
    return minutes


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default="data/four-lane@metadrive-small",
                   help="a labelled dataset (vlsafe collect --task four-lane --preset small; vlsafe label)")
    p.add_argument("--out", default="runs/bench/time-to-policy", help="a fresh folder (removed first)")
    p.add_argument("--episodes", type=int, default=30)
    args = p.parse_args(argv)
    if not Path(args.data, "manifest.json").exists():
        sys.exit(f"{args.data}: no dataset; collect and label it first (see --help)")
    vlsafe = str(Path(sys.executable).with_name("vlsafe"))
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    minutes = {
        "train-wm + eval-wm": stage("train-wm", [vlsafe, "train-wm", args.data, "--preset", "xs", "--steps", "3000",
                                                 "--out", str(out / "wm"), "--eval", "--set", "seq_len=32",
                                                 "--set", "threads=1"], out / "wm.log"),
        "train-policy": stage("train-policy", [vlsafe, "train-policy", str(out / "wm"), "--method", "vl-safe", "--seed", "0",
                                               "--out", str(out / "policy"), "--set", "threads=1", "--set", "eval_every=0"],
                              out / "policy.log"),
        "eval": stage("eval", [vlsafe, "eval", str(out / "policy"), "--episodes", str(args.episodes), "--no-videos",
                               "--out", str(out / "eval")], out / "eval.log"),
    }
    total = sum(minutes.values())
    print(f"time to policy: {total:.1f} min = {total / TARGET_MIN:.2f} of the {TARGET_MIN:.0f} min target "
          f"({', '.join(f'{k} {v:.1f}' for k, v in minutes.items())})")
    wm = json.loads((out / "wm" / "eval.json").read_text())
    print("world model (held-out): " + ", ".join(f"{k} {wm[k]:.4g} (README {v})" for k, v in README_WM.items()))
    ev = json.loads((out / "eval" / "eval.json").read_text())["metrics"]
    print(f"policy ({args.episodes} greedy episodes from seed 700): Return {ev['Return']:.0f}, AR {ev['AR']:.3f}, "
          f"CR {ev['CR']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""train-policy under torchrun against one process, measured in one run on this machine
(`python benchmarks/policy_ddp.py [--world-model RUN] [--method lagrangian] [--updates 300]`).

The same policy run three ways on the same world model and global batch (`starts`, 256 by
default): one process on 1 thread (the reference), one process on 2 threads, and 2 ranks of
1 thread under `torchrun --nproc-per-node 2` (gloo). It prints the updates/s of each (the last
logged rate: start-up excluded) and the wall-clock of the whole command (start-up included),
with the ratios against the reference. The default method is the Lagrangian one, whose update
trains the imagined critics (the slow path: FOSP's is the same); vl-safe's default AWR update is
a few milliseconds, where start-up dominates. Without --world-model a tiny one is trained first
(6 highway-env four-lane episodes, 40 steps of `xs`): an update's arithmetic depends on the world
model's size and the batch, not on how well it learned.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

VLSAFE = shutil.which("vlsafe", path=str(Path(sys.executable).parent)) or "vlsafe"


def _tiny_world_model(tmp: Path) -> Path:
    from vlsafe.data.collect import CollectConfig, collect

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    collect(CollectConfig(task="four-lane", backend="highway", episodes=6, max_steps=60, workers=1), tmp / "ds",
            log=lambda _: None)
    subprocess.run([VLSAFE, "label", str(tmp / "ds"), "--threads", "1"], check=True, capture_output=True, env=env)
    subprocess.run([VLSAFE, "train-wm", str(tmp / "ds"), "--steps", "40", "--out", str(tmp / "wm"), "--set", "batch_size=8",
                    "--set", "seq_len=16", "--set", "threads=1"], check=True, capture_output=True, env=env)
    return tmp / "wm"


def _run(wm: Path, out: Path, method: str, updates: int, nproc: int, threads: int) -> tuple[float, float]:
    """(updates/s at the last log, wall-clock seconds of the command)."""
    launch = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc), "--standalone", VLSAFE] \
        if nproc > 1 else [VLSAFE]
    cmd = launch + ["train-policy", str(wm), "--method", method, "--steps", str(updates), "--out", str(out),
                    "--set", "policy.bc_steps=0", "--set", "eval_every=0", "--set", f"log_every={updates // 4}",
                    "--set", f"threads={threads}", "--set", f"checkpoint_every={updates}"]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if done.returncode:
        sys.exit(f"{' '.join(cmd)} failed:\n{done.stderr[-3000:]}")
    wall = time.perf_counter() - t0
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return rows[-1]["perf/steps_per_s"], wall


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--world-model", type=Path, default=None, help="a train-wm run (default: a tiny one, trained here)")
    ap.add_argument("--method", default="lagrangian")
    ap.add_argument("--updates", type=int, default=300)
    args = ap.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="vlsafe-policy-ddp-"))
    try:
        wm = args.world_model or _tiny_world_model(tmp)
        print(f"world model {wm}; {args.method}, {args.updates} updates of 256 start states", flush=True)
        rows = {}
        for name, nproc, threads in (("1 process, 1 thread", 1, 1), ("1 process, 2 threads", 1, 2),
                                     ("torchrun, 2 ranks x 1 thread", 2, 1)):
            rows[name] = _run(wm, tmp / name.replace(" ", "_").replace(",", ""), args.method, args.updates, nproc, threads)
            print(f"{name}: {rows[name][0]:.2f} updates/s, {rows[name][1]:.1f} s wall-clock", flush=True)
        ref_rate, ref_wall = rows["1 process, 1 thread"]
        for name, (r, w) in rows.items():
            print(f"  {name}: {r / ref_rate:.2f}x the updates/s of 1 process on 1 thread, "
                  f"{ref_wall / w:.2f}x its wall-clock speed")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()

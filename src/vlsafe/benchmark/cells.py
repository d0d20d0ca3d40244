"""What one cell runs: the `vlsafe` command lines of its stage, in a process of its own.

A cell is a plain single-process run of the same commands a user types, so every number of the
benchmark comes with the command that reproduces it. The commands resume where they stopped
(collect, train-wm, train-policy and baseline train do), so a cell killed half-way loses only the
work since its last checkpoint; `done.json`, written last and atomically, is what marks a cell
finished.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shlex
import time
from pathlib import Path
from typing import Any

__all__ = ["commands", "run_cell", "read_done", "DONE", "OUTPUT"]

DONE = "done.json"
# The artifact each kind leaves in its folder, and which later cells read.
OUTPUT = {"data": "dataset", "subset": "dataset", "wm": "run", "policy": "run", "eval": "eval"}


def commands(kind: str, spec: dict[str, Any], folder: Path, inputs: list[Path], device: str = "cpu") -> list[list[str]]:
    """The `vlsafe` argument lists a cell runs, in order (folder: the cell's own; inputs: its needs'
    folders; device: the torch device of a world-model or in-house policy cell)."""
    on = ["--device", device] if device != "cpu" else []
    out = str(folder / OUTPUT[kind])
    src = [str(p / OUTPUT[p.parent.name]) for p in inputs]
    if kind == "data":
        cmd = ["collect", "--task", spec["task"], "--backend", spec["backend"], "--preset", spec["preset"],
               "--seed-start", str(spec["seed_start"]), "--workers", str(spec["workers"]), "--out", out]
        cmd += ["--episodes", str(spec["episodes"])] if spec["episodes"] else []
        cmd += ["--steps", str(spec["steps"])] if spec.get("steps") else []
        from vlsafe.experts.behaviours import DEFAULT_MIXTURE

        # always named: a cell keyed on the global default must not get a task's own default
        cmd += ["--mixture", spec.get("mixture", DEFAULT_MIXTURE)]
        for o in spec["task_overrides"]:
            cmd += ["--set", o]
        cmd += ["--expert-labels"] if spec.get("expert_labels") else []
        return [cmd]
    if kind == "subset":
        label = ["label", out, "--threads", "1", "--prompts", spec["prompts"], "--model", spec["label_model"]]
        return [["data", "subset", src[0], "--fraction", f"{spec['fraction']:g}", "--seed", str(spec["seed"]),
                 "--out", out], label]
    if kind == "wm":
        cmd = ["train-wm", src[0], "--preset", spec["preset"], "--steps", str(spec["steps"]), "--out", out, "--eval",
               "--set", "threads=1", *on]
        for o in spec["overrides"]:
            cmd += ["--set", o]
        return [cmd]
    if kind == "policy":
        if "algo" not in spec:
            cmd = ["train-policy", src[0], "--method", spec["method"], "--seed", str(spec["seed"]),
                   "--steps", str(spec["steps"]), "--out", out, "--set", "threads=1", *on]
        else:
            cmd = ["baseline", "train", "--algo", spec["algo"], "--seed", str(spec["seed"]), "--out", out,
                   "--set", "threads=1"]
            cmd += ["--task", spec["task"]] if "task" in spec else ["--data", src[0]]
            cmd += ["--steps", str(spec["steps"])] if spec["steps"] else []
        for o in spec["overrides"]:
            cmd += ["--set", o]
        return [cmd]
    if kind == "eval":
        cmd = ["eval", src[0], "--episodes", str(spec["episodes"]), "--seed-start", str(spec["seed_start"]),
               "--out", out, "--threads", "1", "--cost-threshold", f"{spec['cost_threshold']:g}"]
        cond = spec["condition"]
        if cond == "cross-sim":
            cmd += ["--backend", spec["other_backend"]]
        elif cond != "default":
            cmd += ["--variant", cond]
        cmd += ["--actor", "behaviour"] if spec["behaviour_head"] else []
        cmd += ["--sampled"] if spec["actor"] == "sampled" else []
        cmd += [] if spec["videos"] else ["--no-videos"]
        return [cmd]
    raise ValueError(f"unknown cell kind {kind!r}")


def command_text(argv: list[str]) -> str:
    return "vlsafe " + shlex.join(argv)


def run_cell(kind: str, name: str, key: str, spec: dict[str, Any], folder: str, inputs: list[str],
             device: str = "cpu") -> dict[str, Any]:
    """Run a cell's commands with their output in `folder`/log.txt; returns (and writes) its done record.
    Runs in a fresh worker process: one simulator engine per process, one torch thread."""
    from vlsafe.cli import main
    from vlsafe.manifest import code_version

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)
    cell = Path(folder)
    cell.mkdir(parents=True, exist_ok=True)
    # One writer per cell: two benchmarks whose cells folders share a cell (arms linking one `cells/wm`),
    # or a killed benchmark's worker still finishing the cell its rerun starts, would write one
    # folder at once. The second waits, then takes the first one's result.
    with open(cell / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        done = read_done(cell)
        if done is not None and done.get("key") == key:
            return done
        argvs = commands(kind, spec, cell, [Path(p) for p in inputs], device)
        t0 = time.perf_counter()
        with open(cell / "log.txt", "a") as log, contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
            for argv in argvs:
                print(f"$ {command_text(argv)}", flush=True)
                rc = main(argv)
                if rc != 0:
                    raise RuntimeError(f"{name}: `{command_text(argv)}` exited {rc}; see {cell / 'log.txt'}")
        record = {"key": key, "name": name, "kind": kind, "spec": spec, "inputs": inputs,
                  "commands": [command_text(a) for a in argvs], "wall_s": time.perf_counter() - t0,
                  "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "code_version": code_version()}
        tmp = cell / (DONE + ".tmp")
        tmp.write_text(json.dumps(record, indent=1))
        os.replace(tmp, cell / DONE)
        return record


def read_done(folder: Path) -> dict[str, Any] | None:
    """A cell's done record, or None while it has none (or a half-written one)."""
    try:
        return json.loads((folder / DONE).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None

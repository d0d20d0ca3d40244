"""`vlsafe benchmark`: the paper's evaluation as a grid of cached, resumable cells, and its results
as data (`results/episodes.csv`, `results/summary.json`) that `vlsafe report` turns into a page."""

from __future__ import annotations

import os
import shlex
from pathlib import Path

from vlsafe.benchmark.config import PRESETS, BenchmarkConfig, resolve_benchmark
from vlsafe.benchmark.grid import Cell, expand
from vlsafe.benchmark.results import write_results
from vlsafe.benchmark.runner import GridResult, run_grid
from vlsafe.config import ConfigError, to_dict
from vlsafe.runlog import dumps

__all__ = ["BenchmarkConfig", "PRESETS", "resolve_benchmark", "expand", "run_benchmark", "Cell", "GridResult"]


def run_benchmark(cfg: BenchmarkConfig, out: str | Path, cluster: str = "local", address: str | None = None,
                  command: str = "", log=print) -> GridResult:
    """Run (or resume) every cell of `cfg` under `out`, then write `out/results/`. `cluster`: where
    cells run (vlsafe.cluster: a local process pool, or Ray tasks at `address`)."""
    from vlsafe.cluster import check_cluster

    check_cluster(cluster, address)
    if cfg.device != "cpu" and cluster == "local":  # on Ray the GPUs are the cluster's, declared per cell
        from vlsafe.training.device import check_device

        check_device(cfg.device)
    root = Path(out)
    if root.exists() and not root.is_dir():
        raise ConfigError(f"--out {root}: exists and is not a folder")
    for part in ("cells", "results"):  # a cells/ shared by a link with another benchmark must resolve
        sub = root / part
        if sub.is_symlink() and not sub.exists():
            raise ConfigError(f"--out {root}: {part}/ is a link to {os.readlink(sub)}, which does not exist")
        if sub.exists() and not sub.is_dir():
            raise ConfigError(f"--out {root}: {part} exists and is not a folder")
    cells = expand(cfg)
    root.mkdir(parents=True, exist_ok=True)
    command = command or "vlsafe benchmark " + shlex.join([f"--out={root}"])
    (root / "benchmark.json").write_text(dumps({"command": command, "config": to_dict(cfg),
                                               "cells": [{"name": c.name, "key": c.key, "folder": c.folder} for c in cells]},
                                              indent=1))
    res = run_grid(cells, root, workers=cfg.workers, cluster=cluster, address=address, log=log)
    if res.failed or res.skipped:
        log(f"benchmark: {len(res.failed)} cell(s) failed, {len(res.skipped)} not run because a cell they need failed:")
        for name, why in res.failed.items():
            log(f"  {name}: {why}")
    results = write_results(cells, root, to_dict(cfg), command, res.wall_s)
    log(f"benchmark: {len(res.ran)} cells run, {len(res.cached)} cached, in {res.wall_s:.0f}s; "
        f"results in {results}/ (vlsafe report {root})")
    return res

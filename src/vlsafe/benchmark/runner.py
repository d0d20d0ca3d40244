"""Run a grid of cells: cached by key, resumable after a kill, parallel, with an ETA over the grid.

The scheduler only needs an executor with `submit(fn, *args) -> Future` (the
`concurrent.futures.Executor` interface, vlsafe.cluster): the local process pool is the default,
Ray tasks the cluster backend; caching, resuming and progress stay here, in the driver. Every cell
runs in a fresh worker process (MetaDrive allows one engine per process, and a cell's torch
settings must not leak into the next). A SIGTERM to the driver (a scheduler's pre-emption, `kill`)
stops the local workers and what they started, instead of leaving them to finish their cells
as orphans; the rerun resumes.
"""

from __future__ import annotations

import signal
import threading
import time
from collections import defaultdict
from concurrent.futures import FIRST_COMPLETED, Future, wait
from pathlib import Path
from typing import Callable

from vlsafe.benchmark.cells import read_done, run_cell
from vlsafe.benchmark.grid import Cell

__all__ = ["GridResult", "run_grid", "read_done"]


class GridResult:
    def __init__(self) -> None:
        self.ran: list[str] = []
        self.cached: list[str] = []
        self.failed: dict[str, str] = {}
        self.skipped: list[str] = []  # a cell they need failed
        self.wall_s = 0.0


def _fmt_s(s: float) -> str:
    s = int(round(s))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def run_grid(cells: list[Cell], root: Path, workers: int = 2, cluster: str = "local", address: str | None = None,
             log: Callable[[str], None] = print) -> GridResult:
    """Run every cell of `cells` not finished under `root/cells/`; cells run as soon as what they need is done."""
    from vlsafe.cluster import check_cluster, submit_with, worker_pool

    check_cluster(cluster, address)
    root = root.resolve()  # cells may run on other nodes' workers: absolute paths into the shared store
    res = GridResult()
    t0 = time.perf_counter()
    folder = {c.key: root / "cells" / c.folder for c in cells}
    durations: dict[str, list[float]] = defaultdict(list)
    finished: set[str] = set()
    for c in cells:
        rec = read_done(folder[c.key])
        if rec is not None and rec.get("key") == c.key:
            finished.add(c.key)
            res.cached.append(c.name)
            durations[c.kind].append(float(rec.get("wall_s", 0.0)))
    pending = [c for c in cells if c.key not in finished]
    total = len(cells)
    log(f"benchmark: {total} cells, {len(res.cached)} finished before (cached), {len(pending)} to run on "
        f"{workers} {cluster} worker(s)")
    if not pending:
        res.wall_s = time.perf_counter() - t0
        return res
    failed: set[str] = set()
    running: dict[Future, tuple[Cell, float]] = {}
    pool = worker_pool(cluster, workers, fresh_process=True, address=address)
    previous = _exit_on_sigterm()
    completed = False
    try:
        while pending or running:
            for c in list(pending):
                if any(n.key in failed for n in c.needs):
                    pending.remove(c)
                    failed.add(c.key)
                    res.skipped.append(c.name)
                elif len(running) < workers and all(n.key in finished for n in c.needs):
                    pending.remove(c)
                    fut = submit_with(pool, c.resources, run_cell, c.kind, c.name, c.key, c.spec, str(folder[c.key]),
                                      [str(folder[n.key]) for n in c.needs], c.device)
                    running[fut] = (c, time.perf_counter())
            if not running:
                break
            done, _ = wait(list(running), return_when=FIRST_COMPLETED)
            for fut in done:
                c, started = running.pop(fut)
                try:
                    fut.result()
                except Exception as err:  # a cell's failure stops the cells that need it, not the grid
                    failed.add(c.key)
                    # the last line says what went wrong (Ray's errors open with where the task ran)
                    lines = [x for x in str(err).splitlines() if x.strip()]
                    res.failed[c.name] = lines[-1].strip() if lines else type(err).__name__
                    log(f"  FAILED {c.name}: {res.failed[c.name]}")
                    continue
                finished.add(c.key)
                res.ran.append(c.name)
                durations[c.kind].append(time.perf_counter() - started)
                n_done = len(res.ran) + len(res.cached)
                log(f"  [{n_done}/{total}] {c.name} in {_fmt_s(time.perf_counter() - started)}; "
                    f"elapsed {_fmt_s(time.perf_counter() - t0)}, ETA {_eta(pending, running, durations, workers)}")
        completed = True
    finally:
        if not completed:  # interrupted: the running cells stop now (their folders have no done record)
            _kill_local_workers(pool)
        pool.shutdown(wait=completed, cancel_futures=True)
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    res.wall_s = time.perf_counter() - t0
    return res


def _exit_on_sigterm():
    """Turn SIGTERM into SystemExit in the driver, so that `run_grid`'s cleanup runs; returns the
    handler it replaced (None off the main thread, where signals cannot be caught)."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def _exit(signum, frame):
        raise SystemExit(128 + signum)

    return signal.signal(signal.SIGTERM, _exit)


def _kill_local_workers(pool) -> None:
    """Kill a local process pool's workers and every process they started (a collector's engine
    processes); a Ray pool's tasks are Ray's to cancel."""
    import psutil

    procs = []
    for pid in list(getattr(pool, "_processes", None) or {}):
        try:
            worker = psutil.Process(pid)
            procs += worker.children(recursive=True) + [worker]
        except psutil.NoSuchProcess:
            continue
    for p in procs:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(procs, timeout=10)


def _eta(pending: list[Cell], running: dict, durations: dict[str, list[float]], workers: int) -> str:
    """Remaining time: each pending or running cell at the mean time of its kind so far (of all
    kinds where its own has no finished cell yet), spread over the workers."""
    known = [d for ds in durations.values() for d in ds]
    if not known:
        return "?"
    overall = sum(known) / len(known)
    mean = {k: sum(v) / len(v) for k, v in durations.items() if v}
    now = time.perf_counter()
    left = sum(mean.get(c.kind, overall) for c in pending)
    left += sum(max(mean.get(c.kind, overall) - (now - t), 0.0) for c, t in running.values())
    return _fmt_s(left / max(workers, 1))

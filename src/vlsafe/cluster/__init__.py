"""Where parallel work runs: a local process pool (the default) or a Ray cluster.

Every stage that fans out (collect's episodes, eval's episodes, the benchmark's cells) asks for
an executor with the `concurrent.futures.Executor` interface (`submit(fn, *args) -> Future`,
`shutdown`), so the stage's own logic (seeds fixed per episode, the store's atomic writes,
the benchmark's cache) is the same on one laptop and on a cluster.

- `local`: `ProcessPoolExecutor` of spawned processes (MetaDrive allows one engine per process).
- `ray`: long-lived Ray actors, one simulator engine per actor process, each initialised once
  (`initializer`), or, for work that needs a fresh process per call (benchmark cells), Ray tasks
  with `max_calls=1`. Workers that die are restarted and their calls retried by Ray.
"""

from __future__ import annotations

import multiprocessing as mp
from concurrent.futures import Executor, ProcessPoolExecutor
from typing import Any, Callable

from vlsafe.config import ConfigError

__all__ = ["CLUSTERS", "SINGLE_THREAD_ENV", "worker_pool", "check_cluster", "submit_with"]

CLUSTERS = ("local", "ray")
# One worker per core: library thread pools (BLAS, OpenMP, Blosc) in every worker would only fight
# over the cores. Workers get this environment before they import anything.
SINGLE_THREAD_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "BLOSC_NTHREADS": "1"}


def check_cluster(cluster: str, address: str | None = None) -> str:
    if cluster not in CLUSTERS:
        raise ConfigError(f"--cluster: expected one of {', '.join(CLUSTERS)}, got {cluster!r}")
    if address is not None and cluster != "ray":
        raise ConfigError("--address: only with --cluster ray")
    return cluster


def worker_pool(cluster: str, workers: int, initializer: Callable[..., Any] | None = None, initargs: tuple = (),
                address: str | None = None, fresh_process: bool = False, env: dict[str, str] | None = None) -> Executor:
    """`workers` workers on `cluster`, each having run `initializer(*initargs)` once before its first
    call; `fresh_process`: every call in a new process instead (no initializer then)."""
    check_cluster(cluster, address)
    if cluster == "local":
        return ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=initializer,
                                   initargs=initargs, max_tasks_per_child=1 if fresh_process else None)
    from vlsafe.cluster.ray_pool import RayActorPool, RayTaskPool

    if fresh_process:
        return RayTaskPool(workers, address=address, env=env)
    return RayActorPool(workers, initializer, initargs, address=address, env=env)


def submit_with(pool: Executor, resources: dict[str, float], fn: Callable[..., Any], *args: Any):
    """`pool.submit(fn, *args)`, with the call's resources (num_cpus, num_gpus) declared to Ray's
    scheduler where the pool is Ray's; a local pool runs `workers` calls at a time whatever they are."""
    from_ray = getattr(pool, "submit_with", None)
    return from_ray(resources, fn, *args) if from_ray is not None else pool.submit(fn, *args)

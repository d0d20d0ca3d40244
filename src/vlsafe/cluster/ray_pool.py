"""Ray behind the `concurrent.futures.Executor` interface (see vlsafe.cluster).

`RayActorPool` keeps `workers` actors alive for the whole job; a call goes to the actor with
the fewest calls in flight, and its result comes back as a `concurrent.futures.Future`. Only
small things cross the object store: function references, seeds, manifest entries and metrics;
episode files are written by the actors to the shared store. An actor that dies is restarted
(its initializer runs again) and the calls it held are retried (`max_restarts`,
`max_task_retries`); callers make their work idempotent (an episode file is written under its
seed's name, atomically), so a retry cannot duplicate anything.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import Executor, Future
from typing import Any, Callable

__all__ = ["connect", "RayActorPool", "RayTaskPool", "assigned_resources"]

from vlsafe.cluster import SINGLE_THREAD_ENV as _THREAD_VARS

RETRIES = 3


def connect(address: str | None = None) -> None:
    """Join the cluster at `address` ("auto": the one `ray start` made on this machine; HOST:PORT),
    or start a private one on this machine when there is none and no address was given."""
    import ray

    if ray.is_initialized():
        return
    ray.init(address=address, log_to_driver=False, include_dashboard=False, configure_logging=False,
             runtime_env={"env_vars": dict(_THREAD_VARS)})


def assigned_resources() -> dict[str, float]:
    """What Ray's scheduler gave the calling task ({"CPU": 1.0, "GPU": 0.25, ...}): a cell's
    declared resources, seen from inside it."""
    import ray

    return dict(ray.get_runtime_context().get_assigned_resources())


def _call(fn: Callable[..., Any], args: tuple) -> Any:
    return fn(*args)


class _Worker:
    """One actor: one process, initialised once (e.g. one simulator engine and the store)."""

    def __init__(self, initializer: Callable[..., Any] | None, initargs: tuple):
        os.environ.update(_THREAD_VARS)
        if initializer is not None:
            initializer(*initargs)

    def call(self, fn: Callable[..., Any], args: tuple) -> Any:
        return fn(*args)

    def pid(self) -> int:
        return os.getpid()


class RayActorPool(Executor):
    def __init__(self, workers: int, initializer: Callable[..., Any] | None = None, initargs: tuple = (),
                 address: str | None = None, env: dict[str, str] | None = None, num_cpus: float = 1):
        import ray

        connect(address)
        cls = ray.remote(num_cpus=num_cpus, max_restarts=RETRIES, max_task_retries=RETRIES)(_Worker)
        opts = {"runtime_env": {"env_vars": {**_THREAD_VARS, **(env or {})}}}
        self.actors = [cls.options(**opts).remote(initializer, initargs) for _ in range(workers)]
        self.inflight = [0] * workers
        self.lock = threading.Lock()

    def pids(self) -> list[int]:
        import ray

        return ray.get([a.pid.remote() for a in self.actors])

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        if kwargs:
            raise TypeError("RayActorPool.submit takes positional arguments only")
        with self.lock:
            i = min(range(len(self.actors)), key=self.inflight.__getitem__)
            self.inflight[i] += 1
        fut = self.actors[i].call.remote(fn, args).future()

        def release(_: Future, i: int = i) -> None:
            with self.lock:
                self.inflight[i] -= 1

        fut.add_done_callback(release)
        return fut

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        import ray

        for a in self.actors:
            ray.kill(a)
        self.actors = []


class RayTaskPool(Executor):
    """Each call a Ray task in a fresh worker process (`max_calls=1`), retried if its process dies."""

    def __init__(self, workers: int, address: str | None = None, env: dict[str, str] | None = None, num_cpus: float = 1):
        import ray

        connect(address)
        self.fn = ray.remote(num_cpus=num_cpus, max_calls=1, max_retries=RETRIES)(_call)
        self.runtime_env = {"env_vars": {**_THREAD_VARS, **(env or {})}}

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        if kwargs:
            raise TypeError("RayTaskPool.submit takes positional arguments only")
        return self.submit_with({}, fn, *args)

    def submit_with(self, resources: dict[str, float], fn: Callable[..., Any], /, *args: Any) -> Future:
        """One call with its own declared resources, e.g. {"num_cpus": 1, "num_gpus": 0.25}."""
        return self.fn.options(runtime_env=self.runtime_env, **resources).remote(fn, args).future()

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        pass

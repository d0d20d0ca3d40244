"""Simulator backends, by name, imported lazily so that using one never imports the other."""

from __future__ import annotations

import importlib

from vlsafe.config import ConfigError, closest
from vlsafe.envs.backends.base import Backend, BackendEvents, BackendSpec

__all__ = ["BACKENDS", "make_backend", "Backend", "BackendEvents", "BackendSpec"]

BACKENDS: dict[str, str] = {
    "metadrive": "vlsafe.envs.backends.metadrive:MetaDriveBackend",
    "highway": "vlsafe.envs.backends.highway:HighwayBackend",
}


def make_backend(name: str) -> Backend:
    if name not in BACKENDS:
        raise ConfigError(f"unknown backend {name!r}{closest(name, BACKENDS)}; valid backends: {', '.join(BACKENDS)}")
    module, cls = BACKENDS[name].split(":")
    return getattr(importlib.import_module(module), cls)()

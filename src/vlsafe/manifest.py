"""The manifest every artifact folder carries: what made it, from what, with which code."""

from __future__ import annotations

import json
import platform
import subprocess
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from vlsafe.runlog import dumps

__all__ = ["write_manifest", "read_manifest", "code_version", "read_json"]

_PACKAGES = ("vlsafe", "torch", "numpy", "gymnasium", "metadrive-simulator", "highway-env", "opencv-python")


def code_version() -> str:
    """git describe of the source tree if available, else the package version."""
    try:
        here = Path(__file__).resolve().parent
        out = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=here, capture_output=True, text=True,
                             timeout=5)
        if out.returncode == 0 and out.stdout.strip():
            return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    from vlsafe import __version__

    return __version__


def _versions() -> dict[str, str]:
    found = {}
    for name in _PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


def write_manifest(folder: Path, stage: str, config: dict[str, Any], extra: dict[str, Any] | None = None) -> Path:
    data = {"stage": stage, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "code_version": code_version(), "python": platform.python_version(), "packages": _versions(),
            "config": config, **(extra or {})}
    path = Path(folder) / "manifest.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(dumps(data, indent=1, default=float))
    tmp.replace(path)
    return path


def read_json(path: Path, what: str, keys: tuple[str, ...] = ()) -> dict[str, Any]:
    """A JSON object from a file the user pointed us at; anything else (missing, a pickle, a list,
    missing `keys`) is a one-line ValueError naming the file and what it should have been."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: missing (is this {what}?)") from None
    except (UnicodeDecodeError, json.JSONDecodeError, IsADirectoryError) as err:
        raise ValueError(f"{path}: not valid JSON ({err}); is this {what}?") from None
    if not isinstance(data, dict) or any(k not in data for k in keys):
        raise ValueError(f"{path}: not {what} (expected a JSON object with {', '.join(keys) or 'fields'})")
    return data


def read_manifest(folder: Path) -> dict[str, Any]:
    path = Path(folder) / "manifest.json"
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, NotADirectoryError):
        raise FileNotFoundError(f"{path}: no manifest (is this a vlsafe artifact folder?)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: manifest is not valid JSON ({err})") from None

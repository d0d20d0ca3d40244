"""Metrics of a training run: one JSON line per logged step (metrics.jsonl) and TensorBoard (tb/).

Both trainers (world model, policy) append to the same files when a run resumes, so the curves
continue; non-finite values are written as null, which JSON can hold and NaN cannot.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["MetricsLog", "json_safe", "dumps"]


def json_safe(x: Any) -> Any:
    """`x` with every NaN/inf float (numpy's too) replaced by None, recursively: JSON has no NaN,
    and Python's json module would otherwise write a bare `NaN` that other readers reject."""
    if isinstance(x, dict):
        return {k: json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [json_safe(v) for v in x]
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def dumps(obj: Any, **kwargs: Any) -> str:
    """json.dumps of `obj` through json_safe; never writes NaN or Infinity."""
    return json.dumps(json_safe(obj), allow_nan=False, **kwargs)


class MetricsLog:
    def __init__(self, out: Path):
        self.file = open(out / "metrics.jsonl", "a")
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(out / "tb"))
        except ImportError:  # tensorboard is optional: JSONL is the record
            self.writer = None

    def write(self, row: dict[str, float]) -> None:
        """`row` holds "step" and float metrics."""
        self.file.write(json.dumps({k: (v if math.isfinite(v) else None) for k, v in row.items()}) + "\n")
        self.file.flush()
        if self.writer:
            for k, v in row.items():
                if k != "step" and math.isfinite(v):
                    self.writer.add_scalar(k, v, row["step"])

    def close(self) -> None:
        self.file.close()
        if self.writer:
            self.writer.close()

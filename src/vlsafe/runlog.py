"""Metrics of a training run: one JSON line per logged step (metrics.jsonl) and TensorBoard (tb/).

Both trainers (world model, policy) append to the same files when a run resumes, so the curves
continue; non-finite values are written as null, which JSON can hold and NaN cannot.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

__all__ = ["MetricsLog"]


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

"""Look-ahead horizons are given in seconds and turned into frames here, once for every stage.

MetaDrive steps 0.1 s and highway-env 0.2 s, so "k steps" is not one horizon on both simulators;
the labels' evaluation, the world model's targets and the sampler's focus all count frames with
this one rounding rule.
"""

from __future__ import annotations

import numpy as np

__all__ = ["horizon_steps"]


def horizon_steps(seconds: float, dt: float) -> int:
    """Frames of a look-ahead of `seconds` at step `dt` (half rounds up; at least 1): MetaDrive's
    0.1 s gives 2, 5, 15 for 0.2, 0.5, 1.5 s, highway-env's 0.2 s gives 1, 3, 8."""
    if not dt > 0:
        raise ValueError(f"step duration dt must be > 0 s, got {dt}")
    return max(1, int(np.floor(seconds / dt + 0.5 + 1e-9)))

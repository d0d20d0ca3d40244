"""Shared fixtures. First of all, one CPU kernel path for every x86 machine the suite runs on."""

import os

# Learning tests (a policy that beats random, a loss that falls) must not depend on which vector
# instructions the CPU has. torch, MKL and oneDNN pick AVX-512 kernels where they exist and AVX2
# ones elsewhere, and the two sum in different orders: the policy test in tests/policy, on v1
# labels, drove to return 142.0 / CR 0.00 on AVX2 kernels and -1308.7 / 0.25 on AVX-512 ones
# (one AVX-512 machine, 2026-12-05, identical code and seeds). Capping all three at AVX2 (set before torch loads, inherited by the
# tests' subprocesses) gives the same numbers on both. A caller's own setting wins.
for _var, _value in (("ATEN_CPU_CAPABILITY", "avx2"), ("MKL_CBWR", "AVX2"), ("ONEDNN_MAX_CPU_ISA", "AVX2")):
    os.environ.setdefault(_var, _value)

import numpy as np  # noqa: E402  (after the kernel settings above)
import pytest  # noqa: E402

from vlsafe.envs.scene import RoadMap, Route, Vehicles, sample_lane  # noqa: E402


def straight_road(lanes: int = 4, length: float = 300.0, width: float = 3.5) -> RoadMap:
    out = []
    for k in range(lanes):
        y = -width / 2 - width * k
        out.append(sample_lane(lambda s, lat, y=y: (s, y + lat), length, width,
                               "solid" if k == 0 else "broken", "solid" if k == lanes - 1 else "none"))
    return RoadMap(tuple(out))


def vehicles(rows) -> Vehicles:
    """rows: (x, y, heading, vx, vy) tuples, first = ego; all cars 4.5 x 2 m."""
    a = np.asarray(rows, dtype=np.float64)
    n = len(a)
    return Vehicles(position=a[:, :2].copy(), heading=a[:, 2].copy(), velocity=a[:, 3:5].copy(),
                    length=np.full(n, 4.5), width=np.full(n, 2.0))


@pytest.fixture
def road():
    return straight_road()


@pytest.fixture
def route():
    x = np.linspace(0, 300, 151)
    return Route(np.stack([x, np.full_like(x, -5.25)], 1))

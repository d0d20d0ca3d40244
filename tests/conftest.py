import numpy as np
import pytest

from vlsafe.envs.scene import RoadMap, Route, Vehicles, sample_lane


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

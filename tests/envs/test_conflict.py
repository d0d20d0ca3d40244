"""The conflict columns (`observation.conflict`): per nearest car, how close it comes to the ego if
the ego goes on, with the car predicted along the lanes it may follow, as the expert predicts it."""

from __future__ import annotations

import numpy as np

from vlsafe.envs import make
from vlsafe.envs.observation import CONFLICT_COLUMNS, CONFLICT_GAP_M, VECTOR_SIZE, conflict_observation
from vlsafe.envs.scene import Lane, RoadMap, Route, Scene, Vehicles
from vlsafe.experts.prediction import LaneGraph


def _lane(points) -> Lane:
    return Lane(centre=np.asarray(points, dtype=np.float64), width=3.5)


def _junction_scene() -> tuple[Scene, float]:
    """The ego drives east along y = 20. A car 2 m before a junction at the origin, heading east at
    8 m/s on y = 0, whose lane splits into straight on and a left turn that leaves north along x = 10:
    turning, it crosses the ego's road at (10, 20) after ~3.5 s, when the ego gets there too. A
    third car is behind the ego, driving away from it."""
    approach = _lane([[x, 0.0] for x in np.linspace(-20, 0, 11)])
    straight = _lane([[x, 0.0] for x in np.linspace(0, 60, 31)])
    a = np.linspace(-np.pi / 2, 0.0, 20)
    left = _lane(np.stack([10 * np.cos(a), 10 + 10 * np.sin(a)], 1))  # (0, 0) heading east to (10, 10) heading north
    north = _lane([[10.0, y] for y in np.linspace(10, 60, 26)])
    ego_road = _lane([[x, 20.0] for x in np.linspace(-30, 60, 46)])
    route = Route(points=ego_road.centre)
    cars = Vehicles(position=np.array([[-15.7, 20.0], [-2.0, 0.0], [-50.0, 20.0]]),
                    heading=np.array([0.0, 0.0, np.pi]), velocity=np.array([[7.0, 0.0], [8.0, 0.0], [-5.0, 0.0]]),
                    length=np.full(3, 4.5), width=np.full(3, 1.8))
    return Scene(RoadMap(lanes=(approach, straight, left, north, ego_road)), route, cars), 30.0 - 15.7


def test_a_car_turning_into_the_egos_path_is_a_conflict_that_constant_velocity_misses():
    scene, route_s = _junction_scene()
    out = conflict_observation(scene, route_s, LaneGraph(scene.road))
    assert out.shape == (len(CONFLICT_COLUMNS),) == (18,) and out.dtype == np.float32
    turning, away = out[0:2], out[2:4]  # nearest first: the turning car (24 m), then the one behind (34 m)
    assert turning[0] < 1.0 / CONFLICT_GAP_M, turning  # bodies predicted within 1 m: the expert would yield
    assert 0.7 < turning[1] < 0.95, turning  # ~3.5 s of the 4 s horizon
    assert away[0] == 1.0  # never within 16 m
    np.testing.assert_array_equal(out[4:16], 1.0)  # no car in the other slots: far and late
    assert out[16] == turning[0]  # the smallest gap going on is the turning car's
    assert out[17] > 0.5  # braking now, the ego stops ~10 m short of the crossing: clear of it
    # the same scene without the lane graph: the car is predicted straight on along y = 0, 20 m away
    straight_on = conflict_observation(scene, route_s, None)
    assert straight_on[0] > 0.9 and straight_on[16] > 0.9


def test_an_env_with_conflict_columns_keeps_the_stored_vector_and_appends_18():
    seen = {}
    for conflict in (False, True):
        env = make("left-turn", overrides=["observation.kind=vector", f"observation.conflict={str(conflict).lower()}"])
        try:
            v, _ = env.reset(seed=714)
            assert env.observation_space.shape == v.shape == (VECTOR_SIZE + 18 * conflict,)
            rows = [v]
            for _ in range(30):
                rows.append(env.step(3)[0])
            seen[conflict] = np.stack(rows)
            assert env.observation("vector") is env.observation("vector")  # computed once per step
        finally:
            env.close()
    assert len({row.tobytes() for row in seen[False]}) == 31  # a new vector every step, not the cached one
    np.testing.assert_array_equal(seen[True][:, :VECTOR_SIZE], seen[False])  # the 70 stored columns unchanged
    extra = seen[True][:, VECTOR_SIZE:]
    assert ((extra >= 0) & (extra <= 1)).all()

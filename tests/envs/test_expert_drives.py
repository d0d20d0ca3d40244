"""Every task stays drivable: the scripted expert that records the datasets arrives on fixed seeds
of each task, and the parts that made it arrive (lane-following prediction of other cars, the
slow-down in bends) do what they claim on hand-made roads."""

import dataclasses

import numpy as np
import pytest

from vlsafe.envs import make
from vlsafe.envs.scene import Lane, RoadMap, Route, Scene, Vehicles
from vlsafe.envs.tasks import TASKS, task_config
from vlsafe.experts.behaviours import BACKEND_TUNING, TASK_TUNING, make_driver
from vlsafe.experts.prediction import MOVING, SETTING_OFF, STANDING, LaneGraph, predict_paths
from vlsafe.experts.route_follower import (
    RouteFollowerConfig,
    curve_speed,
    pure_pursuit_steering,
    route_curvature,
    yielding_acceleration,
)

# (backend, seeds, least arrivals). Measured on the 2-core x86 machine: MetaDrive 10/10 on every
# task (2026-12-04); highway-env 6/6 on every task (2026-12-06, after its traffic stopped colliding
# with itself and reversing, its junction was fed the flow of its density, and the expert steered for
# its bicycle model; with its junction cars' plans, left-turn arrives in 0.93-0.98 of held-out
# episodes, docs/data.md's expert table).
# A margin on each row for another CPU's rounding.
ROWS = [("metadrive", range(300, 310), 9), ("highway", range(300, 306), 5)]


def _arrivals(task: str, backend: str, seeds) -> tuple[int, list]:
    env = make(task, backend=backend, overrides=["observation.kind=vector"])
    outcomes = []
    try:
        for seed in seeds:
            driver = make_driver("expert", seed)
            env.reset(seed=seed)
            while True:
                _, _, terminated, truncated, info = env.step(driver.act(env))
                if terminated or truncated:
                    break
            outcomes.append((seed, "arrived" if info["arrived"] else "collision" if info["collision"]
                             else "off-road" if info["off_road"] else "timeout"))
    finally:
        env.close()
    return sum(o == "arrived" for _, o in outcomes), outcomes


@pytest.mark.parametrize("task", list(TASKS))
@pytest.mark.parametrize("backend, seeds, least", ROWS, ids=[r[0] for r in ROWS])
def test_the_expert_arrives_on_fixed_seeds(task, backend, seeds, least):
    arrived, outcomes = _arrivals(task, backend, seeds)
    assert arrived >= least, outcomes


def test_on_left_turn_the_expert_looks_far_enough_ahead_to_clear_the_oncoming_lanes(monkeypatch):
    # development seeds where the expert of every task (4 s look-ahead, 1.5 m gap) met an oncoming car
    # at speed (5066, 5330) or set off into a gap it could not leave (5164) and crashed, and the
    # left-turn's own tuning (5 s, 2 m) arrives (2026-12-07)
    seeds = [5066, 5164, 5330]
    with monkeypatch.context() as m:  # without the task's own tuning: the expert of every task
        m.delitem(TASK_TUNING, ("left-turn", "metadrive"))
        _, at_4s = _arrivals("left-turn", "metadrive", seeds)
    assert [end for _, end in at_4s].count("collision") >= 2, at_4s  # the mechanism is still there
    arrived, tuned = _arrivals("left-turn", "metadrive", seeds)
    assert arrived >= 2, tuned


def _lane(points) -> Lane:
    return Lane(centre=np.asarray(points, dtype=np.float64), width=3.5)


def _arc(centre, radius, a0, a1, n=20):
    a = np.linspace(a0, a1, n)
    return np.stack([centre[0] + radius * np.cos(a), centre[1] + radius * np.sin(a)], 1)


def test_a_car_entering_a_turn_is_predicted_along_the_turn_and_straight_on():
    """A car 10 m before a junction where its lane splits into a straight and a left turn: one
    predicted path follows the arc (constant velocity alone would miss it), one goes straight."""
    approach = _lane([[x, 0.0] for x in np.linspace(-20, 0, 11)])
    straight = _lane([[x, 0.0] for x in np.linspace(0, 30, 16)])
    left = _lane(_arc((0.0, 10.0), 10.0, -np.pi / 2, 0.0))  # from (0, 0) heading +x to (10, 10) heading +y
    beyond = _lane([[10.0, y] for y in np.linspace(10, 40, 16)])
    graph = LaneGraph(RoadMap(lanes=(approach, straight, left, beyond)))
    assert list(graph.successors[0]) == [1, 2] and list(graph.successors[2]) == [3]
    cars = Vehicles(position=np.array([[-50.0, -50.0], [-10.0, 0.0]]), heading=np.zeros(2),
                    velocity=np.array([[0.0, 0.0], [5.0, 0.0]]), length=np.full(2, 4.5), width=np.full(2, 1.8))
    t = np.array([1.0, 3.0, 5.0])
    paths, owner, kind = predict_paths(graph, cars, t, np.array([1]))
    assert (owner == 1).all() and len(paths) == 3 and (kind == MOVING).all()  # constant velocity + two lane branches
    arc_len = 10.0 * np.pi / 2
    on_arc = _arc((0.0, 10.0), 10.0, -np.pi / 2, -np.pi / 2 + 5.0 / 10.0, 2)[-1]  # 15 m on: 5 m into the arc
    on_beyond = np.array([10.0, 10.0 + 25.0 - 10.0 - arc_len])  # 25 m on: past the arc
    assert min(np.linalg.norm(p[1] - on_arc) for p in paths) < 0.3  # 3 s: 5 m into the turn
    assert min(np.linalg.norm(p[2] - on_beyond) for p in paths) < 0.3  # 5 s: out of it, on the next lane
    assert any(np.linalg.norm(p[2] - [15.0, 0.0]) < 0.1 for p in paths[1:])  # the straight branch
    assert np.linalg.norm(paths[0][2] - on_beyond) > 5.0  # constant velocity alone misses the turning car


def test_a_car_that_shows_its_turn_is_predicted_along_it_and_straight_on_only():
    """Where the simulator tells a car's plan (Vehicles.plan: highway-env's junction), the car is
    predicted along that plan and at constant velocity, not along every branch of the lane graph;
    without a lane graph the plan is still used."""
    approach = _lane([[x, 0.0] for x in np.linspace(-20, 0, 11)])
    straight = _lane([[x, 0.0] for x in np.linspace(0, 30, 16)])
    left = _lane(_arc((0.0, 10.0), 10.0, -np.pi / 2, 0.0))
    beyond = _lane([[10.0, y] for y in np.linspace(10, 40, 16)])
    graph = LaneGraph(RoadMap(lanes=(approach, straight, left, beyond)))
    turn = np.concatenate([[[x, 0.0] for x in np.linspace(-10, 0, 6)], left.centre[1:], beyond.centre[1:]])
    plan = np.full((2, len(turn), 2), np.nan)
    plan[1] = turn
    cars = Vehicles(position=np.array([[-50.0, -50.0], [-10.0, 0.0]]), heading=np.zeros(2),
                    velocity=np.array([[0.0, 0.0], [5.0, 0.0]]), length=np.full(2, 4.5), width=np.full(2, 1.8),
                    plan=plan)
    t = np.array([1.0, 3.0])
    on_arc = _arc((0.0, 10.0), 10.0, -np.pi / 2, -np.pi / 2 + 5.0 / 10.0, 2)[-1]  # 15 m on: 5 m into the arc
    for g in (graph, None):
        paths, owner, _ = predict_paths(g, cars, t, np.array([1]))
        assert len(paths) == 2 and (owner == 1).all()  # constant velocity + the plan, no straight branch
        assert np.linalg.norm(paths[1][1] - on_arc) < 0.3
        assert np.linalg.norm(paths[0][1] - [5.0, 0.0]) < 1e-9


def test_a_waiting_car_with_the_right_of_way_is_expected_to_set_off():
    """A car stands 12 m ahead, 6 m to the right of the ego's road, its plan straight across it.
    Standing, it is no conflict; but it waits for others, not for the ego, when it ranks above it
    (Vehicles.priority: highway-env's traffic yields only to a higher-ranked car), and set off at
    highway-env's 6 m/s^2 it reaches the ego's path as the ego does. Two crashes of 200 development
    episodes (5584, 5644) were such a car. With `set_off_acceleration` the expert waits; for a car
    ranked below the ego, or without the rule, it goes on, and so it does once it stands in the
    car's way already."""
    route = Route(points=np.array([[0.0, 0.0], [60.0, 0.0]]))
    across = np.array([[12.0, -6.0 + 2.0 * k] for k in range(21)])
    plan = np.stack([np.full_like(across, np.nan), across])

    def scene(ranks, ego_x=0.0, ego_v=6.0):
        cars = Vehicles(position=np.array([[ego_x, 0.0], [12.0, -6.0]]), heading=np.array([0.0, np.pi / 2]),
                        velocity=np.array([[ego_v, 0.0], [0.0, 0.0]]), length=np.full(2, 5.0), width=np.full(2, 2.0),
                        plan=plan, priority=np.array(ranks, dtype=float))
        return Scene(RoadMap(lanes=(_lane(route.points),)), route, cars)

    cfg = RouteFollowerConfig(yield_horizon_s=3.0, lane_prediction=False)
    waits = dataclasses.replace(cfg, set_off_acceleration=6.0, set_off_speed=10.0)
    paths, owner, kind = predict_paths(None, scene([0, 3]).vehicles, np.array([1.0, 3.0]), np.array([1]), (6.0, 10.0))
    assert len(paths) == 2 and kind.tolist() == [STANDING, SETTING_OFF]
    assert paths[1][1] == pytest.approx([12.0, -6.0 + 0.5 * 6.0 * (10 / 6) ** 2 + 10.0 * (3.0 - 10 / 6)])
    assert yielding_acceleration(scene([0, 3]), 0.0, cfg, 2.0) == 2.0  # standing: no conflict
    assert yielding_acceleration(scene([0, 3]), 0.0, waits, 2.0) < 0.0  # it has the right of way: wait
    assert yielding_acceleration(scene([2, 1]), 0.0, waits, 2.0) == 2.0  # it waits for the ego
    # the ego stands in its way already (braking cannot keep clear): waiting there would lock the
    # junction (development seeds 5504, 5592 timed out so), so it goes on out of the way
    # (a car standing 24 m on makes staying put the clearest option, so the old rule's fallback stayed)
    inside = scene([0, 3], ego_x=10.0, ego_v=0.0)
    veh = inside.vehicles
    cars = Vehicles(position=np.vstack([veh.position, [[34.0, 0.0]]]), heading=np.append(veh.heading, 0.0),
                    velocity=np.vstack([veh.velocity, [[0.0, 0.0]]]), length=np.full(3, 5.0), width=np.full(3, 2.0),
                    plan=np.concatenate([plan, np.full((1, *plan.shape[1:]), np.nan)]), priority=np.array([0.0, 3.0, 1.0]))
    inside = Scene(inside.road, route, cars)
    assert yielding_acceleration(inside, 10.0, waits, 0.5) == 0.5
    assert BACKEND_TUNING["highway"]["config"]["set_off_acceleration"] == 6.0


def _scene_on(route_points) -> Scene:
    route = Route(points=np.asarray(route_points))
    ego = Vehicles(position=route.points[:1].copy(), heading=np.zeros(1), velocity=np.array([[7.0, 0.0]]),
                   length=np.array([4.5]), width=np.array([1.8]))
    return Scene(RoadMap(lanes=(_lane(route.points),)), route, ego)


def test_when_every_option_conflicts_the_expert_does_not_drive_into_a_standing_car():
    """The ego stands with a car standing 1.5 m ahead of its nose and a car crossing towards its
    flank. Braking and going on both meet the crossing car's prediction; clearing out scores best,
    and in highway-env's locked junctions it drove the ego into the standing car (with the rule,
    11 -> 1 collisions in 200 development episodes). With `standing_gap_m` the expert stays put."""
    route = Route(points=np.array([[0.0, 0.0], [60.0, 0.0]]))
    cars = Vehicles(position=np.array([[0.0, 0.0], [6.5, 0.0], [0.0, -9.0]]),
                    heading=np.array([0.0, 0.0, np.pi / 2]),
                    velocity=np.array([[0.0, 0.0], [0.0, 0.0], [0.0, 4.0]]),
                    length=np.full(3, 5.0), width=np.full(3, 2.0))
    scene = Scene(RoadMap(lanes=(_lane(route.points),)), route, cars)
    cfg = RouteFollowerConfig(yield_horizon_s=3.0, lane_prediction=False)
    assert yielding_acceleration(scene, 0.0, cfg, 0.0) == cfg.max_acceleration  # clears out, into the car
    stay = yielding_acceleration(scene, 0.0, dataclasses.replace(cfg, standing_gap_m=0.5), 0.0)
    assert stay <= 0.0  # holds or brakes
    assert BACKEND_TUNING["highway"]["config"]["standing_gap_m"] > 0


def test_the_expert_slows_for_a_bend_ahead_and_not_on_a_straight():
    cfg = RouteFollowerConfig()
    straight = _scene_on([[x, 0.0] for x in np.linspace(0, 100, 101)])
    assert curve_speed(straight, 0.0, cfg) == cfg.target_speed
    assert abs(route_curvature(straight, 0.0)) < 1e-9
    bend = np.concatenate([[[x, 0.0] for x in np.linspace(0, 15, 16)], _arc((15.0, 12.0), 12.0, -np.pi / 2, 0.5, 40)])
    scene = _scene_on(bend)
    v_far, v_near = curve_speed(scene, 8.0, cfg), curve_speed(scene, 14.0, cfg)
    assert v_near == pytest.approx(np.sqrt(cfg.curve_lateral_acc * 12.0), rel=0.15)  # in the bend: a_lat = v^2 / R
    assert v_near < v_far < cfg.target_speed  # brakes ahead of it, not only inside it
    assert route_curvature(scene, 16.0) == pytest.approx(1 / 12.0, rel=0.1)  # + = left


def test_navigation_has_room_for_its_routes_and_no_ramp_blocks():
    from vlsafe.envs.backends.metadrive import _UrbanBlocks

    assert task_config("navigation").max_steps == 1000 and task_config("four-lane").max_steps == 500
    assert task_config("navigation", overrides=["max_steps=300"]).max_steps == 300
    dist = _UrbanBlocks.BLOCK_TYPE_DISTRIBUTION_V2
    assert dist["InRampOnStraight"] == dist["OutRampOnStraight"] == 0.0
    assert sum(dist.values()) == pytest.approx(1.0) and dist["Roundabout"] > 0 and dist["StdInterSection"] > 0


def test_on_highway_env_pure_pursuit_asks_for_the_turn_its_bicycle_model_makes():
    """highway-env's car turns about its centre with its axles at +-L/2: on a 9 m arc with the rear
    axle on it, its wheels must stand at atan(L / R), and the steering the expert asks for (by
    curvature, the convention every backend honours) must be the one the backend turns into that
    angle. With MetaDrive's geometry the expert asked for too little and swung wide off the road."""
    from vlsafe.envs.backends.highway import wheel_angle

    arc = np.stack([9.0 * np.sin(a := np.linspace(0, np.pi / 2, 60)), 9.0 - 9.0 * np.cos(a)], 1)
    route = Route(points=np.concatenate([[[-20.0, 0.0], [-10.0, 0.0]], arc]))
    ego = Vehicles(position=np.array([[2.5, 0.0]]), heading=np.zeros(1), velocity=np.array([[7.0, 0.0]]),
                   length=np.array([5.0]), width=np.array([2.0]))  # highway-env's car: 5 m, rear axle at (0, 0)
    scene = Scene(RoadMap(lanes=(_lane(route.points),)), route, ego)
    route_s = route.project(ego.position[0])[0]
    highway = RouteFollowerConfig(**{k: v for k, v in BACKEND_TUNING["highway"]["config"].items()
                                     if k in ("rear_axle_frac", "steer_by_curvature")})
    steering = pure_pursuit_steering(scene, route_s, highway)
    assert wheel_angle(steering, 5.0) == pytest.approx(np.arctan(5.0 / 9.0), abs=np.deg2rad(3.0))
    by_angle = pure_pursuit_steering(scene, route_s, dataclasses.replace(highway, steer_by_curvature=False))
    assert abs(wheel_angle(by_angle, 5.0) - np.arctan(5.0 / 9.0)) > np.deg2rad(10.0)  # asked as MetaDrive's wheel angle

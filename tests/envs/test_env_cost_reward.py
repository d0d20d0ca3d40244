"""The env's cost and reward on hand-placed ego states: a scripted backend replays positions,
velocities and simulator events, and every number is computed here by hand (4 lanes of 3.5 m,
centres at y = -1.75, -5.25, -8.75, -12.25, the route along y = -5.25, heading +x)."""

import numpy as np
import pytest

from tests.conftest import straight_road, vehicles
from vlsafe.envs import driving_env
from vlsafe.envs.backends.base import Backend, BackendEvents
from vlsafe.envs.scene import Route
from vlsafe.envs.tasks import task_config


class Scripted(Backend):
    name = "scripted"
    dt = 0.1

    def __init__(self, states):
        self.states, self.i = states, 0  # (x, y, vx, vy, collision, off_road)

    def reset(self, spec, seed):
        self.i = 0
        x = np.linspace(0, 300, 151)
        return straight_road(), Route(np.stack([x, np.full_like(x, -5.25)], 1))

    def step(self, acceleration, steering):
        self.i += 1

    def vehicles(self):
        x, y, vx, vy, _, _ = self.states[self.i]
        return vehicles([(x, y, 0.0, vx, vy)])

    def events(self):
        _, _, _, _, collision, off_road = self.states[self.i]
        return BackendEvents(collision=collision, off_road=off_road, arrived=False)


def drive(monkeypatch, states):
    monkeypatch.setattr(driving_env, "make_backend", lambda name: Scripted(states))
    env = driving_env.DrivingEnv(task_config("four-lane", "highway", overrides=["terminate_on_collision=false",
                                                                                 "terminate_on_off_road=false"]))
    env.reset(seed=0)
    return [env.step(7)[1:] for _ in states[1:]]


def test_cost_is_one_off_lane_or_colliding_never_two(monkeypatch):
    steps = drive(monkeypatch, [
        (20.0, -5.25, 4, 0, False, False),
        (20.4, -5.25, 4, 0, False, False),  # lane centre
        (20.8, 0.25, 4, 0, False, False),  # 2.00 m from the -1.75 centre: within 1.75 + 0.3
        (21.2, 0.35, 4, 0, False, False),  # 2.10 m: off-lane
        (21.6, -5.25, 4, 0, True, False),  # collision on the lane centre
        (22.0, 0.35, 4, 0, True, False),  # collision and off-lane: still 1
        (22.4, -5.25, 4, 0, False, True),  # the simulator says off-road
    ])
    cost = [info["cost"] for *_, info in steps]
    assert cost == [0.0, 0.0, 1.0, 1.0, 1.0, 1.0]
    assert [info["off_lane"] for *_, info in steps] == [False, False, True, False, True, True]
    assert steps[4][-1]["cost_terms"] == {"collision": 1.0, "off_lane": 1.0}


def test_reward_signs_and_the_three_metre_threshold(monkeypatch):
    steps = drive(monkeypatch, [
        (20.0, -5.25, 4, 0, False, False),
        (20.4, -5.25, 4, -1.0, False, False),  # drifting right: |v_perp| capped at 0.5
        (20.8, -5.25, 6, 0.3, False, False),  # too fast, drifting left
        (21.2, 1.25, 4, 0, False, False),  # 3.0 m from the nearest centre: no out-of-lane term yet
        (21.6, 1.45, 4, 0, False, False),  # 3.2 m: -3 * (3.2 - 0.5)
        (22.0, -5.25, -2, 0, True, False),  # collision while reversing: -30 * |v|
    ])
    terms = [info["reward_terms"] for *_, info in steps]
    assert steps[0][-1]["v_perp"] == pytest.approx(-1.0)
    assert terms[0]["speed"] == pytest.approx(0.5 * (4 - 0 - 2 * 0.5))
    assert terms[1]["speed"] == pytest.approx(0.5 * (4 - 2 - 2 * 0.3))
    assert terms[2]["out_of_lane"] == 0.0
    assert terms[3]["out_of_lane"] == pytest.approx(-3 * (3.2 - 0.5))
    assert terms[4]["collision"] == pytest.approx(-30 * 2.0) and terms[4]["speed"] == pytest.approx(0.5 * (4 - 6))
    for (reward, *_), t in zip(steps, terms):
        assert reward == pytest.approx(sum(t.values()))

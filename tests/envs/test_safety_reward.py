import numpy as np
import pytest

from tests.conftest import vehicles
from vlsafe.envs.actions import DISCRETE_ACTIONS, nearest_discrete, to_controls
from vlsafe.envs.reward import CostConfig, RewardConfig, cost_terms, reward_terms
from vlsafe.envs.safety import TTC_MAX, LaneIndex, safety_signals


def test_ttc_and_gap_to_car_ahead(road):
    lanes = LaneIndex(road)
    # ego 10 m/s, car 20 m ahead at 5 m/s: bumper gap 15.5 m, closing 5 m/s -> 3.1 s
    s = safety_signals(vehicles([(50, -5.25, 0, 10, 0), (70, -5.25, 0, 5, 0)]), lanes)
    assert s.ttc == pytest.approx(15.5 / 5, rel=1e-6)
    assert s.min_gap == pytest.approx(15.5)
    # the same car in the next lane is not 'ahead' for TTC, but still counts for the gap
    s2 = safety_signals(vehicles([(50, -5.25, 0, 10, 0), (70, -8.75, 0, 5, 0)]), lanes)
    assert s2.ttc == TTC_MAX and s2.min_gap == pytest.approx(np.hypot(15.5, 1.5))


def test_overlapping_boxes_have_zero_gap_and_lane_offset_sign(road):
    lanes = LaneIndex(road)
    s = safety_signals(vehicles([(50, -5.0, 0, 5, 0), (52, -5.25, 0.5, 0, 0)]), lanes)
    assert s.min_gap == 0.0
    assert s.lane_offset == pytest.approx(0.25) and s.lane_width == pytest.approx(3.5)
    wrong_way = safety_signals(vehicles([(50, -5.25, np.pi, 5, 0)]), lanes)
    assert wrong_way.lane_offset == float("inf")


def test_reward_terms_follow_cardreamer():
    cfg = RewardConfig()
    t = reward_terms(cfg, new_waypoints=1, v_par=4.0, v_perp=0.0, speed=4.0, collision=False, lane_distance=0.2,
                     arrived=False)
    assert t == {"waypoint": 2.0, "speed": 2.0, "collision": 0.0, "out_of_lane": 0.0, "destination": 0.0}
    t = reward_terms(cfg, new_waypoints=0, v_par=6.0, v_perp=1.0, speed=6.0, collision=True, lane_distance=4.0,
                     arrived=True)
    assert t["speed"] == pytest.approx(0.5 * (4 - 2 - 1.0))
    assert t["collision"] == pytest.approx(-180.0)
    assert t["out_of_lane"] == pytest.approx(-3 * 3.5)
    assert t["destination"] == 20.0
    assert cost_terms(CostConfig(), collision=True, off_lane=False) == {"collision": 1.0, "off_lane": 0.0}
    assert cost_terms(CostConfig(collision=False), collision=True, off_lane=False)["collision"] == 0.0


def test_fifteen_discrete_actions():
    assert DISCRETE_ACTIONS.shape == (15, 2)
    assert set(DISCRETE_ACTIONS[:, 0]) == {-2.0, 0.0, 2.0}
    assert set(np.round(DISCRETE_ACTIONS[:, 1], 3)) == {-0.6, -0.2, 0.0, 0.2, 0.6}
    for i in range(15):
        assert nearest_discrete(*to_controls(i, "discrete")) == i
    assert to_controls([1.0, -0.5], "continuous") == (3.0, -0.5)
    with pytest.raises(ValueError, match=r"integer in \[0, 14\]"):
        to_controls(15, "discrete")

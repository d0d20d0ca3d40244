"""The scripted behaviours of the dataset mixture: the parser, the per-seed draw, and that the
expert is the safe one and the reckless driver the unsafe one in the same traffic."""

from collections import Counter

import pytest

from vlsafe.config import ConfigError
from vlsafe.envs import make
from vlsafe.experts.behaviours import make_driver, parse_mixture, pick_behaviour


def test_mixture_parser_normalises_merges_and_refuses():
    assert parse_mixture("expert:3,noisy:1") == {"expert": 0.75, "noisy": 0.25}
    assert parse_mixture("expert:1, expert:1,reckless:2") == {"expert": 0.5, "reckless": 0.5}
    assert parse_mixture("reckless") == {"reckless": 1.0}
    for text, fragment in (("expert:-1,noisy:1", "must be >= 0"), ("expert:x", "must be a number"),
                           ("expert:0", "positive total"), ("expret:1", "did you mean 'expert'")):
        with pytest.raises(ConfigError, match=fragment):
            parse_mixture(text)


def test_behaviour_draw_follows_the_weights_and_the_seed():
    mix = parse_mixture("expert:0.5,noisy:0.25,reckless:0.25")
    counts = Counter(pick_behaviour(mix, s) for s in range(4000))
    for name, weight in mix.items():
        assert abs(counts[name] / 4000 - weight) < 0.03, counts
    assert [pick_behaviour(mix, s) for s in range(50)] == [pick_behaviour(mix, s) for s in range(50)]


def test_expert_does_not_crash_where_the_reckless_driver_does():
    env = make("four-lane", backend="highway", overrides=["traffic_density=0.3", "max_steps=60"])
    crashes = {}
    try:
        for behaviour in ("expert", "reckless"):
            crashes[behaviour] = 0
            for seed in range(6):
                driver = make_driver(behaviour, seed)
                env.reset(seed=seed)
                while True:
                    _, _, terminated, truncated, info = env.step(driver.act(env))
                    if info["collision"]:
                        crashes[behaviour] += 1
                        break
                    if terminated or truncated:
                        break
    finally:
        env.close()
    assert crashes["expert"] == 0 and crashes["reckless"] >= 2, crashes


def test_per_simulator_tuning_keeps_each_behaviour_what_it_is():
    expert, reckless = make_driver("expert", 0), make_driver("reckless", 0)
    expert._tune_for("highway")
    reckless._tune_for("highway")
    assert expert.follower.config.yield_horizon_s == 3.0 and expert.steer_diffusion  # its steering levels are MetaDrive's
    assert expert.follower.config.steer_by_curvature
    assert expert.follower.config.curve_lateral_acc == 1.2 and not expert.follower.config.lane_prediction
    assert reckless.follower.config.yield_horizon_s == 0.0  # never yields, on highway-env too
    expert._tune_for("metadrive")
    assert expert.follower.config.yield_horizon_s == 4.0 and expert.steer_diffusion
    assert not expert.follower.config.steer_by_curvature  # MetaDrive's expert keeps its wheel angle, bit for bit
    assert expert.follower.config.lane_prediction and expert.follower.config.curve_lateral_acc == 1.2
    # per task on top: MetaDrive's unprotected left turn looks 5 s ahead, its other tasks 4 s,
    # highway-env's left turn keeps its own 3 s, and the reckless driver still never yields
    expert._tune_for("metadrive", "left-turn")
    assert expert.follower.config.yield_horizon_s == 5.0 and expert.follower.config.lane_prediction
    assert expert.follower.config.yield_gap_m == 2.0
    expert._tune_for("metadrive", "navigation")
    assert expert.follower.config.yield_horizon_s == 4.0 and expert.follower.config.yield_gap_m == 1.5
    expert._tune_for("highway", "left-turn")
    assert expert.follower.config.yield_horizon_s == 3.0
    reckless._tune_for("metadrive", "left-turn")
    assert reckless.follower.config.yield_horizon_s == 0.0

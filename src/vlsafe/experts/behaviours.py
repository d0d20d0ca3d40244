"""Behaviour mixtures for the offline data: `expert`, `noisy`, `reckless`.

Real driving logs hold good and bad driving; a safety-aware world model needs both to learn what
precedes a collision. Each behaviour is a driver with `reset(rng)` and `act(env)`; a mixture
like `expert:0.6,noisy:0.3,reckless:0.1` picks one per episode from the episode's seed, so the
same seed always gives the same behaviour.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from vlsafe.config import ConfigError, closest
from vlsafe.envs.actions import DISCRETE_ACTIONS, MAX_ACCELERATION, nearest_discrete
from vlsafe.envs.scene import Scene
from vlsafe.experts.route_follower import RouteFollowerConfig, idm_acceleration

__all__ = ["BEHAVIOURS", "parse_mixture", "make_driver", "pick_behaviour", "ExpertDriver", "NoisyDriver",
           "RecklessDriver"]


def _lane_free(scene: Scene, lateral: float, back_m: float, front_m: float) -> bool:
    """No vehicle in the band `lateral` metres to the ego's side, from back_m behind to front_m ahead."""
    v = scene.vehicles
    h = float(v.heading[0])
    rel = v.position[1:] - v.position[0]
    f = rel @ np.array([np.cos(h), np.sin(h)])
    lat = rel @ np.array([-np.sin(h), np.cos(h)])
    in_band = np.abs(lat - lateral) < 2.2
    return not (in_band & (f > -back_m) & (f < front_m)).any()


class ExpertDriver:
    """Route following + IDM car following + safe lane changes on straight stretches."""

    name = "expert"

    def __init__(self, cfg: RouteFollowerConfig = RouteFollowerConfig(), lane_change_gap_m: float = (12.0),
                 check_gaps: bool = True, change_prob: float = 1.0):
        self.cfg, self.gap, self.check_gaps, self.change_prob = cfg, lane_change_gap_m, check_gaps, change_prob
        self.rng = np.random.default_rng(0)
        self.offset = 0.0  # target lateral offset from the route, in metres (+ left)
        self.cooldown = 0

    def reset(self, rng: np.random.Generator) -> None:
        self.rng, self.offset, self.cooldown = rng, 0.0, 0

    def _straight_ahead(self, env) -> bool:
        base = env.unwrapped
        pts = base.route.point_at(base.route_s + np.array([0.0, 30.0, 60.0]))
        d1, d2 = pts[1] - pts[0], pts[2] - pts[1]
        cos = (d1 @ d2) / max(np.linalg.norm(d1) * np.linalg.norm(d2), 1e-9)
        return cos > 0.98 and base.route_s + 60.0 < base.route.length

    def _maybe_change_lane(self, env, scene: Scene) -> None:
        base = env.unwrapped
        if not self._straight_ahead(env):
            self.offset = 0.0
            return
        if self.cooldown > 0:
            self.cooldown -= 1
            return
        v = scene.vehicles
        h = float(v.heading[0])
        rel = v.position[1:] - v.position[0]
        f = rel @ np.array([np.cos(h), np.sin(h)])
        lat = rel @ np.array([-np.sin(h), np.cos(h)])
        blocked = ((f > 0) & (f < 25) & (np.abs(lat) < 2.0)).any()
        if not blocked or self.rng.random() > self.change_prob:
            return
        for side in self.rng.permutation([1.0, -1.0]):
            lateral = side * 3.5
            target = base.route.point_at(base.route_s + 10.0) + lateral * np.array([-np.sin(h), np.cos(h)])
            offset, width = base._lanes.nearest(target, h)
            if width == 0 or abs(offset) > 0.5 * width:
                continue  # no lane there
            if self.check_gaps and not _lane_free(scene, lateral, self.gap, self.gap * 1.5):
                continue
            self.offset += lateral
            self.cooldown = 30
            return

    def controls(self, env) -> tuple[float, float]:
        base = env.unwrapped
        scene = base.scene
        self._maybe_change_lane(env, scene)
        v = scene.vehicles
        p, h, speed = v.position[0], float(v.heading[0]), float(v.speed[0])
        s = base.route_s + max(self.cfg.lookahead_min_m, self.cfg.lookahead_time_s * speed)
        a, b = base.route.point_at(s), base.route.point_at(s + 1.0)
        t = (b - a) / max(np.linalg.norm(b - a), 1e-9)
        target = a + self.offset * np.array([-t[1], t[0]])
        rel = target - p
        alpha = np.arctan2(-np.sin(h) * rel[0] + np.cos(h) * rel[1], np.cos(h) * rel[0] + np.sin(h) * rel[1])
        steer = float(np.clip(self.cfg.steer_gain * alpha, -1.0, 1.0))
        return idm_acceleration(scene, self.cfg), steer

    def act(self, env):
        acc, steer = self.controls(env)
        if env.unwrapped.config.action == "discrete":
            return nearest_discrete(acc, steer)
        return np.array([acc / MAX_ACCELERATION, steer], np.float32)


class NoisyDriver(ExpertDriver):
    """The expert with epsilon-random actions held for a few steps (a distracted driver)."""

    name = "noisy"

    def __init__(self, epsilon: float = 0.1, hold_steps: int = 4, **kw):
        super().__init__(**kw)
        self.epsilon, self.hold_steps = epsilon, hold_steps
        self.random_action, self.hold = None, 0

    def reset(self, rng):
        super().reset(rng)
        self.hold = 0

    def act(self, env):
        if self.hold > 0:
            self.hold -= 1
            return self.random_action
        if self.rng.random() < self.epsilon:
            self.hold = self.hold_steps - 1
            if env.unwrapped.config.action == "discrete":
                self.random_action = int(self.rng.integers(len(DISCRETE_ACTIONS)))
            else:
                self.random_action = self.rng.uniform(-1, 1, 2).astype(np.float32)
            return self.random_action
        return super().act(env)


class RecklessDriver(ExpertDriver):
    """Fast, tailgating, late-braking, changing lanes without looking."""

    name = "reckless"

    def __init__(self, **kw):
        cfg = replace(RouteFollowerConfig(), target_speed=11.0, time_headway_s=0.3, min_gap_m=0.5,
                      comfortable_deceleration=0.8, max_acceleration=2.0)
        super().__init__(cfg=cfg, check_gaps=False, change_prob=0.3, **kw)


BEHAVIOURS = {"expert": ExpertDriver, "noisy": NoisyDriver, "reckless": RecklessDriver}


def parse_mixture(text: str) -> dict[str, float]:
    """'expert:0.6,noisy:0.3,reckless:0.1' -> normalised weights; one-line errors."""
    out: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, weight = part.partition(":")
        if name not in BEHAVIOURS:
            raise ConfigError(f"mixture: unknown behaviour {name!r}{closest(name, BEHAVIOURS)}; "
                              f"valid: {', '.join(BEHAVIOURS)}")
        try:
            w = float(weight) if weight else 1.0
        except ValueError:
            raise ConfigError(f"mixture: weight of {name!r} must be a number, got {weight!r}") from None
        if w < 0:
            raise ConfigError(f"mixture: weight of {name!r} must be >= 0, got {w}")
        out[name] = out.get(name, 0.0) + w
    total = sum(out.values())
    if total <= 0:
        raise ConfigError(f"mixture {text!r}: expected NAME:WEIGHT pairs with a positive total, "
                          f"e.g. expert:0.6,noisy:0.3,reckless:0.1")
    return {k: round(v / total, 6) for k, v in out.items()}


def pick_behaviour(mixture: dict[str, float], seed: int) -> str:
    rng = np.random.default_rng([seed, 0xBE4A])
    names = sorted(mixture)
    return str(rng.choice(names, p=[mixture[n] for n in names]))


def make_driver(name: str, seed: int) -> ExpertDriver:
    driver = BEHAVIOURS[name]()
    driver.reset(np.random.default_rng([seed, 0xD21]))
    return driver

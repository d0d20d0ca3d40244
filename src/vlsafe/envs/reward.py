"""CarDreamer's per-step reward and vlsafe's per-step cost (PAPER.md), from a Scene and events.

The paper's cost is unpublished; ours is 1 on any step with a collision or with the ego off its
lane/road, and both terms are switchable. Every component is returned so that `info` can show
where a number came from.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["RewardConfig", "CostConfig", "reward_terms", "cost_terms"]


@dataclass(frozen=True)
class RewardConfig:
    """CarDreamer's reward: waypoint +2, speed 0.5*(v* - |v_par - v*| - 2*min(v_perp, 0.5)),
    collision -30*|v|, out of lane -3*(d - 0.5) once d > out_lane_threshold, destination +20."""

    waypoint: float = 2.0
    waypoint_spacing_m: float = 4.0
    desired_speed: float = 4.0  # v* in m/s
    speed_scale: float = 0.5
    lateral_speed_cap: float = 0.5
    collision_scale: float = 30.0
    out_lane_scale: float = 3.0
    out_lane_offset: float = 0.5
    out_lane_threshold: float = 3.0  # metres from the nearest lane centre
    destination: float = 20.0


@dataclass(frozen=True)
class CostConfig:
    """Cost 1 on a step where any enabled condition holds."""

    collision: bool = True
    off_lane: bool = True  # off every lane or, as the simulator judges, off the road
    lane_margin_m: float = 0.3  # how far past a lane edge the ego's centre may go before it is off-lane


def reward_terms(cfg: RewardConfig, *, new_waypoints: int, v_par: float, v_perp: float, speed: float,
                 collision: bool, lane_distance: float, arrived: bool) -> dict[str, float]:
    v = cfg.desired_speed
    terms = {
        "waypoint": cfg.waypoint * new_waypoints,
        "speed": cfg.speed_scale * (v - abs(v_par - v) - 2.0 * min(abs(v_perp), cfg.lateral_speed_cap)),
        "collision": -cfg.collision_scale * abs(speed) if collision else 0.0,
        "out_of_lane": (-cfg.out_lane_scale * (lane_distance - cfg.out_lane_offset)
                        if lane_distance > cfg.out_lane_threshold else 0.0),
        "destination": cfg.destination if arrived else 0.0,
    }
    return terms


def cost_terms(cfg: CostConfig, *, collision: bool, off_lane: bool) -> dict[str, float]:
    return {
        "collision": float(cfg.collision and collision),
        "off_lane": float(cfg.off_lane and off_lane),
    }

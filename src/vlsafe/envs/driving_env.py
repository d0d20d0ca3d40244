"""`DrivingEnv`: one gymnasium env for every task and backend.

The backend only moves the world; this class turns the world into the paper's observation
(BEV and/or vector), CarDreamer's reward, our cost, and the ground-truth safety signals in
`info`, so that none of these can differ between simulators.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import gymnasium as gym
import numpy as np

from vlsafe.envs.actions import action_space, to_controls
from vlsafe.envs.backends import BackendSpec, make_backend
from vlsafe.envs.bev import BEVConfig, BEVRasterizer
from vlsafe.envs.observation import conflict_observation, vector_observation, vector_space
from vlsafe.envs.reward import cost_terms, reward_terms
from vlsafe.envs.safety import LaneIndex, safety_signals
from vlsafe.envs.scene import RoadMap, Route, Scene, Vehicles
from vlsafe.envs.tasks import TaskConfig

__all__ = ["DrivingEnv"]


class DrivingEnv(gym.Env):
    """A vlsafe driving task. Cost is in `info["cost"]` (Safety-Gymnasium / MetaDrive convention).

    `reset(seed=s)` drives map `map_seed_start + s % num_maps` with traffic seeded by s; the
    same seed gives the same episode for the same actions.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(self, config: TaskConfig | None = None, render_mode: str | None = None, render_size: int = 128):
        self.config = config or TaskConfig()
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode: expected None or 'rgb_array', got {render_mode!r}")
        self.render_mode = render_mode
        self.backend = make_backend(self.config.backend)
        self.dt = float(self.backend.dt)
        self.bev = BEVRasterizer(self.config.observation.bev)
        self._render_bev = BEVRasterizer(dataclasses.replace(self.config.observation.bev, size=render_size))
        self.action_space = action_space(self.config.action)
        size = self.config.observation.bev.size
        image = gym.spaces.Box(0, 255, shape=(size, size, 3), dtype=np.uint8)
        kind = self.config.observation.kind
        vector = vector_space(self.config.observation.conflict)
        self.observation_space = {"bev": image, "vector": vector, "both": gym.spaces.Dict({"bev": image, "vector": vector})}[kind]
        self.road: RoadMap | None = None
        self.route: Route | None = None
        self._lanes: LaneIndex | None = None
        self._vehicles: Vehicles | None = None
        self._steps = 0
        self._graph = None  # (road, its LaneGraph): `observation.conflict` predicts cars along its lanes
        self._vector = None  # (vehicles, vector): one vector per step, however often it is asked for

    # -- gymnasium API ----------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        episode_seed = int(seed) if seed is not None else int(self.np_random.integers(0, 2**31 - 1))
        map_seed = self.config.map_seed_start + episode_seed % self.config.num_maps
        if options and "map_seed" in options:
            map_seed = int(options["map_seed"])
        spec = BackendSpec(task=self.config.task, traffic_density=self.config.density_for(episode_seed),
                           map_seed=map_seed, max_steps=self.config.max_steps)
        self.road, self.route = self.backend.reset(spec, episode_seed)
        self._lanes = LaneIndex(self.road)
        self._vehicles = self.backend.vehicles()
        self._steps = 0
        self._s, _, _ = self.route.project(self._vehicles.position[0], 0.0, 20.0)
        self._s_best = self._s
        self._waypoints = 0
        self._distance = 0.0
        self._was_colliding = False
        self._crash_step: int | None = None  # step of the first terminating event
        self._map_seed = map_seed
        info = self._info_common(safety_signals(self._vehicles, self._lanes))
        info.update(map_seed=map_seed, episode_seed=episode_seed, traffic_density=spec.traffic_density)
        return self._observe(info["lane_offset"]), info

    def step(self, action):
        assert self.route is not None, "call reset() before step()"
        acc, steer = to_controls(action, self.config.action)
        prev = self._vehicles.position[0].copy()
        self.backend.step(acc, steer)
        self._vehicles = self.backend.vehicles()
        events = self.backend.events()
        self._steps += 1
        ego = self._vehicles.position[0]
        self._distance += float(np.linalg.norm(ego - prev))
        self._s, lateral, tangent = self.route.project(ego, self._s - 10.0, self._s + 30.0)
        self._s_best = max(self._s_best, self._s)
        total_wp = int(self._s_best // self.config.reward.waypoint_spacing_m)
        new_wp, self._waypoints = total_wp - self._waypoints, total_wp

        safety = safety_signals(self._vehicles, self._lanes)
        lane_distance = abs(safety.lane_offset)
        off_lane = events.off_road or lane_distance > 0.5 * safety.lane_width + self.config.cost.lane_margin_m
        v = self._vehicles.velocity[0]
        v_par = float(v @ tangent)
        v_perp = float(v[1] * tangent[0] - v[0] * tangent[1])
        speed = float(np.linalg.norm(v))
        r_terms = reward_terms(self.config.reward, new_waypoints=new_wp, v_par=v_par, v_perp=v_perp, speed=speed,
                               collision=events.collision, lane_distance=min(lane_distance, 1e3),
                               arrived=events.arrived)
        c_terms = cost_terms(self.config.cost, collision=events.collision, off_lane=off_lane)
        reward = float(sum(r_terms.values()))
        cost = float(max(c_terms.values()))

        crash = ((events.collision and self.config.terminate_on_collision)
                 or (events.off_road and self.config.terminate_on_off_road))
        if crash and self._crash_step is None:
            self._crash_step = self._steps
        after = None if self._crash_step is None else self._steps - self._crash_step
        terminated = bool(events.arrived or (after is not None and after >= self.config.steps_after_crash))
        truncated = bool(not terminated and self._steps >= self.config.max_steps)
        info = self._info_common(safety)
        info.update(cost=cost, cost_terms=c_terms, reward_terms=r_terms, collision=bool(events.collision),
                    collision_start=bool(events.collision and not self._was_colliding),
                    off_road=bool(events.off_road), off_lane=bool(off_lane), arrived=bool(events.arrived),
                    v_par=v_par, v_perp=v_perp, new_waypoints=new_wp)
        self._was_colliding = events.collision
        return self._observe(safety.lane_offset), reward, terminated, truncated, info

    def render(self):
        if self.render_mode != "rgb_array" or self._vehicles is None:
            return None
        return self._render_bev.draw(self.road, self.route, self._vehicles)

    def close(self):
        self.backend.close()

    # -- helpers ---------------------------------------------------------------------------------
    @property
    def scene(self) -> Scene:
        """The current world as backend-neutral arrays (for scripted drivers and tests)."""
        assert self._vehicles is not None, "call reset() first"
        return Scene(self.road, self.route, self._vehicles)

    @property
    def lanes(self) -> LaneIndex:
        """Nearest-lane queries on the current map (scripted drivers use it to find free lanes)."""
        assert self._lanes is not None, "call reset() first"
        return self._lanes

    @property
    def steps(self) -> int:
        """Steps taken since the last reset."""
        return self._steps

    @property
    def route_s(self) -> float:
        return self._s

    def bev_frame(self, config: BEVConfig | None = None) -> np.ndarray:
        """The current scene drawn at any size/range, e.g. 224 px for a VLM."""
        r = self.bev if config is None else BEVRasterizer(config)
        return r.draw(self.road, self.route, self._vehicles)

    def observation(self, kind: str):
        """The current observation of any kind ('bev', 'vector' or 'both'), whatever the task's own
        kind: the evaluator hands each policy the observation it was trained on."""
        assert self._vehicles is not None, "call reset() first"
        if kind not in ("bev", "vector", "both"):
            raise ValueError(f"observation kind: expected bev, vector or both, got {kind!r}")
        out = {}
        if kind in ("bev", "both"):
            out["bev"] = self.bev.draw(self.road, self.route, self._vehicles)
        if kind in ("vector", "both"):
            out["vector"] = self._vector_now()
        return out if kind == "both" else out[kind]

    def _vector_now(self) -> np.ndarray:
        if self._vector is not None and self._vector[0] is self._vehicles:
            return self._vector[1]
        vector = vector_observation(self._vehicles, self.route, self._s, self._lane_offset)
        if self.config.observation.conflict:
            from vlsafe.experts.prediction import LaneGraph

            if self._graph is None or self._graph[0] is not self.road:
                self._graph = (self.road, LaneGraph(self.road))
            vector = np.concatenate([vector, conflict_observation(self.scene, self._s, self._graph[1])])
        self._vector = (self._vehicles, vector)
        return vector

    def _observe(self, lane_offset: float):
        self._lane_offset = lane_offset
        return self.observation(self.config.observation.kind)

    def _info_common(self, safety) -> dict[str, Any]:
        return {
            "cost": 0.0, "speed": float(np.linalg.norm(self._vehicles.velocity[0])),
            "ttc": safety.ttc, "min_gap": safety.min_gap, "lane_offset": safety.lane_offset,
            "route_progress": self._s_best / max(self.route.length, 1e-9), "route_length": self.route.length,
            "waypoints": self._waypoints, "distance": self._distance, "dt": self.dt, "time": self._steps * self.dt,
            "map_seed": self._map_seed,
        }

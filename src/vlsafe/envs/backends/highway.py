"""highway-env 1.12.1 backend: the four tasks on highway-env's roads, stepped without its gym layer.

Why the gym layer is bypassed: `AbstractEnv.step` builds an observation (pandas for Kinematics),
a reward and an info dict every step, none of which vlsafe reads (vlsafe draws its own BEV from
the `Scene` arrays). We only borrow highway-env's road networks, its IDM/MOBIL traffic, its
kinematic bicycle model and its collision test, and drive the ego by writing its low-level
action (`{"acceleration", "steering"}`) before each simulation sub-step. Nothing is rendered.

Timing: simulation 10 Hz, env step `dt` = 0.2 s (two sub-steps). highway-env's defaults
(15 Hz, 50 cars) run at ~2 steps/s and highway-v0 with 20 cars at 10/5 Hz at ~38 steps/s on
2 cores. Three hot spots are replaced, per Road instance, by vectorised versions that give
bit-identical trajectories (checked against the originals): the neighbour-vehicle search (but for
one departure: traffic sees the ego by its corners, not only its centre), the closest-lane search
and, at the intersection, the right-of-way check, which deep-copied the whole road for every pair
involving the ego. The collision test is not highway-env's: only the ego's
collisions are simulated (see `_substep`, which also keeps traffic from reversing).
With them step()+vehicles()+events() run at ~65-95 steps/s on four-lane (20 cars), ~80-140 at
the junction and ~70-200 on the racetracks (2 cores shared with other jobs); dt = 0.1
(10 Hz policy, one sub-step) roughly doubles these, so it is affordable too.

Events: `collision` means "touched a car during this step": highway-env's sticky `crashed`
flag is cleared before each step so the ego stays drivable (as in MetaDrive) and vlsafe's env
decides termination. `off_road` is highway-env's `not on_road` (centre outside the nearest
lane). `arrived`: progress along the route within 2 m of its end, laterally on the final road.
`vehicles().velocity` is the bicycle model's true motion (heading + slip angle beta: 24 deg at
the discrete steering 0.6, 54 at full lock), so it can differ from the body heading while steering. At the junction,
`vehicles().plan` is each car's planned lanes ahead (highway-env's `route`) and `priority` its
junction lane's right of way (highway-env's lane priority), for the expert.

Frames: highway-env works in a y-down screen frame where heading grows clockwise on screen
and positive steering turns right. We flip y (and heading, and the steering sign) so that all
returned arrays are right-handed (x east, y north, heading CCW) with positive steer = left.
Flipping y mirrors coordinates, not the picture: a right turn on highway-env's screen is a right
turn in our frame, and traffic keeps driving on the right.

Tasks (spec.task):
- four-lane: a straight 4-lane one-way highway; the ego drives along its lane for
  FOUR_LANE_ROUTE_M; map_seed picks the ego's lane. Traffic is kept around the ego by
  recycling cars that fall more than TRAFFIC_BEHIND_M behind / TRAFFIC_AHEAD_M ahead.
- left-turn / right-turn: highway-env's 4-way intersection; map_seed picks the arm the ego
  comes from (the horizontal road has priority), the exit is the left / right one.
- navigation: highway-env's racetrack circuits (2-lane `racetrack-v0` or 3-lane
  `RacetrackEnvLarge`, by map_seed parity), a 9-segment closed road of straights and arcs
  curving both ways; map_seed picks the start segment, lane and position. The route follows
  the ego's lane for up to NAV_ROUTE_M (less than one lap, so it never overlaps itself).
"""

from __future__ import annotations

import copy
import os
import types

import numpy as np

os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")  # highway-env imports pygame; no rendering is done

from highway_env.envs.intersection_env import IntersectionEnv  # noqa: E402
from highway_env.envs.racetrack_env import RacetrackEnv, RacetrackEnvLarge  # noqa: E402
from highway_env.road.lane import CircularLane, LineType, StraightLane  # noqa: E402
from highway_env.road.regulation import RegulatedRoad  # noqa: E402
from highway_env.road.road import Road, RoadNetwork  # noqa: E402
from highway_env.utils import rotated_rectangles_intersect  # noqa: E402
from highway_env.vehicle.behavior import IDMVehicle  # noqa: E402
from highway_env.vehicle.controller import ControlledVehicle, MDPVehicle  # noqa: E402
from highway_env.vehicle.kinematics import Vehicle  # noqa: E402
from highway_env.vehicle.objects import Landmark  # noqa: E402

from vlsafe.envs.actions import steering_curvature  # noqa: E402
from vlsafe.envs.backends.base import Backend, BackendEvents, BackendSpec  # noqa: E402
from vlsafe.envs.scene import PLAN_STEP_M, Lane, RoadMap, Route, Vehicles, sample_lane, wrap_angle  # noqa: E402

__all__ = ["HighwayBackend", "wheel_angle", "ACCEL_GAIN"]

MAX_WHEEL_ANGLE = np.deg2rad(75.0)
"""The front-wheel angle a steering is never turned past (full lock, steering 1, asks for 70 deg)."""


def wheel_angle(steering: float, length: float = Vehicle.LENGTH) -> float:
    """The front-wheel angle (rad, positive = left) at which highway-env's car turns as the
    steering asks (actions.steering_curvature: MetaDrive's car). Its bicycle model turns about the
    centre with its axles at +-L/2: yaw rate / speed = sin(beta) / (L/2), beta = atan(tan(delta) / 2).
    A plain 45 deg full lock (highway-env's own range) turned on a 32 m radius at steering 0.2 where
    MetaDrive turns on 18 m, and MetaDrive-trained left turns left highway-env's junction."""
    beta = np.arcsin(np.clip(steering_curvature(steering) * length / 2.0, -1.0, 1.0))
    return float(np.clip(np.arctan(2.0 * np.tan(beta)), -MAX_WHEEL_ANGLE, MAX_WHEEL_ANGLE))
ACCEL_GAIN = 1.0
"""m/s^2 of speed change per requested m/s^2. highway-env integrates `speed += a * dt` exactly,
so the gain is 1 by construction; measured 2.000 / -2.000 / 1.000 m/s^2 for requests of +2 / -2 / +1
(mean dv/dt over 10 steps from 8 m/s, empty road). Braking stops at zero speed instead of reversing."""
SIM_HZ = 10
EGO_SPEED0 = 4.0  # m/s at spawn: CarDreamer's target speed, so no task starts with a stand-still
PERCEPTION_M = 80.0

FOUR_LANE_ROUTE_M = 400.0  # 500 steps at 4 m/s cover 400 m
FOUR_LANE_SPEED_LIMIT = 12.0  # traffic cruises at 0.7-0.8 x this, like highway-env's create_random
TRAFFIC_AHEAD_M, TRAFFIC_BEHIND_M = 300.0, 200.0  # traffic window around the ego (four-lane)
JUNCTION_EXIT_M = 80.0  # route end along the exit road (highway-env removes cars at 80 m)
JUNCTION_SPEED = 10.0  # m/s, highway-env's speed limit on the junction's lanes
PLAN_M = 40.0  # how far ahead Vehicles.plan reaches (4 s at the junction's speed limit)
JUNCTION_DEADLOCK_S = 8.0  # a car standing this long inside the junction is taken away (a deadlock)
JUNCTION_CRAWL = 1.0  # m/s: "standing" for the deadlock rule (a locked junction creeps at 0.1-0.6 m/s)
NAV_ROUTE_M = 500.0

_LINE = {LineType.NONE: "none", LineType.STRIPED: "broken", LineType.CONTINUOUS: "solid",
         LineType.CONTINUOUS_LINE: "solid"}
_FLIP = np.array([1.0, -1.0])


class _JunctionIDM(IDMVehicle):
    """Intersection traffic. IntersectionEnv rewrites class attributes (jam distance, comfort
    accelerations) of its traffic class; giving it this subclass keeps those edits from leaking
    into the IDM cars of the other tasks in the same process."""


# -- faster, behaviour-identical replacements bound onto one Road / RoadNetwork instance --------
def _lane_coords(lane, pts: np.ndarray):
    """Vectorised `lane.local_coordinates` for StraightLane / CircularLane (None otherwise)."""
    if type(lane) is StraightLane:
        d = pts - lane.start
        return d @ lane.direction, d @ lane.direction_lateral
    if type(lane) is CircularLane:
        d = pts - lane.center
        phi = np.arctan2(d[:, 1], d[:, 0])
        phi = lane.start_phase + ((phi - lane.start_phase + np.pi) % (2 * np.pi) - np.pi)
        r = np.sqrt((d * d).sum(1))
        return lane.direction * (phi - lane.start_phase) * lane.radius, lane.direction * (lane.radius - r)
    return None


def _fast_neighbour_vehicles(road, vehicle, lane_index=None):
    """`Road.neighbour_vehicles` without a Python loop over all cars, and with one departure: for
    traffic, the ego is in a lane where any corner of it is, not only its centre. Standing turned in
    the junction, its tail still sticks into the lane it came from, and a car behind that goes
    another way drove into it (5 of 10 highway-env left-turn collisions, development seeds)."""
    lane_index = lane_index or vehicle.lane_index
    if not lane_index:
        return None, None
    if road.neighbour_vehicles_connected_lanes:
        return Road.neighbour_vehicles(road, vehicle, lane_index)
    lane = road.network.get_lane(lane_index)
    objs = road.vehicles + road.objects
    pts = road._vl_positions if road._vl_positions is not None else np.array([o.position for o in objs])
    coords = _lane_coords(lane, pts) if len(objs) else None
    if coords is None:
        return Road.neighbour_vehicles(road, vehicle, lane_index)
    s_all, lat_all = coords
    s = lane.local_coordinates(vehicle.position)[0]
    reach = lane.VEHICLE_LENGTH
    ok = (np.abs(lat_all) <= lane.width / 2 + 1) & (s_all >= -reach) & (s_all < lane.length + reach)
    ego = getattr(road, "_vl_ego", None)
    try:
        i = road.vehicles.index(ego) if ego is not None and vehicle is not ego else -1
    except ValueError:  # the ego is not on this road (a predicted copy's road)
        i = -1
    if i >= 0 and not ok[i]:
        # traffic also sees the ego where a corner of it is in the lane; the corners are looked at
        # only when its box, turned against the lane, reaches that far across (+0.5 m for a bend)
        turn = ego.heading - lane.heading_at(float(s_all[i]))
        across = 0.5 * (ego.LENGTH * abs(np.sin(turn)) + ego.WIDTH * abs(np.cos(turn)))
        if abs(lat_all[i]) - across <= lane.width / 2 + 0.5:
            cs, cl = _lane_coords(lane, np.asarray(ego.polygon()[:4], dtype=float))
            inside = (np.abs(cl) <= lane.width / 2) & (cs >= -reach) & (cs < lane.length + reach)
            if inside.any():
                ok[i] = True
                s_all = s_all.copy()
                s_all[i] = float(cs[inside].min())
    skip = [i for i, o in enumerate(road.objects, len(road.vehicles)) if isinstance(o, Landmark)]
    try:
        skip.append(road.vehicles.index(vehicle))
    except ValueError:  # a predicted copy is not on the road
        pass
    ok[skip] = False
    front = ok & (s_all >= s)
    rear = ok & (s_all < s)
    v_front = objs[int(np.argmin(np.where(front, s_all, np.inf)))] if front.any() else None
    v_rear = objs[int(np.argmax(np.where(rear, s_all, -np.inf)))] if rear.any() else None
    return v_front, v_rear


def _fast_closest_lane_index(net, position, heading=None):
    """`RoadNetwork.get_closest_lane_index` evaluated for all lanes at once (same argmin)."""
    tab = net._vl_table
    if tab is None:
        return RoadNetwork.get_closest_lane_index(net, position, heading)
    idx, st, ci = tab["index"], tab["straight"], tab["circular"]
    dist = np.empty(len(idx))
    p = np.asarray(position, dtype=float)
    if len(st["rows"]):
        d = p - st["start"]
        s = (d * st["dir"]).sum(1)
        r = (d * st["lat"]).sum(1)
        dist[st["rows"]] = _lane_distance(s, r, st["length"], st["heading"], heading)
    if len(ci["rows"]):
        d = p - ci["center"]
        phi = np.arctan2(d[:, 1], d[:, 0])
        phi = ci["phase"] + ((phi - ci["phase"] + np.pi) % (2 * np.pi) - np.pi)
        s = ci["dir"] * (phi - ci["phase"]) * ci["radius"]
        r = ci["dir"] * (ci["radius"] - np.sqrt((d * d).sum(1)))
        lane_heading = ci["dir"] * s / ci["radius"] + ci["phase"] + np.pi / 2 * ci["dir"]
        dist[ci["rows"]] = _lane_distance(s, r, ci["length"], lane_heading, heading)
    return idx[int(np.argmin(dist))]


def _lane_distance(s, r, length, lane_heading, heading):
    out = np.abs(r) + np.maximum(s - length, 0) + np.maximum(-s, 0)
    if heading is not None:
        out = out + np.abs((heading - lane_heading + np.pi) % (2 * np.pi) - np.pi)
    return out


def _lane_table(net) -> dict | None:
    index, straight, circular = [], [], []
    for _from, to_dict in net.graph.items():
        for _to, lanes in to_dict.items():
            for _id, lane in enumerate(lanes):
                row = len(index)
                index.append((_from, _to, _id))
                if type(lane) is StraightLane:
                    straight.append((row, lane))
                elif type(lane) is CircularLane:
                    circular.append((row, lane))
                else:
                    return None
    def arrays(rows, **attrs):
        out = {k: np.array([getattr(lane, a) for _, lane in rows], dtype=float) for k, a in attrs.items()}
        return {"rows": np.array([r for r, _ in rows], dtype=int), **out}

    return {"index": index,
            "straight": arrays(straight, start="start", dir="direction", lat="direction_lateral", length="length",
                               heading="heading"),
            "circular": arrays(circular, center="center", phase="start_phase", dir="direction", radius="radius",
                               length="length")}


def _predict(v, times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`v.predict_trajectory_constant_speed(times)` as arrays. For a plain `Vehicle` (our ego)
    highway-env deep-copies the vehicle *and the whole road* for this; integrating a shallow copy
    detached from the road gives the same positions (the road only updates the lane index)."""
    if type(v) is not Vehicle:
        pos, head = v.predict_trajectory_constant_speed(times)
        return np.array(pos, dtype=float), np.array(head, dtype=float)
    c = copy.copy(v)
    c.road, c.position = None, np.array(v.position, dtype=float)
    c.action = {"acceleration": 0.0, "steering": v.action["steering"]}
    pos, head = [], []
    for dt in np.diff(np.concatenate(([0.0], times))):
        c.step(dt)
        pos.append(c.position.copy())
        head.append(c.heading)
    return np.array(pos), np.array(head)


def _fast_enforce_road_rules(road) -> None:
    """`RegulatedRoad.enforce_road_rules` with each car's 3 s prediction computed once per call
    instead of once per pair (same conflicts, same yielding decisions)."""
    for v in road.vehicles:  # unfreeze previous yielding vehicles (verbatim)
        if getattr(v, "is_yielding", False):
            if v.yield_timer >= road.YIELD_DURATION * road.REGULATION_FREQUENCY:
                v.target_speed = v.lane.speed_limit
                delattr(v, "color")
                v.is_yielding = False
            else:
                v.yield_timer += 1
    times = np.arange(0.25, 3, 0.25)
    preds = [_predict(v, times) for v in road.vehicles]
    vs = road.vehicles
    for i in range(len(vs) - 1):
        for j in range(i + 1, len(vs)):
            (p1, h1), (p2, h2), v1, v2 = preds[i], preds[j], vs[i], vs[j]
            close = np.nonzero(np.sqrt(((p2 - p1) ** 2).sum(1)) <= v1.LENGTH)[0]
            if not any(rotated_rectangles_intersect((p1[k], 1.5 * v1.LENGTH, 0.9 * v1.WIDTH, h1[k]),
                                                    (p2[k], 1.5 * v2.LENGTH, 0.9 * v2.WIDTH, h2[k])) for k in close):
                continue
            y = road.respect_priorities(v1, v2)
            if y is not None and isinstance(y, ControlledVehicle) and not isinstance(y, MDPVehicle):
                y.color = road.YIELDING_COLOR
                y.target_speed = 0
                y.is_yielding = True
                y.yield_timer = 0


def _accelerate(road) -> None:
    """Bind the fast methods onto this road and its network (bound methods survive the deepcopy
    highway-env does for trajectory prediction, and rebind to the copy)."""
    road._vl_positions = None
    road.neighbour_vehicles = types.MethodType(_fast_neighbour_vehicles, road)
    road.network._vl_table = _lane_table(road.network)
    road.network.get_closest_lane_index = types.MethodType(_fast_closest_lane_index, road.network)
    if isinstance(road, RegulatedRoad):
        road.enforce_road_rules = types.MethodType(_fast_enforce_road_rules, road)


def _substep(road, dt: float, ego) -> None:
    """`road.act(); road.step(dt)`, with two departures from highway-env's traffic, both for the
    ego's sake. Only the ego's collisions are simulated: highway-env's own traffic collides with
    itself at the junction (27 of 30 development episodes of left-turn; HighwayEnv issue #76), and
    a crashed car stands there for good, so the ego waited behind wrecks until its time ran out
    (19 of 30). And traffic never reverses: IDM braking for a car just ahead drives a standing
    car backwards (up to 5 m/s) into whoever waits behind it."""
    objs = road.vehicles + road.objects
    road._vl_positions = np.array([o.position for o in objs]) if objs else None
    try:
        for v in road.vehicles:
            v.act()
    finally:
        road._vl_positions = None
    if isinstance(road, RegulatedRoad):
        road.steps += 1
        if road.steps % int(1 / dt / road.REGULATION_FREQUENCY) == 0:
            road.enforce_road_rules()
    for v in road.vehicles:
        v.step(dt)
        if v is not ego and v.speed < 0.0:
            v.speed = 0.0
    for v in road.vehicles:
        if v is not ego:
            ego.handle_collisions(v, dt)
    for o in road.objects:
        ego.handle_collisions(o, dt)


def _xy(p) -> np.ndarray:
    return np.asarray(p, dtype=float) * _FLIP


def _lane_to_vl(lane, s0: float = 0.0, length: float | None = None, junction: bool = False) -> Lane:
    length = float(lane.length - s0) if length is None else length
    left, right = ("none", "none") if junction else (_LINE[lane.line_types[0]], _LINE[lane.line_types[1]])
    # highway-env's lateral axis points to the driver's right; ours to the left
    return sample_lane(lambda s, lat: _xy(lane.position(s0 + s, -lat)), length, float(lane.width_at(s0)), left, right)


def _polyline(pieces, step: float = 1.0) -> np.ndarray:
    """Dense points along (lane, s_from, s_to) pieces, in our frame."""
    out = []
    for lane, a, b in pieces:
        n = max(2, int(np.ceil((b - a) / step)) + 1)
        pts = np.array([lane.position(float(s), 0.0) for s in np.linspace(a, b, n)])
        out.append(pts if not out else pts[1:])
    return _xy(np.concatenate(out))


class HighwayBackend(Backend):
    """highway-env roads and IDM/MOBIL traffic; see the module docstring for the tasks."""

    name = "highway"

    def __init__(self, dt: float = 0.2) -> None:
        self.dt = float(dt)
        self._substeps = max(1, int(round(self.dt * SIM_HZ)))
        self._envs: dict[str, object] = {}
        self.road = self.ego = None

    # -- episode ---------------------------------------------------------------------------------
    def reset(self, spec: BackendSpec, seed: int) -> tuple[RoadMap, Route]:
        builders = {"four-lane": self._four_lane, "left-turn": self._junction, "right-turn": self._junction,
                    "navigation": self._racetrack}
        if spec.task not in builders:
            raise ValueError(f"highway backend: unknown task {spec.task!r}; valid: {', '.join(builders)}")
        self.spec = spec
        self.rng = np.random.default_rng([abs(int(seed)), abs(int(spec.map_seed)), sorted(builders).index(spec.task)])
        self._env = None
        lanes, pieces = builders[spec.task](spec)
        _accelerate(self.road)
        if self.ego in self.road.vehicles:
            self.road.vehicles.remove(self.ego)
        self.road.vehicles.insert(0, self.ego)
        self.route = Route(_polyline(pieces))
        self._arrive_lateral = self._final_road_halfwidth(pieces[-1])
        self._s = 0.0
        self._collided = False
        return RoadMap(tuple(lanes)), self.route

    def _four_lane(self, spec):
        n_lanes, length = 4, 2000.0
        net = RoadNetwork.straight_road_network(n_lanes, length=length, speed_limit=FOUR_LANE_SPEED_LIMIT)
        self.road = Road(network=net, np_random=np.random.default_rng(int(self.rng.integers(2**31))))
        lane_id = int(spec.map_seed) % n_lanes
        s0 = 300.0
        self.ego = self._make_ego(("0", "1", lane_id), s0)
        self.road.vehicles.append(self.ego)
        self._n_traffic = int(round(spec.traffic_density * n_lanes * (TRAFFIC_AHEAD_M + TRAFFIC_BEHIND_M) / 10))
        for _ in range(self._n_traffic):
            self._place_highway_car(s0 - TRAFFIC_BEHIND_M, s0 + TRAFFIC_AHEAD_M)
        ego_lane = net.get_lane(("0", "1", lane_id))
        lo, hi = s0 - 150.0, s0 + FOUR_LANE_ROUTE_M + 150.0
        lanes = [_lane_to_vl(lane, lo, hi - lo) for lane in net.lanes_list()]
        return lanes, [(ego_lane, s0, s0 + FOUR_LANE_ROUTE_M)]

    def _place_highway_car(self, lo: float, hi: float, tries: int = 30) -> bool:
        """Put an IDM car on a random lane in [lo, hi) m, clear of every other car (speed like
        highway-env's `create_random`: 0.7-0.8 x the speed limit)."""
        net, rng = self.road.network, self.rng
        n_lanes = len(net.graph["0"]["1"])
        pos = np.array([v.position for v in self.road.vehicles]) if self.road.vehicles else np.zeros((0, 2))
        for _ in range(tries):
            lane_id, s = int(rng.integers(n_lanes)), float(rng.uniform(lo, hi))
            lane = net.get_lane(("0", "1", lane_id))
            p = lane.position(s, 0.0)
            gap = np.abs(pos[:, 0] - p[0]) if len(pos) else np.array([np.inf])
            same = np.abs(pos[:, 1] - p[1]) < 2.0 if len(pos) else np.array([False])
            ego_dx = abs(self.ego.position[0] - p[0])
            if (gap[same] < 15.0).any() or ego_dx < 10.0 or (abs(self.ego.position[1] - p[1]) < 2.0 and ego_dx < 25.0):
                continue
            car = IDMVehicle.make_on_lane(self.road, ("0", "1", lane_id), s,
                                          speed=float(rng.uniform(0.7, 0.8) * FOUR_LANE_SPEED_LIMIT))
            car.randomize_behavior()
            self.road.vehicles.append(car)
            return True
        return False

    def _recycle_highway_traffic(self) -> None:
        """Keep the four-lane traffic in a window around the ego: a car that left it is
        re-spawned at the far side, so the density near the ego does not drain away."""
        ex = self.ego.position[0]
        gone = [v for v in self.road.vehicles if v is not self.ego
                and not (-TRAFFIC_BEHIND_M <= v.position[0] - ex <= TRAFFIC_AHEAD_M)]
        for v in gone:
            ahead = v.position[0] - ex > 0
            self.road.vehicles.remove(v)
            if ahead:  # fell out ahead: re-enter from behind, and vice versa
                self._place_highway_car(ex - TRAFFIC_BEHIND_M, ex - TRAFFIC_BEHIND_M + 40.0)
            else:
                self._place_highway_car(ex + TRAFFIC_AHEAD_M - 40.0, ex + TRAFFIC_AHEAD_M)

    def _junction(self, spec):
        env = self._envs.get("junction")
        density = spec.traffic_density
        config = {"observation": {"type": "Kinematics"}, "action": {"type": "ContinuousAction"},
                  "simulation_frequency": SIM_HZ, "other_vehicles_type": f"{__name__}._JunctionIDM",
                  "initial_vehicle_count": max(1, int(round(density * 100)))}
        if env is None:
            env = self._envs["junction"] = IntersectionEnv(config=config)
        env.configure(config)
        env.reset(seed=int(self.rng.integers(2**31)))
        self._env, self.road = env, env.road
        for v in env.controlled_vehicles:  # highway-env's own ego (always arm 0) is replaced by ours
            if v in self.road.vehicles:
                self.road.vehicles.remove(v)
        arm = int(spec.map_seed) % 4
        exit_arm = (arm + 1) % 4 if spec.task == "left-turn" else (arm - 1) % 4
        net = self.road.network
        approach = net.get_lane((f"o{arm}", f"ir{arm}", 0))
        s0 = float(np.clip(50.0 + 5.0 * self.rng.normal(), 40.0, 60.0))
        self.ego = self._make_ego((f"o{arm}", f"ir{arm}", 0), s0)
        env.controlled_vehicles = [self.ego]
        self.road.vehicles = [v for v in self.road.vehicles if np.linalg.norm(v.position - self.ego.position) >= 20]
        self.road.vehicles.append(self.ego)
        turn = net.get_lane((f"ir{arm}", f"il{exit_arm}", 0))
        self._ego_priority = float(turn.priority)
        leave = net.get_lane((f"il{exit_arm}", f"o{exit_arm}", 0))
        pieces = [(approach, s0, approach.length), (turn, 0.0, turn.length), (leave, 0.0, JUNCTION_EXIT_M)]
        lanes = [_lane_to_vl(lane, junction=_from.startswith("ir"))
                 for (_from, _to, _id), lane in net.lanes_dict().items()]
        # a flow, not highway-env's per-step probability: density (cars per 10 m of lane) x the
        # junction's speed limit, into each of its 4 roads (0.6 cars/s at the default 0.15)
        self._spawn_p = min(1.0, 4 * density / 10.0 * JUNCTION_SPEED * self.dt)  # per env step
        return lanes, pieces

    def _racetrack(self, spec):
        cls = (RacetrackEnv, RacetrackEnvLarge)[int(spec.map_seed) % 2]
        env = self._envs.get(cls.__name__)
        config = {"observation": {"type": "Kinematics"}, "action": {"type": "ContinuousAction"},
                  "simulation_frequency": SIM_HZ, "other_vehicles": 0}
        if env is None:
            env = self._envs[cls.__name__] = cls(config=config)
        env.reset(seed=int(self.rng.integers(2**31)))
        self.road = env.road
        self.road.vehicles = []
        net = self.road.network
        map_rng = np.random.default_rng(abs(int(spec.map_seed)))
        edges = [(f, t) for f, d in net.graph.items() for t in d]
        start = edges[int(map_rng.integers(len(edges)))]
        lane_id = int(map_rng.integers(len(net.graph[start[0]][start[1]])))
        first = net.get_lane((*start, lane_id))
        s0 = float(map_rng.uniform(0.0, first.length))
        self.ego = self._make_ego((*start, lane_id), s0)
        self.road.vehicles.append(self.ego)
        # route: the ego's lane id through the following segments, less than one lap long
        lap = [net.get_lane((*edges[(edges.index(start) + k) % len(edges)], lane_id)) for k in range(len(edges))]
        total = sum(lane.length for lane in lap)
        want = min(NAV_ROUTE_M, 0.9 * total)
        pieces, s, k = [], s0, 0
        while want > 1e-6:
            lane = lap[k % len(lap)]
            take = min(lane.length - s, want)
            pieces.append((lane, s, s + take))
            want -= take
            s, k = 0.0, k + 1
        # traffic: density x total lane length, uniform along lanes, kept apart (racetrack-v0 style speeds)
        all_lanes = list(net.lanes_dict().items())
        lengths = np.array([lane.length for _, lane in all_lanes])
        n = int(round(spec.traffic_density * lengths.sum() / 10))
        for _ in range(30 * n):
            if len(self.road.vehicles) > n:
                break
            index, lane = all_lanes[int(self.rng.choice(len(all_lanes), p=lengths / lengths.sum()))]
            p = lane.position(float(self.rng.uniform(0, lane.length)), 0.0)
            d = np.linalg.norm(np.array([v.position for v in self.road.vehicles]) - p, axis=1)
            if d.min() < 15.0 or np.linalg.norm(p - self.ego.position) < 25.0:
                continue
            heading = lane.heading_at(lane.local_coordinates(p)[0])
            car = IDMVehicle(self.road, p, heading, 6.0 + float(self.rng.uniform(0, 3.0)))
            car.randomize_behavior()
            self.road.vehicles.append(car)
        return [_lane_to_vl(lane) for lane in net.lanes_list()], pieces

    def _make_ego(self, lane_index, s: float) -> Vehicle:
        lane = self.road.network.get_lane(lane_index)
        ego = Vehicle(self.road, lane.position(s, 0.0), lane.heading_at(s), EGO_SPEED0)
        ego.action = {"acceleration": 0.0, "steering": 0.0}
        self.road._vl_ego = ego  # traffic sees the ego by its corners (_fast_neighbour_vehicles)
        return ego

    def _final_road_halfwidth(self, piece) -> float:
        """Lateral reach of the route's last road (all its parallel lanes), for arrival."""
        lane, _, s_end = piece
        end = lane.position(s_end, 0.0)
        reach = lane.width_at(s_end) / 2
        for lanes in (to for d in self.road.network.graph.values() for to in d.values()):
            if lane in lanes:
                for other in lanes:
                    beside = other.position(other.local_coordinates(end)[0], 0.0)
                    reach = max(reach, abs(lane.local_coordinates(beside)[1]) + other.width_at(0) / 2)
        return reach + 1.0

    # -- stepping --------------------------------------------------------------------------------
    def step(self, acceleration: float, steering: float) -> None:
        ego, h = self.ego, 1.0 / SIM_HZ
        ego.crashed = False  # collision is reported per step ("touching now"); keep the ego drivable
        collided = False
        delta = -wheel_angle(float(steering), float(ego.LENGTH))  # highway-env steers right for +
        for _ in range(self._substeps):
            a = float(acceleration) * ACCEL_GAIN
            if a < 0.0:  # brake to a stop, never into reverse
                a = max(a, -max(ego.speed, 0.0) / h)
            ego.action = {"acceleration": a, "steering": delta}
            _substep(self.road, h, ego)
            collided |= bool(ego.crashed)
        self._collided = collided
        if self._env is not None:  # intersection: remove cars that left, spawn new ones (as IntersectionEnv.step)
            self._env.time += self.dt
            self._env._clear_vehicles()
            self._tow_deadlocked()
            self._env._spawn_vehicle(spawn_probability=self._spawn_p)
        elif self.spec.task == "four-lane":
            self._recycle_highway_traffic()
        self._s = self.route.project(_xy(ego.position), self._s - 10.0, self._s + 30.0)[0]

    def _tow_deadlocked(self) -> None:
        """Take away a car that has stood JUNCTION_DEADLOCK_S inside the junction. highway-env's
        junction traffic locks itself up (cars yielding to each other and braking for whoever stands
        in their lane): with the ego parked 40-60 m back, in 13 of 30 development episodes (density
        0.1) three or more cars stood in the junction for the rest of the episode."""
        for v in list(self.road.vehicles):
            if v is self.ego:
                continue
            stood = getattr(v, "_vl_stood", 0.0)
            v._vl_stood = stood + self.dt if v.speed < JUNCTION_CRAWL and v.lane_index[0].startswith("ir") else 0.0
            if v._vl_stood >= JUNCTION_DEADLOCK_S:
                self.road.vehicles.remove(v)

    def vehicles(self) -> Vehicles:
        ego, vs = self.ego, self.road.vehicles
        others = [v for v in vs if v is not ego]
        if others:
            p = np.array([v.position for v in others])
            near = np.nonzero(((p - ego.position) ** 2).sum(1) <= PERCEPTION_M**2)[0]
            sel = [ego] + [others[i] for i in near]
        else:
            sel = [ego]
        pos = np.array([v.position for v in sel]) * _FLIP
        heading = np.array([v.heading for v in sel], dtype=float)
        speed = np.array([v.speed for v in sel], dtype=float)
        steer = np.array([v.action.get("steering", 0.0) if v.action else 0.0 for v in sel], dtype=float)
        course = heading + np.arctan(0.5 * np.tan(steer))  # the bicycle model moves at heading + slip
        velocity = np.stack([speed * np.cos(course), -speed * np.sin(course)], axis=1)
        plan, priority = self._plans(sel) if self._env is not None else (None, None)
        return Vehicles(position=pos, heading=wrap_angle(-heading), velocity=velocity,
                        length=np.array([v.LENGTH for v in sel], dtype=float),
                        width=np.array([v.WIDTH for v in sel], dtype=float), plan=plan, priority=priority)

    def _plans(self, sel: list) -> tuple[np.ndarray, np.ndarray]:
        """Each junction car's planned lanes from where it stands, PLAN_M ahead (Vehicles.plan):
        its turn at the junction, as an indicator shows it. Predicted straight on (constant
        velocity), a car turning from the ego's left swept the ego waiting at the junction's entry
        (development seeds, docs/experts.md); predicted along every lane it may take, the expert
        yielded to turns no car made. And the right of way of the junction lane each takes
        (Vehicles.priority, highway-env's lane priority; the ego's: its turn): highway-env's
        traffic never yields to a car ranked below it, so a standing car ranked above the ego
        sets off (at 6 m/s^2) whatever the ego does."""
        plan = np.full((len(sel), int(PLAN_M / PLAN_STEP_M) + 1, 2), np.nan)
        priority = np.full(len(sel), np.nan)
        net = self.road.network
        for i, v in enumerate(sel):
            if v is self.ego:
                priority[i] = self._ego_priority
                continue
            route = [r[:2] for r in getattr(v, "route", None) or []]  # highway-env pops passed lanes
            if v.lane_index[:2] not in route:
                continue
            k, lane = route.index(v.lane_index[:2]), v.lane
            crossing = [r for r in route[k:] if r[0].startswith("ir")]
            if crossing:
                priority[i] = net.get_lane((*crossing[0], 0)).priority
            s = lane.local_coordinates(v.position)[0]
            for j in range(plan.shape[1]):
                while s > lane.length and k + 1 < len(route):
                    s -= lane.length
                    k += 1
                    lane = net.get_lane((*route[k], 0))
                plan[i, j] = lane.position(s, 0.0)
                s += PLAN_STEP_M
        return plan * _FLIP, priority

    def events(self) -> BackendEvents:
        _, lateral, _ = self.route.project(_xy(self.ego.position), self._s - 10.0, self._s + 30.0)
        arrived = self._s >= self.route.length - 2.0 and abs(lateral) <= self._arrive_lateral
        return BackendEvents(collision=self._collided, off_road=not self.ego.on_road, arrived=bool(arrived))

    def close(self) -> None:
        for env in self._envs.values():
            env.close()
        self._envs.clear()
        self.road = self.ego = None

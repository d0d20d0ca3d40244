"""Backend-level checks that the env tests do not reach: MetaDrive's offline patch, controls, determinism."""

import numpy as np
import pytest

from vlsafe.config import ConfigError
from vlsafe.envs.backends import BackendSpec, make_backend


def test_metadrive_offline_patch_still_applies(monkeypatch):
    from metadrive.engine.base_engine import BaseEngine

    import vlsafe.envs.backends.metadrive as md

    md.patch_offline_assets()
    assert getattr(BaseEngine.__dict__["try_pull_asset"], "__func__", None) is md._no_asset_pull
    monkeypatch.delattr(BaseEngine, "try_pull_asset")
    with pytest.raises(RuntimeError, match="try_pull_asset no longer exists"):
        md.patch_offline_assets()


def test_unknown_backend_lists_valid():
    with pytest.raises(ConfigError, match="unknown backend 'carla'; valid backends: metadrive, highway"):
        make_backend("carla")


@pytest.mark.parametrize("name", ["metadrive", "highway"])
def test_requested_acceleration_is_delivered(name):
    backend = make_backend(name)
    spec = BackendSpec(task="four-lane", traffic_density=0.0, map_seed=0, max_steps=500)
    try:
        backend.reset(spec, seed=0)
        for _ in range(int(2.0 / backend.dt)):  # get rolling
            backend.step(2.0, 0.0)
        v0 = float(backend.vehicles().speed[0])
        n = int(1.0 / backend.dt)
        for _ in range(n):
            backend.step(-2.0, 0.0)
        v1 = float(backend.vehicles().speed[0])
    finally:
        backend.close()
    assert (v1 - v0) / (n * backend.dt) == pytest.approx(-2.0, abs=0.3)


@pytest.mark.parametrize("name", ["metadrive", "highway"])
def test_same_spec_and_seed_same_initial_scene_other_seed_other_traffic(name):
    backend = make_backend(name)
    spec = BackendSpec(task="four-lane", traffic_density=0.3, map_seed=3, max_steps=500)
    try:
        backend.reset(spec, seed=5)
        a = backend.vehicles()
        backend.reset(spec, seed=5)
        b = backend.vehicles()
        backend.reset(spec, seed=6)
        c = backend.vehicles()
    finally:
        backend.close()
    assert np.array_equal(a.position, b.position) and np.array_equal(a.heading, b.heading)
    assert len(a.position) != len(c.position) or not np.array_equal(a.position, c.position)


def test_highway_traffic_passes_through_traffic_and_never_reverses():
    """highway-env's traffic crashes into itself at the junction and its wrecks stand there for good;
    and IDM braking for a car just ahead drives a standing car backwards into whoever waits behind
    it. Only the ego's collisions are simulated, and traffic speeds stop at zero (see `_substep`)."""
    backend = make_backend("highway")
    try:
        backend.reset(BackendSpec(task="left-turn", traffic_density=0.1, map_seed=0, max_steps=500), seed=0)
        road, ego = backend.road, backend.ego
        far = [v for v in road.vehicles if v is not ego and np.linalg.norm(v.position - ego.position) > 30]
        assert len(far) >= 3, "the junction should start with traffic away from the ego"
        a, b, c = far[:3]
        b.position = a.position + np.array([0.5, 0.0])  # b on top of a
        s = a.lane.local_coordinates(a.position)[0]
        c.lane_index, c.lane = a.lane_index, a.lane  # c stands 1 m (bumper to bumper) ahead of a, in a's lane
        c.position, c.heading = a.lane.position(s + a.LENGTH + 1.0, 0.0), a.lane.heading_at(s + a.LENGTH + 1.0)
        a.speed = c.speed = 0.0
        c.target_speed = 0.0
        speeds = []
        for _ in range(10):
            backend.step(0.0, 0.0)
            speeds.append(a.speed)
        assert not a.crashed and not b.crashed
        assert min(speeds) >= 0.0
    finally:
        backend.close()

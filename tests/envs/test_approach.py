"""The derived approach columns: when and how close each car passes the ego at constant velocities."""

from __future__ import annotations

import numpy as np

from vlsafe.envs.observation import APPROACH_COLUMNS, APPROACH_HORIZON_S, EGO_SIZE, NEAREST_K, VECTOR_SIZE, with_approach


def _vector(*cars):
    """A stored vector with cars given as (forward m, left m, Δv forward m/s, Δv left m/s)."""
    v = np.zeros(VECTOR_SIZE, np.float32)
    for k, (x, y, vx, vy) in enumerate(cars):
        v[EGO_SIZE + 7 * k: EGO_SIZE + 7 * k + 7] = [1, x / 32, y / 32, vx / 10, vy / 10, 1, 0]
    return v


def test_a_crossing_car_far_away_is_on_a_collision_course():
    # the ego drives at 6 m/s; a car 30 m ahead and 20 m left crosses at 4 m/s towards the ego's path:
    # relative to the ego it moves (−6, −4) m/s and meets it at t = 5 s, exactly (r = −5·Δv)
    ahead_same_speed = (10.0, 3.5, 0.0, 0.0)  # a car in the next lane going the ego's way: no approach
    crossing = (30.0, 20.0, -6.0, -4.0)
    out = with_approach(_vector(ahead_same_speed, crossing))
    assert out.shape == (VECTOR_SIZE + 2 * NEAREST_K + 2,) and len(APPROACH_COLUMNS) == 2 * NEAREST_K + 2
    np.testing.assert_array_equal(out[:VECTOR_SIZE], _vector(ahead_same_speed, crossing))  # the stored 70 unchanged
    per_car = out[VECTOR_SIZE:VECTOR_SIZE + 2 * NEAREST_K].reshape(NEAREST_K, 2)
    np.testing.assert_allclose(per_car[0], [0.0, np.hypot(10, 3.5) / 32], atol=1e-6)  # no relative motion: now, here
    np.testing.assert_allclose(per_car[1], [5.0 / APPROACH_HORIZON_S, 0.0], atol=1e-5)  # a hit in 5 s
    np.testing.assert_array_equal(per_car[2:], 1.0)  # no car in the other slots: far and late
    np.testing.assert_allclose(out[-2:], per_car[1], atol=1e-6)  # the car that comes closest is the crossing one


def test_receding_and_late_cars_and_batches():
    receding = (-8.0, 0.0, -3.0, 0.0)  # behind, falling back: nearest now
    late = (100.0, 0.0, -10.0, 0.0)  # would meet in 10 s, beyond the horizon: clipped to it, 40 m away then
    batch = np.stack([_vector(receding), _vector(late), _vector()])
    out = with_approach(batch)
    assert out.shape == (3, VECTOR_SIZE + 2 * NEAREST_K + 2)
    np.testing.assert_allclose(out[0, VECTOR_SIZE:VECTOR_SIZE + 2], [0.0, 8.0 / 32], atol=1e-6)
    np.testing.assert_allclose(out[1, VECTOR_SIZE:VECTOR_SIZE + 2], [1.0, 1.0], atol=1e-6)  # 40 m caps at 32
    np.testing.assert_array_equal(out[2, VECTOR_SIZE:], 1.0)
    no_vector = np.zeros((5, 0), np.float32)  # a dataset recorded without the vector observation
    assert with_approach(no_vector).shape == (5, 0)

import numpy as np
import pytest

from tests.conftest import vehicles
from vlsafe.envs.bev import COLORS, BEVConfig, BEVRasterizer


def mask(img, name):
    return (img == np.array(COLORS[name], np.uint8)).all(-1)


@pytest.mark.parametrize("size", [64, 128, 224])
def test_ego_red_at_centre_heading_up(road, route, size):
    r = BEVRasterizer(BEVConfig(size=size))
    img = r.draw(road, route, vehicles([(50, -5.25, 0.0, 5, 0)]))
    assert img.shape == (size, size, 3) and img.dtype == np.uint8
    red = np.argwhere(mask(img, "ego"))
    centre = (size - 1) / 2
    assert abs(red[:, 0].mean() - centre) < 1 and abs(red[:, 1].mean() - centre) < 1
    # heading-up: the 4.5 m x 2 m car is taller than wide in the picture
    assert np.ptp(red[:, 0]) > 1.8 * np.ptp(red[:, 1])
    assert mask(img, "route").any() and mask(img, "road").any() and mask(img, "line_solid").any()


def test_other_vehicle_ahead_is_green_above_ego_and_left_is_left(road, route):
    r = BEVRasterizer(BEVConfig(size=128))
    # one car 10 m ahead, one car 3.5 m to the left (y larger = left when heading +x)
    img = r.draw(road, route, vehicles([(50, -5.25, 0, 5, 0), (60, -5.25, 0, 5, 0), (50, -1.75, 0, 5, 0)]))
    green = np.argwhere(mask(img, "vehicle"))
    ahead = green[green[:, 0] < 50]
    left = green[(green[:, 0] > 54) & (green[:, 0] < 74)]
    ppm = 128 / 32
    assert abs(ahead[:, 0].mean() - (63.5 - 10 * ppm)) < 1.5
    assert abs(left[:, 1].mean() - (63.5 - 3.5 * ppm)) < 1.5


def test_same_scene_same_picture_and_rotation_follows_heading(road, route):
    a = BEVRasterizer(BEVConfig(size=64))
    b = BEVRasterizer(BEVConfig(size=64))
    scene = vehicles([(80, -5.25, 0.3, 5, 0), (90, -8.75, 0.0, 5, 0)])
    first = a.draw(road, route, scene)
    # different history must not change the picture of the same scene
    for x in np.linspace(0, 200, 40):
        a.draw(road, route, vehicles([(x, -5.25, 0.0, 5, 0)]))
    assert np.array_equal(first, a.draw(road, route, scene))
    assert np.array_equal(first, b.draw(road, route, scene))
    # turning the ego left turns the world right in its picture: the picture changes
    assert not np.array_equal(first, a.draw(road, route, vehicles([(80, -5.25, 0.0, 5, 0), (90, -8.75, 0.0, 5, 0)])))


def test_off_map_is_background(road, route):
    img = BEVRasterizer(BEVConfig(size=64)).draw(road, route, vehicles([(50, 200.0, 0.0, 0, 0)]))
    assert mask(img, "background").sum() == 64 * 64 - mask(img, "ego").sum()


def test_colours_are_pinned_and_a_rotated_ego_still_points_up(road, route):
    """The VLM captions and the README name these exact colours; the world turns, the ego does not."""
    assert (COLORS["ego"], COLORS["vehicle"], COLORS["route"]) == ((255, 0, 0), (0, 255, 0), (0, 0, 255))
    r = BEVRasterizer(BEVConfig(size=128))
    ppm = 128 / 32
    # ego heading north (+y); one car 10 m north (ahead), one 10 m west (to its left)
    img = r.draw(road, route, vehicles([(50, -5.25, np.pi / 2, 0, 5), (50, 4.75, np.pi / 2, 0, 5),
                                        (40, -5.25, np.pi / 2, 0, 5)]))
    red = np.argwhere((img == (255, 0, 0)).all(-1))
    assert abs(red[:, 0].mean() - 63.5) < 1 and abs(red[:, 1].mean() - 63.5) < 1
    assert np.ptp(red[:, 0]) > 1.8 * np.ptp(red[:, 1])  # still taller than wide: heading up
    green = np.argwhere((img == (0, 255, 0)).all(-1))
    ahead, left = green[green[:, 0] < 50], green[green[:, 0] >= 50]
    assert abs(ahead[:, 0].mean() - (63.5 - 10 * ppm)) < 1.5 and abs(ahead[:, 1].mean() - 63.5) < 1.5
    assert abs(left[:, 1].mean() - (63.5 - 10 * ppm)) < 1.5 and abs(left[:, 0].mean() - 63.5) < 1.5
    # the east-west road now runs across the picture: the blue route is a horizontal band through the ego
    blue = np.argwhere((img == (0, 0, 255)).all(-1))
    assert np.ptp(blue[:, 1]) > 4 * np.ptp(blue[:, 0]) and abs(blue[:, 0].mean() - 63.5) < 3


def test_motion_draws_where_each_car_goes_and_off_is_the_old_picture(road, route):
    """`motion_s` shows velocity in one frame: a car 7 m ahead driving at 4 m/s sweeps 4 m further
    up in 1 s; the same car standing sweeps nothing; with motion_s=0 the picture is unchanged."""
    ppm = 128 / 32
    moving = vehicles([(50, -5.25, 0, 2, 0), (57, -5.25, 0, 4, 0)])
    standing = vehicles([(50, -5.25, 0, 2, 0), (57, -5.25, 0, 0, 0)])
    plain = BEVRasterizer(BEVConfig(size=128))
    motion = BEVRasterizer(BEVConfig(size=128, motion_s=1.0))
    assert not mask(plain.draw(road, route, moving), "vehicle_motion").any()
    img = motion.draw(road, route, moving)
    ghost = np.argwhere(mask(img, "vehicle_motion"))
    car = np.argwhere(mask(img, "vehicle"))
    # the swept area lies above (ahead of) the car, and reaches 4 m beyond its front
    assert ghost[:, 0].max() <= car[:, 0].min() and car[:, 0].min() - ghost[:, 0].min() == pytest.approx(4 * ppm, abs=1.5)
    assert mask(img, "ego_motion").sum() > 0  # the ego at 2 m/s sweeps 2 m too
    still = motion.draw(road, route, standing)
    assert not mask(still, "vehicle_motion").any()
    # with motion drawn, speed is in the picture: two scenes that differ only in speed differ
    assert not np.array_equal(img, still) and np.array_equal(plain.draw(road, route, moving), plain.draw(road, route, moving))
    # cars are painted over their own swept area, so the car itself looks as before
    assert np.array_equal(mask(img, "vehicle"), mask(plain.draw(road, route, moving), "vehicle"))


def test_motion_out_of_range_is_refused():
    from vlsafe.config import ConfigError

    with pytest.raises(ConfigError, match="bev.motion_s"):
        BEVConfig(motion_s=-1)

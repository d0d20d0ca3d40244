"""Scripted driving experts that produce the offline data."""

from vlsafe.experts.route_follower import RouteFollower, RouteFollowerConfig

__all__ = ["RouteFollower", "RouteFollowerConfig"]

"""The paper's ten episode metrics, computed in one place for every evaluation in vlsafe.

Units (PAPER.md leaves them open; these are ours, fixed here):

| name   | meaning                            | per episode                       | across episodes                        |
|--------|------------------------------------|-----------------------------------|----------------------------------------|
| Return | sum of rewards                     | sum                               | mean                                   |
| Cost   | sum of per-step costs              | sum                               | mean                                   |
| AS     | average speed, m/s                 | mean over steps                   | mean                                   |
| WC     | waypoints completed (count)        | route waypoints passed            | mean                                   |
| TD     | travel distance, m                 | path length driven                | mean                                   |
| AR     | arrive rate, 0..1                  | 1 if the destination was reached  | mean                                   |
| CR     | collision rate, 0..1               | 1 if any collision happened       | mean                                   |
| TCF    | collisions per 100 s of driving    | events / time * 100               | pooled: all events / all time * 100    |
| DCF    | collisions per km driven           | events / distance * 1000          | pooled: all events / all distance      |
| CS     | speed at collision, m/s            | mean ego speed at collision onset | mean over all collision events         |

A collision *event* is the first step of a contact (a rising edge of `info["collision"]`), so
a car pinned against another for ten steps counts once. CS is NaN when nothing collided.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

__all__ = ["METRICS", "UNITS", "EpisodeMetrics", "EpisodeMeter", "episode_metrics", "aggregate", "format_table"]

METRICS = ("Return", "Cost", "AS", "WC", "TD", "AR", "CR", "TCF", "DCF", "CS")
UNITS = {"Return": "", "Cost": "", "AS": "m/s", "WC": "count", "TD": "m", "AR": "0-1", "CR": "0-1",
         "TCF": "1/100s", "DCF": "1/km", "CS": "m/s"}


@dataclass(frozen=True)
class EpisodeMetrics:
    Return: float
    Cost: float
    AS: float
    WC: float
    TD: float
    AR: float
    CR: float
    TCF: float
    DCF: float
    CS: float
    # raw totals kept so that pooled rates across episodes are exact
    steps: int = 0
    time_s: float = 0.0
    collisions: int = 0
    collision_speeds: tuple[float, ...] = field(default_factory=tuple)

    def as_row(self) -> dict[str, float]:
        return {k: getattr(self, k) for k in METRICS}


def episode_metrics(rewards: Sequence[float], costs: Sequence[float], speeds: Sequence[float],
                    collisions: Sequence[bool], dt: float, distance: float, waypoints: int,
                    arrived: bool) -> EpisodeMetrics:
    """Metrics of one episode from its per-step arrays (as stored in datasets) and final totals."""
    rewards, costs, speeds = (np.asarray(x, dtype=np.float64) for x in (rewards, costs, speeds))
    coll = np.asarray(collisions, dtype=bool)
    n = len(rewards)
    assert len(costs) == n and len(speeds) == n and len(coll) == n, (
        f"per-step arrays must have equal length: rewards {n}, costs {len(costs)}, speeds {len(speeds)}, "
        f"collisions {len(coll)}")
    onsets = coll & ~np.concatenate([[False], coll[:-1]])
    events = int(onsets.sum())
    time_s = n * dt
    cs = tuple(float(v) for v in speeds[onsets])
    return EpisodeMetrics(
        Return=float(rewards.sum()), Cost=float(costs.sum()), AS=float(speeds.mean()) if n else 0.0,
        WC=float(waypoints), TD=float(distance), AR=float(bool(arrived)), CR=float(events > 0),
        TCF=events / time_s * 100.0 if time_s > 0 else 0.0,
        DCF=events / distance * 1000.0 if distance > 0 else (math.inf if events else 0.0),
        CS=float(np.mean(cs)) if cs else math.nan,
        steps=n, time_s=time_s, collisions=events, collision_speeds=cs,
    )


class EpisodeMeter:
    """Accumulates one episode from `env.step` results; `result()` gives its EpisodeMetrics."""

    def __init__(self, dt: float):
        self.dt = dt
        self.rewards: list[float] = []
        self.costs: list[float] = []
        self.speeds: list[float] = []
        self.collisions: list[bool] = []
        self.last_info: Mapping[str, Any] = {}

    def add(self, reward: float, info: Mapping[str, Any]) -> None:
        self.rewards.append(float(reward))
        self.costs.append(float(info["cost"]))
        self.speeds.append(float(info["speed"]))
        self.collisions.append(bool(info["collision"]))
        self.last_info = info

    def result(self) -> EpisodeMetrics:
        info = self.last_info
        return episode_metrics(self.rewards, self.costs, self.speeds, self.collisions, self.dt,
                               float(info.get("distance", 0.0)), int(info.get("waypoints", 0)),
                               bool(info.get("arrived", False)))


def aggregate(episodes: Iterable[EpisodeMetrics]) -> dict[str, float]:
    """One Table-I row over episodes: means, and pooled rates for TCF/DCF/CS (see module doc)."""
    eps = list(episodes)
    if not eps:
        raise ValueError("aggregate: no episodes given")
    row = {k: float(np.mean([getattr(e, k) for e in eps])) for k in ("Return", "Cost", "AS", "WC", "TD", "AR", "CR")}
    events = sum(e.collisions for e in eps)
    time_s = sum(e.time_s for e in eps)
    dist = sum(e.TD for e in eps)
    speeds = [s for e in eps for s in e.collision_speeds]
    row["TCF"] = events / time_s * 100.0 if time_s > 0 else 0.0
    row["DCF"] = events / dist * 1000.0 if dist > 0 else (math.inf if events else 0.0)
    row["CS"] = float(np.mean(speeds)) if speeds else math.nan
    row["episodes"] = float(len(eps))
    return row


def format_table(rows: Mapping[str, Mapping[str, float]],
                 intervals: Mapping[str, Mapping[str, tuple[float, float]]] | None = None) -> str:
    """A Markdown table, one row per name, columns the ten metrics with units; `intervals`
    (name -> metric -> (lo, hi)) adds ' [lo, hi]' after each value that has one."""
    head = "| | " + " | ".join(f"{m} ({UNITS[m]})" if UNITS[m] else m for m in METRICS) + " | episodes |"
    lines = [head, "|" + "---|" * (len(METRICS) + 2)]
    for name, row in rows.items():
        cells = []
        for m in METRICS:
            v = row[m]
            if v is None or (isinstance(v, float) and math.isnan(v)):
                cells.append("–")
                continue
            lo, hi = (intervals or {}).get(name, {}).get(m, (None, None))
            has_ci = lo is not None and not math.isnan(lo)
            cells.append(f"{v:.3g} [{lo:.3g}, {hi:.3g}]" if has_ci else f"{v:.3g}")
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {int(row.get('episodes', 1))} |")
    return "\n".join(lines)


def to_json(m: EpisodeMetrics) -> dict[str, Any]:
    d = asdict(m)
    d["collision_speeds"] = list(d["collision_speeds"])
    return d

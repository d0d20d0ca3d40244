"""Paired differences between two `vlsafe benchmark` results that differ in one setting (an ablation).

Two benchmark runs of the same grid, one with a change (e.g. `--set data.task_overrides=action=continuous`),
evaluated on the same episode seeds: rows are paired by (task, method, fraction, condition, actor,
training seed, episode seed), and each group's B − A difference gets a bootstrap interval over
its pairs (vlsafe.evaluation.evaluate.paired_difference). Also prints how the episodes end.

    python scripts/ablation.py runs/bench/a/results runs/bench/b/results [--metrics AR,CR,Return]
"""

from __future__ import annotations

import argparse
import csv
from collections import Counter, defaultdict
from pathlib import Path

from vlsafe.evaluation.evaluate import paired_difference
from vlsafe.evaluation.metrics import EpisodeMetrics, aggregate

KEY = ("task", "method", "fraction", "condition", "actor")
DT = 0.1  # s per step (MetaDrive and highway-env tasks)
NUM = ("Return", "Cost", "AS", "WC", "TD", "AR", "CR", "TCF", "DCF", "CS", "steps", "collisions")


def read(path: Path) -> dict[tuple, dict[tuple, dict]]:
    csv_path = path / "episodes.csv" if path.is_dir() else path
    groups: dict[tuple, dict[tuple, dict]] = defaultdict(dict)
    with open(csv_path) as f:
        for row in csv.DictReader(f):
            v = {k: (float(row[k]) if row[k] not in ("", "None") else None) for k in NUM}
            n = int(v["collisions"] or 0)
            ep = EpisodeMetrics(**{k: v[k] if v[k] is not None else float("nan") for k in NUM[:10]},
                                steps=int(v["steps"]), time_s=DT * v["steps"], collisions=n,
                                collision_speeds=(v["CS"],) * n if n and v["CS"] is not None else ())
            groups[tuple(row[k] for k in KEY)][(row["train_seed"], row["episode_seed"])] = ep
    return groups


def interval(d: dict, m: str) -> str:
    """A paired difference of metric m with its interval: '+0.1 [-0.03, +0.23]'."""
    return f"{d[m]['diff']:+.3g} [{d[m]['lo']:+.3g}, {d[m]['hi']:+.3g}]"


def ending(ep: EpisodeMetrics, max_steps: float) -> str:
    if ep.AR:
        return "arrived"
    if ep.CR:
        return "crash"
    return "timeout" if ep.steps >= max_steps else "off-road"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("a", type=Path, help="reference results (folder with episodes.csv)")
    ap.add_argument("b", type=Path, help="changed results")
    ap.add_argument("--metrics", default="AR,CR,Return")
    args = ap.parse_args()
    A, B = read(args.a), read(args.b)
    metrics = args.metrics.split(",")
    print("| task | method | n | " + " | ".join(f"{m} A → B" for m in metrics) + " | "
          + " | ".join(f"Δ{m} [95%]" for m in metrics) + " | endings A (arr/crash/off/time) | endings B |")
    print("|---" * (3 + 2 * len(metrics) + 2) + "|")
    for key in sorted(set(A) & set(B)):
        pairs = sorted(set(A[key]) & set(B[key]))
        if not pairs:
            continue
        a, b = [A[key][p] for p in pairs], [B[key][p] for p in pairs]
        d = paired_difference(b, a)
        ma, mb = aggregate(a), aggregate(b)
        longest = max(e.steps for e in a + b)
        ends = [Counter(ending(e, longest) for e in x) for x in (a, b)]
        fmt = lambda c: "/".join(str(c[k]) for k in ("arrived", "crash", "off-road", "timeout"))  # noqa: E731
        print(f"| {key[0]} | {key[1]} | {len(pairs)} | "
              + " | ".join(f"{ma[m]:.3g} → {mb[m]:.3g}" for m in metrics) + " | "
              + " | ".join(interval(d, m) for m in metrics)
              + f" | {fmt(ends[0])} | {fmt(ends[1])} |")


if __name__ == "__main__":
    main()

"""A finished grid as data: one tidy row per (cell, condition, episode), summaries with 95% bootstrap
intervals, paired differences against the reference method, and rliable's aggregates across tasks.

Statistics are not hand-rolled: per-cell intervals and paired differences are `vlsafe eval`'s
own bootstrap (the same `aggregate` that makes its tables), and the cross-task aggregates (IQM
with stratified-bootstrap intervals, probability of improvement) come from rliable, on the
DSRL-normalised reward and cost of each training run.
"""

from __future__ import annotations

import csv
import json
import math
import platform
from collections import defaultdict
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from vlsafe.benchmark.cells import OUTPUT, read_done
from vlsafe.benchmark.grid import Cell
from vlsafe.evaluation.compare import _episode
from vlsafe.evaluation.evaluate import bootstrap_ci, paired_difference
from vlsafe.evaluation.metrics import METRICS, aggregate
from vlsafe.evaluation.normalised import references
from vlsafe.runlog import dumps

__all__ = ["collect_results", "write_results", "pool_results", "COLUMNS", "GROUP"]

GROUP = ("task", "backend", "method", "fraction", "condition", "actor")
COLUMNS = GROUP + ("budget", "train_seed", "episode_seed", "eval_backend", "eval_variant") + METRICS + (
    "steps", "collisions", "reward_norm", "cost_norm", "cell")
DIFF_METRICS = ("Return", "Cost", "AR", "CR")


def _norm(refs: dict, task: str, backend: str, ret: float, cost: float, threshold: float) -> tuple[float, float]:
    ref = refs.get(f"{task}@{backend}")
    if ref is None:
        return math.nan, math.nan
    return (ret - ref["random"]) / (ref["expert"] - ref["random"]), cost / threshold if threshold > 0 else math.nan


def collect_results(cells: list[Cell], root: Path) -> list[dict[str, Any]]:
    """The tidy episode rows of every finished eval cell of the grid."""
    rows, refs = [], references()
    for c in cells:
        if c.kind != "eval":
            continue
        folder = root / "cells" / c.folder
        if read_done(folder) is None:
            continue
        rep = json.loads((folder / OUTPUT["eval"] / "eval.json").read_text())
        s = c.spec
        task, backend = c.name.split("/")[1].split("@")
        policy = c.needs[0].spec
        budget = policy["steps"] if "task" in policy else ""
        for run in rep["runs"]:
            for seed, ep in zip(rep["seeds"], rep["episodes"][run]):
                rn, cn = _norm(refs, task, rep["backend"], ep["Return"], ep["Cost"], s["cost_threshold"])
                rows.append({"task": task, "backend": backend, "method": s["method"],
                             "fraction": "" if s["fraction"] is None else s["fraction"], "condition": s["condition"],
                             "actor": s["actor"], "budget": budget, "train_seed": s["seed"], "episode_seed": seed,
                             "eval_backend": rep["backend"], "eval_variant": rep["variant"],
                             **{m: ep[m] for m in METRICS}, "steps": ep["steps"], "collisions": ep["collisions"],
                             "reward_norm": rn, "cost_norm": cn, "cell": c.key, "_episode": ep})
    return rows


def _f(x: Any) -> Any:
    return None if x is None or (isinstance(x, float) and not math.isfinite(x)) else x


def _nanmean(values: list[float]) -> float:
    """The mean of the finite values; NaN, without numpy's empty-slice warning, where there are none
    (a task-backend pair with no DSRL reference, e.g. cross-sim rows)."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    return float(v.mean()) if v.size else math.nan


def _groups(rows: list[dict]) -> dict[tuple, list[dict]]:
    out: dict[tuple, list[dict]] = defaultdict(list)
    for r in rows:
        out[tuple(r[k] for k in GROUP)].append(r)
    for v in out.values():
        v.sort(key=lambda r: (r["train_seed"], r["episode_seed"]))
    return out


def summaries(rows: list[dict], reference: str, n_boot: int = 1000) -> tuple[list[dict], list[dict]]:
    """Per (task, method, fraction, condition, actor): the ten metrics pooled over training seeds and
    episodes with 95% intervals; and each method's paired difference to `reference` on the same
    (training seed, episode seed) pairs."""
    groups = _groups(rows)
    summary, paired = [], []
    for key, rs in sorted(groups.items(), key=lambda kv: tuple(str(x) for x in kv[0])):
        eps = [_episode(r["_episode"]) for r in rs]
        row = dict(zip(GROUP, key))
        ci = bootstrap_ci(eps, n=n_boot)
        row.update(episodes=len(eps), seeds=sorted({r["train_seed"] for r in rs}), budget=rs[0]["budget"],
                   metrics={m: _f(v) for m, v in aggregate(eps).items()},
                   ci95={m: [_f(a), _f(b)] for m, (a, b) in ci.items()},
                   reward_norm=_f(_nanmean([r["reward_norm"] for r in rs])),
                   cost_norm=_f(_nanmean([r["cost_norm"] for r in rs])))
        summary.append(row)
        if row["method"] == reference:
            continue
        frac = row["fraction"] if row["fraction"] != "" else 1.0
        ref_key = (row["task"], row["backend"], reference, frac, row["condition"], row["actor"])
        ref = {(r["train_seed"], r["episode_seed"]): r for r in groups.get(ref_key, [])}
        pairs = [(ref[(r["train_seed"], r["episode_seed"])], r) for r in rs if (r["train_seed"], r["episode_seed"]) in ref]
        if not pairs:
            continue
        diff = paired_difference([_episode(b["_episode"]) for _, b in pairs], [_episode(a["_episode"]) for a, _ in pairs],
                                 n=n_boot)  # method - reference
        paired.append({**dict(zip(GROUP, key)), "reference": reference, "pairs": len(pairs),
                       "minus_reference": {m: {k: _f(v) for k, v in diff[m].items()} for m in DIFF_METRICS}})
    return summary, paired


@contextmanager
def _seeded_global_rng(seed: int = 0):
    """numpy's global RNG seeded for the block and restored after it. rliable 1.2.0's stratified
    bootstrap draws its indices from np.random.choice, whatever `random_state` it is handed."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


def rliable_aggregates(rows: list[dict], methods: list[str], reference: str, reps: int = 2000) -> list[dict]:
    """Across tasks, per (fraction, condition, actor): IQM of the normalised reward and cost per
    training run with stratified-bootstrap 95% intervals, and the probability that the reference
    improves on each other method (higher reward; lower cost), both from rliable. Stratified over
    the training seeds that every task has (runs pooled from grids of different seeds: their common
    ones), and only for the methods that have all of them. The bootstrap draws from a fixed seed, so
    a remade report (`vlsafe report`) prints the same intervals."""
    from rliable import library as rly
    from rliable import metrics as rlm

    runs: dict[tuple, dict[tuple, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        frac = r["fraction"] if r["fraction"] != "" else 1.0
        runs[(frac, r["condition"], r["actor"])][(r["method"], r["task"], r["train_seed"])].append(
            (r["reward_norm"], r["cost_norm"]))
    out = []
    for (frac, cond, actor), per_run in sorted(runs.items(), key=lambda kv: tuple(str(x) for x in kv[0])):
        tasks = sorted({t for (_, t, _) in per_run})
        seeds = sorted(set.intersection(*({s for (_, t2, s) in per_run if t2 == t} for t in tasks)))
        if not seeds:
            continue
        scores: dict[str, dict[str, np.ndarray]] = {"reward": {}, "cost": {}}
        for m in methods:
            if not all((m, t, s) in per_run for t in tasks for s in seeds):
                continue  # a method missing a task or seed here cannot be stratified with the others
            arr = np.array([[np.mean(per_run[(m, t, s)], axis=0) for t in tasks] for s in seeds])  # seeds x tasks x 2
            if not np.isfinite(arr).all():
                continue  # a task without DSRL references
            scores["reward"][m], scores["cost"][m] = arr[..., 0], arr[..., 1]
        if not scores["reward"]:
            continue
        entry: dict[str, Any] = {"fraction": frac, "condition": cond, "actor": actor, "tasks": tasks, "runs": len(seeds)}
        iqm = lambda x: np.array([rlm.aggregate_iqm(x)])  # noqa: E731
        for what in ("reward", "cost"):
            with _seeded_global_rng():
                point, ci = rly.get_interval_estimates(scores[what], iqm, reps=reps)
            entry[f"iqm_{what}"] = {m: {"value": float(np.ravel(point[m])[0]), "ci95": [float(x) for x in np.ravel(ci[m])]}
                                    for m in point}
        if reference in scores["reward"]:
            poi: dict[str, Any] = {}
            for what, sign in (("reward", 1.0), ("cost", -1.0)):
                pairs = {f"{reference},{m}": (sign * scores[what][reference], sign * scores[what][m])
                         for m in scores[what] if m != reference}
                if pairs:
                    with _seeded_global_rng():
                        point, ci = rly.get_interval_estimates(pairs, rlm.probability_of_improvement, reps=reps)
                    poi[what] = {k.split(",")[1]: {"value": float(np.ravel(point[k])[0]),
                                                "ci95": [float(x) for x in np.ravel(ci[k])]} for k in point}
            entry["probability_of_improvement"] = poi
        out.append(entry)
    return out


def versions() -> dict[str, str]:
    from vlsafe.manifest import code_version

    found = {"python": platform.python_version(), "vlsafe": code_version()}
    for name in ("torch", "numpy", "metadrive-simulator", "highway-env", "d3rlpy", "rliable"):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return found


def write_results(cells: list[Cell], root: Path, config: dict[str, Any], command: str, wall_s: float,
                  n_boot: int = 1000, reps: int = 2000) -> Path:
    """Write `root/results/`: episodes.csv (tidy), summary.json (everything the report shows)."""
    out = root / "results"
    out.mkdir(parents=True, exist_ok=True)
    _write_tables(out, collect_results(cells, root), config, command, wall_s, _cell_records(cells, root), n_boot, reps)
    return out


def _write_tables(out: Path, rows: list[dict[str, Any]], config: dict[str, Any], command: str, wall_s: float,
                  cells: list[dict[str, Any]], n_boot: int, reps: int) -> None:
    """episodes.csv and summary.json of `rows` in `out`, each written whole or not at all."""
    tmp = out / "episodes.csv.tmp"
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if isinstance(r[k], float) and not math.isfinite(r[k]) else r[k]) for k in COLUMNS})
    tmp.replace(out / "episodes.csv")
    summary, paired = summaries(rows, config["reference"], n_boot)
    present = [m for m in config["methods"] if any(r["method"] == m for r in rows)]
    data = {"command": command, "config": config, "versions": versions(), "wall_s": wall_s,
            "summary": summary, "paired": paired,
            "aggregate": rliable_aggregates(rows, present, config["reference"], reps) if rows else [],
            "cells": cells, "references": references()}
    tmp = out / "summary.json.tmp"
    tmp.write_text(dumps(data, indent=1))
    tmp.replace(out / "summary.json")


def pool_results(roots: list[str | Path], out: str | Path, reference: str | None = None,
                 n_boot: int = 1000, reps: int = 2000) -> Path:
    """One results folder (episodes.csv, summary.json) from several finished benchmark folders, as if
    one grid had run them all: a second run that adds methods or tasks over the first one's cached
    data and world models. Each input's cells are read again (the episodes' exact totals), never
    its summary; an episode that two inputs both hold is refused, as is an input with no results.
    `reference`: the paired differences' method (default: the first input's)."""
    from vlsafe.benchmark.config import BenchmarkConfig
    from vlsafe.benchmark.grid import expand
    from vlsafe.config import ConfigError, from_dict, to_dict

    if len(roots) < 2:
        raise ConfigError("pool: expected two or more benchmark folders")
    rows, cells, configs, commands, wall = [], [], [], [], 0.0
    seen: dict[tuple, str] = {}
    for root in map(Path, roots):
        meta = root / "benchmark.json"
        if not meta.is_file():
            raise ConfigError(f"{meta}: not found (pool reads benchmark folders that hold their cells)")
        try:
            bench = json.loads(meta.read_text())
            cfg = from_dict(BenchmarkConfig, bench["config"])
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as err:
            raise ConfigError(f"{meta}: not written by vlsafe benchmark ({err})") from None
        grid = expand(cfg)
        got = collect_results(grid, root)
        if not got:
            raise ConfigError(f"{root}: no finished evaluation cell to pool")
        for r in got:
            key = tuple(r[k] for k in GROUP) + (r["train_seed"], r["episode_seed"])
            if key in seen:
                raise ConfigError(f"{root}: episode {dict(zip(GROUP + ('train_seed', 'episode_seed'), key))} is also "
                                  f"in {seen[key]}")
            seen[key] = str(root)
        rows += got
        known = {c["key"] for c in cells}  # the runs' shared cells (data, world models) once
        cells += [c for c in _cell_records(grid, root) if c["key"] not in known]
        configs.append(to_dict(cfg))
        commands.append(bench.get("command", f"vlsafe benchmark --out {root}"))
        done = root / "results" / "summary.json"
        wall += json.loads(done.read_text()).get("wall_s", 0.0) if done.is_file() else 0.0
    first = dict(configs[0])
    for field in ("tasks", "methods", "seeds", "fractions", "conditions"):
        first[field] = list(dict.fromkeys(x for c in configs for x in c[field]))
    first["reference"] = reference or configs[0]["reference"]
    if first["reference"] not in first["methods"]:
        raise ConfigError(f"--reference: {first['reference']!r} is not among the pooled methods {first['methods']}")
    first["pooled"] = [{"root": str(r), "command": c, "config": cf} for r, c, cf in zip(roots, commands, configs)]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _write_tables(out, rows, first, " && ".join(commands), wall, cells, n_boot, reps)
    return out


def _cell_records(cells: list[Cell], root: Path) -> list[dict[str, Any]]:
    """Each cell's name, kind, commands, wall time, and what the report plots from it (training
    curves, label quality, videos), copied here so the results folder stands on its own."""
    recs = []
    for c in cells:
        folder = root / "cells" / c.folder
        done = read_done(folder)
        if done is None:
            continue
        rec = {k: done[k] for k in ("name", "kind", "key", "commands", "wall_s", "finished", "code_version")}
        art = folder / OUTPUT[c.kind]
        if c.kind in ("wm", "policy") and (art / "metrics.jsonl").exists():
            rec["curve"] = _curve(art / "metrics.jsonl", "wm/loss" if c.kind == "wm" else None)
        if c.kind == "subset":
            for p in sorted((art / "labels").glob("*.json")):
                rec["label_quality"] = json.loads(p.read_text()).get("quality")
        if c.kind == "eval":
            rep = json.loads((art / "eval.json").read_text())
            rec["videos"] = {k: str(Path(v["path"]).resolve()) for k in ("best", "worst")
                             if (v := rep.get(f"video_{k}")) and Path(v["path"]).exists()}
        recs.append(rec)
    return recs


def _curve(path: Path, key: str | None, points: int = 60) -> dict[str, list]:
    """A training curve, thinned to about `points` points: the world model's loss, or a policy's
    (or library baseline's) first loss-like metric."""
    steps, values, name = [], [], key
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if name is None:
            name = next((k for k in ("critic/loss", "behaviour/loss", "loss", "actor/loss") if k in row), None)
            name = name or next((k for k in row if "loss" in k), None)
        if name in row and row[name] is not None and "step" in row:
            steps.append(row["step"])
            values.append(row[name])
    keep = np.unique(np.linspace(0, len(steps) - 1, min(points, len(steps))).astype(int)) if steps else []
    return {"metric": name, "step": [steps[i] for i in keep], "value": [values[i] for i in keep]}

"""The benchmark config expanded into cells: one plain `vlsafe` run each, with the cells it needs.

Every cell is named by what it is (`wm/left-turn@metadrive/f0.3`) and keyed by a hash of its
resolved spec and of its inputs' keys: a cell whose config or inputs change is a new cell in a
new folder, and one whose key is already finished on disk is never run again.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from vlsafe.benchmark.config import IN_HOUSE, MAP_VARIETY, OFFLINE_LIBRARY, ONLINE_LIBRARY, BenchmarkConfig

__all__ = ["Cell", "expand", "KINDS"]

KINDS = ("data", "subset", "wm", "policy", "eval")


@dataclass
class Cell:
    kind: str
    name: str  # human-readable and unique within a grid
    spec: dict[str, Any]  # everything that determines the cell's output, besides its inputs
    needs: list["Cell"] = field(default_factory=list)
    key: str = ""
    # Where it runs, not what it computes (outside the key): the cluster resources it declares
    # (a Ray task's num_cpus / num_gpus) and the torch device of a training cell.
    resources: dict[str, float] = field(default_factory=lambda: {"num_cpus": 1})
    device: str = "cpu"

    def __post_init__(self) -> None:
        text = json.dumps({"kind": self.kind, "spec": self.spec, "needs": sorted(c.key for c in self.needs)},
                          sort_keys=True)
        self.key = hashlib.sha256(text.encode()).hexdigest()[:12]

    @property
    def folder(self) -> str:
        """Path of the cell under the benchmark's `cells/`: its name, then its key."""
        return f"{self.kind}/{self.name.split('/', 1)[1].replace('/', '__')}-{self.key}"


def _canonical(overrides) -> list[str]:
    """Overrides as the run will resolve them: the last value of each key, keys in sorted order.
    `a=1,b=2` and `b=2,a=1` configure the same run, so they must name the same cell; a list of one
    keeps the key it always had."""
    last = {o.split("=", 1)[0].strip(): o for o in overrides}  # the key as config.parse_override reads it
    return [last[k] for k in sorted(last)]


def _fraction_name(f: float) -> str:
    return f"f{f:g}"


def expand(cfg: BenchmarkConfig) -> list[Cell]:
    """All cells of the grid in an order that puts every cell after the cells it needs."""
    cells = _grid(cfg)
    for c in cells:
        c.resources, c.device = _placement(cfg, c)
    return cells


def _grid(cfg: BenchmarkConfig) -> list[Cell]:
    from vlsafe.experts.behaviours import DEFAULT_MIXTURE, default_mixture, parse_mixture
    from vlsafe.vlm.drive_clip import DEFAULT_MODEL  # the default labeller by name, so a new default is a new cell

    cells: list[Cell] = []
    for task in cfg.tasks:
        tb = f"{task}@{cfg.backend}"
        spec = {"task": task, "backend": cfg.backend, "preset": cfg.data.preset, "episodes": cfg.data.episodes,
                "seed_start": cfg.data.seed_start, "workers": cfg.data.workers,
                "task_overrides": _canonical(cfg.data.task_overrides)}
        # named only when it is not the global default: those cells keep the keys (and caches) they had
        # before the field; a task whose default is another mixture (left-turn) gets it named
        mixture = cfg.data.mixture or default_mixture(task, cfg.backend)
        named = parse_mixture(mixture) != parse_mixture(DEFAULT_MIXTURE)
        spec = {**spec, "mixture": mixture} if named else spec
        spec = {**spec, "steps": cfg.data.steps} if cfg.data.steps else spec  # named only when set, as above
        # also named only when on, for the same reason
        data = Cell("data", f"data/{tb}", {**spec, "expert_labels": True} if cfg.data.expert_labels else spec)
        offline = [m for m in cfg.methods if m not in ONLINE_LIBRARY]
        if offline:
            cells.append(data)
        for frac in cfg.fractions if offline else ():
            fname = _fraction_name(frac)
            label_model = cfg.labels.model or DEFAULT_MODEL.name
            sub = Cell("subset", f"subset/{tb}/{fname}", {"fraction": frac, "seed": cfg.data.subset_seed,
                                                            "label_model": label_model, "prompts": cfg.labels.prompts},
                       [data])
            cells.append(sub)
            wm = None
            if any(m in IN_HOUSE for m in offline):
                wm = Cell("wm", f"wm/{tb}/{fname}", {"preset": cfg.world_model.preset, "steps": cfg.world_model.steps,
                                                     "overrides": _canonical(cfg.world_model.overrides)}, [sub])
                cells.append(wm)
            for seed in cfg.seeds:
                policies: dict[str, Cell] = {}
                in_house = [m for m in offline if m in IN_HOUSE]
                if "bc" in in_house and "vl-safe" not in in_house:
                    in_house.append("vl-safe")  # π̂_b is the vl-safe run's behaviour head
                for m in in_house:
                    if m == "bc":
                        continue
                    policies[m] = Cell("policy", f"policy/{tb}/{fname}/{m}/s{seed}",
                                       {"method": m, "seed": seed, "steps": cfg.policy.steps,
                                        "overrides": _canonical(cfg.policy.overrides)}, [wm])
                for m in offline:
                    if m in OFFLINE_LIBRARY:
                        policies[m] = Cell("policy", f"policy/{tb}/{fname}/{m}/s{seed}",
                                           {"method": m, "algo": OFFLINE_LIBRARY[m], "seed": seed,
                                            "steps": cfg.baseline.offline_steps, "overrides": _canonical(cfg.baseline.overrides)},
                                           [sub])
                cells.extend(policies.values())
                for m in offline:
                    source = policies["vl-safe" if m == "bc" else m]
                    cells.extend(_evals(cfg, tb, fname, frac, m, seed, source))
        for m in cfg.methods:
            if m not in ONLINE_LIBRARY:
                continue
            for seed in cfg.seeds:
                pol = Cell("policy", f"policy/{tb}/online/{m}/s{seed}",
                           {"method": m, "algo": ONLINE_LIBRARY[m], "task": task, "backend": cfg.backend, "seed": seed,
                            "steps": cfg.baseline.online_steps, "overrides": _canonical(cfg.baseline.overrides),
                            "task_overrides": _canonical(cfg.data.task_overrides)})
                cells.append(pol)
                cells.extend(_evals(cfg, tb, "online", None, m, seed, pol))
    return cells


def _placement(cfg: BenchmarkConfig, cell: Cell) -> tuple[dict[str, float], str]:
    """A collect cell takes as many CPUs as it runs collect workers; with `device` cuda the
    in-house training cells (world model, imagination policy) declare `gpus_per_cell` GPUs and
    train on one. Library baselines, labels and simulator evaluation stay on CPUs."""
    if cell.kind == "data":
        return {"num_cpus": cfg.data.workers}, "cpu"
    on_gpu = cfg.device != "cpu" and (cell.kind == "wm" or (cell.kind == "policy" and "algo" not in cell.spec))
    if on_gpu:
        return {"num_cpus": 1, "num_gpus": cfg.gpus_per_cell}, cfg.device
    return {"num_cpus": 1}, "cpu"


def _evals(cfg: BenchmarkConfig, tb: str, fname: str, frac: float | None, method: str, seed: int, source: Cell) -> list[Cell]:
    out = []
    for cond in cfg.conditions:
        if cond == "unseen" and tb.split("@")[0] not in MAP_VARIETY:
            continue
        for actor in cfg.eval.actors:
            spec = {"method": method, "seed": seed, "fraction": frac, "condition": cond, "actor": actor,
                    "behaviour_head": method == "bc", "episodes": cfg.eval.episodes, "seed_start": cfg.eval.seed_start,
                    "cost_threshold": cfg.eval.cost_threshold, "other_backend": _other_backend(cfg.backend),
                    "videos": cfg.eval.videos and cond == "default" and actor == "greedy"}
            out.append(Cell("eval", f"eval/{tb}/{fname}/{method}/s{seed}/{cond}/{actor}", spec, [source]))
    return out


def _other_backend(backend: str) -> str:
    return "highway" if backend == "metadrive" else "metadrive"

"""DSRL's normalised reward and cost, so vlsafe's rows read like the offline safe-RL literature's.

    normalised reward = (R − R_random) / (R_expert − R_random)
    normalised cost   = (C + ε) / (κ + ε),   ε = 1 if κ = 0 else 0

DSRL takes its reward references from its datasets' trajectories; vlsafe's datasets drive on after
a crash (`steps_after_crash`), which evaluation never does, so their returns are not comparable.
The references here are measured as evaluation episodes are (an episode ends at its first crash):
R_random is a uniform-random discrete policy, R_expert the scripted expert, both on seeds 900+
(neither training data nor reported seeds). κ is the episode's cost budget: a policy with
normalised cost ≤ 1 is "safe" at that threshold, DSRL's reading. κ = 10 by default (cost steps:
collisions and lane departures); `vlsafe eval --cost-threshold` changes it.

`python -m vlsafe.evaluation.normalised TASK BACKEND [EPISODES]` measures and stores a task's pair.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["COST_THRESHOLD", "REFERENCES_FILE", "references", "normalised_scores", "measure_references"]

COST_THRESHOLD = 10.0
REFERENCES_FILE = Path(__file__).with_name("references.json")
REFERENCE_SEED_START = 900


def references() -> dict[str, dict[str, Any]]:
    return json.loads(REFERENCES_FILE.read_text()) if REFERENCES_FILE.exists() else {}


def normalised_scores(metrics: dict[str, float], ci: dict[str, tuple[float, float]], task: str, backend: str,
                      threshold: float = COST_THRESHOLD) -> dict[str, Any] | None:
    """The pair (and its 95% interval, mapped from Return's and Cost's: both maps are affine) for
    a pooled evaluation row; None for a task/backend without measured references."""
    ref = references().get(f"{task}@{backend}")
    if ref is None:
        return None
    if threshold < 0 or not math.isfinite(threshold):
        raise ValueError(f"--cost-threshold: expected a finite number >= 0, got {threshold}")
    lo_r, hi_r = ref["random"], ref["expert"]
    eps = 1.0 if threshold == 0 else 0.0
    reward = lambda r: (r - lo_r) / (hi_r - lo_r)  # noqa: E731
    cost = lambda c: (c + eps) / (threshold + eps)  # noqa: E731
    return {"reward": reward(metrics["Return"]), "reward_ci95": [reward(x) for x in ci["Return"]],
            "cost": cost(metrics["Cost"]), "cost_ci95": [cost(x) for x in ci["Cost"]],
            "safe": cost(metrics["Cost"]) <= 1.0, "threshold": threshold, "reference": ref}


def measure_references(task: str, backend: str, episodes: int = 30, seed_start: int = REFERENCE_SEED_START,
                       log=print) -> dict[str, Any]:
    from vlsafe.config import to_dict
    from vlsafe.envs.tasks import TaskConfig
    from vlsafe.evaluation.evaluate import make_env
    from vlsafe.evaluation.metrics import aggregate
    from vlsafe.evaluation.runner import run_episode
    from vlsafe.experts.behaviours import make_driver

    env = make_env(to_dict(TaskConfig(task=task, backend=backend)))
    out: dict[str, Any] = {"episodes": episodes, "seeds": f"{seed_start}-{seed_start + episodes - 1}"}
    try:
        for name in ("random", "expert"):
            runs = []
            for i in range(episodes):
                seed = seed_start + i
                if name == "random":
                    rng = np.random.default_rng(seed)
                    act = lambda _env, rng=rng: int(rng.integers(0, 15))  # noqa: E731
                else:
                    act = make_driver("expert", seed).act
                runs.append(run_episode(env, act, seed=seed).metrics)
            row = aggregate(runs)
            out[name] = float(row["Return"])
            out[f"{name}_cost"] = float(row["Cost"])
            log(f"{task}@{backend} {name}: return {row['Return']:.1f} cost {row['Cost']:.2f} over {episodes} episodes")
    finally:
        env.close()
    return out


if __name__ == "__main__":
    task, backend = sys.argv[1], sys.argv[2]
    n = int(sys.argv[3]) if len(sys.argv) > 3 else 30
    refs = references()
    refs[f"{task}@{backend}"] = measure_references(task, backend, n)
    REFERENCES_FILE.write_text(json.dumps(refs, indent=1, sort_keys=True) + "\n")
    print(f"wrote {REFERENCES_FILE}")

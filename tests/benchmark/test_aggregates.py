"""rliable's cross-task aggregates over runs pooled from grids of different training seeds."""

from __future__ import annotations

import numpy as np

from vlsafe.benchmark.results import rliable_aggregates


def _rows(task: str, method: str, seeds, reward: float, cost: float) -> list[dict]:
    rng = np.random.default_rng(len(task) + len(method))
    return [{"task": task, "method": method, "fraction": 1.0, "condition": "default", "actor": "greedy",
             "train_seed": s, "reward_norm": reward + 0.01 * rng.standard_normal(), "cost_norm": cost}
            for s in seeds for _ in range(3)]


def test_tasks_with_different_seeds_aggregate_over_the_seeds_they_share():
    """One task ran seeds 0-2, the other 0-9 (two pooled grids): the aggregate stratifies over the
    three seeds both have, for every method that has them, instead of leaving the page without one;
    a method missing a shared seed on a task is left out, and the reference's better reward shows."""
    rows = (_rows("four-lane", "vl-safe", range(3), 1.0, 0.0) + _rows("left-turn", "vl-safe", range(10), 1.0, 0.0)
            + _rows("four-lane", "bc", range(3), 0.5, 0.1) + _rows("left-turn", "bc", range(10), 0.5, 0.1)
            + _rows("four-lane", "fosp", range(2), 1.0, 0.0) + _rows("left-turn", "fosp", range(3), 1.0, 0.0))
    (agg,) = rliable_aggregates(rows, ["vl-safe", "bc", "fosp"], "vl-safe", reps=200)
    assert agg["runs"] == 3 and agg["tasks"] == ["four-lane", "left-turn"]
    assert set(agg["iqm_reward"]) == {"vl-safe", "bc"}  # fosp lacks seed 2 on four-lane
    assert abs(agg["iqm_reward"]["vl-safe"]["value"] - 1.0) < 0.05 and abs(agg["iqm_reward"]["bc"]["value"] - 0.5) < 0.05
    assert agg["probability_of_improvement"]["reward"]["bc"]["value"] > 0.9
    assert not rliable_aggregates(_rows("four-lane", "bc", [0], 0.5, 0.1) + _rows("left-turn", "bc", [1], 0.5, 0.1),
                                  ["bc"], "bc", reps=50)  # no seed in common: no aggregate


def test_a_remade_aggregate_prints_the_same_intervals():
    """The stratified bootstrap draws from a fixed seed, not numpy's global state: `vlsafe report`
    run twice on the same results gives the same intervals (it used to move in the third digit)."""
    rows = [r for m, reward in (("vl-safe", 0.9), ("bc", 0.6)) for t in ("four-lane", "left-turn")
            for r in _rows(t, m, range(10), reward, 0.0)]
    for r in rows:
        r["reward_norm"] += 0.2 * np.sin(7 * r["train_seed"] + len(r["task"]))  # seeds that differ
    np.random.seed(1)
    first = rliable_aggregates(rows, ["vl-safe", "bc"], "vl-safe", reps=300)
    after = np.random.random()
    np.random.seed(2)
    assert rliable_aggregates(rows, ["vl-safe", "bc"], "vl-safe", reps=300) == first
    np.random.seed(1)
    assert np.random.random() == after  # the caller's global RNG is left as it was

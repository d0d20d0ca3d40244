"""The library baselines through the real libraries on a real (tiny) dataset and simulator: each
trains, saves, loads without unpickling, and drives through the same evaluator as VL-SAFE."""

import json

import numpy as np
import pytest
import torch

from vlsafe.baselines.config import BaselineConfig
from vlsafe.baselines.run import fit
from vlsafe.config import ConfigError
from vlsafe.data.collect import CollectConfig, collect
from vlsafe.evaluation.evaluate import evaluate_policies, make_env
from vlsafe.evaluation.metrics import aggregate
from vlsafe.evaluation.runner import run_episode

QUIET = dict(log=lambda *_: None)


@pytest.fixture(scope="module")
def expert_data(tmp_path_factory):
    """Twelve 60-step four-lane episodes of the scripted expert on highway-env."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("baselines")
    cfg = CollectConfig(task="four-lane", backend="highway", episodes=12, max_steps=60, mixture="expert:1.0")
    return collect(cfg, root / "ds", log=lambda *_: None).root


@pytest.mark.parametrize("algo, steps, extra", [
    ("bc", 200, {}), ("cql", 200, {}), ("iql", 200, {}),
    ("bcql", 40, {"batch_size": 64}), ("cpq", 40, {"batch_size": 64}),  # OSRL, cost-aware
    ("ppo", 128, {"n_envs": 2}),  # two simulator processes
    ("dqn", 128, {"n_envs": 1}), ("sac", 96, {"n_envs": 1}),
])
def test_each_baseline_trains_saves_and_drives_through_eval(expert_data, tmp_path, algo, steps, extra):
    cfg = BaselineConfig(algo=algo, steps=steps, log_every=32, threads=1, **extra)
    state = fit(cfg, tmp_path / algo, data=expert_data, **QUIET)
    assert state["step"] == steps
    assert state["budget"]["gradient_steps" if cfg.offline else "environment_steps"] >= steps
    saved = json.loads((tmp_path / algo / "baseline.json").read_text())
    library = {"bc": "d3rlpy", "cql": "d3rlpy", "iql": "d3rlpy", "bcql": "osrl-lib", "cpq": "osrl-lib"}
    assert saved["library"][library.get(algo, "stable-baselines3")]
    rows = [json.loads(line) for line in (tmp_path / algo / "metrics.jsonl").read_text().splitlines()]
    assert rows and rows[-1]["step"] >= steps
    rep = evaluate_policies([tmp_path / algo], episodes=2, videos=False, **QUIET)
    assert rep["methods"] == [algo] and rep["metrics"]["episodes"] == 2 and np.isfinite(rep["metrics"]["Return"])
    assert rep["facts"][str(tmp_path / algo)]["budget"]["threads"] == 1


def test_resume_extends_the_budget_and_another_config_is_refused(expert_data, tmp_path):
    fit(BaselineConfig(algo="bc", steps=60, log_every=20), tmp_path / "bc", data=expert_data, **QUIET)
    state = fit(BaselineConfig(algo="bc", steps=100, log_every=20), tmp_path / "bc", data=expert_data, **QUIET)
    assert state["step"] == 100
    steps = [json.loads(line)["step"] for line in (tmp_path / "bc" / "metrics.jsonl").read_text().splitlines()]
    assert steps == [20, 40, 60, 80, 100]  # the curve continues, nothing repeated
    with pytest.raises(ConfigError, match="another config"):
        fit(BaselineConfig(algo="bc", steps=100, batch_size=32), tmp_path / "bc", data=expert_data, **QUIET)


def test_behaviour_cloning_on_expert_data_drives_better_than_random(expert_data, tmp_path):
    """Real simulator return and arrivals on fixed held-out seeds, not a training loss."""
    torch.manual_seed(0)
    fit(BaselineConfig(algo="bc", steps=1500, log_every=500, seed=0), tmp_path / "bc", data=expert_data, **QUIET)
    rep = evaluate_policies([tmp_path / "bc"], episodes=8, videos=False, **QUIET)
    task = json.loads((tmp_path / "bc" / "baseline.json").read_text())["identity"]["task"]
    env = make_env(task)
    rng = np.random.default_rng(0)
    random_runs = [run_episode(env, lambda _env: int(rng.integers(0, 15)), seed).metrics for seed in rep["seeds"]]
    env.close()
    rand, got = aggregate(random_runs), rep["metrics"]
    print(f"bc: return {got['Return']:.1f} CR {got['CR']:.2f} TD {got['TD']:.1f}; "
          f"random: return {rand['Return']:.1f} CR {rand['CR']:.2f} TD {rand['TD']:.1f}")
    assert got["Return"] > rand["Return"] + 20, (got["Return"], rand["Return"])
    assert got["CR"] <= rand["CR"], (got["CR"], rand["CR"])

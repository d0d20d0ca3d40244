"""Policy learning in imagination on a real collected dataset and a real (briefly trained) world model."""

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from vlsafe.data.collect import CollectConfig, collect
from vlsafe.data.store import EpisodeStore
from vlsafe.policy import fit, load_policy, resolve_config
from vlsafe.policy.agent import start_states
from vlsafe.policy.evaluate import evaluate_policies
from vlsafe.policy.train import Policy
from vlsafe.vlm.label import label_dataset
from vlsafe.vlm.scorer import load_scorer
from vlsafe.worldmodel.checkpoint import CheckpointError
from vlsafe.worldmodel.train import fit as fit_wm
from vlsafe.worldmodel.train import resolve_config as wm_config

QUIET = dict(log=lambda *_: None)


@pytest.fixture(scope="module")
def world_model(tmp_path_factory):
    """Ten short four-lane episodes (experts and reckless drivers), VLM-labelled, and an xs world model on them."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("policy")
    cfg = CollectConfig(task="four-lane", backend="highway", episodes=10, max_steps=60, mixture="expert:0.5,reckless:0.5",
                        task_overrides=("traffic_density=0.3", "terminate_on_collision=false"))
    store = collect(cfg, root / "ds", log=lambda *_: None)
    label_dataset(store, load_scorer("drive-clip", threads=1), log=lambda *_: None)
    run = root / "wm"
    torch.manual_seed(0)
    fit_wm(store.root, run, wm_config("xs", ["steps=500", "batch_size=4", "seq_len=16", "threads=1", "held_out_every=5",
                                             "checkpoint_every=500"]), **QUIET)
    return run


def small(method="vl-safe", **kw):
    over = ["starts=64", "policy.hidden=64", "policy.actor_lr=1e-3", "eval_every=0", "log_every=10", "threads=1"]
    return resolve_config(method, over + [f"{k}={v}" for k, v in kw.items()])


def imagined_return(policy: Policy, starts: dict, actor=None, seed: int = 0) -> float:
    """Mean predicted reward summed over 15 imagined steps from fixed starts, actions under a fixed seed."""
    torch.manual_seed(seed)
    with torch.no_grad():
        traj = policy.world_model.imagine(starts, actor or policy.learner.actor.sample, 15)
    return float(traj["reward"].sum(0).mean())


def held_out_starts(world_model, policy: Policy) -> dict:
    conf = json.loads((world_model / "config.json").read_text())
    torch.manual_seed(0)  # posterior samples: the same starts whatever ran before
    return start_states(policy.world_model, EpisodeStore(conf["data"]), conf["held_out_seeds"])


def test_imagined_return_rises(world_model, tmp_path):
    p0 = fit(world_model, tmp_path / "p0", small(steps=1, **{"policy.actor_lr": 0.0}), **QUIET)  # the initial actor
    p1 = fit(world_model, tmp_path / "p1", small(steps=300, **{"policy.beta1": 10.0, "policy.actor_lr": 3e-3}), **QUIET)
    starts = held_out_starts(world_model, p0)
    before, after = imagined_return(p0, starts), imagined_return(p1, starts)
    # the yardstick: the best single action held for the whole rollout
    best = max(imagined_return(p0, starts, lambda f, a=a: F.one_hot(torch.full(f.shape[:1], a), 15).float())
               for a in range(15))
    assert best > before + 0.3, "the fixture's world model barely reacts to actions"
    print(f"imagined return: initial actor {before:.3f}, trained {after:.3f}, best single action {best:.3f}")
    assert after - before > 0.2 * (best - before), (before, after, best)


def test_saved_policy_acts_like_the_trained_one(world_model, tmp_path):
    trained = fit(world_model, tmp_path / "p", small(steps=20), **QUIET)
    loaded, conf = load_policy(tmp_path / "p")
    feat = torch.randn(32, trained.world_model.config.feat)
    torch.testing.assert_close(loaded.learner.actor.dist(feat).probs, trained.learner.actor.dist(feat).probs)
    assert conf["task"]["task"] == "four-lane" and conf["identity"]["policy"]["method"] == "vl-safe"


def test_lagrange_multiplier_rises_only_when_imagined_cost_exceeds_the_limit(world_model, tmp_path):
    def lambdas(limit: float):
        out = tmp_path / f"lag{limit}"
        fit(world_model, out, small("lagrangian", steps=30, **{"policy.cost_limit": limit}), **QUIET)
        rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
        return [r["lagrange/lambda"] for r in rows], [r["imag/cost_return"] for r in rows]

    lam, cost = lambdas(0.0)
    assert min(cost) > 0, "the fixture's world model imagines no cost"
    assert lam[0] > 0 and lam[-1] > lam[0], lam  # cost above a zero limit: λ grows
    lam, cost = lambdas(max(cost) + 1.0)
    assert lam == [0.0] * len(lam)  # under the limit: no penalty


def test_resume_continues_and_another_method_is_refused(world_model, tmp_path):
    fit(world_model, tmp_path / "full", small(steps=20), **QUIET)
    fit(world_model, tmp_path / "part", small(steps=10), **QUIET)
    fit(world_model, tmp_path / "part", small(steps=20), **QUIET)
    read = lambda p: [json.loads(x) for x in (p / "metrics.jsonl").read_text().splitlines()]  # noqa: E731
    a, b = read(tmp_path / "full"), read(tmp_path / "part")
    assert [r["step"] for r in a] == [r["step"] for r in b] == [10, 20]
    assert b[-1]["actor/loss"] == pytest.approx(a[-1]["actor/loss"], rel=1e-4)
    with pytest.raises(CheckpointError, match="differs in policy"):
        fit(world_model, tmp_path / "part", small("fosp", steps=30), **QUIET)


def test_evaluation_pools_runs_with_intervals_and_videos(world_model, tmp_path):
    runs = [tmp_path / f"s{seed}" for seed in (0, 1)]
    for seed, run in zip((0, 1), runs):
        fit(world_model, run, small("fosp", steps=5, seed=seed), **QUIET)
    rep = evaluate_policies(runs, episodes=2, out=tmp_path / "eval", **QUIET)
    assert rep["metrics"]["episodes"] == 4 and rep["methods"] == ["fosp"]
    for m in ("Return", "Cost", "AS", "TD", "CR"):
        lo, hi = rep["ci95"][m]
        assert lo <= rep["metrics"][m] <= hi
    assert rep["per_run"][str(runs[0])]["episodes"] == 2
    for name in ("best", "worst"):
        video = Path(rep[f"video_{name}"]["path"])
        assert video.exists() and video.stat().st_size > 1000
    saved = json.loads((tmp_path / "eval" / "eval.json").read_text())
    assert saved["seeds"] == [500, 501] and "| fosp |" in (tmp_path / "eval" / "eval.md").read_text()

"""The world model on real collected data: it learns, imagines deterministically, resumes, refuses."""

import json

import numpy as np
import pytest
import torch

from vlsafe.data.collect import CollectConfig, collect
from vlsafe.data.sampler import SequenceSampler
from vlsafe.worldmodel.checkpoint import CheckpointError
from vlsafe.worldmodel.evaluate import _episode_batch, auroc
from vlsafe.worldmodel.rssm import WorldModel, WorldModelConfig
from vlsafe.worldmodel.train import fit, load_world_model, resolve_config, to_torch


@pytest.fixture(scope="module")
def crashes(tmp_path_factory):
    """A tiny left-turn dataset, mostly reckless, that keeps driving after a crash or leaving the road."""
    cfg = CollectConfig(task="left-turn", backend="highway", episodes=10, max_steps=60,
                        mixture="expert:0.3,reckless:0.7",
                        task_overrides=("traffic_density=0.3", "terminate_on_collision=false", "terminate_on_off_road=false"))
    return collect(cfg, tmp_path_factory.mktemp("wm") / "ds", log=lambda *_: None)


def small_cfg(**kw):
    over = ["labels=none", "batch_size=4", "seq_len=16", "log_every=5", "threads=1"]
    return resolve_config("xs", over + [f"{k}={v}" for k, v in kw.items()])


def test_loss_falls_on_a_fixed_batch(crashes):
    torch.manual_seed(0)
    torch.set_num_threads(1)
    model = WorldModel(WorldModelConfig())
    batch = to_torch(SequenceSampler(crashes, 16, 4, seed=0).sample(), 15)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(50):
        loss, _, _ = model.loss(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses[::10]


def test_imagine_shapes_and_determinism(crashes):
    torch.set_num_threads(1)
    model = WorldModel(WorldModelConfig()).eval()
    batch = to_torch(SequenceSampler(crashes, 8, 3, seed=1).sample(), 15)

    def rollout():
        torch.manual_seed(7)
        post, _ = model.observe(batch["bev"], batch["action"], batch["is_first"])
        start = {k: v[:, -1] for k, v in post.items()}
        policy = lambda feat: torch.nn.functional.one_hot(feat.abs().sum(-1).long() % 15, 15).float()  # noqa: E731
        return model.imagine(start, policy, horizon=15)

    a, b = rollout(), rollout()
    F = model.config.feat
    assert a["feat"].shape == (16, 3, F) and a["action"].shape == (15, 3, 15)
    for key in ("reward", "cost", "p_safe", "cont"):
        assert a[key].shape == (15, 3)
        assert torch.equal(a[key], b[key])
    assert ((a["p_safe"] >= 0) & (a["p_safe"] <= 1)).all()


def test_cost_head_predicts_collisions(crashes, tmp_path):
    torch.manual_seed(0)
    model = fit(crashes.root, tmp_path / "run", small_cfg(steps=150, held_out_every=0, checkpoint_every=150,
                                                          **{"model.cost_event_weight": 20.0}), log=lambda *_: None)
    scores, truth = [], []
    with torch.no_grad():
        for e in crashes.entries():
            ep = crashes.read(e["seed"])
            b = to_torch(_episode_batch(ep, None), 15)
            post, _ = model.observe(b["bev"], b["action"], b["is_first"])
            scores.append(model.heads(model.feat(post))["cost"][0, 1:].numpy())
            truth.append(ep.cost > 0)
    s, t = np.concatenate(scores), np.concatenate(truth)
    assert t.sum() >= 10 and sum(e["collisions"] for e in crashes.entries()) >= 2, "the fixture lacks cost events"
    # higher predicted cost on cost steps and on the two steps before them than on clean driving
    near = t | np.roll(t, -1) | np.roll(t, -2)
    assert auroc(s, t) > 0.8 and auroc(s, near) > 0.7
    assert s[t].mean() > s[~near].mean()


def test_checkpoint_from_another_preset_is_refused(crashes, tmp_path):
    fit(crashes.root, tmp_path / "run", small_cfg(steps=2, checkpoint_every=2), log=lambda *_: None)
    cfg_s = resolve_config("s", ["labels=none", "batch_size=2", "seq_len=8", "steps=3"])
    with pytest.raises(CheckpointError, match="another config or dataset \\(differs in model"):
        fit(crashes.root, tmp_path / "run", cfg_s, log=lambda *_: None)
    # weights of the xs run do not load into an s-sized model either
    with pytest.raises(CheckpointError, match="made with another preset"):
        from vlsafe.worldmodel.checkpoint import load_checkpoint

        load_checkpoint(tmp_path / "run", WorldModel(cfg_s.model))


def test_resume_continues_steps_and_loss_curve(crashes, tmp_path):
    torch.set_num_threads(1)
    full = tmp_path / "full"
    fit(crashes.root, full, small_cfg(steps=10, checkpoint_every=5), log=lambda *_: None)
    part = tmp_path / "part"
    fit(crashes.root, part, small_cfg(steps=5, checkpoint_every=5), log=lambda *_: None)
    fit(crashes.root, part, small_cfg(steps=10, checkpoint_every=5), log=lambda *_: None)  # picks up at step 5
    read = lambda p: [json.loads(x) for x in (p / "metrics.jsonl").read_text().splitlines()]  # noqa: E731
    a, b = read(full), read(part)
    assert [r["step"] for r in b] == [5, 10] == [r["step"] for r in a]
    assert b[-1]["wm/loss"] == pytest.approx(a[-1]["wm/loss"], rel=1e-5)
    model, meta = load_world_model(part)
    assert meta["step"] == 10

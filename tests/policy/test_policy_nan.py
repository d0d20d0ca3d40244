"""A policy run whose losses turn NaN stops in one line and keeps its last good checkpoint."""

import json

import pytest
import torch

from tests.test_bad_input import synthetic_dataset
from vlsafe.policy import fit, resolve_config
from vlsafe.policy.actor_critic import ImaginationLearner
from vlsafe.training.checkpoint import NonFiniteError, read_checkpoint_meta
from vlsafe.worldmodel.train import fit as fit_wm
from vlsafe.worldmodel.train import resolve_config as wm_config


def test_nan_loss_stops_policy_training_and_keeps_the_last_checkpoint(tmp_path, monkeypatch):
    torch.set_num_threads(1)
    store = synthetic_dataset(tmp_path / "ds", episodes=4)
    fit_wm(store.root, tmp_path / "wm", wm_config("xs", ["labels=none", "batch_size=2", "seq_len=8", "threads=1",
                                                          "steps=2", "held_out_every=0"]), log=lambda *_: None)
    real_update = ImaginationLearner.update
    calls = {"n": 0}

    def update_nan_from_4(self, *args, **kwargs):
        calls["n"] += 1
        row = real_update(self, *args, **kwargs)
        return {**row, "critic/loss": float("nan")} if calls["n"] >= 4 else row

    monkeypatch.setattr(ImaginationLearner, "update", update_nan_from_4)
    cfg = resolve_config("vl-safe", ["steps=8", "starts=8", "policy.hidden=32", "policy.bc_steps=2", "policy.horizon=2",
                                     "eval_every=0", "log_every=1", "checkpoint_every=3", "threads=1"])
    with pytest.raises(NonFiniteError, match="critic/loss is nan at update 4; stopped, the last checkpoint \\(step 3\\)"):
        fit(tmp_path / "wm", tmp_path / "pol", cfg, log=lambda *_: None)
    assert read_checkpoint_meta(tmp_path / "pol")["step"] == 3
    steps = [json.loads(line)["step"] for line in (tmp_path / "pol" / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3]

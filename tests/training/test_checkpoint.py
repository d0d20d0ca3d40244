"""Checkpoint pairs that cannot lie: torn pairs refused, a kill between the two renames recovered,
NaN never saved, and a training run that meets a NaN loss stops with the last good checkpoint."""

import json
import math
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from tests.test_bad_input import synthetic_dataset
from vlsafe.runlog import MetricsLog, dumps
from vlsafe.training.checkpoint import (
    CheckpointError,
    NonFiniteError,
    load_checkpoint,
    read_checkpoint_meta,
    resume_checkpoint,
    save_checkpoint,
)
from vlsafe.worldmodel.rssm import WorldModel
from vlsafe.worldmodel.train import fit, resolve_config


def model_and_opt(seed: int = 0):
    torch.manual_seed(seed)
    model = torch.nn.Linear(4, 3)
    opt = torch.optim.AdamW(model.parameters(), lr=0.1)
    model(torch.randn(2, 4)).sum().backward()
    opt.step()
    return model, opt


def steps_35_then_40(tmp_path):
    """A step-35 checkpoint overwritten by step 40 with other weights: the model and the old sidecar."""
    model, opt = model_and_opt()
    save_checkpoint(tmp_path, model, opt, {"step": 35, "identity": {"a": 1}})
    old_sidecar = (tmp_path / "checkpoint.json").read_text()
    with torch.no_grad():
        model.weight.add_(1.0)
    save_checkpoint(tmp_path, model, opt, {"step": 40, "identity": {"a": 1}})
    return model, old_sidecar


def test_torn_pair_is_refused(tmp_path):
    model, old_sidecar = steps_35_then_40(tmp_path)
    (tmp_path / "checkpoint.json").write_text(old_sidecar)  # what a kill between two plain writes would leave
    for load in (lambda: load_checkpoint(tmp_path, model_and_opt(1)[0]),
                 lambda: resume_checkpoint(tmp_path, {"a": 1}, *model_and_opt(1))):
        with pytest.raises(CheckpointError, match="torn checkpoint: checkpoint.safetensors holds step 40 but "
                                                  "checkpoint.json describes step 35"):
            load()


def test_kill_between_the_renames_resumes_the_new_pair(tmp_path):
    model, old_sidecar = steps_35_then_40(tmp_path)
    # weights renamed (the commit point), the sidecar still under its temporary name
    shutil.move(tmp_path / "checkpoint.json", tmp_path / "checkpoint.json.tmp")
    (tmp_path / "checkpoint.json").write_text(old_sidecar)
    assert read_checkpoint_meta(tmp_path)["step"] == 40 and (tmp_path / "checkpoint.json.tmp").exists()  # readers leave it
    fresh, fresh_opt = model_and_opt(1)
    assert resume_checkpoint(tmp_path, {"a": 1}, fresh, fresh_opt)["step"] == 40
    assert torch.equal(fresh.weight, model.weight)
    assert json.loads((tmp_path / "checkpoint.json").read_text())["step"] == 40  # the writer finished the commit
    assert not (tmp_path / "checkpoint.json.tmp").exists()


def test_changed_weights_and_garbage_are_refused_in_one_line(tmp_path):
    model, opt = model_and_opt()
    save_checkpoint(tmp_path, model, opt, {"step": 5})
    meta = read_checkpoint_meta(tmp_path)
    from safetensors import safe_open

    with safe_open(str(tmp_path / "checkpoint.safetensors"), framework="pt") as f:
        tensors, metadata = {k: f.get_tensor(k) for k in f.keys()}, f.metadata()
    tensors["model/weight"] = tensors["model/weight"] + 1  # same step, same sidecar hash, other numbers
    save_file(tensors, str(tmp_path / "checkpoint.safetensors"), metadata=metadata)
    assert read_checkpoint_meta(tmp_path)["step"] == meta["step"]
    with pytest.raises(CheckpointError, match="tensors do not match the hash recorded in checkpoint.json"):
        load_checkpoint(tmp_path, model_and_opt()[0])
    (tmp_path / "checkpoint.safetensors").write_bytes(b"\x80\x04garbage" * 50)
    with pytest.raises(CheckpointError, match="not a safetensors checkpoint"):
        load_checkpoint(tmp_path, model_and_opt()[0])


def test_checkpoints_of_the_previous_format_still_load(tmp_path):
    """Runs started before the sidecar hash (step only in the metadata) resume; a torn one does not."""
    model, opt = model_and_opt()
    tensors = {f"model/{k}": v.detach().contiguous() for k, v in model.state_dict().items()}
    save_file(tensors, str(tmp_path / "checkpoint.safetensors"), metadata={"step": "7"})
    (tmp_path / "checkpoint.json").write_text(json.dumps({"step": 7, "optimizer_param_groups": None}))
    fresh = model_and_opt(1)[0]
    assert load_checkpoint(tmp_path, fresh)["step"] == 7 and torch.equal(fresh.weight, model.weight)
    (tmp_path / "checkpoint.json").write_text(json.dumps({"step": 6, "optimizer_param_groups": None}))
    with pytest.raises(CheckpointError, match="torn checkpoint"):
        load_checkpoint(tmp_path, fresh)


def test_nan_weights_are_never_saved(tmp_path):
    model, opt = model_and_opt()
    save_checkpoint(tmp_path, model, opt, {"step": 1})
    before = (tmp_path / "checkpoint.safetensors").read_bytes()
    with torch.no_grad():
        model.weight[0, 0] = float("nan")
    with pytest.raises(NonFiniteError, match="NaN/inf.*the previous checkpoint is kept"):
        save_checkpoint(tmp_path, model, opt, {"step": 2})
    assert (tmp_path / "checkpoint.safetensors").read_bytes() == before and read_checkpoint_meta(tmp_path)["step"] == 1


def test_nan_loss_stops_training_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    torch.set_num_threads(1)
    store = synthetic_dataset(tmp_path / "ds", episodes=4)
    calls = {"n": 0}
    real_loss = WorldModel.loss

    def loss_nan_from_step_5(self, batch):
        calls["n"] += 1
        loss, metrics, out = real_loss(self, batch)
        return (loss * float("nan") if calls["n"] >= 5 else loss), metrics, out

    monkeypatch.setattr(WorldModel, "loss", loss_nan_from_step_5)
    cfg = resolve_config("xs", ["labels=none", "batch_size=2", "seq_len=8", "threads=1", "steps=10",
                                "checkpoint_every=2", "log_every=1"])
    with pytest.raises(NonFiniteError, match="loss nan .* at step 5; stopped, the last checkpoint \\(step 4\\) is kept"):
        fit(store.root, tmp_path / "run", cfg, log=lambda *_: None)
    monkeypatch.undo()
    meta = read_checkpoint_meta(tmp_path / "run")
    assert meta["step"] == 4
    model = WorldModel(cfg.model)
    load_checkpoint(tmp_path / "run", model)
    assert all(torch.isfinite(p).all() for p in model.parameters())
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4]


def test_metrics_and_reports_write_nan_as_null(tmp_path):
    text = dumps({"auroc": float("nan"), "mse": [1.0, float("inf")], "x": np.float32("nan"), "n": np.int64(3)})
    assert json.loads(text) == {"auroc": None, "mse": [1.0, None], "x": None, "n": 3}
    assert "NaN" not in text and "Infinity" not in text
    log = MetricsLog(tmp_path)
    log.write({"step": 1, "wm/loss": math.nan, "wm/kl": 0.5})
    log.close()
    assert json.loads((tmp_path / "metrics.jsonl").read_text()) == {"step": 1, "wm/loss": None, "wm/kl": 0.5}

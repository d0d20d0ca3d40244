"""`--device cuda` end to end: train-wm (bf16 autocast), eval-wm, train-policy and eval on a GPU.

Runs only where CUDA exists (none on the 2-core development machine or in CI); the CPU suite
covers every line of these stages, this checks that nothing in them assumes host tensors.
"""

import json

import pytest
import torch

from vlsafe.data.collect import CollectConfig, collect
from vlsafe.data.store import EpisodeStore
from vlsafe.evaluation.evaluate import evaluate_policies
from vlsafe.policy import fit, load_policy, resolve_config
from vlsafe.vlm.label import label_dataset
from vlsafe.vlm.scorer import load_scorer
from vlsafe.worldmodel.evaluate import evaluate_world_model
from vlsafe.worldmodel.train import fit as fit_wm
from vlsafe.worldmodel.train import resolve_config as wm_config

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
QUIET = dict(log=lambda *_: None)


def test_pipeline_on_cuda(tmp_path):
    cfg = CollectConfig(task="four-lane", backend="highway", episodes=4, max_steps=40, mixture="expert:0.5,reckless:0.5")
    store = collect(cfg, tmp_path / "ds", log=lambda *_: None)
    label_dataset(store, load_scorer("drive-clip", threads=1), log=lambda *_: None)
    wm = fit_wm(store.root, tmp_path / "wm", wm_config("xs", ["steps=6", "batch_size=2", "seq_len=16", "held_out_every=2",
                                                              "log_every=3"]), device="cuda", **QUIET)
    assert next(wm.parameters()).is_cuda
    rows = [json.loads(x) for x in (tmp_path / "wm" / "metrics.jsonl").read_text().splitlines()]
    assert all(torch.isfinite(torch.tensor(r["wm/loss"])) for r in rows)
    held = json.loads((tmp_path / "wm" / "config.json").read_text())["held_out_seeds"]
    report = evaluate_world_model(wm, EpisodeStore(store.root), held)
    assert report["episodes"] == len(held) and report["recon_mse"] > 0
    for method in ("vl-safe", "lagrangian"):  # the AWR path and the imagined critics' path
        fit(tmp_path / "wm", tmp_path / method, resolve_config(method, ["steps=6", "starts=32", "policy.bc_steps=3",
                                                                         "eval_every=0", "log_every=3"]),
            device="cuda", **QUIET)
    rep = evaluate_policies([tmp_path / "vl-safe"], episodes=1, videos=False, device="cuda", **QUIET)
    assert rep["metrics"]["episodes"] == 1
    on_gpu, _ = load_policy(tmp_path / "vl-safe", device="cuda")
    on_cpu, _ = load_policy(tmp_path / "vl-safe", device="cpu")
    feat = torch.randn(8, on_cpu.world_model.config.feat)
    torch.testing.assert_close(on_gpu.learner.actor.dist(feat.cuda()).probs.cpu(), on_cpu.learner.actor.dist(feat).probs,
                               rtol=1e-3, atol=1e-4)

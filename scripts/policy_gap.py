"""Where two trained actors on the same world model differ on the data's states, by VLM p̂(safe).

    .venv/bin/python scripts/policy_gap.py DATASET RUN_A RUN_B [RUN_A2 RUN_B2 ...]

Per pair: mean total-variation distance between the actors' action distributions and the share of
states whose greedy action differs, over all states and within p̂(safe) bands (p̂ from RUN_A's
world model). A diagnostic of how far the VLM's term in w moves the actor, not evidence of safety.
"""
import json
import sys

import torch

from vlsafe.data.store import EpisodeStore
from vlsafe.policy.agent import start_states
from vlsafe.policy.train import load_policy

torch.set_num_threads(1)
BANDS = ((0.0, 0.5), (0.5, 0.9), (0.9, 1.01))

store = EpisodeStore(sys.argv[1])
seeds = [int(e["seed"]) for e in store.entries()]
runs = sys.argv[2:]
if len(runs) % 2:
    sys.exit("policy_gap: expected pairs of runs")
data = None
for a, b in zip(runs[::2], runs[1::2]):
    pa, _ = load_policy(a)
    pb, _ = load_policy(b)
    wm = pa.world_model
    if data is None:
        torch.manual_seed(0)
        data = start_states(wm, store, seeds)
        valid = data["has_next"].numpy()
    with torch.no_grad():
        feat = wm.feat({"deter": data["deter"], "stoch": data["stoch"]})
        p = wm.p_safe(feat).numpy()
        qa, qb = pa.learner.actor.dist(feat).probs, pb.learner.actor.dist(feat).probs
        tv = 0.5 * (qa - qb).abs().sum(-1).numpy()
        flip = (qa.argmax(-1) != qb.argmax(-1)).numpy()
    row = {"states": int(valid.sum()), "tv": float(tv[valid].mean()), "greedy_differs": float(flip[valid].mean())}
    for lo, hi in BANDS:
        m = valid & (p >= lo) & (p < hi)
        row[f"p in [{lo}, {min(hi, 1.0)})"] = {"share_of_states": float(m.mean()),
                                               "tv": float(tv[m].mean()) if m.any() else None,
                                               "greedy_differs": float(flip[m].mean()) if m.any() else None}
    print(a, "vs", b, json.dumps(row))

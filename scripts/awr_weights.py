"""Where each method's AWR weight puts its mass on the data: per behaviour, and where p̂(safe) < 0.5.

    .venv/bin/python scripts/awr_weights.py DATASET POLICY_RUN [POLICY_RUN ...]
"""
import copy
import json
import sys

import numpy as np
import torch

from vlsafe.data.store import EpisodeStore
from vlsafe.policy.agent import start_states
from vlsafe.policy.train import load_policy

torch.set_num_threads(1)

store = EpisodeStore(sys.argv[1])
entries = store.entries()
seeds = [int(e["seed"]) for e in entries]
lens = [int(e["steps"]) + 1 for e in entries]
labels = np.concatenate([[e["behaviour"]] * n for e, n in zip(entries, lens)])


def crashed(seed: int) -> bool:
    with store.open(seed) as f:  # the collision signal only, not the frames
        return bool((f["signals"]["collision"][()] > 0).any())


crash_ep = np.concatenate([[crashed(s)] * n for s, n in zip(seeds, lens)])
out = {}
data, priced = None, None
for run in sys.argv[2:]:
    policy, conf = load_policy(run)
    L, wm = policy.learner, policy.world_model
    if data is None or priced != L.cfg.collision_reward:  # the run's own rewards (policy.collision_reward)
        priced = L.cfg.collision_reward
        scale = 0.0 if priced else float(store.manifest()["task"]["reward"]["collision_scale"])
        data = start_states(wm, store, seeds, collision_scale=scale)
        valid = data["has_next"].numpy()
    with torch.no_grad():
        feat = wm.feat({"deter": data["deter"], "stoch": data["stoch"]})
        p = L.p_safe(wm, feat)
        v_mc = L.baseline(feat)
        returns = torch.stack([data["return_reward"] / L.scales[0], data["return_cost"] / L.scales[1]], -1)
        Lc = copy.deepcopy(L)  # _data_weight moves the scale EMAs; the run stays untouched
        w = Lc._data_weight(returns - v_mc, returns, p, 0.0).numpy()
    p = p.numpy()
    row = {}
    tot = (w * valid).sum()
    for b in ("expert", "noisy", "reckless"):
        m = (labels == b) & valid
        row[b] = {"share_of_states": float(m.mean()), "share_of_weight": float((w * m).sum() / tot), "mean_w": float(w[m].mean())}
    low = (p < 0.5) & valid
    row["p<0.5"] = {"share_of_states": float(low.mean()), "share_of_weight": float((w * low).sum() / tot),
                    "reckless_share_of_weight_there":
                        float((w * low * (labels == "reckless")).sum() / max((w * low).sum(), 1e-9)),
                    "reckless_share_of_states_there": float((low & (labels == "reckless")).sum() / max(low.sum(), 1))}
    row["p_mean"] = float(p[valid].mean())
    wv = w[valid]
    row["ess_share"] = float(wv.sum() ** 2 / (wv ** 2).sum() / len(wv))  # effective sample size / states
    row["at_max_weight"] = float((wv >= L.cfg.max_weight - 1e-6).mean())
    row["crash_episodes"] = {"share_of_states": float((crash_ep & valid).mean()),
                             "share_of_weight": float((w * (crash_ep & valid)).sum() / tot)}
    out[run] = row
    print(run, json.dumps(row, indent=None))

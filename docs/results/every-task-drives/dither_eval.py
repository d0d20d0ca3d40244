"""The dithered-steering actor of docs/every-task-drives.md (fifth session), an evaluation-time patch, not kept in vlsafe.

Greedy acceleration (the most likely of the three), steering at E[steer | that acceleration] with the
rounding error carried to the next step whenever |E[steer]| >= 0.15 (error diffusion, as the expert
steers). `python dither_eval.py BENCH TASK SEED_START [GATE]` on a benchmark folder under runs/bench;
the value_vector key is dropped so the checkpoints of commit c1f38ad load."""
import glob
import json
import sys

import numpy as np
import torch
import torch.nn.functional as F

import vlsafe.policy.train as T
from vlsafe.config import from_dict as _fd
from vlsafe.envs.actions import ACCELERATIONS, STEERINGS
from vlsafe.evaluation.evaluate import evaluate_policies
from vlsafe.policy import agent as A


def fd(cls, d, *a, **k):
    d = {x: y for x, y in d.items() if x != "value_vector"}
    return _fd(cls, d, *a, **k)
T.from_dict = fd

ST = torch.tensor(STEERINGS)
GATE = float(sys.argv[4]) if len(sys.argv) > 4 else 0.15

def make_mode(agent):
    actor = agent.actor
    def mode(feat):
        d = actor.dist(feat)
        p = (d.probs[0] - actor.unimix / actor.action_dim) / (1 - actor.unimix)
        p = p.clamp_min(0).view(len(ACCELERATIONS), len(STEERINGS))
        ai = int(p.sum(1).argmax())
        ps = p[ai] / p[ai].sum()
        mean = float((ps * ST).sum())
        if abs(mean) < GATE:
            agent._res = 0.0
            si = int(ps.argmax())
        else:
            want = mean + agent._res
            si = int((ST - want).abs().argmin())
            agent._res = float(np.clip(want - float(ST[si]), -0.4, 0.4))
        return F.one_hot(torch.tensor([ai * len(STEERINGS) + si]), actor.action_dim).float()
    return mode

_act = A.DrivingAgent.act
def act(self, frame, first, vector=None):
    if first or self.state is None or not hasattr(self, "_res"):
        self._res = 0.0
    if not hasattr(self, "_patched"):
        self.actor.mode = make_mode(self)
        self._patched = True
    return _act(self, frame, first, vector)
A.DrivingAgent.act = act

bench, task, seed_start = sys.argv[1], sys.argv[2], int(sys.argv[3])
out = {}
for run in sorted(glob.glob(f"runs/bench/{bench}/cells/policy/{task}@metadrive__f1__vl-safe__s*/run")):
    for actor in ("policy", "behaviour"):
        rep = evaluate_policies([run], episodes=20, seed_start=seed_start, videos=False, actor=actor, log=lambda s: None)
        eps = next(iter(rep["episodes"].values()))
        out[f"{run}|{actor}"] = eps
        m = rep["metrics"]
        print(run.split("/")[-2], actor, "AR", m.get("AR"), "CR", m.get("CR"), "Ret", m.get("Return"), flush=True)
json.dump(out, open(f"/tmp/dither/{bench}-{task}-{seed_start}-g{GATE}.json", "w"))

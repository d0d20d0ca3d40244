"""Which input should π̂_b read? Behaviour cloning of a dataset's actions on one input of a frozen
world model, then greedy in the simulator on the development seeds 500-519.

    .venv/bin/python scripts/probe_bc_input.py WM_RUN {feat,stoch,embed,stoch+embed} STEPS SEED

feat = (h_t, z_t), stoch = z_t, embed = the encoder's embedding of the current frame alone.
Prints the training accuracy and one JSON line with Return, AR, CR, AS (README, policy learning).
"""
import json
import sys

import numpy as np
import torch
import torch.nn.functional as F

from vlsafe.data.store import EpisodeStore
from vlsafe.evaluation.evaluate import make_env, simulate
from vlsafe.evaluation.metrics import aggregate
from vlsafe.manifest import read_json
from vlsafe.policy.actor_critic import Actor
from vlsafe.policy.agent import start_states
from vlsafe.worldmodel.train import load_world_model

torch.set_num_threads(1)
wm_run, inputs, steps, seed = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
wm, _ = load_world_model(wm_run, "cpu")
wm.eval()
conf = read_json(f"{wm_run}/config.json", "a train-wm run's config", ("data", "held_out_seeds"))
store = EpisodeStore(conf["data"])
held = set(conf["held_out_seeds"])
seeds = [int(e["seed"]) for e in store.entries() if int(e["seed"]) not in held]
torch.manual_seed(0)
data = start_states(wm, store, seeds)
embeds = []
with torch.no_grad():
    for s in seeds:  # the same order as start_states: episode by episode, every frame
        bev = store.read(s).bev
        embeds += [wm.encoder(torch.as_tensor(bev[i:i + 256])) for i in range(0, len(bev), 256)]
data["embed"] = torch.cat(embeds)


def features(deter: torch.Tensor, stoch: torch.Tensor, embed: torch.Tensor) -> torch.Tensor:
    parts = {"feat": [deter, stoch.flatten(1)], "stoch": [stoch.flatten(1)], "embed": [embed],
             "stoch+embed": [stoch.flatten(1), embed]}[inputs]
    return torch.cat(parts, -1)


X = features(data["deter"], data["stoch"], data["embed"])[data["has_next"]]
y = data["action"].long()[data["has_next"]]
torch.manual_seed(seed)
actor = Actor(X.shape[1], 15, True, 256, 2, 0.01)
opt = torch.optim.AdamW(actor.parameters(), lr=1e-3, eps=1e-5)
rng = np.random.default_rng(seed)
for _ in range(steps):
    idx = torch.as_tensor(rng.integers(0, len(X), 256))
    loss = -actor.dist(X[idx]).log_prob(F.one_hot(y[idx], 15).float()).mean()
    opt.zero_grad()
    loss.backward()
    opt.step()
with torch.no_grad():
    print("train acc", float((actor.dist(X).probs.argmax(-1) == y).float().mean()))


class Driver:
    action_mode, p_safe, cost = "discrete", 1.0, 0.0

    def __call__(self, env):
        first = env.steps == 0
        if first:
            self.state, self.prev = wm.initial(1), torch.zeros(1, 15)
        with torch.no_grad():
            embed = wm.encoder(torch.as_tensor(env.bev_frame())[None])
            self.state = wm.obs_step(self.state, self.prev, embed, torch.tensor([first]))
            self.prev = actor.mode(features(self.state["deter"], self.state["stoch"], embed))
        return int(self.prev[0].argmax())


manifest = store.manifest()
env = make_env(manifest.get("task") or manifest["identity"]["task"])
agg = aggregate([r.metrics for r in simulate(Driver(), env, range(500, 520))])
print(json.dumps({"inputs": inputs, "steps": steps, "seed": seed, **{k: agg[k] for k in ("Return", "AR", "CR", "AS")}}))

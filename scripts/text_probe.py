"""Can a linear map on the frozen text tower tell safe prompts from unsafe ones?

    .venv/bin/python scripts/text_probe.py

A logistic regression on drive-clip's training captions (every concept's phrasings, with the
generic ones; label = the concept's safety) is applied to the development and held-out prompt
suites. A diagnostic of the text side alone: if a pair's safe prompt does not score above its
unsafe one here, no linear adapter on this text tower will rank that pair, whatever the image side
learns. Nothing is chosen with it.
"""
import numpy as np
import torch

from vlsafe.vlm.captions import CONCEPTS, phrasings
from vlsafe.vlm.drive_clip import TextTower
from vlsafe.vlm.prompts import DEV_SUITE, HELDOUT_SUITE, PROMPT_SETS

torch.manual_seed(0)
torch.set_num_threads(1)
tower = TextTower()
X, y = [], []
for concept, (safe, _) in CONCEPTS.items():
    texts = phrasings(concept, limit=96, generic=True)
    X.append(tower.encode(texts))
    y += [float(safe)] * len(texts)
X, y = torch.tensor(np.concatenate(X)), torch.tensor(y)
w = torch.zeros(X.shape[1], requires_grad=True)
b = torch.zeros(1, requires_grad=True)
opt = torch.optim.Adam([w, b], lr=0.05)
for _ in range(500):
    opt.zero_grad()
    loss = torch.nn.functional.binary_cross_entropy_with_logits(X @ w + b, y) + 1e-3 * (w ** 2).sum()
    loss.backward()
    opt.step()
with torch.no_grad():
    print(f"training captions: {len(y)}, accuracy {((X @ w + b > 0).float() == y).float().mean():.3f}")

    def p_safe(text: str) -> float:
        return torch.sigmoid(torch.tensor(tower.encode([text]))[0] @ w + b).item()

    for name in ("paper-v1",) + DEV_SUITE + HELDOUT_SUITE:
        ps = PROMPT_SETS[name]
        s, u = p_safe(ps.safe[0]), p_safe(ps.unsafe[0])
        print(f"{name:14s} safe {s:.2f}  unsafe {u:.2f}  {'ok' if s > u + 0.1 else 'NOT SEPARATED'}")

"""Which frames does a prompt pair rank as unsafe? Language-specified safety, measured.

For each prompt set (a registered name or a .json file, as `--prompts` takes), score every frame
of the datasets, take the `--top` fraction with the lowest p(safe), and report which ground-truth
concepts (captions.py: collision, near miss, tailgating, off-road, ...) those frames carry,
against the base rate of each concept in all frames. A pair about following distance should
pick tailgating frames; a collision pair should pick collisions.

Usage: `python scripts/prompt_ranking.py DATASET... --prompts docs/prompts/tailgating.json
docs/prompts/collision.json [--model drive-clip-v2] [--top 0.02]`.
"""

from __future__ import annotations

import argparse

import numpy as np

from vlsafe.data.store import EpisodeStore
from vlsafe.vlm import captions as cap
from vlsafe.vlm.prompts import get_prompt_set
from vlsafe.vlm.scorer import load_scorer, similarities_to_p_safe

SHOWN = ("collision", "imminent", "near_miss", "tailgating", "lane_departure", "off_road", "lane_change", "waiting",
         "clear_road")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("data", nargs="+")
    ap.add_argument("--prompts", nargs="+", required=True)
    ap.add_argument("--model", default=None)
    ap.add_argument("--top", type=float, default=0.02, help="fraction of frames ranked most unsafe")
    args = ap.parse_args()
    scorer = load_scorer("drive-clip", args.model, threads=2)
    sets = [get_prompt_set(p) for p in args.prompts]
    temb = scorer.encode_texts([t for ps in sets for t in ps.texts])
    sims, concepts = [], []
    for path in args.data:
        store = EpisodeStore(path)
        for entry in store.entries():
            ep = store.read(int(entry["seed"]))
            sims.append(scorer.similarities(ep.bev, temb))
            concepts.append(cap.frame_concepts(ep.signals, ep.cost, ep.dt))
    sims_all, on = np.concatenate(sims), np.concatenate(concepts)
    names = list(cap.CONCEPTS)
    base = {c: on[:, names.index(c)].mean() for c in SHOWN}
    print(f"{len(on)} frames from {len(args.data)} datasets; model {scorer.model_id}; top {args.top:.0%} most unsafe")
    print("| prompt set | " + " | ".join(SHOWN) + " |")
    print("|---|" + "---|" * len(SHOWN))
    print("| all frames (base rate) | " + " | ".join(f"{100 * base[c]:.1f}%" for c in SHOWN) + " |")
    col = 0
    for ps in sets:
        p = similarities_to_p_safe(sims_all[:, col:col + len(ps.texts)], ps.n_safe, scorer.logit_scale)
        col += len(ps.texts)
        top = np.argsort(p, kind="stable")[:max(1, int(args.top * len(p)))]
        print(f"| {ps.name} | " + " | ".join(f"{100 * on[top, names.index(c)].mean():.1f}%" for c in SHOWN) + " |")


if __name__ == "__main__":
    main()

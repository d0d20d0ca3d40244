"""One row per condition and model from `vlsafe vlm eval --suite` reports: paper-v1 AUROC (95% interval)
at 0.5 s and 1.5 s, ECE at both, cost events, and each prompt suite's mean and worst pair at 1.5 s.
A condition evaluated on several datasets shows its pooled row; reports of one model with different
suites (`--suite heldout`, `--suite heldout-v2`) are merged into one row.

Usage: `python scripts/vlm_table.py runs/vlm-v2/v1/quality.json runs/vlm-v3/v1-heldout-v2/quality.json ...`.
"""

from __future__ import annotations

import json
import sys

import numpy as np


def rows(report: dict) -> dict[str, dict]:
    out = {}
    for name, entry in report["datasets"].items():
        cond = entry["condition"]
        if name.endswith("(pooled)") or cond not in out:
            out[cond] = entry
    return out


def main() -> None:
    reports = [json.load(open(p)) for p in sys.argv[1:]]
    models: dict[str, dict[str, dict]] = {}  # model -> condition -> entry, with the suites of every report merged
    for r in reports:
        model = r["model"]["model_id"] if "folder" not in r["model"] else r["model"]["folder"].split("/")[-1]
        for cond, e in rows(r).items():
            have = models.setdefault(model, {}).setdefault(cond, {**e, "suite": {}})
            have["suite"].update(e.get("suite", {}))
    suites = sorted({n.rsplit("-", 1)[0] for m in models.values() for e in m.values() for n in e["suite"]})
    print("| condition | model | AUROC 0.5 s | AUROC 1.5 s | ECE 0.5 s | ECE 1.5 s | "
          + " | ".join(f"{s} 1.5 s mean / worst" for s in suites) + " | cost events |")
    print("|---|---|---|---|---|---|" + "---|" * len(suites) + "---|")
    for cond in sorted({c for m in models.values() for c in m}):
        for model, conds in models.items():
            e = conds.get(cond)
            if e is None:
                continue
            v = e["quality"]["vlm"]

            def ci(h: str, v: dict = v) -> str:
                q = v[h]
                if "auroc_ci" not in q:
                    return f"{q['auroc']:.3f}"
                return f"{q['auroc']:.3f} [{q['auroc_ci'][0]:.2f}, {q['auroc_ci'][1]:.2f}]"
            cells = []
            for s in suites:
                s15 = [q["1.5s"]["auroc"] for n, q in e["suite"].items() if n.rsplit("-", 1)[0] == s]
                cells.append(f"{np.mean(s15):.3f} / {min(s15):.3f}" if s15 else "–")
            print(f"| {cond} | {model} | {ci('0.5s')} | {ci('1.5s')} | {v['0.5s']['ece']:.3f} | {v['1.5s']['ece']:.3f} | "
                  + " | ".join(cells) + f" | {v['0.5s']['events']} |")


if __name__ == "__main__":
    main()

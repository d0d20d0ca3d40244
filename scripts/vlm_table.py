"""One row per condition from `vlsafe vlm eval --suite` reports: paper-v1 AUROC (95% interval) at
0.5 s and 1.5 s, ECE at both, cost events, and the held-out prompt suite's mean and worst pair at
1.5 s. A condition evaluated on several datasets shows its pooled row.

Usage: `python scripts/vlm_table.py runs/vlm-v2/eval-v1/quality.json [more ...]`.
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
    print("| condition | model | AUROC 0.5 s | AUROC 1.5 s | ECE 0.5 s | ECE 1.5 s | suite 1.5 s mean / worst | cost events |")
    print("|---|---|---|---|---|---|---|---|")
    reports = [json.load(open(p)) for p in sys.argv[1:]]
    conds = sorted({c for r in reports for c in rows(r)})
    for cond in conds:
        for r in reports:
            e = rows(r).get(cond)
            if e is None:
                continue
            v = e["quality"]["vlm"]
            def ci(h: str, v: dict = v) -> str:
                q = v[h]
                if "auroc_ci" not in q:
                    return f"{q['auroc']:.3f}"
                return f"{q['auroc']:.3f} [{q['auroc_ci'][0]:.2f}, {q['auroc_ci'][1]:.2f}]"
            suite = e.get("suite", {})
            s15 = {n: q["1.5s"]["auroc"] for n, q in suite.items()}
            st = f"{np.mean(list(s15.values())):.3f} / {min(s15.values()):.3f}" if s15 else "–"
            model = r["model"]["model_id"] if "folder" not in r["model"] else r["model"]["folder"].split("/")[-1]
            print(f"| {cond} | {model} | {ci('0.5s')} | {ci('1.5s')} | {v['0.5s']['ece']:.3f} | {v['1.5s']['ece']:.3f} | "
                  f"{st} | {v['0.5s']['events']} |")


if __name__ == "__main__":
    main()

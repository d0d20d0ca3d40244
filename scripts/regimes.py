"""Issue 26's regime tables: VL-SAFE against DreamerV3-offline and against bc, paired, per regime.

Each regime is a benchmark's results (a folder with episodes.csv) and a filter on its rows (the
data fraction, the evaluation condition). Rows are paired by (training seed, episode seed), and
each difference VL-SAFE − X gets a bootstrap interval over the pairs
(vlsafe.evaluation.evaluate.paired_difference): negative ΔCR is VL-SAFE crashing less.

    python scripts/regimes.py "thin 10%=docs/results/small-lite:fraction=0.1" \\
        "dense=docs/results/small-lite:fraction=1,condition=dense" [--tasks left-turn,navigation]

`--fractions RESULTS` instead prints VL-SAFE's own CR with 10% (or the smallest fraction) minus
its CR with 100% of the data, per task (the issue's "no higher with 10% than with 100%").
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ablation import KEY, interval, read

from vlsafe.evaluation.evaluate import paired_difference
from vlsafe.evaluation.metrics import aggregate

REF = "vl-safe"
OTHERS = ("dreamer-offline", "bc")


def regime_rows(label: str, spec: str, tasks: set[str] | None) -> list[str]:
    path, _, filt = spec.partition(":")
    want = dict(kv.split("=", 1) for kv in filt.split(",")) if filt else {}
    want.setdefault("condition", "default")
    want.setdefault("actor", "greedy")
    groups = read(Path(path))
    rows = []
    for key in sorted(groups):
        k = dict(zip(KEY, key))
        if k["method"] != REF or (tasks and k["task"] not in tasks):
            continue
        if any(k[f] != v and not (f == "fraction" and float(k[f]) == float(v)) for f, v in want.items()):
            continue
        ref = groups[key]
        cells = [f"{label}", k["task"]]
        m = aggregate(list(ref.values()))
        cells.append(f"{m['AR']:.2f} / {m['CR']:.2f} / {m['Return']:.0f}")
        n = None
        for other in OTHERS:
            o = groups.get(tuple(other if f == "method" else k[f] for f in KEY), {})
            pairs = sorted(set(ref) & set(o))
            if not pairs:
                cells += ["–", "–"]
                continue
            n = len(pairs)
            d = paired_difference([ref[p] for p in pairs], [o[p] for p in pairs])
            cells += [interval(d, "CR"), interval(d, "Return")]
        cells.insert(2, str(n or len(ref)))
        rows.append("| " + " | ".join(cells) + " |")
    return rows


def fraction_rows(path: Path, tasks: set[str] | None) -> list[str]:
    groups = read(path)
    rows = []
    for task in sorted({k[0] for k in groups}):
        if tasks and task not in tasks:
            continue
        by_frac = {float(k[2]): v for k, v in groups.items()
                   if k[0] == task and k[1] == REF and k[3] == "default" and k[4] == "greedy"}
        if 1.0 not in by_frac or len(by_frac) < 2:
            continue
        for f in sorted(f for f in by_frac if f < 1):
            full, thin = by_frac[1.0], by_frac[f]
            pairs = sorted(set(full) & set(thin))
            d = paired_difference([thin[p] for p in pairs], [full[p] for p in pairs])
            a, b = aggregate([thin[p] for p in pairs]), aggregate([full[p] for p in pairs])
            rows.append(f"| {task} | {f:g} | {len(pairs)} | {a['CR']:.2f} | {b['CR']:.2f} | {interval(d, 'CR')} "
                        f"| {interval(d, 'Return')} |")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("regimes", nargs="*", help="LABEL=RESULTS[:field=value,...]")
    ap.add_argument("--tasks", help="only these tasks (comma-separated)")
    ap.add_argument("--fractions", type=Path, help="results with several data fractions: VL-SAFE's CR at each against 100%%")
    args = ap.parse_args()
    tasks = set(args.tasks.split(",")) if args.tasks else None
    if args.fractions:
        print("| task | fraction | pairs | CR thin | CR 100% | ΔCR thin − 100% [95%] | ΔReturn [95%] |")
        print("|---|---|---|---|---|---|---|")
        print("\n".join(fraction_rows(args.fractions, tasks)))
    if args.regimes:
        print("| regime | task | pairs | VL-SAFE AR / CR / Return | ΔCR vs DreamerV3-offline | ΔReturn vs DreamerV3-offline "
              "| ΔCR vs bc | ΔReturn vs bc |")
        print("|---|---|---|---|---|---|---|---|")
        for r in args.regimes:
            label, _, spec = r.partition("=")
            if not spec or not Path(spec.partition(":")[0]).exists():
                ap.error(f"{r!r}: expected LABEL=RESULTS[:field=value,...] with no '=' in LABEL and an existing RESULTS")
            print("\n".join(regime_rows(label, spec, tasks)))


if __name__ == "__main__":
    main()

"""Pool evaluations of one method that drove the same episode seeds (e.g. training seeds 0-1 from
one `compare_methods.sh` run and 2-4 from another) into one eval.json that `vlsafe compare` pairs.

    .venv/bin/python scripts/pool_evals.py OUT_DIR EVAL_DIR [EVAL_DIR ...]
"""

import sys
from pathlib import Path

from vlsafe.evaluation.compare import load_report, paired_episodes
from vlsafe.evaluation.evaluate import bootstrap_ci, report_table
from vlsafe.evaluation.metrics import aggregate
from vlsafe.runlog import dumps


def pool(paths: list[str]) -> dict:
    reports = [load_report(p) for p in paths]
    first = reports[0]
    for r in reports[1:]:
        if r["seeds"] != first["seeds"] or r["methods"] != first["methods"] or r.get("greedy") != first.get("greedy"):
            raise SystemExit(f"{r['_path']}: another method, actor mode or episode seeds than {first['_path']}")
    runs = [run for r in reports for run in r["runs"]]
    if len(set(runs)) != len(runs):
        raise SystemExit("a run appears in two evaluations")
    episodes = {run: r["episodes"][run] for r in reports for run in r["runs"]}
    pooled = {"runs": runs, "episodes": episodes}
    eps = paired_episodes(pooled)
    out = {k: v for k, v in first.items() if not k.startswith("_")}
    out.update(runs=runs, episodes=episodes, metrics=aggregate(eps), ci95=bootstrap_ci(eps), normalised=None,
               per_run={run: aggregate(paired_episodes({"runs": [run], "episodes": episodes})) for run in runs},
               pooled_from=[r["_path"] for r in reports])
    return out


if __name__ == "__main__":
    out, paths = Path(sys.argv[1]), sys.argv[2:]
    rep = pool(paths)
    out.mkdir(parents=True, exist_ok=True)
    (out / "eval.json").write_text(dumps(rep, indent=1))
    print(report_table(rep))
    print(f"wrote {out}/eval.json ({len(rep['runs'])} runs)")

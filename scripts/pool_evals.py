"""Pool evaluations of one method that drove the same episode seeds (e.g. training seeds 0-1 from
one `compare_methods.sh` run and 2-4 from another) into one eval.json that `vlsafe compare` pairs;
optionally keep only the first runs and the first episode seeds, to pair with an evaluation that
drove fewer (e.g. 3 training seeds x seeds 700-719 against 5 x 700-729).

    .venv/bin/python scripts/pool_evals.py OUT_DIR EVAL_DIR [EVAL_DIR ...] [--runs K] [--episodes E]
"""

import argparse
from pathlib import Path

from vlsafe.evaluation.compare import load_report, paired_episodes
from vlsafe.evaluation.evaluate import bootstrap_ci, report_table
from vlsafe.evaluation.metrics import aggregate
from vlsafe.evaluation.normalised import normalised_scores
from vlsafe.runlog import dumps


def pool(paths: list[str], runs_kept: int | None = None, episodes_kept: int | None = None) -> dict:
    reports = [load_report(p) for p in paths]
    first = reports[0]
    n = episodes_kept or len(first["seeds"])
    for r in reports[1:]:
        if len(r["seeds"]) < n or r["seeds"][:n] != first["seeds"][:n] or r["methods"] != first["methods"] \
                or r.get("greedy") != first.get("greedy"):
            raise SystemExit(f"{r['_path']}: another method, actor mode or episode seeds than {first['_path']}")
    runs = [run for r in reports for run in r["runs"]][:runs_kept]
    if len(set(runs)) != len(runs):
        raise SystemExit("a run appears in two evaluations")
    seeds = first["seeds"][:n]
    episodes = {run: r["episodes"][run][:len(seeds)] for r in reports for run in r["runs"] if run in runs}
    eps = paired_episodes({"runs": runs, "episodes": episodes})
    out = {k: v for k, v in first.items() if not k.startswith("_")}
    metrics, ci = aggregate(eps), bootstrap_ci(eps)
    out.update(runs=runs, seeds=seeds, episodes=episodes, metrics=metrics, ci95=ci,
               normalised=normalised_scores(metrics, ci, first["task"], first["backend"]),
               per_run={run: aggregate(paired_episodes({"runs": [run], "episodes": episodes})) for run in runs},
               pooled_from=[r["_path"] for r in reports])
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("evals", nargs="+")
    ap.add_argument("--runs", type=int, help="keep the first K runs (training seeds)")
    ap.add_argument("--episodes", type=int, help="keep the first E episode seeds")
    args = ap.parse_args()
    rep = pool(args.evals, args.runs, args.episodes)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "eval.json").write_text(dumps(rep, indent=1))
    print(report_table(rep))
    print(f"wrote {args.out}/eval.json ({len(rep['runs'])} runs x {len(rep['seeds'])} episodes)")

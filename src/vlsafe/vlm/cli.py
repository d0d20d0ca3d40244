"""`vlsafe vlm train|eval|prompts` and `vlsafe label`: the command line of the VLM stage.

Hooked into the main parser by `add_commands(subparsers)`. User mistakes (a wrong dataset, a
model that cannot take the frames, an unknown prompt set) end with one line on stderr and exit 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from vlsafe.runlog import dumps

__all__ = ["add_commands", "resolve_prob"]


def _fail(err: Exception) -> int:
    print(f"vlsafe: error: {err}", file=sys.stderr)
    return 2


def resolve_prob(scorer, method: str, prompts: str, logit_scale: float | None = None):
    """The ProbConfig for `--prob`: 'softmax', or 'calibrated' with the model's fitted calibration."""
    from vlsafe.config import ConfigError
    from vlsafe.vlm.scorer import ProbConfig

    if method == "softmax":
        return ProbConfig("softmax", logit_scale)
    calib = scorer.calibration(prompts) if hasattr(scorer, "calibration") else None
    if calib is None:
        raise ConfigError(f"--prob calibrated: model {scorer.model_id} has no calibration for prompt set {prompts!r} "
                          f"(drive-clip fits one for paper-v1 on its held-out episodes); use --prob softmax")
    return calib


def _scorer(args):
    from vlsafe.vlm.scorer import load_scorer

    return load_scorer(args.backend, args.model, threads=args.threads or None)


def _cmd_label(args: argparse.Namespace) -> int:
    from vlsafe.config import ConfigError
    from vlsafe.data.store import DatasetError, EpisodeStore
    from vlsafe.vlm.label import label_dataset
    from vlsafe.vlm.prompts import get_prompt_set
    from vlsafe.vlm.quality import format_quality

    try:
        store = EpisodeStore(args.path)
        store.manifest()
        scorer = _scorer(args)
        ps = get_prompt_set(args.prompts)
        ls = label_dataset(store, scorer, ps, resolve_prob(scorer, args.prob, ps.name), batch_size=args.batch_size,
                           cluster=args.cluster, workers=args.workers, address=args.address,
                           scorer_spec=(args.backend, args.model))
    except (ConfigError, DatasetError, ValueError) as err:
        return _fail(err)
    q = ls.provenance["quality"]
    print(format_quality(q, f"label quality of {ls.key} ({scorer.model_id}, {ps.name})"))
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    import dataclasses

    from vlsafe.config import ConfigError, apply_overrides, from_dict
    from vlsafe.data.store import DatasetError, EpisodeStore
    from vlsafe.vlm.drive_clip import PRESETS, DriveClipConfig, train

    try:
        if args.preset not in PRESETS:
            raise ConfigError(f"unknown drive-clip preset {args.preset!r}; valid: {', '.join(PRESETS)}")
        cfg = from_dict(DriveClipConfig, {**dataclasses.asdict(DriveClipConfig()), **PRESETS[args.preset]})
        extra = [f"{k}={v}" for k, v in (("steps", args.steps), ("seed", args.seed), ("threads", args.threads)) if v]
        cfg = apply_overrides(cfg, [*extra, *args.set])
        stores = [EpisodeStore(p) for p in args.data]
        for s in stores:
            s.validate(image_size=cfg.image_size)
        train(stores, args.out, cfg)
    except (ConfigError, DatasetError) as err:
        return _fail(err)
    return 0


def _suite_p_safe(scorer, store, seeds: list[int], sets: list, batch_size: int) -> dict[str, dict[int, "object"]]:
    """p(safe) (softmax) of every frame for every prompt set in `sets`, one image pass per dataset."""
    import numpy as np

    from vlsafe.vlm.scorer import frame_similarities, similarities_to_p_safe

    texts = [t for ps in sets for t in ps.texts]
    temb = scorer.encode_texts(texts)
    out: dict[str, dict[int, np.ndarray]] = {ps.name: {} for ps in sets}
    for seed in seeds:
        with store.open(seed) as f:
            frames = f["bev"][()]
        sims = frame_similarities(scorer, frames, temb, batch_size)
        col = 0
        for ps in sets:
            out[ps.name][seed] = similarities_to_p_safe(sims[:, col:col + len(ps.texts)], ps.n_safe, scorer.logit_scale)
            col += len(ps.texts)
    return out


def _first_cost(cost) -> int:
    """Frames 0..j end at the first cost (frame j carries transition j-1's cost); all frames if none."""
    import numpy as np

    hit = np.flatnonzero(np.asarray(cost) > 0)
    return int(hit[0]) + 1 if len(hit) else len(cost)


def _cut(ep, last_frame: int):
    """The episode up to frame `last_frame` (transitions 0..last_frame-1)."""
    import dataclasses

    T = last_frame
    arrays = {k: getattr(ep, k)[:T] for k in ("action", "reward", "cost", "terminated", "truncated")}
    frames = {k: getattr(ep, k)[:T + 1] for k in ("bev", "vector")}
    return dataclasses.replace(ep, **arrays, **frames, signals={k: v[:T] for k, v in ep.signals.items()})


def _cmd_eval(args: argparse.Namespace) -> int:
    """Label each dataset (cached), then report AUROC (episode-resampled 95% intervals) and ECE for
    look-aheads in seconds, per condition (task, variant, backend); datasets of one condition are
    also pooled, different conditions never are. `--suite` adds the held-out prompt suite."""
    import numpy as np

    from vlsafe.config import ConfigError
    from vlsafe.data.store import DatasetError, EpisodeStore
    from vlsafe.vlm.label import label_dataset, read_labels
    from vlsafe.vlm.prompts import SUITES, get_prompt_set
    from vlsafe.vlm.quality import format_quality, label_quality, plot_reliability, plot_strip

    out = Path(args.out)
    report, per_condition, suite_rows = {}, {}, {}
    try:
        for path in args.data:  # every dataset before any output
            EpisodeStore(path).validate()
        if args.intervals < 0:
            raise ConfigError(f"--intervals must be >= 0, got {args.intervals}")
        scorer = _scorer(args)
        ps = get_prompt_set(args.prompts)
        prob = resolve_prob(scorer, args.prob, ps.name)
        suite = [get_prompt_set(n) for n in SUITES.get(args.suite, ())]
        out.mkdir(parents=True, exist_ok=True)
        for path in args.data:
            store = EpisodeStore(path)
            ls = label_dataset(store, scorer, ps, prob, batch_size=args.batch_size, log=lambda *_: None)
            _, p_safe, _ = read_labels(store, ls.key)
            eps = {int(e["seed"]): store.read(int(e["seed"])) for e in store.entries()}
            seeds = sorted(eps)
            if args.first_cost:  # what a policy's evaluation sees: every episode ends at its first cost
                ends = {s: _first_cost(eps[s].cost) for s in seeds}
                p_safe = {s: p_safe[s][:ends[s] + 1] for s in seeds}
                eps = {s: _cut(eps[s], ends[s]) for s in seeds}
            costs, dt, cond = [eps[s].cost for s in seeds], store.dt(), store.condition()
            q = label_quality([p_safe[s] for s in seeds], costs, dt, signals=[eps[s].signals for s in seeds],
                              intervals=args.intervals)
            name = f"{cond}:{Path(path).name}"
            entry = report[name] = {"key": ls.key, "condition": cond, "dt": dt, "episodes": len(seeds), "quality": q}
            print(format_quality(q, f"{name} ({scorer.model_id}, {ps.name}, {prob.method})"), flush=True)
            if suite:
                ps_suite = _suite_p_safe(scorer, store, seeds, suite, args.batch_size)
                ps_suite = {n: {s: v[s][:len(p_safe[s])] for s in seeds} for n, v in ps_suite.items()}
                entry["suite"] = {n: label_quality([v[s] for s in seeds], costs, dt, intervals=args.intervals)["vlm"]
                                  for n, v in ps_suite.items()}
                suite_rows[name] = entry["suite"]
            pooled = per_condition.setdefault(cond, ([], [], [], [], dt, {}))
            for n, v in (ps_suite.items() if suite else ()):
                pooled[5].setdefault(n, []).extend(v[s] for s in seeds)
            pooled[0].extend(p_safe[s] for s in seeds)
            pooled[1].extend(costs)
            pooled[2].extend(eps[s].signals for s in seeds)
            pooled[3].append(name)
            stem = Path(path).name
            plot_reliability([p_safe[s] for s in seeds], costs, out / f"{stem}_reliability.png", dt, seconds=0.5,
                             title=f"{name}: reliability, 0.5 s")
            crashed = [s for s in seeds if eps[s].signals.get("collision", np.zeros(1)).max() > 0]
            pick = (crashed or seeds)[0]
            ep = eps[pick]
            plot_strip(p_safe[pick], ep.cost, ep.signals.get("collision"), out / f"{stem}_strip.png", frames=ep.bev,
                       title=f"{name} episode {pick} ({ep.behaviour}): p(safe) per frame")
        for cond, (p, c, sig, names, dt, suite_p) in per_condition.items():
            if len(names) > 1:
                q = label_quality(p, c, dt, signals=sig, intervals=args.intervals)
                report[f"{cond} (pooled)"] = {"datasets": names, "condition": cond, "dt": dt, "quality": q}
                if suite_p:
                    report[f"{cond} (pooled)"]["suite"] = suite_rows[f"{cond} (pooled)"] = {
                        n: label_quality(v, c, dt, intervals=args.intervals)["vlm"] for n, v in suite_p.items()}
                print(format_quality(q, f"{cond} pooled over {len(names)} datasets of this condition: "
                                        f"{', '.join(names)}"), flush=True)
        if len(per_condition) > 1:
            print(f"not pooled: {len(per_condition)} different conditions ({', '.join(per_condition)})")
        if suite_rows:
            print(_format_suite(suite_rows), flush=True)
    except (ConfigError, DatasetError, ValueError) as err:
        return _fail(err)
    (out / "quality.json").write_text(dumps({"model": scorer.describe(), "prompts": ps.to_json(),
                                             "suite": [p.to_json() for p in suite], "prob": prob.describe(),
                                             "datasets": report}, indent=1))
    print(f"wrote {out}/quality.json and plots")
    return 0


def _format_suite(rows: dict[str, dict]) -> str:
    """Per dataset: the held-out suite's mean and worst pair AUROC at each horizon."""
    import numpy as np

    first = next(iter(rows.values()))
    hs = list(next(iter(first.values())))
    lines = ["prompt suite (softmax): AUROC mean / worst pair", "| dataset | " + " | ".join(hs) + " |",
             "|---|" + "---|" * len(hs)]
    for name, per_set in rows.items():
        cells = []
        for h in hs:
            vals = {n: r[h]["auroc"] for n, r in per_set.items()}
            worst = min(vals, key=lambda n: vals[n])
            cells.append(f"{np.mean(list(vals.values())):.3f} / {vals[worst]:.3f} ({worst})")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _cmd_prompts(args: argparse.Namespace) -> int:
    from vlsafe.vlm.prompts import DEFAULT_PROMPTS, PROMPT_SETS

    for name, ps in PROMPT_SETS.items():
        print(f"{name}{' (default)' if name == DEFAULT_PROMPTS else ''}: {ps.note}")
        for t in ps.safe:
            print(f"  safe:   {t}")
        for t in ps.unsafe:
            print(f"  unsafe: {t}")
    return 0


def _scorer_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backend", default="drive-clip", help="drive-clip (embedded default) or clip")
    p.add_argument("--model", help="drive-clip: a trained model folder or a packaged name (drive-clip-v1, -v2, -v3; default v2); "
                                   "clip: a CLIP folder or hub id")
    p.add_argument("--prompts", default="paper-v1", help="prompt set name or .json file (see `vlsafe vlm prompts`)")
    p.add_argument("--prob", default="softmax", choices=["softmax", "calibrated"], help="similarities -> p(safe)")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")


def add_commands(sub) -> None:
    """Register `vlm` (train, eval, prompts) and `label` on the main parser's subparsers."""
    from vlsafe.vlm.prompts import SUITES  # light (no torch): the suite names are the --suite choices

    lab = sub.add_parser("label", help="add VLM p(safe) labels to a dataset (cached, resumable)")
    lab.add_argument("path", help="dataset folder")
    _scorer_args(lab)
    lab.add_argument("--cluster", default="local", help="local (this process) or ray (batched inference on Ray Data workers)")
    lab.add_argument("--workers", type=int, default=1, help="with --cluster ray: scorer workers")
    lab.add_argument("--address", help="with --cluster ray: auto or HOST:PORT (default: a private Ray instance here)")
    lab.set_defaults(fn=_cmd_label)

    vlm = sub.add_parser("vlm", help="train and evaluate the safety VLM")
    vsub = vlm.add_subparsers(dest="vlm_command", required=True)
    t = vsub.add_parser("train", help="train drive-clip on one or more datasets")
    t.add_argument("data", nargs="+", help="dataset folders")
    t.add_argument("--out", default="models/drive-clip")
    t.add_argument("--preset", default="default", help="default or debug")
    t.add_argument("--steps", type=int, default=0)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--threads", type=int, default=0)
    t.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="DriveClipConfig override")
    t.set_defaults(fn=_cmd_train)
    e = vsub.add_parser("eval", help="label quality (AUROC, ECE for 0.2, 0.5, 1.5 s) against real cost, with plots")
    e.add_argument("data", nargs="+", help="dataset folders (held-out episodes)")
    _scorer_args(e)
    e.add_argument("--suite", nargs="?", const="heldout", choices=list(SUITES),
                   help="also score a prompt suite (mean and worst pair): heldout / heldout-v2 (report only) or "
                        "dev / dev-v2 (model choice)")
    e.add_argument("--intervals", type=int, default=200, help="episode-resampled draws for AUROC intervals (0: none)")
    e.add_argument("--first-cost", action="store_true",
                   help="score each episode only up to its first cost (datasets run on past a crash; a policy's "
                        "evaluation does not), so the frames after a crash do not count")
    e.add_argument("--out", default="runs/vlm-eval")
    e.set_defaults(fn=_cmd_eval)
    pr = vsub.add_parser("prompts", help="list the registered prompt sets")
    pr.set_defaults(fn=_cmd_prompts)

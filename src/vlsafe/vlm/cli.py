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
        ls = label_dataset(store, scorer, ps, resolve_prob(scorer, args.prob, ps.name), batch_size=args.batch_size)
    except (ConfigError, DatasetError, ValueError) as err:
        return _fail(err)
    q = {m: {int(k): v for k, v in r.items()} for m, r in ls.provenance["quality"].items()}
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


def _cmd_eval(args: argparse.Namespace) -> int:
    """Label each dataset (cached), then report AUROC/ECE for k = 1, 5, 15 and write the plots."""
    import numpy as np

    from vlsafe.config import ConfigError
    from vlsafe.data.store import DatasetError, EpisodeStore
    from vlsafe.vlm.label import label_dataset, read_labels
    from vlsafe.vlm.prompts import get_prompt_set
    from vlsafe.vlm.quality import format_quality, label_quality, plot_reliability, plot_strip

    out = Path(args.out)
    report, per_task = {}, {}
    try:
        for path in args.data:  # every dataset before any output
            EpisodeStore(path).validate()
        scorer = _scorer(args)
        ps = get_prompt_set(args.prompts)
        prob = resolve_prob(scorer, args.prob, ps.name)
        out.mkdir(parents=True, exist_ok=True)
        for path in args.data:
            store = EpisodeStore(path)
            ls = label_dataset(store, scorer, ps, prob, batch_size=args.batch_size, log=lambda *_: None)
            _, p_safe, _ = read_labels(store, ls.key)
            eps = {int(e["seed"]): store.read(int(e["seed"])) for e in store.entries()}
            seeds = sorted(eps)
            costs = [eps[s].cost for s in seeds]
            q = label_quality([p_safe[s] for s in seeds], costs, signals=[eps[s].signals for s in seeds])
            task = ls.provenance["dataset"].get("task") or Path(path).name
            name = f"{task}@{ls.provenance['dataset'].get('backend')}:{Path(path).name}"
            report[name] = {"key": ls.key, "quality": {m: {str(k): v for k, v in r.items()} for m, r in q.items()}}
            print(format_quality(q, f"{name} ({scorer.model_id}, {ps.name}, {prob.method})"), flush=True)
            pooled = per_task.setdefault(f"{task}@{ls.provenance['dataset'].get('backend')}", ([], [], [], []))
            pooled[0].extend(p_safe[s] for s in seeds)
            pooled[1].extend(costs)
            pooled[2].extend(eps[s].signals for s in seeds)
            pooled[3].append(name)
            stem = Path(path).name
            plot_reliability([p_safe[s] for s in seeds], costs, out / f"{stem}_reliability.png", k=5,
                             title=f"{name}: reliability, k=5")
            crashed = [s for s in seeds if eps[s].signals.get("collision", np.zeros(1)).max() > 0]
            pick = (crashed or seeds)[0]
            ep = eps[pick]
            plot_strip(p_safe[pick], ep.cost, ep.signals.get("collision"), out / f"{stem}_strip.png", frames=ep.bev,
                       title=f"{name} episode {pick} ({ep.behaviour}): p(safe) per frame")
        for task, (p, c, sig, names) in per_task.items():
            if len(names) > 1:
                q = label_quality(p, c, signals=sig)
                report[f"{task} (pooled)"] = {"datasets": names,
                                              "quality": {m: {str(k): v for k, v in r.items()} for m, r in q.items()}}
                print(format_quality(q, f"{task} pooled over {len(names)} datasets"), flush=True)
    except (ConfigError, DatasetError, ValueError) as err:
        return _fail(err)
    (out / "quality.json").write_text(dumps({"model": scorer.describe(), "prompts": ps.to_json(),
                                                  "prob": prob.describe(), "datasets": report}, indent=1))
    print(f"wrote {out}/quality.json and plots")
    return 0


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
    p.add_argument("--model", help="drive-clip: a trained model folder; clip: a CLIP folder or hub id")
    p.add_argument("--prompts", default="paper-v1", help="prompt set name or .json file (see `vlsafe vlm prompts`)")
    p.add_argument("--prob", default="softmax", choices=["softmax", "calibrated"], help="similarities -> p(safe)")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")


def add_commands(sub) -> None:
    """Register `vlm` (train, eval, prompts) and `label` on the main parser's subparsers."""
    lab = sub.add_parser("label", help="add VLM p(safe) labels to a dataset (cached, resumable)")
    lab.add_argument("path", help="dataset folder")
    _scorer_args(lab)
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
    e = vsub.add_parser("eval", help="label quality (AUROC, ECE for k=1,5,15) against real cost, with plots")
    e.add_argument("data", nargs="+", help="dataset folders (held-out episodes)")
    _scorer_args(e)
    e.add_argument("--out", default="runs/vlm-eval")
    e.set_defaults(fn=_cmd_eval)
    pr = vsub.add_parser("prompts", help="list the registered prompt sets")
    pr.set_defaults(fn=_cmd_prompts)

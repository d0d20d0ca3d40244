"""The `vlsafe` command. Each subcommand mirrors a function of the Python API."""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Callable

from vlsafe.config import ConfigError, to_dict
from vlsafe.runlog import dumps
from vlsafe.training.device import check_device

__all__ = ["main"]


def _cmd_envs(args: argparse.Namespace) -> int:
    from vlsafe.envs.tasks import BACKEND_NAMES, TASKS, VARIANTS, gym_id

    print("tasks (use NAME or NAME:VARIANT):")
    for name, text in TASKS.items():
        print(f"  {name:<11} {text}")
    print("variants: " + ", ".join(f"{v} ({', '.join(f'{k}={x}' for k, x in o.items())})" for v, o in VARIANTS.items() if v))
    print("backends: " + ", ".join(BACKEND_NAMES))
    print("gymnasium ids:")
    for name in TASKS:
        for variant in VARIANTS:
            print("  " + "  ".join(f"{gym_id(name, b, variant):<36}" for b in BACKEND_NAMES))
    return 0


def _write_gif(path: Path, frames, fps: int) -> None:
    import imageio.v2 as imageio

    imageio.mimsave(path, frames, duration=1.0 / fps, loop=0)


def drive(task: str, backend: str, episodes: int, seed: int, out: Path, overrides: list[str],
          gif_every: int = 2, quiet: bool = False, driver: str = "expert") -> dict:
    """Drive `episodes` episodes with a scripted behaviour; write metrics, GIF and config."""
    from vlsafe.envs import make
    from vlsafe.evaluation.metrics import aggregate, to_json
    from vlsafe.evaluation.runner import run_episode
    from vlsafe.experts.behaviours import BEHAVIOURS, make_driver
    from vlsafe.manifest import write_manifest

    if driver not in BEHAVIOURS:
        raise ConfigError(f"unknown driver {driver!r}; valid drivers: {', '.join(BEHAVIOURS)}")
    env = make(task, backend=backend, overrides=overrides, render_mode="rgb_array")
    out.mkdir(parents=True, exist_ok=True)
    runs = []
    try:
        for i in range(episodes):
            policy = make_driver(driver, seed + i).act
            run = run_episode(env, policy, seed=seed + i, record_every=gif_every if i == 0 else 0)
            runs.append(run)
            m = run.metrics
            if not quiet:
                print(f"  {task}@{backend} episode {i + 1}/{episodes} seed {seed + i}: {m.steps} steps in "
                      f"{run.wall_s:.1f}s ({m.steps / max(run.wall_s, 1e-9):.0f} steps/s) return {m.Return:.1f} "
                      f"cost {m.Cost:.0f} arrived {bool(m.AR)} collisions {m.collisions}", flush=True)
            if run.frames:
                _write_gif(out / "episode0.gif", run.frames, fps=int(round(1.0 / (env.dt * gif_every))))
    finally:
        env.close()
    row = aggregate(r.metrics for r in runs)
    (out / "episodes.json").write_text(dumps([{"seed": r.seed, **to_json(r.metrics)} for r in runs], indent=1))
    write_manifest(out, stage="drive", config=to_dict(env.config), extra={"driver": driver, "seed": seed,
                                                                        "episodes": episodes, "metrics": row})
    return row


def _cmd_drive(args: argparse.Namespace) -> int:
    from vlsafe.evaluation.metrics import format_table

    row = drive(args.task, args.backend, args.episodes, args.seed, Path(args.out), args.set, driver=args.driver)
    table = format_table({f"{args.task}@{args.backend}": row})
    (Path(args.out) / "metrics.md").write_text(table + "\n")
    print(table)
    return 0


def _demo_stage(folder: Path, stage: Callable[[], Any]) -> Any:
    """Run a demo stage; a folder the demo wrote with an earlier config (after an upgrade changed
    a default) is the demo's own output: replaced, and said so, not refused."""
    from vlsafe.data.store import DatasetMismatchError
    from vlsafe.training.checkpoint import RunMismatchError

    try:
        return stage()
    except (RunMismatchError, DatasetMismatchError):
        print(f"{folder}: a demo run of an earlier config; starting it again", flush=True)
        shutil.rmtree(folder)
        return stage()


def _cmd_demo(args: argparse.Namespace) -> int:
    from vlsafe.envs.tasks import TASKS
    from vlsafe.evaluation.metrics import format_table

    out = Path(args.out)
    backends = args.backends.split(",")
    rows = {}
    t0 = time.perf_counter()
    print(f"[1/5] drive: the scripted expert on {len(TASKS)} tasks x {backends}, writing {out}/", flush=True)
    for backend in backends:
        for task in TASKS:
            rows[f"{task}@{backend}"] = drive(task, backend, args.episodes, args.seed, out / f"{task}@{backend}", [])
    table = format_table(rows)
    (out / "metrics.md").write_text(table + "\n")
    print(table)

    from vlsafe.data.card import dataset_card
    from vlsafe.data.collect import collect, with_preset

    print(f"\n[2/5] collect: a tiny {args.data_task}@{backends[0]} dataset of the behaviour mixture", flush=True)
    store = _demo_stage(out / "dataset", lambda: collect(
        with_preset("tiny", task=args.data_task, backend=backends[0], workers=2), out / "dataset"))

    print("\n[3/5] label: p(safe) of every frame by the embedded drive-clip VLM (paper prompts T1/T2)", flush=True)
    if main(["label", str(store.root), "--threads", "2"]) != 0:
        return 2
    from vlsafe.vlm.quality import label_sections

    print(dataset_card(store, label_sections(store)))

    print(f"\n[4/5] train-wm: the xs world model for {args.wm_steps} steps, then held-out evaluation", flush=True)
    run = out / "wm"
    _demo_stage(run, lambda: _cmd_train_wm(argparse.Namespace(
        data=str(store.root), preset="xs", steps=args.wm_steps, out=str(run), device="cpu", eval=True,
        set=["batch_size=8", "seq_len=32", "log_every=20"])))
    print(f"\n[5/5] train-policy: VL-SAFE for {args.policy_steps} updates (the first half fit π̂_b), then "
          f"{args.eval_episodes} episodes in the simulator", flush=True)
    policy = out / "policy"
    _demo_stage(policy, lambda: _cmd_train_policy(argparse.Namespace(
        world_model=str(run), method="vl-safe", steps=args.policy_steps, seed=None, out=str(policy), device="cpu",
        set=["starts=64", "log_every=20", "eval_every=0", f"policy.bc_steps={args.policy_steps // 2}"])))
    _cmd_eval(argparse.Namespace(runs=[str(policy)], episodes=args.eval_episodes, seed_start=700, task=None, backend=None,
                                 variant="", out=str(policy / "eval"), no_videos=False, device="cpu", actor="policy",
                                 sampled=False, cost_threshold=10.0, threads=1))
    print(f"demo done in {time.perf_counter() - t0:.0f}s: GIFs in {out}/<task>@<backend>/episode0.gif, dataset and "
          f"labels in {out}/dataset, world model and imagined.gif in {run}, policy and best/worst videos in {policy}")
    return 0


def _cmd_snapshot(args: argparse.Namespace) -> int:
    """Drive a few steps with the route follower and save the BEV picture (docs/ images come from here)."""
    import imageio.v2 as imageio

    from vlsafe.envs import make
    from vlsafe.experts import RouteFollower

    env = make(args.task, backend=args.backend, overrides=args.set)
    try:
        env.reset(seed=args.seed)
        driver = RouteFollower()
        for _ in range(args.steps):
            _, _, terminated, truncated, _ = env.step(driver.act(env))
            if terminated or truncated:
                break
        frame = env.bev_frame(dataclasses.replace(env.config.observation.bev, size=args.size))
    finally:
        env.close()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    imageio.imwrite(args.out, frame)
    print(f"wrote {args.out} ({args.size}x{args.size}, {args.task}@{args.backend}, seed {args.seed}, step {args.steps})")
    return 0


def _cmd_collect(args: argparse.Namespace) -> int:
    from vlsafe.data.collect import collect, with_preset

    fields = {"task": args.task, "backend": args.backend, "seed_start": args.seed_start,
              "workers": args.workers, "bev_size": args.bev_size, "task_overrides": tuple(args.set),
              "expert_labels": args.expert_labels}
    if args.mixture:
        fields["mixture"] = args.mixture
    if args.steps or args.episodes:  # an explicit size replaces the preset's
        fields.update(steps=args.steps or 0, episodes=args.episodes or 0)
    cfg = with_preset(args.preset, **fields)
    collect(cfg, args.out or f"data/{args.task.replace(':', '-')}@{args.backend}-{args.preset}", cluster=args.cluster,
            address=args.address)
    return 0


def _cmd_data(args: argparse.Namespace) -> int:
    from vlsafe.data.store import EpisodeStore

    store = EpisodeStore(args.path)
    if args.data_command == "info":
        from vlsafe.data.card import dataset_card
        from vlsafe.vlm.quality import label_sections

        print(dataset_card(store, label_sections(store)))
    elif args.data_command == "verify":
        problems = store.verify()
        try:
            from vlsafe.vlm.label import verify_labels
        except ImportError:  # the VLM stage is not installed in this checkout
            verify_labels = None
        if verify_labels is not None:
            problems += verify_labels(store)
        for p in problems:
            print(p)
        print(f"{len(store.entries())} episodes checked, {len(problems)} problem(s)")
        return 1 if problems else 0
    elif args.data_command == "export":
        from vlsafe.data.minari_io import export_minari

        dataset_id = export_minari(store, args.out, args.id)
        print(f"exported {store.root} as Minari dataset {dataset_id!r} under {args.out} "
              f"(load with MINARI_DATASETS_PATH={args.out})")
    elif args.data_command == "build":
        from vlsafe.data.collect import collect, with_preset
        from vlsafe.envs.tasks import TASKS

        for task in TASKS:
            cfg = with_preset(args.preset, task=task, backend=args.backend, workers=args.workers)
            collect(cfg, Path(args.path) / f"{task}@{args.backend}-{args.preset}")
    elif args.data_command == "subset":
        from vlsafe.data.subset import make_subset

        sub = make_subset(store.root, args.fraction, args.out, seed=args.seed)
        print(f"wrote {sub.root}: {len(sub.entries())} of {len(store.entries())} episodes "
              f"(fraction {args.fraction:g}, seed {args.seed})")
    elif args.data_command == "import":
        from vlsafe.data.minari_io import import_minari

        imported = import_minari(args.id, args.root, args.path)
        print(f"imported {args.id!r} into {imported.root}: {len(imported.entries())} episodes")
    return 0


def _cmd_train_wm(args: argparse.Namespace) -> int:
    from vlsafe.worldmodel.train import fit, resolve_config

    check_device(args.device)
    cfg = resolve_config(args.preset, [f"steps={args.steps}", *args.set] if args.steps is not None else args.set)
    out = args.out or f"runs/wm/{Path(args.data).name}__{args.preset}"
    print(f"train-wm: preset {args.preset}, {cfg.steps} steps, data {args.data} -> {out} on {args.device}", flush=True)
    fit(args.data, out, cfg, device=args.device)
    from vlsafe.training.distributed import env_ranks

    if not env_ranks().main:  # under torchrun: rank 0 evaluates and reports
        return 0
    return _cmd_eval_wm(argparse.Namespace(run=out, data=args.data, device=args.device, aheads=None,
                                           uncertainty=None)) if args.eval else 0


def _cmd_train_policy(args: argparse.Namespace) -> int:
    from vlsafe.policy.train import fit, resolve_config

    check_device(args.device)
    over = list(args.set) + ([f"steps={args.steps}"] if args.steps else [])
    over += [f"seed={args.seed}"] if args.seed is not None else []
    cfg = resolve_config(args.method, over)
    wm = Path(args.world_model)
    out = args.out or f"runs/policy/{wm.name}__{cfg.policy.method}__s{cfg.seed}"
    print(f"train-policy: {cfg.policy.method}, {cfg.steps} updates, world model {wm} -> {out} on {args.device}", flush=True)
    fit(wm, out, cfg, device=args.device)
    from vlsafe.training.distributed import env_ranks

    if env_ranks().main:  # under torchrun: rank 0 alone reports
        print(f"wrote {out}")
    return 0


def _cmd_baseline_train(args: argparse.Namespace) -> int:
    from vlsafe.baselines.config import BaselineConfig
    from vlsafe.baselines.run import fit
    from vlsafe.config import apply_overrides

    over = [f"algo={args.algo}"] + list(args.set) + ([f"steps={args.steps}"] if args.steps else [])
    over += [f"seed={args.seed}"] if args.seed is not None else []
    cfg = apply_overrides(BaselineConfig(), over)
    src = Path(args.data).name if args.data else (args.task or "")
    out = args.out or f"runs/baseline/{src}__{cfg.algo}__s{cfg.seed}"
    kind = "gradient" if cfg.offline else "environment"
    print(f"baseline train: {cfg.algo} ({cfg.observation}, {cfg.action_mode} actions), {cfg.total_steps:,} {kind} "
          f"steps -> {out}", flush=True)
    fit(cfg, out, data=args.data, task=args.task)
    print(f"wrote {out}")
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    from vlsafe.evaluation.evaluate import evaluate_policies, report_table
    from vlsafe.policy.agent import POSTERIORS

    if args.episodes < 1:
        raise ValueError(f"--episodes: expected >= 1, got {args.episodes}")
    if args.threads < 0:
        raise ValueError(f"--threads: expected >= 0, got {args.threads}")
    posterior = getattr(args, "posterior", "mode")
    if posterior not in POSTERIORS:
        raise ValueError(f"--posterior: expected {' or '.join(POSTERIORS)}, got {posterior!r}")
    check_device(args.device)
    out = args.out or str(Path(args.runs[0]) / "eval")
    rep = evaluate_policies(args.runs, episodes=args.episodes, seed_start=args.seed_start, task=args.task,
                            backend=args.backend, variant=args.variant, out=out, videos=not args.no_videos,
                            device=args.device, greedy=not getattr(args, "sampled", False),
                            actor=getattr(args, "actor", "policy"), cost_threshold=args.cost_threshold,
                            threads=args.threads, posterior=posterior, cluster=getattr(args, "cluster", "local"),
                            workers=getattr(args, "workers", 1), address=getattr(args, "address", None))
    print(report_table(rep))
    print(f"wrote {out}/eval.json, eval.md" + (", best/worst videos" if not args.no_videos else ""))
    return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    from vlsafe.evaluation.compare import compare_reports, load_report

    reports = [load_report(p) for p in args.evals]
    print(compare_reports(reports, [m.strip() for m in args.metrics.split(",") if m.strip()]))
    return 0


def _cmd_benchmark(args: argparse.Namespace) -> int:
    import shlex

    from vlsafe.benchmark import expand, resolve_benchmark, run_benchmark

    over = list(args.set) + ([f"workers={args.workers}"] if args.workers is not None else [])
    cfg = resolve_benchmark(args.preset, over)
    if args.dry_run:
        for c in expand(cfg):
            print(f"{c.key}  {c.name}")
        return 0
    command = "vlsafe benchmark " + shlex.join(sys.argv[2:] if sys.argv[1:2] == ["benchmark"] else
                                               ["--preset", args.preset, "--out", args.out, *[f"--set={o}" for o in over]])
    res = run_benchmark(cfg, args.out, cluster=args.cluster, address=args.address, command=command)
    return 1 if res.failed or res.skipped else 0


def _cmd_report(args: argparse.Namespace) -> int:
    from vlsafe.benchmark.report import write_report
    from vlsafe.benchmark.results import pool_results

    results = args.results[0]
    if len(args.results) > 1:
        if not args.out:
            raise ConfigError("report: several benchmark folders are pooled into --out, which is missing")
        results = pool_results(args.results, args.out, args.reference)
    elif args.reference:
        raise ConfigError("report: --reference picks the pooled results' reference; one benchmark keeps its own")
    page = write_report(results, args.out)
    print(f"wrote {page} and its PNG figures beside it")
    return 0


def _cmd_eval_wm(args: argparse.Namespace) -> int:
    from vlsafe.data.store import EpisodeStore
    from vlsafe.manifest import read_json
    from vlsafe.worldmodel.evaluate import evaluate_world_model
    from vlsafe.worldmodel.train import load_world_model, run_label_choice, training_labels

    scoring = {}  # what is not given keeps evaluate_world_model's defaults (5 and 15 steps, λ_u = 1)
    if args.aheads is not None:
        try:
            scoring["aheads"] = tuple(int(k) for k in args.aheads.split(","))
        except ValueError:
            raise ConfigError(f"--aheads: expected imagined steps like 5,15, got {args.aheads!r}") from None
        if min(scoring["aheads"]) < 1:
            raise ConfigError(f"--aheads: expected imagined steps >= 1, got {args.aheads!r}")
    if args.uncertainty is not None:
        if args.uncertainty < 0:
            raise ConfigError(f"--uncertainty: expected λ_u >= 0, got {args.uncertainty}")
        scoring["uncertainty"] = args.uncertainty
    model, meta = load_world_model(args.run, check_device(args.device))
    run_cfg = read_json(Path(args.run) / "config.json", "a train-wm run's config", ("data", "held_out_seeds", "train"))
    store = EpisodeStore(args.data or run_cfg["data"])
    store.validate(image_size=model.config.image_size)
    held = run_cfg["held_out_seeds"] if not args.data or args.data == run_cfg["data"] else \
        [int(e["seed"]) for e in store.entries()]
    choice = run_label_choice(run_cfg, same_data=store.root.resolve() == Path(run_cfg["data"]).resolve())
    labels = training_labels(store, choice) if choice != "none" else None
    report = evaluate_world_model(model, store, held, labels=labels, out=Path(args.run), **scoring)
    print(dumps(report, indent=1))
    print(f"wrote {args.run}/eval.json and {args.run}/imagined.gif")
    return 0


def _cluster_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cluster", default="local", help="where the workers run: local (processes here) or ray")
    p.add_argument("--address", help="with --cluster ray: auto (the cluster `ray start` made here) or HOST:PORT; "
                                     "default: a private Ray instance on this machine")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vlsafe", description="VL-SAFE: offline safe RL for driving with VLM guidance.")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("envs", help="list tasks, variants, backends and gymnasium ids").set_defaults(fn=_cmd_envs)

    d = sub.add_parser("drive", help="drive a task with a scripted behaviour; metrics table + GIF")
    d.add_argument("--task", default="four-lane", help="task name, optionally NAME:VARIANT (see `vlsafe envs`)")
    d.add_argument("--backend", default="metadrive")
    d.add_argument("--episodes", type=int, default=3)
    d.add_argument("--driver", default="expert", help="scripted behaviour: expert, noisy or reckless")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--out", default="runs/drive")
    d.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="dotted TaskConfig override, e.g. --set traffic_density=0.2 --set observation.bev.size=128")
    d.set_defaults(fn=_cmd_drive)

    s = sub.add_parser("snapshot", help="save one BEV picture of a task after N scripted steps")
    s.add_argument("--task", default="four-lane")
    s.add_argument("--backend", default="metadrive")
    s.add_argument("--steps", type=int, default=40)
    s.add_argument("--size", type=int, default=128)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--out", default="bev.png")
    s.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    s.set_defaults(fn=_cmd_snapshot)

    c = sub.add_parser("collect", help="record episodes of a behaviour mixture (resumable, parallel)")
    c.add_argument("--task", default="four-lane")
    c.add_argument("--backend", default="metadrive")
    c.add_argument("--preset", default="tiny", help="dataset size: tiny (tests/demo), small (~50k steps), full (~500k)")
    c.add_argument("--steps", type=int, help="collect until this many steps (overrides the preset)")
    c.add_argument("--episodes", type=int, help="collect exactly this many episodes (overrides the preset)")
    c.add_argument("--mixture", help="behaviour:weight,... (default: the task's own: expert:0.75,noisy:0.25 on "
                   "left-turn@metadrive, expert:0.5,noisy:0.25,reckless:0.25 elsewhere)")
    c.add_argument("--seed-start", type=int, default=0)
    c.add_argument("--workers", type=int, default=1)
    c.add_argument("--bev-size", type=int, default=64)
    c.add_argument("--expert-labels", action="store_true",
                   help="also record the expert's action at every state (for train-policy --set policy.action_labels=expert)")
    c.add_argument("--out", help="dataset folder (default data/<task>@<backend>-<preset>)")
    c.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="TaskConfig override")
    _cluster_args(c)
    c.set_defaults(fn=_cmd_collect)

    data = sub.add_parser("data", help="inspect, verify, export and import datasets")
    dsub = data.add_subparsers(dest="data_command", required=True)
    i = dsub.add_parser("info", help="print the dataset card")
    i.add_argument("path")
    v = dsub.add_parser("verify", help="check every episode file against its checksum")
    v.add_argument("path")
    bd = dsub.add_parser("build", help="collect the default dataset of every task for a preset")
    bd.add_argument("path", nargs="?", default="data", help="parent folder (default data/)")
    bd.add_argument("--preset", default="small", help="tiny, small (~50k steps per task) or full (~500k)")
    bd.add_argument("--backend", default="metadrive")
    bd.add_argument("--workers", type=int, default=2)
    e = dsub.add_parser("export", help="write the dataset in Farama Minari format")
    e.add_argument("path")
    e.add_argument("--minari", action="store_true", required=True, help="export format (Minari)")
    e.add_argument("--out", required=True, help="Minari datasets root folder")
    e.add_argument("--id", help="Minari dataset id (default vlsafe/<task>-<backend>-v0)")
    sb = dsub.add_parser("subset", help="a nested trajectory-level subset (sample-efficiency studies)")
    sb.add_argument("path", help="source dataset folder")
    sb.add_argument("--fraction", type=float, required=True, help="share of each behaviour's episodes, in (0, 1]")
    sb.add_argument("--seed", type=int, default=0, help="the permutation (the same seed nests 10%% in 30%% in 100%%)")
    sb.add_argument("--out", required=True, help="new dataset folder (its own labels and world model)")
    im = dsub.add_parser("import", help="read a Minari dataset (a vlsafe export) into a dataset folder")
    im.add_argument("path", help="new dataset folder")
    im.add_argument("--minari", action="store_true", required=True)
    im.add_argument("--root", required=True, help="Minari datasets root folder")
    im.add_argument("--id", required=True, help="Minari dataset id")
    data.set_defaults(fn=_cmd_data)

    w = sub.add_parser("train-wm", help="train the safety-aware world model offline on a labelled dataset")
    w.add_argument("data", help="dataset folder (from vlsafe collect, labelled by vlsafe label)")
    w.add_argument("--preset", default="xs", help="model size: xs (tests, CPU demo), s, m")
    w.add_argument("--steps", type=int, help="training steps (default: the config's)")
    w.add_argument("--out", help="run folder (default runs/wm/<data>__<preset>); an existing run is resumed")
    w.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 ...")
    w.add_argument("--eval", action="store_true", help="evaluate on the held-out episodes afterwards")
    w.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="TrainWMConfig override, e.g. --set lr=1e-4 --set model.deter=256 --set labels=none")
    w.set_defaults(fn=_cmd_train_wm)

    we = sub.add_parser("eval-wm", help="held-out metrics, open-loop prediction and a GIF of a trained world model")
    we.add_argument("run", help="train-wm run folder")
    we.add_argument("--data", help="dataset (default: the run's; another dataset is evaluated whole)")
    we.add_argument("--aheads", help="imagined steps at which p̂ is scored, e.g. 5,15 (the default)")
    we.add_argument("--uncertainty", type=float,
                    help="λ_u of the penalised p̂ on imagined states (world models with an ensemble; default 1)")
    we.add_argument("--device", default="cpu")
    we.set_defaults(fn=_cmd_eval_wm)

    tp = sub.add_parser("train-policy", help="learn a policy in the imagination of a trained world model")
    tp.add_argument("world_model", help="train-wm run folder (its dataset gives the start states and the task)")
    tp.add_argument("--method", default="vl-safe", help="vl-safe, dreamer-offline, lagrangian, fosp, bc")
    tp.add_argument("--steps", type=int, help="actor-critic updates (default: the config's)")
    tp.add_argument("--seed", type=int, help="training seed (default 0)")
    tp.add_argument("--out", help="run folder (default runs/policy/<world model>__<method>__s<seed>); resumed if it exists")
    tp.add_argument("--device", default="cpu")
    tp.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="TrainPolicyConfig override, e.g. --set policy.beta1=3 --set policy.lagrangian=true --set eval_every=0")
    tp.set_defaults(fn=_cmd_train_policy)

    bl = sub.add_parser("baseline", help="library baselines: d3rlpy (bc, cql, iql), OSRL (bcql, cpq), SB3 (ppo, sac, dqn)")
    blsub = bl.add_subparsers(dest="baseline_command", required=True)
    bt = blsub.add_parser("train", help="train a library baseline offline on a dataset or online in the simulator")
    bt.add_argument("--algo", required=True, choices=["bc", "cql", "iql", "bcql", "cpq", "ppo", "sac", "dqn"],
                    help="d3rlpy: bc, cql, iql; OSRL (cost-aware): bcql (BCQ-Lag), cpq; SB3 (online): ppo, sac, dqn")
    bt.add_argument("--data", help="dataset folder (offline algorithms; online ones take its task)")
    bt.add_argument("--task", help="task NAME[:VARIANT] (online algorithms)")
    bt.add_argument("--steps", type=int, help="gradient steps (offline) or environment steps (online)")
    bt.add_argument("--seed", type=int, help="training seed (default 0)")
    bt.add_argument("--out", help="run folder (default runs/baseline/<data or task>__<algo>__s<seed>); resumed if it exists")
    bt.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="BaselineConfig override, e.g. --set observation=bev --set n_envs=2 --set action=continuous")
    bt.set_defaults(fn=_cmd_baseline_train)

    ev = sub.add_parser("eval", help="trained policies in the simulator: the ten metrics with 95%% CIs and videos")
    ev.add_argument("runs", nargs="+", help="train-policy or baseline run folders (pooled: e.g. one method's seeds)")
    ev.add_argument("--episodes", type=int, default=20, help="episodes per run (the same seeds for every run)")
    ev.add_argument("--seed-start", type=int, default=700,
                    help="first episode seed (default 700: reported seeds; train-policy tunes on 500+)")
    ev.add_argument("--actor", default="policy", choices=["policy", "behaviour"],
                    help="drive the learned actor, or each run's behaviour head π̂_b (behaviour cloning)")
    ev.add_argument("--sampled", action="store_true", help="sample actions instead of the greedy mode")
    ev.add_argument("--posterior", default="mode", help="how a world-model policy reads each frame's z_t: mode "
                    "(default; the most likely class of each categorical) or sample (a random draw, as trained)")
    ev.add_argument("--task", help="another task (NAME or NAME:VARIANT) than the policy's own")
    ev.add_argument("--backend", help="another backend than the policy's own")
    ev.add_argument("--variant", default="", help="shift variant: sparse, dense, unseen")
    ev.add_argument("--out", help="folder for eval.json, eval.md and best/worst videos (default: the first run's eval/)")
    ev.add_argument("--no-videos", action="store_true")
    ev.add_argument("--cost-threshold", type=float, default=10.0,
                    help="episode cost budget κ of the DSRL-normalised cost (default %(default)s)")
    ev.add_argument("--threads", type=int, default=1,
                    help="torch CPU threads (default 1: one frame per step gains nothing from more, and evaluations "
                         "side by side that oversubscribe the cores ran ~10x slower; 0 = torch's default)")
    ev.add_argument("--device", default="cpu")
    ev.add_argument("--workers", type=int, default=1, help="episodes in parallel (local processes or Ray actors)")
    _cluster_args(ev)
    ev.set_defaults(fn=_cmd_eval)

    cp = sub.add_parser("compare", help="paired differences between evaluations of the same episode seeds")
    cp.add_argument("evals", nargs="+", help="eval folders or eval.json files; each is compared with the first")
    cp.add_argument("--metrics", default="Return,Cost,AR,CR", help="comma-separated metrics (default %(default)s)")
    cp.set_defaults(fn=_cmd_compare)

    bm = sub.add_parser("benchmark", help="the paper's evaluation: methods x tasks x seeds x data fractions x shifts, cached")
    bm.add_argument("--preset", default="small", help="smoke (CI, ~2 min), small (the committed benchmark) or full")
    bm.add_argument("--out", default="runs/benchmark", help="benchmark folder (cells/ and results/); rerun to resume")
    bm.add_argument("--workers", type=int, help="cells at a time (default: the preset's)")
    bm.add_argument("--dry-run", action="store_true", help="list the grid's cells and stop")
    bm.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="BenchmarkConfig override, e.g. --set tasks=left-turn,navigation --set eval.episodes=10")
    _cluster_args(bm)
    bm.set_defaults(fn=_cmd_benchmark)

    rp = sub.add_parser("report", help="one self-contained HTML page (and PNG figures) of a benchmark's results")
    rp.add_argument("results", nargs="+", help="benchmark folder (or its results/ folder); several benchmark folders "
                    "(e.g. a second run that added methods over the first one's cached cells) are pooled into --out")
    rp.add_argument("--out", help="folder of report.html and the figures (default: RESULTS/report; pooled: also "
                    "the pooled episodes.csv and summary.json)")
    rp.add_argument("--reference", help="pooled: the method of the paired differences (default: the first run's)")
    rp.set_defaults(fn=_cmd_report)

    m = sub.add_parser("demo", help="the whole pipeline on a small default (grows with each stage)")
    m.add_argument("--out", default="runs/demo")
    m.add_argument("--backends", default="metadrive,highway")
    m.add_argument("--episodes", type=int, default=1)
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--data-task", default="four-lane", help="task of the demo dataset")
    m.add_argument("--wm-steps", type=int, default=100, help="world-model training steps")
    m.add_argument("--policy-steps", type=int, default=100, help="actor-critic updates in imagination")
    m.add_argument("--eval-episodes", type=int, default=2, help="simulator episodes of the trained policy")
    m.set_defaults(fn=_cmd_demo)

    from vlsafe.vlm.cli import add_commands; add_commands(sub)  # noqa: E702, I001
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except (ConfigError, ValueError, OSError) as err:  # user mistakes and unreadable paths: one line, no traceback
        print(f"vlsafe: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

"""`vlsafe eval`: trained policies in the simulator, the ten metrics with 95% confidence
intervals, and videos of the best and worst episodes with p̂(safe) and cost drawn on them.

Several runs (e.g. one method trained with three seeds) drive the same episode seeds and are
pooled; intervals come from a bootstrap over episodes of the same `aggregate` that makes the
table, so pooled rates (TCF, DCF) get intervals too. Any run `evaluation.driver` can load is
welcome: world-model policies and library baselines go through the same loop and seeds.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import torch

from vlsafe.config import ConfigError, from_dict
from vlsafe.envs.driving_env import DrivingEnv
from vlsafe.envs.tasks import VARIANTS, TaskConfig, parse_task
from vlsafe.evaluation.driver import Driver, load_driver
from vlsafe.evaluation.metrics import METRICS, EpisodeMeter, aggregate, format_table, to_json
from vlsafe.evaluation.normalised import COST_THRESHOLD, normalised_scores
from vlsafe.evaluation.runner import EpisodeRun
from vlsafe.runlog import dumps

__all__ = ["make_env", "simulate", "bootstrap_ci", "paired_difference", "evaluate_policies", "report_table", "ACTORS",
           "EVAL_SEED_START"]

ACTORS = ("policy", "behaviour")
# Reported evaluations drive seeds from 700 (maps 700+, traffic never in a default dataset); the
# in-training evaluation (train-policy's eval_seed_start) uses 500+ and is the place to tune.
EVAL_SEED_START = 700


def make_env(task: dict[str, Any], name: str | None = None, backend: str | None = None, variant: str = "",
             render: bool = False, action: str | None = None) -> DrivingEnv:
    """The policy's training task (observation and episode length kept), optionally another
    task, backend or shift variant of it, or another action mode; an episode always ends at its
    first crash, whatever `steps_after_crash` the dataset was recorded with. A policy trained on
    mixed densities (`traffic_densities`) is scored at one: the task's `traffic_density` or the
    variant's, so that it meets the same traffic as every other method on the same seeds."""
    data = {**task, "steps_after_crash": 0, "traffic_densities": ()}
    if action:
        data["action"] = action
    if name:
        data["task"], v = parse_task(name)
        variant = variant or v
    if backend:
        data["backend"] = backend
    if variant:
        if variant not in VARIANTS:
            raise ValueError(f"unknown variant {variant!r}; valid variants: {', '.join(x for x in VARIANTS if x)}")
        data.update(variant=variant, **VARIANTS[variant])
    return DrivingEnv(from_dict(TaskConfig, data), render_mode="rgb_array" if render else None)


def _overlay(frame: np.ndarray, p_safe: float | None, cost_pred: float | None, cost: float) -> np.ndarray:
    import cv2

    img = np.ascontiguousarray(frame.copy())
    h, w = img.shape[:2]
    if p_safe is None:  # a method without a world model: only the real cost is drawn
        if cost > 0:
            cv2.rectangle(img, (0, 0), (w - 1, h - 1), (255, 0, 0), 3)
        return img
    bar = int(round(p_safe * (w - 8)))
    cv2.rectangle(img, (4, h - 10), (w - 4, h - 4), (60, 60, 60), -1)
    cv2.rectangle(img, (4, h - 10), (4 + bar, h - 4), (int(255 * (1 - p_safe)), int(255 * p_safe), 0), -1)
    cv2.putText(img, f"p(safe) {p_safe:.2f} cost {cost_pred:.2f}", (4, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.35,
                (255, 255, 255), 1, cv2.LINE_AA)
    if cost > 0:  # a real cost at this step: red frame
        cv2.rectangle(img, (0, 0), (w - 1, h - 1), (255, 0, 0), 3)
    return img


def simulate(driver: Driver, env: DrivingEnv, seeds: Iterable[int], record: bool = False,
             on_episode: Callable[[EpisodeRun], None] | None = None) -> list[EpisodeRun]:
    """Drive one episode per seed with `driver(env) -> action`; `record` keeps rendered frames
    with the driver's p̂(safe) and ĉ drawn on them (where it has them).

    Each episode draws torch's random numbers (the world model's posterior samples, sampled
    actions) from a generator seeded with the episode seed, inside a fork of the caller's: an
    episode's outcome does not depend on what ran before it in the process (how many runs were
    loaded, which episodes came first), and two methods on the same seed see the same noise.
    Without it the same π̂_b on the same 60 seeds crashed in 8% and in 22% of them."""
    runs = []
    devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
    for seed in seeds:
        env.reset(seed=int(seed))
        meter, frames = EpisodeMeter(env.dt), []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(int(seed))
            while True:
                action = driver(env)
                before = env.render() if record else None
                _, reward, terminated, truncated, info = env.step(action)
                meter.add(reward, info)
                if record:
                    frames.append(_overlay(before, driver.p_safe, driver.cost, float(info["cost"])))
                if terminated or truncated:
                    break
        run = EpisodeRun(seed=int(seed), metrics=meter.result(), frames=frames)
        runs.append(run)
        if on_episode:
            on_episode(run)
    return runs


def bootstrap_ci(episodes: list, n: int = 1000, seed: int = 0, level: float = 0.95) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap over episodes of every metric of `aggregate` (NaN where undefined)."""
    rng = np.random.default_rng(seed)
    samples = {m: [] for m in METRICS}
    for _ in range(n):
        pick = rng.integers(0, len(episodes), len(episodes))
        row = aggregate([episodes[i] for i in pick])
        for m in METRICS:
            samples[m].append(row[m])
    lo, hi = (1 - level) / 2 * 100, (1 + level) / 2 * 100
    out = {}
    for m, v in samples.items():
        arr = np.asarray(v, float)
        arr = arr[np.isfinite(arr)]
        out[m] = (float(np.percentile(arr, lo)), float(np.percentile(arr, hi))) if len(arr) else (math.nan, math.nan)
    return out


def paired_difference(a: list, b: list, n: int = 2000, seed: int = 0, level: float = 0.95) -> dict[str, dict[str, float]]:
    """Metric(A) − metric(B) over paired episodes (the same training-seed index and episode seed in
    both lists), with a percentile bootstrap over the pairs: an interval on the difference itself,
    which is narrower than comparing two per-method intervals when the pairs are correlated."""
    if len(a) != len(b) or not a:
        raise ValueError(f"paired_difference: need two equally long, non-empty episode lists, got {len(a)} and {len(b)}")
    rng = np.random.default_rng(seed)
    A, B = aggregate(a), aggregate(b)
    samples = {m: [] for m in METRICS}
    for _ in range(n):
        pick = rng.integers(0, len(a), len(a))
        ra, rb = aggregate([a[i] for i in pick]), aggregate([b[i] for i in pick])
        for m in METRICS:
            samples[m].append(ra[m] - rb[m])
    lo, hi = (1 - level) / 2 * 100, (1 + level) / 2 * 100
    out = {}
    for m in METRICS:
        arr = np.asarray(samples[m], float)
        arr = arr[np.isfinite(arr)]
        ci = (float(np.percentile(arr, lo)), float(np.percentile(arr, hi))) if len(arr) else (math.nan, math.nan)
        out[m] = {"diff": A[m] - B[m], "lo": ci[0], "hi": ci[1]}
    return out


def _write_video(path: Path, frames: list[np.ndarray], fps: int = 10) -> Path:
    """MP4 (OpenCV's mp4v) where this OpenCV can write one, else GIF."""
    import cv2

    if path.suffix == ".mp4":
        h, w = frames[0].shape[:2]
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
        if writer.isOpened():
            for f in frames:
                writer.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
            writer.release()
            return path
        path = path.with_suffix(".gif")
    import imageio.v2 as imageio

    imageio.mimsave(path, frames, duration=1.0 / fps, loop=0)
    return path


_WORKER: dict[str, Any] = {}


def _init_eval_worker(runs: list[str], device: str, greedy: bool, actor: str, posterior: str, env_args: tuple,
                      threads: int) -> None:
    """A parallel evaluation worker: every run's driver and one environment, loaded once."""
    torch.set_num_threads(threads or 1)
    loaded = [load_driver(r, device=device, greedy=greedy, actor=actor, posterior=posterior) for r in runs]
    name, backend, variant, action = env_args
    _WORKER.update(drivers=[r.driver for r in loaded],
                   env=make_env(loaded[0].task, name, backend, variant, render=False, action=action))


def _eval_episode(run_index: int, seed: int) -> dict[str, Any]:
    """One episode's metrics (small: nothing but numbers goes back to the caller)."""
    return to_json(simulate(_WORKER["drivers"][run_index], _WORKER["env"], [seed])[0].metrics)


def _simulate_parallel(runs: list[str], seeds: list[int], cluster: str, workers: int, address: str | None,
                       init_args: tuple, log: Callable[[str], None]) -> dict[int, list]:
    """Every (run, seed) episode on `workers` workers; the same metrics as the serial loop, because
    each episode's random numbers come from its own seed (simulate)."""
    from concurrent.futures import as_completed

    from vlsafe.cluster import worker_pool
    from vlsafe.evaluation.compare import _episode

    out: dict[int, list] = {i: [None] * len(seeds) for i in range(len(runs))}
    with worker_pool(cluster, workers, _init_eval_worker, init_args, address=address) as pool:
        futures = {pool.submit(_eval_episode, i, s): (i, j) for i in range(len(runs)) for j, s in enumerate(seeds)}
        for n, fut in enumerate(as_completed(futures), 1):
            i, j = futures[fut]
            out[i][j] = _episode(fut.result())
            m = out[i][j]
            log(f"  [{n}/{len(futures)}] {runs[i]} seed {seeds[j]}: return {m.Return:.1f} cost {m.Cost:.1f} "
                f"AR {m.AR:.0f} CR {m.CR:.0f}")
    return out


def _drive_serial(loaded: list, env: DrivingEnv, seeds: list[int], videos: bool, log: Callable[[str], None]):
    """Every run on every seed in this process; the best and the worst episode keep their frames."""
    per_run, best, worst = {}, None, None
    for run in loaded:
        path = run.path
        log(f"eval {path} ({run.method}) on {env.config.task}@{env.config.backend}"
            f"{':' + env.config.variant if env.config.variant else ''}, seeds {seeds[0]}..{seeds[-1]}")

        def keep(ep: EpisodeRun, path=path) -> None:
            nonlocal best, worst
            m = ep.metrics.Return
            log(f"  seed {ep.seed}: return {m:.1f} cost {ep.metrics.Cost:.1f} AR {ep.metrics.AR:.0f} "
                f"CR {ep.metrics.CR:.0f}")
            if best is None or m > best[0]:
                best = (m, str(path), ep.seed, ep.frames)
            if worst is None or m < worst[0]:
                worst = (m, str(path), ep.seed, ep.frames)
            ep.frames = []  # only the best and the worst keep their frames

        per_run[str(path)] = [e.metrics for e in simulate(run.driver, env, seeds, record=videos, on_episode=keep)]
    return per_run, best, worst


def _drive_parallel(loaded: list, env: DrivingEnv, seeds: list[int], videos: bool, init: tuple, cluster: str,
                    workers: int, address: str | None, log: Callable[[str], None]):
    """Every (run, seed) episode on parallel workers; then the best and the worst are driven once
    more here with recording (an episode is reproducible from its seed)."""
    results = _simulate_parallel([str(r.path) for r in loaded], seeds, cluster, workers, address, init, log)
    per_run, ranked = {}, []
    for i, run in enumerate(loaded):
        per_run[str(run.path)] = results[i]
        ranked += [(m.Return, i, seeds[j]) for j, m in enumerate(results[i])]
    best, worst = max(ranked, key=lambda x: x[0]), min(ranked, key=lambda x: x[0])
    if not videos:
        return per_run, None, None
    return per_run, *((ret, str(loaded[i].path), seed, simulate(loaded[i].driver, env, [seed], record=True)[0].frames)
                      for ret, i, seed in (best, worst))


def evaluate_policies(runs: list[str | Path], episodes: int = 20, seed_start: int = EVAL_SEED_START, task: str | None = None,
                      backend: str | None = None, variant: str = "", out: str | Path | None = None, videos: bool = True,
                      device: str = "cpu", log: Callable[[str], None] = print, greedy: bool = True,
                      actor: str = "policy", cost_threshold: float = COST_THRESHOLD, threads: int = 1,
                      posterior: str = "mode", cluster: str = "local", workers: int = 1,
                      address: str | None = None) -> dict[str, Any]:
    """Every run drives the same `episodes` seeds; returns (and writes to `out`) the pooled table.
    `actor="behaviour"` drives each run's π̂_b (the behaviour-cloning row); `greedy=False` samples.
    `posterior`: "mode" or "sample", how a world-model policy filters z_t (policy.agent.DrivingAgent).
    `threads`: torch CPU threads (0 = torch's default); the drivers infer one frame per step.
    `cluster`, `workers`: episodes in parallel on local processes or Ray actors (vlsafe.cluster);
    the best and worst episodes are then driven once more here to record their videos."""
    if actor not in ACTORS:
        raise ValueError(f"actor: expected one of {', '.join(ACTORS)}, got {actor!r}")
    if workers < 1:
        raise ValueError(f"--workers: expected >= 1, got {workers}")
    from vlsafe.cluster import check_cluster

    check_cluster(cluster, address)
    if threads:
        torch.set_num_threads(threads)
    loaded = [load_driver(r, device=device, greedy=greedy, actor=actor, posterior=posterior)
              for r in runs]  # validate all first
    modes = {r.driver.action_mode for r in loaded}
    if len(modes) > 1:
        kinds = ", ".join(f"{r.path} acts {r.driver.action_mode}" for r in loaded)
        raise ConfigError(f"cannot pool runs with different action modes ({kinds}); evaluate them separately")
    methods = {r.method for r in loaded}
    action = modes.pop()
    env = make_env(loaded[0].task, task, backend, variant, render=videos, action=action)
    seeds = list(range(seed_start, seed_start + episodes))
    if cluster != "local" or workers > 1:
        log(f"eval {len(loaded)} run(s) x seeds {seeds[0]}..{seeds[-1]} on {workers} {cluster} worker(s)")
        init = ([str(r.path) for r in loaded], device, greedy, actor, posterior, (task, backend, variant, action), threads)
        per_run, best, worst = _drive_parallel(loaded, env, seeds, videos, init, cluster, workers, address, log)
    else:
        per_run, best, worst = _drive_serial(loaded, env, seeds, videos, log)
    pooled = [m for ms in per_run.values() for m in ms]
    env.close()
    report = {"methods": sorted(methods), "actor": actor, "greedy": greedy, "posterior": posterior,
              "task": env.config.task,
              "backend": env.config.backend,
              "variant": env.config.variant, "seeds": seeds, "runs": [str(r) for r in runs],
              "metrics": aggregate(pooled), "ci95": bootstrap_ci(pooled),
              "normalised": None,
              "facts": {str(r.path): r.facts for r in loaded if r.facts},
              "per_run": {k: aggregate(v) for k, v in per_run.items()},
              "episodes": {k: [to_json(m) for m in v] for k, v in per_run.items()}}
    report["normalised"] = normalised_scores(report["metrics"], report["ci95"], env.config.task, env.config.backend,
                                             cost_threshold)
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        if videos and best is not None:
            for name, (ret, run, seed, frames) in (("best", best), ("worst", worst)):
                p = _write_video(out / f"{name}.mp4", frames)
                report[f"video_{name}"] = {"path": str(p), "run": run, "seed": seed, "return": ret}
        (out / "eval.json").write_text(dumps(report, indent=1))  # NaN (no crash to time) -> null
        (out / "eval.md").write_text(report_table(report) + "\n")
    return report


def report_table(report: dict[str, Any]) -> str:
    """The pooled row of an evaluation report, each metric as 'mean [lo, hi]'."""
    name = "/".join(report["methods"])
    table = format_table({name: report["metrics"]}, intervals={name: report["ci95"]})
    n = report.get("normalised")
    if n:
        table += (f"\nDSRL-normalised: reward {n['reward']:.2f} [{n['reward_ci95'][0]:.2f}, {n['reward_ci95'][1]:.2f}], "
                  f"cost {n['cost']:.2f} [{n['cost_ci95'][0]:.2f}, {n['cost_ci95'][1]:.2f}] at threshold "
                  f"{n['threshold']:g} ({'safe' if n['safe'] else 'unsafe'}); references random {n['reference']['random']:.1f}, "
                  f"expert {n['reference']['expert']:.1f}")
    return table


"""How good are the labels? AUROC and calibration of p(safe) against real cost, plus a no-VLM baseline.

Ground truth for frame t at horizon h seconds: "a cost occurs within the next h s", i.e. any of
the per-frame costs of frames t .. t+k-1 with k = round(h / dt) steps (`horizon_steps`; frame j
carries the cost of reaching it, the sampler's Dreamer layout). Horizons are in seconds because
the simulators step differently (MetaDrive 0.1 s, highway-env 0.2 s): "5 steps" was 0.5 s on one
and 1 s on the other. h = 0.2 s asks (almost) "is this frame a cost frame"; 1.5 s looks ahead.
Frames too close to an episode's end for the full window use what remains (a truncated episode
has no future cost we could know of). The positive class is *unsafe*: AUROC ranks 1 - p(safe).

Baselines, no VLM: `cost-lag1` predicts p(unsafe) = the previous frame's cost (the raw cost signal
shifted one step, what a policy knows without any VLM). Its gap to the VLM is the VLM's value for
anticipating cost; where collisions end episodes it is near chance by construction. `signals`
(when the per-step signals are given) is a *privileged* reference, not a competitor: a hand-made
danger score from simulator geometry (time-to-collision, gap, lane offset, off-lane flags) that no
image model is given.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vlsafe.data.horizon import horizon_steps
from vlsafe.vlm.captions import cost_at_frames

__all__ = ["HORIZONS_S", "horizon_steps", "horizon_key", "auroc", "auroc_interval", "cost_events", "ece",
           "future_cost", "baseline_p_safe", "signals_p_safe", "label_quality", "format_quality",
           "plot_reliability", "plot_strip", "label_sections"]

HORIZONS_S = (0.2, 0.5, 1.5)  # seconds


def horizon_key(seconds: float) -> str:
    """The key of a horizon in quality dicts and JSON: '0.5s'."""
    return f"{seconds:g}s"


def auroc(score: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney, ties count half); NaN when a class is empty."""
    score, positive = np.asarray(score, np.float64), np.asarray(positive, bool)
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    _, inverse, counts = np.unique(score, return_inverse=True, return_counts=True)
    first = np.concatenate([[0], np.cumsum(counts)[:-1]])
    ranks = (first + 0.5 * (counts - 1) + 1)[inverse]  # average rank of each tie group, 1-based
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def auroc_interval(scores: list[np.ndarray], positives: list[np.ndarray], reps: int = 200, seed: int = 0,
                   level: float = 0.95) -> tuple[float, float]:
    """Episode-resampled percentile interval of the pooled AUROC: frames of one episode are not
    independent, so whole episodes are drawn with replacement."""
    rng = np.random.default_rng(seed)
    n, vals = len(scores), []
    for _ in range(reps):
        pick = rng.integers(0, n, n)
        v = auroc(np.concatenate([scores[i] for i in pick]), np.concatenate([positives[i] for i in pick]))
        if v == v:
            vals.append(v)
    if not vals:
        return float("nan"), float("nan")
    lo, hi = np.quantile(vals, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def cost_events(cost: np.ndarray) -> int:
    """Number of cost onsets (a cost frame after a cost-free one) in an episode."""
    c = cost_at_frames(cost) > 0
    return int((c & ~np.concatenate([[False], c[:-1]])).sum())


def ece(prob: np.ndarray, outcome: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error of probabilities `prob` for binary `outcome`, equal-width bins."""
    prob, outcome = np.asarray(prob, np.float64), np.asarray(outcome, np.float64)
    if len(prob) == 0:
        return float("nan")
    idx = np.minimum((prob * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        m = idx == b
        if m.any():
            total += m.sum() * abs(prob[m].mean() - outcome[m].mean())
    return float(total / len(prob))


def future_cost(cost: np.ndarray, k: int) -> np.ndarray:
    """(T,) transition costs -> (T+1,) bool: cost at any of frames t .. t+k-1."""
    c = cost_at_frames(cost) > 0
    csum = np.concatenate([[0], np.cumsum(c)])
    n = len(c)
    hi = np.minimum(np.arange(n) + k, n)
    return (csum[hi] - csum[np.arange(n)]) > 0


def baseline_p_safe(cost: np.ndarray) -> np.ndarray:
    """No-VLM baseline 'cost-lag1': p(safe) = 1 - cost of the previous frame."""
    c = (cost_at_frames(cost) > 0).astype(np.float32)
    return 1.0 - np.concatenate([[0.0], c[:-1]]).astype(np.float32)


def signals_p_safe(signals: dict[str, np.ndarray]) -> np.ndarray:
    """Privileged reference: p(safe) from geometry, 1 - max(danger by TTC, by gap, by lane offset, flags)."""
    from vlsafe.vlm.captions import frame_signals

    s = frame_signals(signals)
    n = len(next(iter(s.values())))
    z = np.zeros(n, np.float32)
    danger = np.maximum.reduce([
        np.clip(1 - s.get("ttc", z + 100) / 6.0, 0, 1), np.clip(1 - s.get("min_gap", z + 80) / 6.0, 0, 1),
        np.clip((np.abs(s.get("lane_offset", z)) - 0.5) / 1.5, 0, 1),
        s.get("collision", z), s.get("off_lane", z), s.get("off_road", z)])
    return (1 - danger).astype(np.float32)


def label_quality(p_safe: list[np.ndarray], costs: list[np.ndarray], dt: float, horizons_s=HORIZONS_S,
                  signals: list[dict[str, np.ndarray]] | None = None, intervals: int = 0) -> dict:
    """{'vlm': {'0.5s': {auroc, ece, positives, frames, steps, events}}, 'baseline': {...}[, 'signals
    (privileged)': ...]}, all episodes pooled; `dt` is the episodes' step in seconds. `intervals` > 0
    adds `auroc_ci`, episode-resampled with that many draws."""
    rows = [("vlm", p_safe), ("baseline", [baseline_p_safe(c) for c in costs])]
    if signals is not None:
        rows.append(("signals (privileged)", [signals_p_safe(s) for s in signals]))
    out: dict[str, dict] = {name: {} for name, _ in rows}
    events = sum(cost_events(c) for c in costs)
    for h in horizons_s:
        k = horizon_steps(h, dt)
        ys = [future_cost(c, k) for c in costs]
        y = np.concatenate(ys)
        for name, ps in rows:
            p = np.concatenate(ps).astype(np.float64)
            assert len(p) == len(y), f"p_safe has {len(p)} frames, ground truth {len(y)}"
            row = out[name][horizon_key(h)] = {"auroc": auroc(1 - p, y), "ece": ece(1 - p, y), "positives": int(y.sum()),
                                               "frames": int(len(y)), "steps": k, "events": events}
            if intervals:
                row["auroc_ci"] = list(auroc_interval([1 - np.asarray(q, np.float64) for q in ps], ys, intervals))
    return out


def _horizon_order(key: str) -> float:
    return float(key[:-1]) if key.endswith("s") else float(key) * 1e6  # labels of old runs were keyed in steps


def format_quality(q: dict, title: str = "label quality") -> str:
    q = {m: {str(k): v for k, v in r.items()} for m, r in q.items()}
    ks = sorted(next(iter(q.values())), key=_horizon_order)
    name = lambda k: k if k.endswith("s") else f"k={k}"  # noqa: E731 (old provenance: k in steps)
    head = "| scorer | " + " | ".join(f"AUROC {name(k)} | ECE {name(k)}" for k in ks) + " | unsafe frames (" + \
        ",".join(map(name, ks)) + ") |"
    lines = [f"{title}: unsafe = cost within the next h seconds", head, "|" + "---|" * (2 * len(ks) + 2)]
    def num(x) -> str:  # undefined (no unsafe frame: AUROC is NaN; null once read back from JSON)
        return "–" if x is None or x != x else f"{x:.3f}"

    def auc(r: dict) -> str:
        ci = r.get("auroc_ci")
        return num(r["auroc"]) + (f" [{num(ci[0])}, {num(ci[1])}]" if ci else "")

    for scorer, row in q.items():
        cells = " | ".join(f"{auc(row[k])} | {num(row[k]['ece'])}" for k in ks)
        pos = ",".join(str(row[k]["positives"]) for k in ks)
        events = row[ks[0]].get("events")
        lines.append(f"| {scorer} | {cells} | {pos} of {row[ks[0]]['frames']}"
                     f"{'' if events is None else f'; {events} cost events'} |")
    lines.append("baseline = cost-lag1 (previous frame's cost, no images)")
    return "\n".join(lines)


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_reliability(p_safe: list[np.ndarray], costs: list[np.ndarray], path: str | Path, dt: float,
                     seconds: float = 0.5, bins: int = 10, title: str = "") -> Path:
    """Reliability diagram of p(unsafe) against 'cost within `seconds`', VLM and baseline."""
    plt = _plt()
    k = horizon_steps(seconds, dt)
    y = np.concatenate([future_cost(c, k) for c in costs]).astype(float)
    fig, ax = plt.subplots(figsize=(4.5, 4.2))
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--", label="perfect")
    for name, ps in (("VLM", p_safe), ("baseline cost-lag1", [baseline_p_safe(c) for c in costs])):
        p = 1 - np.concatenate(ps).astype(float)
        idx = np.minimum((p * bins).astype(int), bins - 1)
        xs, ys, ns = [], [], []
        for b in range(bins):
            m = idx == b
            if m.any():
                xs.append(p[m].mean())
                ys.append(y[m].mean())
                ns.append(m.sum())
        ax.plot(xs, ys, marker="o", label=f"{name} (ECE {ece(p, y, bins):.3f})")
    ax.set_xlabel("predicted p(unsafe) = 1 - p(safe)")
    ax.set_ylabel(f"observed rate of cost within {seconds:g} s ({k} steps)")
    ax.set_title(title or f"reliability, {seconds:g} s", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def plot_strip(p_safe: np.ndarray, cost: np.ndarray, collision: np.ndarray | None, path: str | Path,
               frames: np.ndarray | None = None, title: str = "") -> Path:
    """p(safe) over one episode, cost frames shaded and collisions marked; a few BEV frames above."""
    plt = _plt()
    c = cost_at_frames(cost)
    t = np.arange(len(p_safe))
    rows = 2 if frames is not None else 1
    fig = plt.figure(figsize=(9, 3.6 if rows == 2 else 2.4))
    if frames is not None:
        picks = np.linspace(0, len(frames) - 1, 8).round().astype(int)
        for i, j in enumerate(picks):
            a = fig.add_subplot(2, 8, i + 1)
            a.imshow(frames[j])
            a.set_title(f"t={j}: {p_safe[j]:.2f}", fontsize=7)
            a.axis("off")
    ax = fig.add_subplot(rows, 1, rows)
    ax.plot(t, p_safe, color="tab:blue", lw=1.2, label="p(safe)")
    for i, j in enumerate(np.flatnonzero(c > 0)):
        ax.axvspan(j - 0.5, j + 0.5, color="tab:red", alpha=0.3, label="cost frame" if i == 0 else None)
    if collision is not None:
        hits = np.flatnonzero(np.diff(np.concatenate([[0.0], collision])) > 0) + 1  # frame j = after transition j-1
        for j, h in enumerate(hits):
            ax.axvline(h, color="red", lw=1.5, label="collision" if j == 0 else None)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("frame")
    ax.set_ylabel("p(safe)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def label_sections(store) -> list[str]:
    """Label quality of every VLM label set of a dataset, as dataset-card sections (none without labels)."""
    from vlsafe.vlm.label import list_labels

    out = []
    for prov in list_labels(store):
        q = prov.get("quality", {})
        if q:
            out.append(format_quality(q, f"label quality of labels/{prov['key']} ({prov['model']['model_id']}, "
                                         f"prompts {prov['prompts']['name']}, p(safe) {prov['prob']['method']})"))
    return out

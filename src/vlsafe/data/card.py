"""The dataset card `vlsafe data info` prints: size, cost rate, and Table-I metrics per behaviour."""

from __future__ import annotations

from collections import defaultdict

from vlsafe.data.store import EpisodeStore
from vlsafe.evaluation.metrics import aggregate, episode_metrics, format_table

__all__ = ["dataset_card", "behaviour_metrics"]


def behaviour_metrics(store: EpisodeStore) -> dict[str, dict[str, float]]:
    """Metrics per behaviour, recomputed from the stored per-step arrays (not from the manifest)."""
    groups = defaultdict(list)
    for ep in store:
        s = ep.signals
        m = episode_metrics(ep.reward, ep.cost, s["speed"], s["collision"] > 0, ep.dt, float(s["distance"][-1]),
                            int(s["waypoints"][-1]), bool(s["arrived"][-1] > 0))
        groups[ep.behaviour].append(m)
        groups["all"].append(m)
    return {name: aggregate(ms) for name, ms in sorted(groups.items(), key=lambda kv: kv[0] == "all")}


def dataset_card(store: EpisodeStore, extra: list[str] = ()) -> str:
    """The card; `extra` sections (e.g. the VLM's label quality, `vlm.quality.label_sections`)
    come from the caller, so the data layer never imports the labeller."""
    man = store.manifest()
    tot = man.get("totals", {})
    task = man.get("task", {})
    entries = man.get("episodes", [])
    steps = max(int(tot.get("steps", 0)), 1)
    cost_steps = sum(e["cost"] for e in entries)
    per_behaviour = behaviour_metrics(store)
    expert = per_behaviour.get("expert")
    expert_line = ("the data's expert: no expert episodes" if expert is None else
                   f"the data's expert: AR {expert['AR']:.2f}, CR {expert['CR']:.2f} over {expert['episodes']:.0f} "
                   f"episodes (a dataset is only as good as its best driver)")
    lines = [
        f"# dataset {store.root}",
        f"task: {task.get('task', '?')}{':' + task['variant'] if task.get('variant') else ''} on "
        f"{task.get('backend', '?')}, seeds {man.get('seeds')}, mixture {man.get('mixture')}",
        f"episodes: {tot.get('episodes', 0)}, steps: {tot.get('steps', 0)}, "
        f"BEV {man.get('bev_size', '?')} px, dt {man.get('dt', '?')} s",
        f"cost rate: {cost_steps / steps:.4f} per step ({cost_steps:.0f} cost steps), "
        f"collision episodes: {sum(e['collisions'] > 0 for e in entries)}",
        expert_line,
        f"on disk: {tot.get('bytes', 0) / 2**20:.1f} MiB, code {man.get('code_version', '?')}",
        "",
        format_table(per_behaviour),
    ]
    for section in extra:
        lines += ["", section]
    return "\n".join(lines)


"""`vlsafe compare`: methods side by side on the same episodes, with intervals on the differences.

Two evaluations are paired when they drove the same episode seeds with the same number of runs
(training seeds): episode j of run i in one is paired with episode j of run i in the other. The
interval on a difference comes from a bootstrap over those pairs (`paired_difference`), so it is
as narrow as the pairing allows, and is what "A is safer than B" must be judged by.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from vlsafe.evaluation.evaluate import paired_difference
from vlsafe.evaluation.metrics import METRICS, EpisodeMetrics, aggregate, format_table

__all__ = ["load_report", "paired_episodes", "metrics_table", "compare_reports"]


def load_report(path: str | Path) -> dict[str, Any]:
    """An eval.json (or the folder holding one) written by `vlsafe eval`."""
    p = Path(path)
    p = p / "eval.json" if p.is_dir() else p
    if not p.exists():
        raise FileNotFoundError(f"{p}: no such evaluation (expected an eval.json written by vlsafe eval)")
    try:
        rep = json.loads(p.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{p}: not valid JSON ({err.msg} at line {err.lineno})") from None
    except UnicodeDecodeError:
        raise ValueError(f"{p}: not a text file (not an eval.json of vlsafe eval)") from None
    for key in ("episodes", "seeds", "methods", "runs"):
        if not isinstance(rep, dict) or key not in rep:
            raise ValueError(f"{p}: field {key!r} missing (not an eval.json of vlsafe eval)")
    rep["_path"] = str(p)
    return rep


def _episode(d: dict[str, Any]) -> EpisodeMetrics:
    d = {k: (math.nan if v is None else v) for k, v in d.items()}
    d["collision_speeds"] = tuple(d.get("collision_speeds", ()))
    return EpisodeMetrics(**d)


def paired_episodes(rep: dict[str, Any]) -> list[EpisodeMetrics]:
    """All episodes of a report, run by run in the order the runs were given, seeds in order."""
    return [_episode(e) for run in rep["runs"] for e in rep["episodes"][run]]


def _label(rep: dict[str, Any]) -> str:
    if "_label" in rep:
        return rep["_label"]
    actor = "" if rep.get("greedy", True) else " (sampled)"
    return "/".join(rep["methods"]) + actor


def _name_apart(reports: list[dict[str, Any]]) -> None:
    """Reports of one method (e.g. ablations) are told apart by their folder names."""
    labels = [_label(r) for r in reports]
    if len(set(labels)) < len(labels):
        for r in reports:
            r["_label"] = f"{_label(r)} ({Path(r['_path']).parent.name})"


def metrics_table(reports: list[dict[str, Any]]) -> str:
    """The ten metrics of every report, pooled over its episodes, with 95% intervals."""
    rows = {_label(r): r["metrics"] for r in reports}
    return format_table(rows, intervals={_label(r): {m: tuple(v) if v and v[0] is not None else (None, None)
                                                      for m, v in r["ci95"].items()} for r in reports})


def compare_reports(reports: list[dict[str, Any]], metrics: list[str]) -> str:
    """Markdown: the ten-metric table of all reports, then each report's means and its paired
    difference to the first report."""
    for m in metrics:
        if m not in METRICS:
            raise ValueError(f"unknown metric {m!r}; valid metrics: {', '.join(METRICS)}")
    _name_apart(reports)
    ref = reports[0]
    ref_eps = paired_episodes(ref)
    head = "| method | episodes | " + " | ".join(f"{m} | Δ{m} vs {_label(ref)} [95%]" for m in metrics) + " |"
    lines = [metrics_table(reports), "", head, "|" + "---|" * (2 + 2 * len(metrics))]
    for rep in reports:
        if rep["seeds"] != ref["seeds"] or len(rep["runs"]) != len(ref["runs"]):
            raise ValueError(f"{rep['_path']}: not paired with {ref['_path']} (episode seeds or number of runs differ)")
        eps = paired_episodes(rep)
        diff = paired_difference(eps, ref_eps)
        cells = []
        for m in metrics:
            d = diff[m]
            cells.append(_fmt(aggregate(eps)[m]))
            cells.append("–" if rep is ref else f"{_fmt(d['diff'])} [{_fmt(d['lo'])}, {_fmt(d['hi'])}]")
        lines.append(f"| {_label(rep)} | {len(eps)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _fmt(x: float) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3g}"

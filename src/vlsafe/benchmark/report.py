"""`vlsafe report`: a benchmark's results as one self-contained HTML page, plus PNG figures.

The page needs no server and no network: figures are PNGs and rollouts GIFs, both embedded as
data URIs. It reads only `results/summary.json` (and the rollout videos it names, when they are
still on disk), so a committed results folder makes the same page on another machine.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from vlsafe.evaluation.metrics import METRICS, UNITS

__all__ = ["write_report", "load_summary", "markdown_tables", "HIGHER_IS_BETTER"]

HIGHER_IS_BETTER = {"Return": True, "Cost": False, "AS": True, "WC": True, "TD": True, "AR": True, "CR": False,
                    "TCF": False, "DCF": False, "CS": False}


def load_summary(results: str | Path) -> dict[str, Any]:
    p = Path(results)
    for cand in (p, p / "summary.json", p / "results" / "summary.json"):
        if cand.is_file():
            try:
                data = json.loads(cand.read_text())
            except (json.JSONDecodeError, UnicodeDecodeError) as err:
                raise ValueError(f"{cand}: not a benchmark summary ({err})") from None
            if not isinstance(data, dict) or "summary" not in data or "config" not in data:
                raise ValueError(f"{cand}: field 'summary' or 'config' missing (not written by vlsafe benchmark)")
            data["_path"] = str(cand)
            return data
    raise FileNotFoundError(f"{p}: no results/summary.json (run vlsafe benchmark first)")


def _fmt(x: Any, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    return f"{x:.{digits}g}"


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return buf.getvalue()


def _frac(row: dict) -> float:
    return float(row["fraction"]) if row["fraction"] not in ("", None) else 1.0


class _Page:
    def __init__(self, out: Path):
        self.out, self.parts, self.figures = out, [], []

    def h(self, level: int, text: str, anchor: str = "") -> None:
        self.parts.append(f"<h{level}{f' id={anchor!r}' if anchor else ''}>{html.escape(text)}</h{level}>")

    def p(self, text: str) -> None:
        self.parts.append(f"<p>{text}</p>")

    def figure(self, fig, name: str, caption: str) -> None:
        import matplotlib.pyplot as plt

        data = _png(fig)
        plt.close(fig)
        (self.out / f"{name}.png").write_bytes(data)
        self.figures.append(f"{name}.png")
        uri = "data:image/png;base64," + base64.b64encode(data).decode()
        self.parts.append(f'<figure><img alt="{html.escape(caption)}" src="{uri}"><figcaption>{html.escape(caption)}'
                          f"</figcaption></figure>")

    def table(self, head: list[str], rows: list[list[str]], cls: str = "") -> None:
        out = [f"<table class='{cls}'><thead><tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr></thead><tbody>"]
        for r in rows:
            out.append("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>")
        self.parts.append("".join(out) + "</tbody></table>")


def _select(summary: list[dict], **match) -> list[dict]:
    return [r for r in summary if all(r[k] == v for k, v in match.items())]


def _main_fraction(data: dict) -> float:
    return max(float(f) for f in data["config"]["fractions"])


def _table_one(page: _Page, data: dict, task: str, actor: str) -> None:
    rows = [r for r in _select(data["summary"], task=task, condition="default", actor=actor)
            if _frac(r) == _main_fraction(data)]
    if not rows:
        return
    methods = [m for m in data["config"]["methods"] if any(r["method"] == m for r in rows)]
    by = {r["method"]: r for r in rows}
    best = {}
    for m in METRICS:
        vals = [(by[x]["metrics"][m], x) for x in methods if by[x]["metrics"][m] is not None]
        if vals:
            pick = max if HIGHER_IS_BETTER[m] else min
            v = pick(vals)[0]
            best[m] = {x for val, x in vals if val == v}
    head = ["method", "episodes"] + [f"{m}{f' ({UNITS[m]})' if UNITS[m] else ''}" for m in METRICS]
    head += ["norm. reward", "norm. cost"]
    body = []
    for x in methods:
        r = by[x]
        cells = [f"<span class='method'>{html.escape(x)}</span>", str(r["episodes"])]
        for m in METRICS:
            lo, hi = r["ci95"][m]
            text = f"{_fmt(r['metrics'][m])}<br><small>[{_fmt(lo)}, {_fmt(hi)}]</small>"
            cells.append(f"<b>{text}</b>" if x in best.get(m, ()) else text)
        cells += [_fmt(r["reward_norm"]), _fmt(r["cost_norm"])]
        body.append(cells)
    page.table(head, body, cls=f"table1 task-{task}")


def _scatter(page: _Page, data: dict, tasks: list[str], methods: list[str]) -> None:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(tasks), figsize=(4 * len(tasks), 3.4), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        for i, m in enumerate(methods):
            rs = [r for r in _select(data["summary"], task=task, method=m, condition="default", actor="greedy")
                  if _frac(r) == _main_fraction(data)]
            if not rs:
                continue
            r = rs[0]
            x, y = r["metrics"]["Cost"], r["metrics"]["Return"]
            xe = [[x - (r["ci95"]["Cost"][0] or x)], [(r["ci95"]["Cost"][1] or x) - x]]
            ye = [[y - (r["ci95"]["Return"][0] or y)], [(r["ci95"]["Return"][1] or y) - y]]
            ax.errorbar([x], [y], xerr=xe, yerr=ye, fmt="o", color=f"C{i}", label=m, capsize=3)
        ax.set_title(task)
        ax.set_xlabel("episode cost (lower is safer)")
        ax.set_ylabel("return")
    axes[0][0].legend(fontsize=7)
    page.figure(fig, "return_vs_cost", "Return against cost, default condition, greedy actor, 95% intervals")


def _sample_efficiency(page: _Page, data: dict, tasks: list[str], methods: list[str]) -> None:
    import matplotlib.pyplot as plt

    fracs = sorted(float(f) for f in data["config"]["fractions"])
    metrics = ("Return", "CR", "AR")
    fig, axes = plt.subplots(len(tasks), 3, figsize=(11, 2.8 * len(tasks)), squeeze=False)
    for ti, task in enumerate(tasks):
        for mi, metric in enumerate(metrics):
            ax = axes[ti][mi]
            for i, m in enumerate(methods):
                pts = []
                for f in fracs:
                    rs = [r for r in _select(data["summary"], task=task, method=m, condition="default", actor="greedy")
                          if r["fraction"] not in ("", None) and float(r["fraction"]) == f]
                    if rs:
                        v, (lo, hi) = rs[0]["metrics"][metric], rs[0]["ci95"][metric]
                        pts.append((f, v, lo if lo is not None else v, hi if hi is not None else v))
                if not pts:
                    continue
                f_, v_, lo_, hi_ = map(np.array, zip(*pts))
                ax.plot(f_ * 100, v_, "o-", color=f"C{i}", label=m)
                ax.fill_between(f_ * 100, lo_, hi_, color=f"C{i}", alpha=0.15)
            ax.set_xscale("log")
            ax.minorticks_off()
            ax.set_xticks([f * 100 for f in fracs], [f"{f * 100:g}%" for f in fracs])
            ax.set_title(f"{task}: {metric}")
    axes[0][0].legend(fontsize=7)
    page.figure(fig, "sample_efficiency", "Return, collision rate and arrival rate against the share of the dataset "
                                          "(nested trajectory subsets), default condition, greedy, 95% intervals")
    head = ["task", "method"] + [f"{m} at {f * 100:g}%" for m in metrics for f in fracs]
    body = []
    for task in tasks:
        for m in methods:
            cells = [task, m]
            for metric in metrics:
                for f in fracs:
                    rs = [r for r in _select(data["summary"], task=task, method=m, condition="default", actor="greedy")
                          if r["fraction"] not in ("", None) and float(r["fraction"]) == f]
                    cells.append(_fmt(rs[0]["metrics"][metric]) if rs else "–")
            if any(c != "–" for c in cells[2:]):
                body.append(cells)
    page.table(head, body, cls="sample-efficiency")


def _shift_table(page: _Page, data: dict, tasks: list[str], methods: list[str]) -> None:
    conds = list(data["config"]["conditions"])
    head = ["task", "method"] + [f"{c}: AR / CR / return" for c in conds]
    body = []
    for task in tasks:
        for m in methods:
            cells = [task, m]
            for c in conds:
                rs = [r for r in _select(data["summary"], task=task, method=m, condition=c, actor="greedy")
                      if _frac(r) == _main_fraction(data)]
                cells.append(" / ".join(_fmt(rs[0]["metrics"][k]) for k in ("AR", "CR", "Return")) if rs else "–")
            body.append(cells)
    page.table(head, body, cls="shift")


def _paired_table(page: _Page, data: dict) -> None:
    body = []
    for p in data["paired"]:
        if p["actor"] != "greedy":
            continue
        d = p["minus_reference"]
        body.append([p["task"], p["method"], _fmt(p["fraction"]) if p["fraction"] != "" else "online", p["condition"],
                     str(p["pairs"])] + [f"{_fmt(d[m]['diff'])} [{_fmt(d[m]['lo'])}, {_fmt(d[m]['hi'])}]"
                                          for m in ("Return", "Cost", "AR", "CR")])
    if body:
        ref = data["config"]["reference"]
        page.table(["task", "method", "fraction", "condition", "pairs"] +
                   [f"Δ{m} (method − {html.escape(ref)}) [95%]" for m in ("Return", "Cost", "AR", "CR")], body, cls="paired")


def _aggregates(page: _Page, data: dict) -> None:
    import matplotlib.pyplot as plt

    aggs = [a for a in data["aggregate"] if a["condition"] == "default" and a["actor"] == "greedy"]
    if not aggs:
        page.p("No cross-task aggregate: no method has, on every task, DSRL references and runs of the training "
               "seeds common to all tasks.")
        return
    body = []
    for a in aggs:
        for m, v in a["iqm_reward"].items():
            c = a["iqm_cost"][m]
            poi = a.get("probability_of_improvement", {})
            pr, pc = poi.get("reward", {}).get(m), poi.get("cost", {}).get(m)
            body.append([_fmt(a["fraction"]), m, f"{_fmt(v['value'])} [{_fmt(v['ci95'][0])}, {_fmt(v['ci95'][1])}]",
                         f"{_fmt(c['value'])} [{_fmt(c['ci95'][0])}, {_fmt(c['ci95'][1])}]",
                         f"{_fmt(pr['value'])} [{_fmt(pr['ci95'][0])}, {_fmt(pr['ci95'][1])}]" if pr else "–",
                         f"{_fmt(pc['value'])} [{_fmt(pc['ci95'][0])}, {_fmt(pc['ci95'][1])}]" if pc else "–"])
    ref = data["config"]["reference"]
    page.table(["fraction", "method", "IQM normalised reward [95%]", "IQM normalised cost [95%]",
                f"P({ref} > method), reward", f"P({ref} safer than method), cost"], body, cls="aggregate")
    last = max(aggs, key=lambda a: float(a["fraction"]))
    fig, axes = plt.subplots(1, 2, figsize=(9, 0.5 + 0.4 * len(last["iqm_reward"])))
    for ax, what in zip(axes, ("reward", "cost")):
        items = list(last[f"iqm_{what}"].items())
        for i, (_, v) in enumerate(items):
            ax.errorbar([v["value"]], [i], xerr=[[v["value"] - v["ci95"][0]], [v["ci95"][1] - v["value"]]], fmt="o",
                        color=f"C{i}", capsize=3)
        ax.set_yticks(range(len(items)), [m for m, _ in items])
        ax.set_title(f"IQM normalised {what} (fraction {_fmt(last['fraction'])})")
    page.figure(fig, "iqm", "rliable: interquartile mean across tasks and training runs, stratified-bootstrap 95% intervals")


def _training_curves(page: _Page, data: dict, tasks: list[str]) -> None:
    import matplotlib.pyplot as plt

    cells = [c for c in data["cells"] if c.get("curve") and c["curve"]["step"]]
    if not cells:
        return
    fig, axes = plt.subplots(len(tasks), 2, figsize=(10, 2.6 * len(tasks)), squeeze=False)
    for ti, task in enumerate(tasks):
        for c in cells:
            parts = c["name"].split("/")
            if parts[1].split("@")[0] != task:
                continue
            ax = axes[ti][0 if c["kind"] == "wm" else 1]
            label = parts[2] if c["kind"] == "wm" else "/".join(parts[2:])
            ax.plot(c["curve"]["step"], c["curve"]["value"], label=label, lw=1)
            ax.set_title(f"{task}: {'world model ' + c['curve']['metric'] if c['kind'] == 'wm' else 'policies'}")
        for ax in axes[ti]:
            if ax.lines:
                ax.legend(fontsize=6)
    page.figure(fig, "training_curves", "Training curves: the world model's loss per data fraction, and each policy's "
                                        "first loss (critic loss of the in-house methods, the library's loss otherwise)")


def _label_quality(page: _Page, data: dict) -> None:
    import matplotlib.pyplot as plt

    rows = [(c["name"].split("/")[1], c["name"].split("/")[2], c["label_quality"]) for c in data["cells"]
            if c["kind"] == "subset" and c.get("label_quality")]
    if not rows:
        return
    body, names, vals = [], [], {"vlm": [], "baseline": [], "signals (privileged)": []}
    for tb, frac, q in rows:
        names.append(f"{tb.split('@')[0]} {frac}")
        cells = [tb, frac]
        for k in vals:
            a = q.get(k, {}).get("0.5s", {}).get("auroc")
            vals[k].append(a if a is not None else np.nan)
            cells.append(_fmt(a))
        body.append(cells)
    page.table(["task", "fraction", "VLM AUROC (cost within 0.5 s)", "cost-lag1 baseline (no image)",
                "privileged signals"], body, cls="labels")
    fig, ax = plt.subplots(figsize=(max(5, 0.9 * len(names)), 3))
    x = np.arange(len(names))
    for i, (k, v) in enumerate(vals.items()):
        ax.bar(x + (i - 1) * 0.27, v, 0.27, label=k)
    ax.set_xticks(x, names, rotation=30, ha="right", fontsize=7)
    ax.set_ylim(0.4, 1.0)
    ax.set_ylabel("AUROC, cost within 0.5 s")
    ax.legend(fontsize=7)
    page.figure(fig, "label_quality", "Label quality: how well p(safe) ranks a cost within 0.5 s, against the no-image "
                                      "baseline (cost-lag1) and privileged simulator signals")


def _gif(path: Path, width: int = 128, max_frames: int = 50) -> str | None:
    """A rollout video as a base64 GIF data URI (browsers cannot play OpenCV's mp4v)."""
    import cv2
    import imageio.v2 as imageio

    frames = []
    if path.suffix == ".gif":
        frames = [np.asarray(f)[..., :3] for f in imageio.mimread(path)]
    else:
        cap = cv2.VideoCapture(str(path))
        while True:
            ok, f = cap.read()
            if not ok:
                break
            frames.append(cv2.cvtColor(f, cv2.COLOR_BGR2RGB))
        cap.release()
    if not frames:
        return None
    step = max(1, math.ceil(len(frames) / max_frames))
    h, w = frames[0].shape[:2]
    size = (width, int(round(h * width / w)))
    small = [cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in frames[::step]]
    buf = io.BytesIO()
    imageio.mimsave(buf, small, format="GIF", duration=0.1 * step, loop=0)
    return "data:image/gif;base64," + base64.b64encode(buf.getvalue()).decode()


def _videos(page: _Page, data: dict, tasks: list[str]) -> None:
    ref = data["config"]["reference"]
    frac = _main_fraction(data)
    shown = 0
    for task in tasks:
        for c in data["cells"]:
            parts = c["name"].split("/")
            if c["kind"] != "eval" or not c.get("videos") or parts[1].split("@")[0] != task or parts[3] != ref \
                    or parts[2] != f"f{frac:g}":
                continue
            imgs = []
            for which, p in c["videos"].items():
                uri = _gif(Path(p)) if Path(p).exists() else None
                if uri:
                    imgs.append(f"<figure><img alt='{which} rollout' src='{uri}'><figcaption>{which}: "
                                f"{html.escape(c['name'])}</figcaption></figure>")
            if imgs:
                page.parts.append("<div class='videos'>" + "".join(imgs) + "</div>")
                shown += 1
            break
    if not shown:
        page.p("No rollout videos on disk (the eval cells' folders are not beside these results).")


def _times(data: dict) -> str:
    """The run that wrote the results (a rerun over a finished cache takes seconds) and the
    compute behind its numbers: the cells' own times, each cell one process."""
    cells = data["cells"]
    if data["config"].get("pooled"):
        n = len(data["config"]["pooled"])
        return (f"{_fmt(data['wall_s'] / 60, 3)} min of wall-clock in the {n} runs pooled here; the {len(cells)} cells "
                f"behind them took {_fmt(sum(c['wall_s'] for c in cells) / 60, 3)} min, summed over cells")
    run = (f"{_fmt(data['wall_s'] / 60, 3)} min of wall-clock in the run that wrote these results" if data["wall_s"] >= 60
           else f"{data['wall_s']:.0f} s in the run that wrote these results, from cells cached before it")
    total = _fmt(sum(c["wall_s"] for c in cells) / 60, 3)
    return f"{run}; the {len(cells)} cells behind them took {total} min, summed over cells"


def _provenance(page: _Page, data: dict) -> None:
    page.p("Produced by <code>" + html.escape(data["command"]) + "</code>: " + html.escape(_times(data)) + ". Versions: " +
           ", ".join(f"{html.escape(k)} {html.escape(str(v))}" for k, v in data["versions"].items()) + ".")
    body = [[html.escape(c["name"]), f"{c['wall_s']:.0f}", "<br>".join(f"<code>{html.escape(x)}</code>" for x in c["commands"]),
             html.escape(c.get("code_version", ""))] for c in data["cells"]]
    page.parts.append("<details><summary>Every cell: its command and time</summary>")
    page.table(["cell", "seconds", "command", "code"], body, cls="cells")
    page.parts.append("</details>")


_CSS = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1300px;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:12px}td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}
td:first-child,th:first-child{text-align:left}small{color:#777}figure{display:inline-block;margin:0.5em}
img{max-width:100%}code{font-size:11px}.videos figure{vertical-align:top}"""

# The page checks its own images once loaded: the browser test reads this attribute.
_SCRIPT = """<script>window.addEventListener('load',()=>{const imgs=[...document.images];
const ok=imgs.length>0&&imgs.every(i=>i.complete&&i.naturalWidth>0);
document.body.setAttribute('data-images-ok',ok?'true':'false');
document.body.setAttribute('data-images',String(imgs.length));});</script>"""


def write_report(results: str | Path, out: str | Path | None = None) -> Path:
    data = load_summary(results)
    import matplotlib

    matplotlib.use("Agg")
    src = Path(data["_path"]).parent
    out = Path(out) if out else src.parent / "report"
    out.mkdir(parents=True, exist_ok=True)
    cfg = data["config"]
    tasks = [t for t in cfg["tasks"] if any(r["task"] == t for r in data["summary"])]
    methods = [m for m in cfg["methods"] if any(r["method"] == m for r in data["summary"])]
    page = _Page(out)
    page.h(1, "vlsafe benchmark")
    page.p(f"{len(tasks)} task(s) on {html.escape(cfg['backend'])} x {len(methods)} method(s) x training seeds "
           f"{cfg['seeds']} x data fractions {cfg['fractions']}; {_episodes_text(cfg)}, paired across methods. "
           f"Reference method: <b>{html.escape(cfg['reference'])}</b>. Intervals are 95% bootstrap intervals over "
           "episodes.")
    page.h(2, "Table I: the ten metrics per task", "table1")
    for actor in cfg["eval"]["actors"]:
        for task in tasks:
            page.h(3, f"{task} ({actor} actor, {_main_fraction(data) * 100:g}% of the data)")
            _table_one(page, data, task, actor)
    page.h(2, "Return against cost", "scatter")
    _scatter(page, data, tasks, methods)
    page.h(2, "Paired differences against the reference", "paired")
    _paired_table(page, data)
    page.h(2, "Across tasks (rliable)", "aggregate")
    _aggregates(page, data)
    page.h(2, "Sample efficiency", "sample-efficiency")
    _sample_efficiency(page, data, tasks, methods)
    page.h(2, "Generalisation: shifts, evaluated without retraining", "shift")
    _shift_table(page, data, tasks, methods)
    page.h(2, "Training curves", "training")
    _training_curves(page, data, tasks)
    page.h(2, "Label quality", "labels")
    _label_quality(page, data)
    page.h(2, "Best and worst rollouts of the reference method", "videos")
    _videos(page, data, tasks)
    page.h(2, "Provenance", "provenance")
    _provenance(page, data)
    (out / "report.md").write_text(markdown_tables(data, tasks, methods))
    doc = (f"<!doctype html><html><head><meta charset='utf-8'><title>vlsafe benchmark</title><style>{_CSS}</style>"
           f"</head><body>{''.join(page.parts)}{_SCRIPT}</body></html>")
    tmp = out / "report.html.tmp"
    tmp.write_text(doc)
    tmp.replace(out / "report.html")
    return out / "report.html"


def _episodes_text(cfg: dict) -> str:
    """Which held-out episodes: one grid's, or each pooled run's (`vlsafe report A B --out OUT`)."""
    def episodes(c: dict) -> str:
        return f"{c['eval']['episodes']} held-out episodes per training seed from seed {c['eval']['seed_start']}"

    if not cfg.get("pooled"):
        return episodes(cfg)
    return "; ".join(f"{'/'.join(c['tasks'])} x {'/'.join(c['methods'])}: {episodes(c)}"
                     for c in (p["config"] for p in cfg["pooled"]))


def _ci(r: dict, m: str) -> str:
    lo, hi = r["ci95"][m]
    return f"{_fmt(r['metrics'][m])} [{_fmt(lo)}, {_fmt(hi)}]"


def markdown_tables(data: dict, tasks: list[str], methods: list[str]) -> str:
    """The report's tables as Markdown, for docs/ (generated from the results, never typed)."""
    cfg, frac = data["config"], _main_fraction(data)
    versions = ", ".join(f"{k} {v}" for k, v in data["versions"].items())
    lines = [f"Produced by `{data['command']}` ({_times(data)}); versions: {versions}.", ""]
    lines += [f"## Table I: every task, {frac * 100:g}% of the data, default condition, greedy actor",
              "", "Mean [95% bootstrap interval] over " + (
                  "each row's episodes (pooled runs: " + _episodes_text(cfg) + "; pairs in the paired table)."
                  if cfg.get("pooled") else
                  f"{len(cfg['seeds'])} training seed(s) x {cfg['eval']['episodes']} held-out episodes."), "",
              "| task | method | Return | Cost | AS | WC | TD | AR | CR | TCF | DCF | CS | norm. reward | norm. cost |",
              "|---|---|" + "---|" * 12]
    for task in tasks:
        for m in methods:
            rs = [r for r in _select(data["summary"], task=task, method=m, condition="default", actor="greedy")
                  if _frac(r) == frac]
            if rs:
                r = rs[0]
                lines.append(f"| {task} | {m} | " + " | ".join(_ci(r, k) for k in METRICS) +
                             f" | {_fmt(r['reward_norm'])} | {_fmt(r['cost_norm'])} |")
    lines += ["", f"## Paired differences against {cfg['reference']} (method − {cfg['reference']}), greedy", "",
              "| task | method | fraction | condition | pairs | ΔReturn | ΔCost | ΔAR | ΔCR |", "|" + "---|" * 9]
    for p in data["paired"]:
        if p["actor"] == "greedy":
            d = p["minus_reference"]
            lines.append(f"| {p['task']} | {p['method']} | {_fmt(p['fraction'])} | {p['condition']} | {p['pairs']} | " +
                         " | ".join(f"{_fmt(d[k]['diff'])} [{_fmt(d[k]['lo'])}, {_fmt(d[k]['hi'])}]"
                                    for k in ("Return", "Cost", "AR", "CR")) + " |")
    fracs = sorted(float(f) for f in cfg["fractions"])
    lines += ["", "## Sample efficiency: Return / AR / CR against the share of the data (default, greedy)", "",
              "| task | method | " + " | ".join(f"{f * 100:g}%" for f in fracs) + " |", "|---|---|" + "---|" * len(fracs)]
    for task in tasks:
        for m in methods:
            cells = []
            for f in fracs:
                rs = [r for r in _select(data["summary"], task=task, method=m, condition="default", actor="greedy")
                      if r["fraction"] not in ("", None) and float(r["fraction"]) == f]
                cells.append(" / ".join(_fmt(rs[0]["metrics"][k]) for k in ("Return", "AR", "CR")) if rs else "–")
            lines.append(f"| {task} | {m} | " + " | ".join(cells) + " |")
    conds = list(cfg["conditions"])
    lines += ["", f"## Shifts, evaluated without retraining: AR / CR / Return ({frac * 100:g}% of the data, greedy)", "",
              "| task | method | " + " | ".join(conds) + " |", "|---|---|" + "---|" * len(conds)]
    for task in tasks:
        for m in methods:
            cells = []
            for c in conds:
                rs = [r for r in _select(data["summary"], task=task, method=m, condition=c, actor="greedy") if _frac(r) == frac]
                cells.append(" / ".join(_fmt(rs[0]["metrics"][k]) for k in ("AR", "CR", "Return")) if rs else "–")
            lines.append(f"| {task} | {m} | " + " | ".join(cells) + " |")
    lines += ["", "## Across tasks (rliable): IQM of the DSRL-normalised reward and cost, stratified-bootstrap 95% intervals",
              "", f"| fraction | condition | method | IQM reward | IQM cost | P({cfg['reference']} > method), reward | "
              f"P({cfg['reference']} safer), cost |", "|---|---|---|---|---|---|---|"]
    for a in data["aggregate"]:
        if a["actor"] != "greedy":
            continue
        poi = a.get("probability_of_improvement", {})
        for m, v in a["iqm_reward"].items():
            c = a["iqm_cost"][m]
            pr, pc = poi.get("reward", {}).get(m), poi.get("cost", {}).get(m)
            fmt = lambda x: f"{_fmt(x['value'])} [{_fmt(x['ci95'][0])}, {_fmt(x['ci95'][1])}]" if x else "–"  # noqa: E731
            lines.append(f"| {_fmt(a['fraction'])} | {a['condition']} | {m} | {fmt(v)} | {fmt(c)} | {fmt(pr)} | {fmt(pc)} |")
    return "\n".join(lines) + "\n"

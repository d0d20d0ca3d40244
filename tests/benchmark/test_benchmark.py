"""`vlsafe benchmark --preset smoke` for real: every kind of cell (collect, nested subsets with their
own labels, world models, in-house and library policies, evaluation under a shift), killed
mid-grid and resumed, then rerun from its cache; its tidy table and summaries; and its report
in a real headless Chromium (Debian's, which `make test` installs)."""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import pytest

from vlsafe.benchmark import expand, resolve_benchmark
from vlsafe.evaluation.metrics import METRICS

VLSAFE = [sys.executable, "-m", "vlsafe.cli"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROME_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _done(root: Path) -> dict[str, str]:
    return {str(p.parent.relative_to(root)): p.read_text() for p in root.glob("cells/*/*/done.json")}


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """Start the smoke grid, kill its whole process group once 10 cells are finished, rerun it to
    the end, then rerun it once more; what each step saw is kept for the tests."""
    root = tmp_path_factory.mktemp("bench") / "smoke"
    cmd = VLSAFE + ["benchmark", "--preset", "smoke", "--out", str(root)]
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 600
    while len(_done(root)) < 10 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    before = _done(root)
    resumed = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=900)
    after = _done(root)
    cached = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=300)
    return {"root": root, "before": before, "resumed": resumed, "after": after, "cached": cached,
            "cells": expand(resolve_benchmark("smoke"))}


def test_killed_grid_resumes_without_redoing_finished_cells(smoke):
    before, after, resumed = smoke["before"], smoke["after"], smoke["resumed"]
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-2000:]
    n = len(smoke["cells"])
    assert 10 <= len(before) < n, f"the kill came too late or too early: {len(before)} of {n} cells done"
    assert len(after) == n
    for cell, record in before.items():  # finished before the kill: not run again (same record, same finish time)
        assert after[cell] == record, f"{cell} was redone"
    assert f"{len(before)} finished before (cached)" in resumed.stdout
    assert f"{n - len(before)} cells run" in resumed.stdout


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def test_sigterm_to_the_driver_stops_its_workers(tmp_path):
    """A scheduler's SIGTERM reaches the driver only: its workers (and the processes they started)
    must stop with it, not finish their cells as orphans."""
    root = tmp_path / "smoke"
    proc = subprocess.Popen(VLSAFE + ["benchmark", "--preset", "smoke", "--out", str(root)], env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.time() + 300
        while not list(root.glob("cells/*/*/log.txt")) and proc.poll() is None and time.time() < deadline:
            time.sleep(0.2)
        time.sleep(2.0)
        assert proc.poll() is None, "the grid ended before a cell was running"
        assert psutil.Process(proc.pid).children(recursive=True), "no worker process was running"
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=60) == 128 + signal.SIGTERM
        deadline = time.time() + 20
        while _group_alive(proc.pid) and time.time() < deadline:
            time.sleep(0.2)
        assert not _group_alive(proc.pid), "workers outlived the SIGTERM'd driver"
    finally:
        if _group_alive(proc.pid):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def test_rerun_finishes_from_the_cache(smoke):
    out = smoke["cached"]
    assert out.returncode == 0, out.stderr[-2000:]
    assert f"{len(smoke['cells'])} finished before (cached), 0 to run" in out.stdout
    assert _done(smoke["root"]) == smoke["after"]


def test_tidy_table_shape_and_ranges(smoke):
    cfg = resolve_benchmark("smoke")
    rows = list(csv.DictReader(open(smoke["root"] / "results" / "episodes.csv")))
    evals = [c for c in smoke["cells"] if c.kind == "eval"]
    assert len(rows) == len(evals) * cfg.eval.episodes * len(cfg.seeds)
    keys = {(r["method"], float(r["fraction"]), r["condition"], r["actor"]) for r in rows}
    assert keys == {(m, f, c, "greedy") for m in cfg.methods for f in cfg.fractions for c in cfg.conditions}
    assert {int(r["episode_seed"]) for r in rows} == set(range(cfg.eval.seed_start, cfg.eval.seed_start + cfg.eval.episodes))
    for r in rows:
        v = {m: float(r[m]) if r[m] != "" else math.nan for m in METRICS}
        assert v["AR"] in (0.0, 1.0) and v["CR"] in (0.0, 1.0), r
        assert math.isfinite(v["Return"]) and v["Cost"] >= 0 and v["AS"] >= 0 and v["TD"] >= 0 and v["WC"] >= 0, r
        assert v["TCF"] >= 0 and v["DCF"] >= 0 and (math.isnan(v["CS"]) or v["CS"] >= 0), r
        assert 0 < int(r["steps"]) <= 60, r  # the smoke task's max_steps=60
        assert math.isfinite(float(r["reward_norm"])) and float(r["cost_norm"]) >= 0, r
        assert r["eval_variant"] == ("dense" if r["condition"] == "dense" else ""), r
    summary = json.loads((smoke["root"] / "results" / "summary.json").read_text())
    assert len(summary["summary"]) == len(cfg.methods) * len(cfg.fractions) * len(cfg.conditions)
    for s in summary["summary"]:
        for m in ("AR", "CR"):
            lo, hi = s["ci95"][m]
            assert 0 <= lo <= s["metrics"][m] <= hi <= 1, s
    # paired differences: every method but the reference, on the reference's own episodes
    assert {p["method"] for p in summary["paired"]} == set(cfg.methods) - {cfg.reference}
    assert all(p["pairs"] == cfg.eval.episodes for p in summary["paired"])
    agg = summary["aggregate"]
    assert {(a["fraction"], a["condition"]) for a in agg} == {(f, c) for f in cfg.fractions for c in cfg.conditions}
    for a in agg:
        for v in a["iqm_reward"].values():
            assert v["ci95"][0] <= v["value"] + 1e-9 and v["value"] <= v["ci95"][1] + 1e-9
        for v in a["probability_of_improvement"]["reward"].values():
            assert 0 <= v["value"] <= 1
    # every number comes with the command that made it
    assert all(c["commands"] and c["commands"][0].startswith("vlsafe ") for c in summary["cells"])


def test_subsets_are_nested_and_labelled_apart(smoke):
    subsets = {c.spec["fraction"]: c for c in smoke["cells"] if c.kind == "subset"}
    man = {f: json.loads((smoke["root"] / "cells" / c.folder / "dataset" / "manifest.json").read_text())
           for f, c in subsets.items()}
    small, big = (set(e["seed"] for e in man[f]["episodes"]) for f in sorted(man))
    assert small < big  # nested, and strictly smaller
    for f, c in subsets.items():
        assert list((smoke["root"] / "cells" / c.folder / "dataset" / "labels").glob("*.json")), f"fraction {f}: no labels"


def test_report_renders_in_a_real_headless_chromium(smoke, tmp_path):
    assert Path(CHROMIUM).exists(), "Debian's chromium is missing: `make test` installs it (apt-get install chromium)"
    rep = subprocess.run(VLSAFE + ["report", str(smoke["root"]), "--out", str(tmp_path / "report")], env=ENV,
                         capture_output=True, text=True, timeout=300)
    assert rep.returncode == 0, rep.stderr[-2000:]
    page = tmp_path / "report" / "report.html"
    url = page.resolve().as_uri()
    flags = CHROME_FLAGS + [f"--user-data-dir={tmp_path / 'chromium'}"]
    dom = subprocess.run([CHROMIUM, *flags, "--virtual-time-budget=5000", "--dump-dom", url], capture_output=True,
                         text=True, timeout=120).stdout
    assert 'data-images-ok="true"' in dom, dom[:500]
    cfg = resolve_benchmark("smoke")
    for task in cfg.tasks:
        table = dom.split(f"table1 task-{task}", 1)[1].split("</table>", 1)[0]
        for m in cfg.methods:
            assert f"<span class=\"method\">{m}</span>" in table, (task, m)
    shot = tmp_path / "shot.png"
    subprocess.run([CHROMIUM, *flags, "--window-size=1200,1600", f"--screenshot={shot}", url], capture_output=True,
                   timeout=120)
    import imageio.v2 as imageio

    img = np.asarray(imageio.imread(shot))[..., :3].astype(float)
    assert img.shape[0] >= 1000 and img.shape[1] >= 1000
    non_white = (img.min(-1) < 200).mean()
    assert non_white > 0.02 and img.std() > 10, f"blank screenshot: {non_white:.3f} non-white, std {img.std():.1f}"
    # figures come as PNG files too, for papers
    pngs = {p.name for p in (tmp_path / "report").glob("*.png")}
    assert {"return_vs_cost.png", "sample_efficiency.png", "training_curves.png"} <= pngs
    # report.md's tables are well-formed markdown: each separator row has its header's cell count
    lines = (tmp_path / "report" / "report.md").read_text().splitlines()
    seps = [i for i, line in enumerate(lines) if line.startswith("|") and set(line) <= set("|-")]
    assert len(seps) >= 4
    for i in seps:
        assert lines[i].count("|") == lines[i - 1].count("|"), (lines[i - 1], lines[i])


def test_two_runs_pooled_report_what_one_grid_of_both_reports(smoke, tmp_path):
    """`vlsafe report A B --out OUT`: two benchmark runs that split the smoke grid's methods between
    them (over its cached cells) pool into the same summaries and paired differences as the one
    grid that ran them all; an episode held twice, or pooling without --out, is refused in one line."""
    cfg = resolve_benchmark("smoke")
    half = len(cfg.methods) // 2
    parts = {"a": cfg.methods[:half], "b": cfg.methods[half:]}
    for name, methods in parts.items():
        root = tmp_path / name
        root.mkdir()
        (root / "cells").symlink_to(smoke["root"] / "cells")
        run = subprocess.run(VLSAFE + ["benchmark", "--preset", "smoke", "--out", str(root), "--set",
                                       f"methods={','.join(methods)}", "--set", f"reference={methods[0]}"],
                             env=ENV, capture_output=True, text=True, timeout=300)
        assert run.returncode == 0 and "0 to run" in run.stdout, run.stdout[-2000:] + run.stderr[-2000:]
    rep = subprocess.run(VLSAFE + ["report", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "pool"),
                                   "--reference", cfg.reference], env=ENV, capture_output=True, text=True, timeout=300)
    assert rep.returncode == 0, rep.stderr[-2000:]
    whole = json.loads((smoke["root"] / "results" / "summary.json").read_text())
    pooled = json.loads((tmp_path / "pool" / "summary.json").read_text())

    def by_group(rows):
        return {tuple(str(r[k]) for k in ("task", "method", "fraction", "condition", "actor")): r for r in rows}

    assert by_group(pooled["summary"]) == by_group(whole["summary"])
    assert by_group(pooled["paired"]) == by_group(whole["paired"])
    assert sorted(pooled["config"]["methods"]) == sorted(cfg.methods) and len(pooled["config"]["pooled"]) == 2
    with open(tmp_path / "pool" / "episodes.csv") as f:
        assert len(list(csv.DictReader(f))) == len(list(csv.DictReader(open(smoke["root"] / "results" / "episodes.csv"))))
    assert (tmp_path / "pool" / "report.html").exists() and "pooled" not in rep.stderr
    twice = subprocess.run(VLSAFE + ["report", str(tmp_path / "a"), str(smoke["root"]), "--out", str(tmp_path / "x")],
                           env=ENV, capture_output=True, text=True, timeout=300)
    assert twice.returncode != 0 and "is also in" in twice.stderr and len(twice.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists()
    no_out = subprocess.run(VLSAFE + ["report", str(tmp_path / "a"), str(tmp_path / "b")], env=ENV, capture_output=True,
                            text=True, timeout=300)
    assert no_out.returncode != 0 and "--out" in no_out.stderr

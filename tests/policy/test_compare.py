"""Paired comparison of two evaluations: the difference and its interval, and refusals."""

import json

import pytest

from vlsafe.evaluation.compare import compare_reports, load_report, paired_episodes
from vlsafe.evaluation.evaluate import bootstrap_ci, paired_difference
from vlsafe.evaluation.metrics import EpisodeMetrics, aggregate, to_json


def episode(crash: bool, ret: float) -> EpisodeMetrics:
    return EpisodeMetrics(Return=ret, Cost=float(crash), AS=5.0, WC=10, TD=100.0, AR=float(not crash), CR=float(crash),
                          TCF=0.0, DCF=0.0, CS=float("nan"), steps=200, time_s=20.0, collisions=int(crash),
                          collision_speeds=(6.0,) if crash else ())


def report(tmp_path, name: str, crashes: list[bool], seeds=(700, 701, 702, 703)) -> str:
    eps = [episode(c, 100.0 - 50 * c) for c in crashes]
    runs = ["a", "b"]
    half = len(eps) // 2
    rep = {"methods": [name], "runs": runs, "seeds": list(seeds), "greedy": True, "metrics": aggregate(eps),
           "ci95": bootstrap_ci(eps, n=200), "episodes": {"a": [to_json(e) for e in eps[:half]],
                                                         "b": [to_json(e) for e in eps[half:]]}}
    path = tmp_path / name
    path.mkdir()
    (path / "eval.json").write_text(json.dumps(rep).replace("NaN", "null"))
    return str(path)


def test_paired_difference_is_exact_and_its_interval_contains_it(tmp_path):
    a = load_report(report(tmp_path, "vl-safe", [False] * 8, seeds=range(700, 704)))
    b = load_report(report(tmp_path, "bc", [True, False, True, False, True, False, False, False], seeds=range(700, 704)))
    d = paired_difference(paired_episodes(b), paired_episodes(a), n=500)
    assert d["CR"]["diff"] == pytest.approx(3 / 8)
    assert 0 <= d["CR"]["lo"] <= d["CR"]["diff"] <= d["CR"]["hi"] <= 1
    table = compare_reports([a, b], ["Return", "CR"])
    assert "| bc | 8 |" in table and "0.375 [" in table


def test_unpaired_evaluations_are_refused(tmp_path):
    a = load_report(report(tmp_path, "x", [False] * 8, seeds=range(700, 704)))
    b = load_report(report(tmp_path, "y", [False] * 8, seeds=range(500, 504)))
    with pytest.raises(ValueError, match="not paired"):
        compare_reports([a, b], ["CR"])
    with pytest.raises(FileNotFoundError, match="no such evaluation"):
        load_report(tmp_path / "missing")

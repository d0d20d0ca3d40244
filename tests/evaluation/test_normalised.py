"""DSRL's normalised reward and cost: the affine maps, the ε rule at κ = 0, unknown tasks."""

import json

import pytest

from vlsafe.evaluation import normalised


@pytest.fixture
def refs(tmp_path, monkeypatch):
    path = tmp_path / "references.json"
    path.write_text(json.dumps({"four-lane@metadrive": {"random": -50.0, "expert": 450.0}}))
    monkeypatch.setattr(normalised, "REFERENCES_FILE", path)


def test_random_is_zero_expert_is_one_and_cost_is_over_the_threshold(refs):
    ci = {"Return": (-50.0, 450.0), "Cost": (0.0, 20.0)}
    n = normalised.normalised_scores({"Return": 200.0, "Cost": 5.0}, ci, "four-lane", "metadrive", threshold=10)
    assert n["reward"] == pytest.approx(0.5) and n["reward_ci95"] == pytest.approx([0.0, 1.0])
    assert n["cost"] == pytest.approx(0.5) and n["cost_ci95"] == pytest.approx([0.0, 2.0]) and n["safe"]
    unsafe = normalised.normalised_scores({"Return": 200.0, "Cost": 12.0}, ci, "four-lane", "metadrive", threshold=10)
    assert unsafe["cost"] == pytest.approx(1.2) and not unsafe["safe"]


def test_zero_threshold_uses_epsilon_one_and_unknown_tasks_get_none(refs):
    n = normalised.normalised_scores({"Return": 0.0, "Cost": 0.0}, {"Return": (0, 0), "Cost": (0, 0)},
                                     "four-lane", "metadrive", threshold=0)
    assert n["cost"] == pytest.approx(1.0) and n["safe"]  # (0 + 1) / (0 + 1): no cost at all is exactly safe
    assert normalised.normalised_scores({"Return": 0.0, "Cost": 0.0}, {"Return": (0, 0), "Cost": (0, 0)},
                                        "left-turn", "highway") is None
    with pytest.raises(ValueError, match="cost-threshold"):
        normalised.normalised_scores({"Return": 0.0, "Cost": 0.0}, {"Return": (0, 0), "Cost": (0, 0)},
                                     "four-lane", "metadrive", threshold=-1)

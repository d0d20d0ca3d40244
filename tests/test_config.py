import pytest

from vlsafe.config import ConfigError, apply_overrides, from_dict
from vlsafe.envs.tasks import TaskConfig, task_config


def test_unknown_key_lists_valid_keys_and_closest():
    with pytest.raises(ConfigError) as err:
        from_dict(TaskConfig, {"trafic_density": 0.2})
    msg = str(err.value)
    assert "\n" not in msg
    assert "did you mean 'traffic_density'" in msg and "valid keys:" in msg and "max_steps" in msg


def test_dotted_overrides_reach_nested_configs_and_are_typed():
    cfg = apply_overrides(TaskConfig(), ["observation.bev.size=128", "reward.desired_speed=5", "action=continuous"])
    assert cfg.observation.bev.size == 128 and cfg.reward.desired_speed == 5.0 and cfg.action == "continuous"


@pytest.mark.parametrize("override, fragment", [
    ("observation.bev.sise=3", "did you mean 'size'"),
    ("action=steer", "expected one of ['discrete', 'continuous']"),
    ("max_steps=abc", "max_steps: expected an integer"),
    ("observation.bev.size=8", "bev.size: expected 16..1024"),
    ("traffic_density=2", "traffic_density: expected 0..1"),
    ("nokey", "expected KEY=VALUE"),
    ("traffic_densities=[0.1,", "traffic_densities: not a JSON list"),
])
def test_bad_overrides_give_one_line_errors(override, fragment):
    with pytest.raises(ConfigError) as err:
        task_config("four-lane", "metadrive", overrides=[override])
    assert fragment in str(err.value) and "\n" not in str(err.value)


def test_bad_task_variant_and_backend_names_list_the_valid_ones():
    with pytest.raises(ConfigError, match=r"unknown task 'four-lanes' \(did you mean 'four-lane'\?\); valid tasks: "
                                          r"four-lane, left-turn, right-turn, navigation"):
        task_config("four-lanes")
    with pytest.raises(ConfigError, match="valid variants: sparse, dense, unseen"):
        task_config("four-lane:busy")
    with pytest.raises(ConfigError, match="valid backends: metadrive, highway"):
        task_config("four-lane", "carla")


def test_variants_change_what_they_say():
    assert task_config("four-lane:dense").traffic_density > task_config("four-lane").traffic_density
    assert task_config("navigation", variant="sparse").traffic_density < task_config("navigation").traffic_density
    assert task_config("left-turn:unseen").map_seed_start >= task_config("left-turn").num_maps


def test_a_list_whose_items_hold_commas_is_written_as_json():
    """`--set 'data.task_overrides=["traffic_densities=0.05,0.3"]'`: one item, commas and all."""
    from vlsafe.benchmark import resolve_benchmark

    cfg = resolve_benchmark("smoke", ['data.task_overrides=["traffic_densities=0.05,0.3", "max_steps=60"]'])
    assert cfg.data.task_overrides == ("traffic_densities=0.05,0.3", "max_steps=60")
    assert task_config("four-lane", overrides=["traffic_densities=[0.05, 0.3]"]).traffic_densities == (0.05, 0.3)

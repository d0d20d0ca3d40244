"""The benchmark's config and grid without running anything: refusals, cache keys, nested subsets."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from vlsafe.benchmark import expand, resolve_benchmark
from vlsafe.config import ConfigError
from vlsafe.data.subset import subset_seeds


@pytest.mark.parametrize("override, words", [
    ("methods=vl-safe,foo", "methods: unknown 'foo'"),
    ("fractions=0,1", "fractions: expected distinct numbers in (0, 1]"),
    ("seeds=1,1", "seeds: expected distinct"),
    ("reference=fosp", "reference: 'fosp' is not among"),
    ("conditions=rain", "conditions: unknown 'rain'"),
    ("eval.episodes=0", "eval.episodes: expected >= 1"),
    ("workers=0", "workers: expected >= 1"),
    ("tasks=four_lane", "tasks: unknown 'four_lane'"),
    ("device=gpu", "device: expected cpu, cuda or cuda:N"),
    ("gpus_per_cell=0", "gpus_per_cell: expected a number in (0, 8]"),
    ("data.mixture=expert:0.75,nosy:0.25", "mixture: unknown behaviour 'nosy'"),
    ("data.steps=-5", "data.steps: expected >= 0"),
    ("data.steps=500", "data.steps, data.episodes: give at most one"),  # smoke's data has episodes=6
])
def test_bad_config_is_refused_in_one_line(override, words):
    with pytest.raises(ConfigError, match=None) as err:
        resolve_benchmark("smoke", [override])
    assert words in str(err.value) and "\n" not in str(err.value)


def test_cli_refuses_before_any_work(tmp_path):
    out = tmp_path / "b"
    r = subprocess.run([sys.executable, "-m", "vlsafe.cli", "benchmark", "--preset", "nope", "--out", str(out)],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "unknown benchmark preset 'nope'" in r.stderr and not out.exists()


def test_keys_follow_the_config():
    a, b = expand(resolve_benchmark("smoke")), expand(resolve_benchmark("smoke"))
    assert [c.key for c in a] == [c.key for c in b]  # deterministic
    assert len({c.key for c in a}) == len(a)
    c = expand(resolve_benchmark("smoke", ["policy.steps=21"]))
    changed = {x.name for x, y in zip(a, c) if x.key != y.key}
    # a policy setting changes the policies and their evaluations, never the data or the world models
    assert changed and all(n.startswith(("policy/", "eval/")) for n in changed)
    assert not any(n.startswith("policy/") and "d3rlpy" in n for n in changed)


def test_overrides_in_another_order_name_the_same_cells():
    a = expand(resolve_benchmark("smoke", ["policy.overrides=eval_every=0,policy.beta1=2,policy.beta2=2"]))
    b = expand(resolve_benchmark("smoke", ["policy.overrides=policy.beta2=2,eval_every=0,policy.beta1=2"]))
    # a key given twice resolves to its last value, as the run itself reads it
    c = expand(resolve_benchmark("smoke", ["policy.overrides=policy.beta1=5,policy.beta2=2,eval_every=0,policy.beta1=2"]))
    assert [x.key for x in a] == [x.key for x in b] == [x.key for x in c]
    d = expand(resolve_benchmark("smoke", ["policy.overrides=eval_every=0,policy.beta1=3,policy.beta2=2"]))
    assert {x.name for x, y in zip(a, d) if x.key != y.key} == {x.name for x in a if x.kind in ("policy", "eval")
                                                                 and "d3rlpy" not in x.name}
    # the run gets every setting, once, with the value that was given last
    from vlsafe.benchmark.cells import commands
    pol = next(x for x in c if x.kind == "policy" and "d3rlpy" not in x.name)
    argv = commands(pol.kind, pol.spec, Path("/x"), [Path("/w/wm/a")])[0]
    sets = [argv[i + 1] for i, a in enumerate(argv) if a == "--set"]
    assert "policy.beta1=2" in sets and "policy.beta2=2" in sets and "eval_every=0" in sets
    assert "policy.beta1=5" not in sets


def test_a_data_mixture_is_a_new_dataset_and_the_default_keeps_the_keys():
    from vlsafe.benchmark.cells import commands

    base = expand(resolve_benchmark("smoke"))
    mixed = expand(resolve_benchmark("smoke", ["data.mixture=expert:0.75,noisy:0.25"]))
    assert all("mixture" not in c.spec for c in base)  # the keys (caches) of the grids before the field
    assert all(x.key != y.key for x, y in zip(base, mixed))  # everything downstream of the data is new
    data = next(c for c in mixed if c.kind == "data")
    argv = commands(data.kind, data.spec, Path("/x"), [])[0]
    assert argv[argv.index("--mixture") + 1] == "expert:0.75,noisy:0.25"
    labelled = expand(resolve_benchmark("smoke", ["data.expert_labels=true"]))
    assert all("expert_labels" not in c.spec for c in base + mixed)
    assert all(x.key != y.key for x, y in zip(base, labelled))
    data = next(c for c in labelled if c.kind == "data")
    assert "--expert-labels" in commands(data.kind, data.spec, Path("/x"), [])[0]
    assert "--expert-labels" not in commands(data.kind, base[0].spec, Path("/x"), [])[0]
    sized = expand(resolve_benchmark("smoke", ["data.episodes=0", "data.steps=900"]))
    assert all("steps" not in c.spec for c in base if c.kind == "data")
    assert all(x.key != y.key for x, y in zip(base, sized))
    argv = commands("data", next(c for c in sized if c.kind == "data").spec, Path("/x"), [])[0]
    assert argv[argv.index("--steps") + 1] == "900" and "--episodes" not in argv


def test_left_turn_records_its_own_mixture_by_default_and_the_global_one_when_asked():
    """MetaDrive's left-turn defaults to the reckless-free mixture: its default data cell is the
    cell of an explicit `data.mixture=expert:0.75,noisy:0.25` (one cache), and asking for the global
    default there still records the global default (the argv names it, not collect's per-task one)."""
    from vlsafe.benchmark.cells import commands
    from vlsafe.data.collect import CollectConfig, with_preset
    from vlsafe.experts.behaviours import DEFAULT_MIXTURE

    def data_cell(*over):
        return next(c for c in expand(resolve_benchmark("smoke", ["tasks=left-turn", *over])) if c.kind == "data")

    own, explicit, glob = data_cell(), data_cell("data.mixture=expert:0.75,noisy:0.25"), \
        data_cell(f"data.mixture={DEFAULT_MIXTURE}")
    assert own.key == explicit.key != glob.key
    assert "mixture" not in glob.spec  # the key left-turn's data had before the per-task default
    argv = commands(glob.kind, glob.spec, Path("/x"), [])[0]
    assert argv[argv.index("--mixture") + 1] == DEFAULT_MIXTURE
    assert with_preset("tiny", task="left-turn").behaviour_mixture == "expert:0.75,noisy:0.25"
    assert with_preset("tiny", task="left-turn", backend="highway").behaviour_mixture == DEFAULT_MIXTURE
    assert CollectConfig(task="right-turn").behaviour_mixture == DEFAULT_MIXTURE


def test_training_cells_declare_a_gpu_with_device_cuda_and_keep_their_keys():
    """Where a cell runs is not what it computes: device and resources leave the keys (the cache)
    alone; with cuda only the world model and the in-house policies ask for a GPU."""
    from vlsafe.benchmark.cells import commands

    cpu = expand(resolve_benchmark("smoke", ["data.workers=2"]))
    gpu = expand(resolve_benchmark("smoke", ["data.workers=2", "device=cuda", "gpus_per_cell=0.25"]))
    assert [c.key for c in cpu] == [c.key for c in gpu]
    assert all(c.device == "cpu" and "num_gpus" not in c.resources for c in cpu)
    for c in gpu:
        trains = c.kind == "wm" or (c.kind == "policy" and "algo" not in c.spec)
        assert (c.device == "cuda") == trains and c.resources.get("num_gpus", 0) == (0.25 if trains else 0)
        assert c.resources["num_cpus"] == (2 if c.kind == "data" else 1)
        argv = commands(c.kind, c.spec, Path("/x"), [Path(f"/in/{n.kind}/cell") for n in c.needs], c.device)[-1]
        assert ("--device" in argv) == trains and (not trains or argv[argv.index("--device") + 1] == "cuda")


def test_small_grid_has_every_method_task_seed_fraction():
    cfg = resolve_benchmark("small")
    cells = expand(cfg)
    evals = {(c.name.split("/")[1], c.spec["method"], c.spec["seed"], c.spec["fraction"], c.spec["condition"])
             for c in cells if c.kind == "eval"}
    per_task = {t: len(cfg.conditions) - (t != "navigation") for t in cfg.tasks}  # :unseen only where maps vary
    assert len(evals) == sum(per_task.values()) * len(cfg.methods) * len(cfg.seeds) * len(cfg.fractions)
    for c in cells:  # every cell comes after what it needs
        assert all(cells.index(n) < cells.index(c) for n in c.needs)


def test_subsets_nest_and_keep_the_mixture():
    entries = [{"seed": i, "behaviour": ["expert", "noisy", "reckless", "expert"][i % 4]} for i in range(200)]
    s10, s30, s100 = (subset_seeds(entries, f, seed=3) for f in (0.1, 0.3, 1.0))
    assert set(s10) < set(s30) < set(s100) == set(range(200))
    assert len(s10) == 20 and len(s30) == 60
    experts = sum(1 for s in s30 if entries[s]["behaviour"] == "expert")
    assert experts == 30  # half of the data, half of the subset
    assert subset_seeds(entries, 0.3, seed=4) != s30  # another permutation seed, another subset
    with pytest.raises(ValueError):
        subset_seeds(entries, 0.0)


def test_a_broken_cells_link_is_refused_before_any_cell(tmp_path):
    """A cells/ shared with another benchmark through a link that does not resolve: one line, no cell run."""
    from vlsafe.benchmark import run_benchmark

    out = tmp_path / "arm"
    out.mkdir()
    (out / "cells").symlink_to("../nowhere/cells")
    with pytest.raises(ConfigError, match=r"cells/ is a link to \.\./nowhere/cells, which does not exist"):
        run_benchmark(resolve_benchmark("smoke"), out, log=lambda *_: None)
    assert sorted(p.name for p in out.iterdir()) == ["cells"]


def test_a_cell_another_run_holds_waits_and_takes_its_result(tmp_path):
    """Two benchmarks sharing a cell (or a killed run's worker still in it) must not write its folder
    at once: run_cell waits for the cell's lock, then returns the record the holder wrote and runs
    nothing (a bad spec here would fail if it ran)."""
    import fcntl
    import json
    import threading

    from vlsafe.benchmark.cells import DONE, run_cell

    cell = tmp_path / "cell"
    cell.mkdir()
    out = {}
    with open(cell / "lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        worker = threading.Thread(target=lambda: out.update(r=run_cell("eval", "eval/x", "abc", {}, str(cell), [])))
        worker.start()
        worker.join(0.5)
        assert worker.is_alive(), "run_cell did not wait for the lock another run holds"
        record = {"key": "abc", "name": "eval/x", "wall_s": 1.0}
        (cell / DONE).write_text(json.dumps(record))
    worker.join(10)
    assert not worker.is_alive() and out["r"] == record
    assert not (cell / "log.txt").exists()

"""vlsafe on a real Ray cluster on 127.0.0.1: a head with no CPUs and two worker nodes of one CPU
each, started and stopped here. Collect (1 against 2 workers, and a worker killed mid-run),
eval against the local loop, and a benchmark that runs on Ray and then resumes from its cache."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
import ray

from vlsafe.benchmark import resolve_benchmark, run_benchmark
from vlsafe.data.collect import CollectConfig, collect
from vlsafe.evaluation.evaluate import evaluate_policies

LOOPBACK = "127.0.0.1"
TINY = dict(task="four-lane", backend="highway", episodes=6, max_steps=40, seed_start=0)


@pytest.fixture(scope="module")
def cluster():
    from ray._private import ray_constants
    from ray.cluster_utils import Cluster

    # every node on 127.0.0.1. Ray turns a loopback address given to ray.init into the machine's
    # outward one, where nothing listens then, unless RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0: in the
    # environment for the processes the nodes start, and in the constant this process read at import
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
        mp.setattr(ray_constants, "ENABLE_RAY_CLUSTER", False)
        c = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False,
                                                          "node_ip_address": LOOPBACK})
        for _ in range(2):
            c.add_node(num_cpus=1, node_ip_address=LOOPBACK)
        ray.init(address=c.address, log_to_driver=False, include_dashboard=False, _node_ip_address=LOOPBACK)
        assert ray.cluster_resources().get("CPU") == 2
        assert [n["NodeManagerAddress"] for n in ray.nodes() if n["Alive"]] == [LOOPBACK] * 3
        yield c.address
        ray.shutdown()
        c.shutdown()


def _shas(store) -> list[tuple[int, str]]:
    return [(e["seed"], e["sha256"]) for e in store.entries()]


def test_collect_is_bit_identical_with_one_and_two_ray_workers(cluster, tmp_path):
    one = collect(CollectConfig(**TINY, workers=1), tmp_path / "one", cluster="ray", address=cluster, log=lambda _: None)
    two = collect(CollectConfig(**TINY, workers=2), tmp_path / "two", cluster="ray", address=cluster, log=lambda _: None)
    local = collect(CollectConfig(**TINY, workers=1), tmp_path / "local", log=lambda _: None)
    assert len(_shas(one)) == TINY["episodes"]
    assert _shas(one) == _shas(two) == _shas(local)  # the same files, byte for byte (SHA-256)


def _worker_pids() -> list[int]:
    out = subprocess.run(["pgrep", "-f", "ray::_Worker"], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def test_a_worker_killed_mid_collect_leaves_a_complete_dataset(cluster, tmp_path):
    cfg = CollectConfig(**{**TINY, "episodes": 10}, workers=2)
    result: dict = {}
    t = threading.Thread(target=lambda: result.update(store=collect(cfg, tmp_path / "ds", cluster="ray", address=cluster,
                                                                    log=lambda _: None)))
    t.start()
    episodes = tmp_path / "ds" / "episodes"
    deadline = time.time() + 300
    while time.time() < deadline and len(list(episodes.glob("ep_*.h5"))) < 2:
        time.sleep(0.05)
    pids = _worker_pids()
    assert pids, "no Ray worker actor to kill"
    os.kill(pids[0], signal.SIGKILL)  # mid-run: Ray restarts the actor and retries its calls
    t.join(timeout=600)
    store = result["store"]
    seeds = [e["seed"] for e in store.entries()]
    assert seeds == list(range(10))  # complete, each episode once
    assert sorted(p.name for p in episodes.iterdir()) == [f"ep_{s:09d}.h5" for s in range(10)]  # no strays, no temp files
    assert not store.verify()
    reference = collect(CollectConfig(**{**TINY, "episodes": 10}, workers=1), tmp_path / "ref", log=lambda _: None)
    assert _shas(store) == _shas(reference)


@pytest.fixture(scope="module")
def bench(cluster, tmp_path_factory):
    root = tmp_path_factory.mktemp("raybench") / "b"
    cfg = resolve_benchmark("smoke", ["methods=vl-safe", "fractions=1", "conditions=default"])
    lines: list[str] = []
    first = run_benchmark(cfg, root, cluster="ray", address=cluster, log=lines.append)
    again: list[str] = []
    second = run_benchmark(cfg, root, cluster="ray", address=cluster, log=again.append)
    return {"root": root, "first": first, "second": second, "lines": lines, "again": again}


def test_a_call_runs_with_the_resources_it_declares(cluster):
    """Benchmark cells declare their CPUs and GPUs per call (a collect cell with 2 workers takes 2);
    Ray's scheduler, not the driver, holds them to it."""
    from vlsafe.cluster import submit_with, worker_pool
    from vlsafe.cluster.ray_pool import assigned_resources

    pool = worker_pool("ray", 2, fresh_process=True, address=cluster)
    half = submit_with(pool, {"num_cpus": 0.5}, assigned_resources)
    plain = pool.submit(assigned_resources)
    assert half.result(timeout=120) == {"CPU": 0.5} and plain.result(timeout=120) == {"CPU": 1.0}


def test_benchmark_runs_on_ray_then_resumes_from_its_cache(bench):
    first, second = bench["first"], bench["second"]
    assert not first.failed and not first.skipped, first.failed
    assert len(first.ran) == 5 and not first.cached  # data, subset, wm, policy, eval
    assert not second.ran and len(second.cached) == 5
    assert any("on 2 ray worker(s)" in line for line in bench["lines"])
    rows = (bench["root"] / "results" / "episodes.csv").read_text().splitlines()
    assert len(rows) == 1 + 2  # header + the smoke preset's 2 episodes


def test_eval_on_ray_gives_the_local_per_episode_metrics(bench, cluster, tmp_path):
    run = next((bench["root"] / "cells" / "policy").glob("*vl-safe*")) / "run"
    kw = dict(episodes=3, videos=False, log=lambda _: None)
    evaluate_policies([run], out=tmp_path / "local", **kw)
    evaluate_policies([run], out=tmp_path / "ray", cluster="ray", workers=2, address=cluster, **kw)
    local, remote = (json.loads((tmp_path / k / "eval.json").read_text()) for k in ("local", "ray"))  # NaN -> null
    assert remote["seeds"] == [700, 701, 702]
    assert local["episodes"] == remote["episodes"] and local["metrics"] == remote["metrics"]
    assert Path(tmp_path / "ray" / "eval.md").exists()


def test_labels_on_ray_data_equal_the_local_labels(bench, cluster, tmp_path):
    import shutil

    import numpy as np

    from vlsafe.data.store import EpisodeStore
    from vlsafe.vlm.label import label_dataset, load_labels
    from vlsafe.vlm.scorer import load_scorer

    src = next((bench["root"] / "cells" / "data").iterdir()) / "dataset"
    stores = {}
    for name in ("local", "ray"):
        (tmp_path / name).mkdir()
        shutil.copytree(src / "episodes", tmp_path / name / "episodes")
        shutil.copy(src / "manifest.json", tmp_path / name / "manifest.json")
        stores[name] = EpisodeStore(tmp_path / name)
    scorer = load_scorer("drive-clip", None, threads=1)
    label_dataset(stores["local"], scorer, log=lambda _: None)
    label_dataset(stores["ray"], scorer, log=lambda _: None, cluster="ray", workers=2, address=cluster,
                  scorer_spec=("drive-clip", None))
    a, b = load_labels(stores["local"]), load_labels(stores["ray"])
    assert sorted(a) == sorted(b) == [e["seed"] for e in stores["local"].entries()]
    for seed in a:  # one thread on both sides: the same arithmetic
        np.testing.assert_allclose(a[seed], b[seed], atol=1e-6)

"""train-wm under torchrun: 2 CPU processes (gloo) against one, on the same global batch, and a
checkpoint written by 2 ranks resumed by 1."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from vlsafe.data.collect import CollectConfig, collect

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node"]
VLSAFE = shutil.which("vlsafe", path=str(Path(sys.executable).parent)) or "vlsafe"
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
TRAIN = ["--set", "batch_size=8", "--set", "seq_len=16", "--set", "log_every=2", "--set", "threads=1"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp") / "ds"
    collect(CollectConfig(task="four-lane", backend="highway", episodes=6, max_steps=60, workers=1), root, log=lambda _: None)
    subprocess.run([VLSAFE, "label", str(root), "--threads", "1"], check=True, capture_output=True, env=ENV)
    return root


def _train(data: Path, out: Path, nproc: int, steps: int, extra: list[str] = ()) -> subprocess.CompletedProcess:
    cmd = TORCHRUN + [str(nproc), "--standalone", VLSAFE, "train-wm", str(data), "--steps", str(steps),
                      "--out", str(out), *TRAIN, *extra]
    return subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=600)


def _losses(run: Path) -> list[float]:
    return [json.loads(line)["wm/loss"] for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_two_ranks_learn_as_one_process_on_the_same_global_batch(data, tmp_path):
    one, two = _train(data, tmp_path / "one", 1, 40), _train(data, tmp_path / "two", 2, 40)
    assert one.returncode == 0 and two.returncode == 0, one.stderr[-6000:] + two.stderr[-6000:]
    a, b = _losses(tmp_path / "one"), _losses(tmp_path / "two")
    assert len(a) == len(b) == 20  # rank 0 alone logs: one line per log step, not one per rank
    assert b[-1] < 0.7 * b[0]  # the 2-rank run learns
    # Each rank draws its own shard with its own seed, so the batches differ from the single
    # process's: the curves agree statistically. Measured: the last 10 logged losses' means differ
    # by 2.3% (1070 vs 1046); the tolerance is 15% of the single-process mean.
    tail_a, tail_b = sum(a[-10:]) / 10, sum(b[-10:]) / 10
    assert abs(tail_a - tail_b) < 0.15 * tail_a, (tail_a, tail_b)
    cfg = json.loads((tmp_path / "two" / "config.json").read_text())
    assert cfg["ranks"] == 2 and cfg["global_batch"] == 8


def test_a_checkpoint_of_two_ranks_resumes_with_one(data, tmp_path):
    run = tmp_path / "run"
    first = _train(data, run, 2, 8, ["--set", "checkpoint_every=4"])
    assert first.returncode == 0, first.stderr[-6000:]
    second = subprocess.run([VLSAFE, "train-wm", str(data), "--steps", "12", "--out", str(run), *TRAIN,
                             "--set", "checkpoint_every=4"], capture_output=True, text=True, env=ENV, timeout=600)
    assert second.returncode == 0, second.stderr[-1500:]
    assert "from step 8 (2 rank(s) wrote it, 1 now)" in second.stdout
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == [2, 4, 6, 8, 10, 12]
    meta = json.loads((run / "checkpoint.json").read_text())
    assert meta["step"] == 12 and meta["world_size"] == 1 and meta["global_batch"] == 8

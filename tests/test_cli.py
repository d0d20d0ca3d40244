"""One smoke run per CLI entry point, on real simulators and real files."""

import json
import shutil
import subprocess
import sys

import imageio.v2 as imageio
import pytest

from vlsafe.cli import main


def vlsafe(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vlsafe.cli", *args], capture_output=True, text=True, timeout=600)


def test_envs_lists_tasks_and_ids(capsys):
    assert main(["envs"]) == 0
    out = capsys.readouterr().out
    for text in ("four-lane", "navigation", "vlsafe/LeftTurn-MetaDrive-v0", "vlsafe/RightTurnDense-Highway-v0"):
        assert text in out


def test_drive_writes_metrics_gif_and_manifest(tmp_path, capsys):
    out = tmp_path / "drive"
    assert main(["drive", "--task", "four-lane", "--backend", "highway", "--episodes", "1", "--out", str(out),
                 "--set", "max_steps=30"]) == 0
    assert "| four-lane@highway |" in (out / "metrics.md").read_text()
    frames = imageio.mimread(out / "episode0.gif")
    assert len(frames) >= 10 and frames[0].shape[:2] == (128, 128)
    man = json.loads((out / "manifest.json").read_text())
    assert man["config"]["max_steps"] == 30 and man["config"]["backend"] == "highway" and man["driver"] == "expert"
    assert man["metrics"]["episodes"] == 1


def test_snapshot_png(tmp_path):
    out = tmp_path / "bev.png"
    assert main(["snapshot", "--task", "right-turn", "--backend", "highway", "--steps", "5", "--size", "96",
                 "--out", str(out)]) == 0
    img = imageio.imread(out)
    assert img.shape == (96, 96, 3) and ((img == (255, 0, 0)).all(-1)).sum() > 4


@pytest.mark.parametrize("args, fragment", [
    (["drive", "--task", "four-lanes"], "unknown task 'four-lanes' (did you mean 'four-lane'?)"),
    (["drive", "--set", "observation.bev.sise=2"], "did you mean 'size'"),
    (["drive", "--driver", "drunk"], "valid drivers: expert, noisy, reckless"),
    (["collect", "--preset", "huge"], "valid presets: tiny, small, full"),
    (["collect", "--mixture", "expert:1,angry:1"], "valid: expert, noisy, reckless"),
])
def test_bad_input_one_line_error_exit_2(args, fragment):
    r = vlsafe(*args)
    assert r.returncode == 2, r.stderr
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and fragment in lines[0], r.stderr


def test_data_info_and_verify_on_a_collected_dataset(tmp_path):
    ds = tmp_path / "ds"
    r = vlsafe("collect", "--task", "left-turn", "--backend", "highway", "--episodes", "3", "--set", "max_steps=40",
               "--out", str(ds))
    assert r.returncode == 0, r.stderr
    assert "done: 3 episodes" in r.stdout
    r = vlsafe("data", "info", str(ds))
    assert r.returncode == 0 and "episodes: 3" in r.stdout and "| all |" in r.stdout
    # the expert's own figures head the card (seed 1 is the expert's; 40 steps are too few to arrive)
    assert "the data's expert: AR 0.00, CR 0.00 over 1 episodes" in r.stdout
    r = vlsafe("data", "verify", str(ds))
    assert r.returncode == 0 and "3 episodes checked, 0 problem(s)" in r.stdout
    first = sorted((ds / "episodes").glob("ep_*.h5"))[0]
    first.write_bytes(first.read_bytes()[:-100])
    r = vlsafe("data", "verify", str(ds))
    assert r.returncode == 1 and f"{first}: checksum mismatch" in r.stdout


def test_train_wm_and_eval_wm(tmp_path):
    ds, run = tmp_path / "ds", tmp_path / "run"
    assert vlsafe("collect", "--task", "four-lane", "--backend", "highway", "--episodes", "3", "--set", "max_steps=40",
                  "--out", str(ds)).returncode == 0
    r = vlsafe("train-wm", str(ds), "--steps", "2", "--out", str(run))  # labels required by default
    assert r.returncode == 2 and "no usable VLM labels" in r.stderr and "vlsafe label" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and not run.exists()
    r = vlsafe("train-wm", str(ds), "--steps", "2", "--out", str(run), "--eval", "--set", "labels=none",
               "--set", "batch_size=2", "--set", "seq_len=8", "--set", "log_every=1")
    assert r.returncode == 0, r.stderr
    assert "step 2/2" in r.stdout and (run / "checkpoint.safetensors").exists() and (run / "imagined.gif").exists()
    report = json.loads((run / "eval.json").read_text())
    assert report["episodes"] == 1 and report["recon_mse"] > 0 and len(report["open_loop_mse"]) == 15
    r = vlsafe("train-wm", str(ds), "--preset", "s", "--out", str(run), "--set", "labels=none")
    assert r.returncode == 2 and "another config or dataset" in r.stderr

    pol = tmp_path / "policy"
    r = vlsafe("train-policy", str(run), "--method", "dreamer-offline", "--steps", "4", "--out", str(pol),
               "--set", "starts=8", "--set", "log_every=2", "--set", "eval_every=4", "--set", "eval_episodes=1")
    assert r.returncode == 0, r.stderr
    assert "step 4: eval over 1 episodes" in r.stdout and (pol / "checkpoint.safetensors").exists()
    assert "eval/Return" in json.loads((pol / "metrics.jsonl").read_text().splitlines()[-1])
    r = vlsafe("train-policy", str(run), "--method", "vl-safe", "--steps", "5", "--out", str(pol))
    assert r.returncode == 2 and "another config or world model" in r.stderr
    r = vlsafe("train-policy", str(run), "--method", "nope")
    assert r.returncode == 2 and "unknown method 'nope'" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = vlsafe("eval", str(pol), "--episodes", "1", "--variant", "dense", "--out", str(tmp_path / "ev"))
    assert r.returncode == 0, r.stderr
    assert "| dreamer-offline |" in r.stdout and (tmp_path / "ev" / "eval.json").exists()
    assert json.loads((tmp_path / "ev" / "eval.json").read_text())["variant"] == "dense"
    r = vlsafe("eval", str(tmp_path / "nothing"))
    assert r.returncode == 2 and "nothing: no such run folder" in r.stderr


def test_demo_runs_every_stage_end_to_end(tmp_path):
    """`make demo`'s command, shrunk (one simulator, a few steps): all five stages and their files."""
    out = tmp_path / "demo"
    r = vlsafe("demo", "--out", str(out), "--backends", "highway", "--wm-steps", "3", "--policy-steps", "4",
               "--eval-episodes", "1")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "demo done" in r.stdout and "label quality" in r.stdout
    for path in ("four-lane@highway/episode0.gif", "dataset/manifest.json", "wm/eval.json", "policy/eval/eval.json"):
        assert (out / path).exists(), path
    # a demo policy folder of an earlier config (an upgrade changed a default): replaced, not refused
    shutil.rmtree(out / "policy")
    r = vlsafe("train-policy", str(out / "wm"), "--out", str(out / "policy"), "--steps", "4",
               "--set", "starts=64", "--set", "eval_every=0", "--set", "policy.beta1=5")
    assert r.returncode == 0, r.stderr[-2000:]
    r = vlsafe("demo", "--out", str(out), "--backends", "highway", "--wm-steps", "3", "--policy-steps", "4",
               "--eval-episodes", "1")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "a demo run of an earlier config; starting it again" in r.stdout
    assert json.loads((out / "policy" / "config.json").read_text())["identity"]["policy"]["beta1"] == 6.0
    assert (out / "policy" / "eval" / "eval.json").exists()


def readme_commands() -> list[str]:
    """Every `vlsafe ...` line of the README's bash blocks, its trailing comment removed, with the
    block's own shell variables (`R="..."` lines before it) expanded as bash would."""
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    blocks = [b.split("\n", 1)[1].split("```", 1)[0] for b in text.split("```bash")[1:]]

    def expand(s: str, env: dict[str, str]) -> str:
        return re.sub(r"\$([A-Z_]+)", lambda m: env[m.group(1)], s)

    commands = []
    for block in blocks:
        env: dict[str, str] = {}
        for line in block.splitlines():
            if m := re.fullmatch(r'([A-Z_]+)="(.*)"', line.strip()):
                env[m.group(1)] = expand(m.group(2), env)
            elif line.startswith("vlsafe "):
                commands.append(expand(line.split("  #", 1)[0].strip(), env))
    return commands


def test_every_readme_command_parses():
    """The README's commands against the CLI's parser: a flag renamed or dropped fails here (running
    them is `make demo`'s and the rest of the suite's job)."""
    import shlex

    from vlsafe.benchmark import resolve_benchmark
    from vlsafe.cli import build_parser

    commands = readme_commands()
    assert len(commands) >= 25, commands
    parser = build_parser()
    for line in commands:
        argv = [w for w in shlex.split(line)[1:] if w != "|" and w != "head"]
        try:
            args = parser.parse_args(argv)
        except SystemExit as err:
            raise AssertionError(f"README: {line!r} does not parse") from err
        if args.command == "benchmark":  # its --set keys too, as the command checks them before any work
            resolve_benchmark(args.preset, args.set)

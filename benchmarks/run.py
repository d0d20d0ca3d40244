"""All benchmarks in one command: `make bench` (envs, then data). Each prints ratios to its targets."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import data  # noqa: E402
import envs  # noqa: E402

if __name__ == "__main__":
    which = sys.argv[1:] or ["envs", "data"]
    for name in which:
        print(f"== {name} ==", flush=True)
        {"envs": envs.main, "data": data.main}[name]([])

"""All benchmarks in one command: `make bench` (or `python benchmarks/run.py envs data worldmodel ...`)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import data  # noqa: E402
import envs  # noqa: E402
import worldmodel  # noqa: E402

SUITES = {"envs": envs.main, "data": data.main, "worldmodel": worldmodel.main}

if __name__ == "__main__":
    which = sys.argv[1:] or list(SUITES)
    for name in which:
        if name not in SUITES:
            sys.exit(f"unknown benchmark {name!r}; valid: {', '.join(SUITES)}")
        print(f"== {name} ==", flush=True)
        SUITES[name]([])

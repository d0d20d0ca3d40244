"""All benchmarks in one command: `make bench` (or `python benchmarks/run.py envs data worldmodel policy ...`).

`time-to-policy` (the README's four-lane recipe end to end, ~40 min) runs only when named."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import data  # noqa: E402
import envs  # noqa: E402
import policy  # noqa: E402
import time_to_policy  # noqa: E402
import worldmodel  # noqa: E402

SUITES = {"envs": envs.main, "data": data.main, "worldmodel": worldmodel.main, "policy": policy.main}
ON_REQUEST = {"time-to-policy": time_to_policy.main}

if __name__ == "__main__":
    which = sys.argv[1:] or list(SUITES)
    for name in which:
        if name not in SUITES and name not in ON_REQUEST:
            sys.exit(f"unknown benchmark {name!r}; valid: {', '.join([*SUITES, *ON_REQUEST])}")
        print(f"== {name} ==", flush=True)
        {**SUITES, **ON_REQUEST}[name]([])

"""The heap setting is what makes a world-model step reuse last step's pages (training/heap.py)."""

from __future__ import annotations

import subprocess
import sys

import pytest

CHILD = """
import resource, sys, torch
if sys.argv[1] == "reuse":
    from vlsafe.training.heap import reuse_freed_memory
    assert reuse_freed_memory()
for i in range(20):  # a step's worth of frames: 1,024 x 64 x 64 x 3 floats = 50 MB, allocated and freed
    if i == 10:  # the heap settles after a few rounds (aligned requests leave holes at first)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    x = torch.empty(1024 * 64 * 64 * 3)
    x.fill_(1.0)
    small = torch.ones(100)  # small allocations in between, as in a training step
    del x
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def page_faults(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", CHILD, mode], check=True, capture_output=True, text=True)
    return int(out.stdout.strip())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator only")
def test_freed_memory_is_reused_instead_of_faulted_in_again():
    plain, reuse = page_faults("plain"), page_faults("reuse")
    if plain < 10 * 1024:  # 50 MB is 12,288 pages of 4 KiB: fewer means huge pages or another allocator
        pytest.skip(f"this system faults {plain} pages for ten 50 MB allocations: nothing to save")
    assert reuse < plain / 10, (plain, reuse)

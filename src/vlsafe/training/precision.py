"""Which floating-point precision the world model trains in: `fp32`, `bf16` (autocast), or `auto`.

bf16 autocast halves the bytes a convolution moves and, on CPUs with native bf16 dot products
(AVX-512 BF16, AMX), runs the `s` and `m` presets' matmuls and convolutions ~2x faster. The `xs`
preset's 8-32-channel layers are bound by overheads, not arithmetic, and the casts around
LayerNorm cost more than bf16 saves (`make bench` prints both side by side). `auto` is that
measurement written down: bf16 on CUDA, bf16 on such a CPU for `s` and `m`, fp32 otherwise.
Weights, optimizer moments and the loss stay fp32 either way (autocast only changes the
compute dtype of matmuls and convolutions).
"""

from __future__ import annotations

import contextlib
from functools import lru_cache
from pathlib import Path

import torch

from vlsafe.config import ConfigError

__all__ = ["PRECISIONS", "cpu_has_native_bf16", "resolve_precision", "autocast"]

PRECISIONS = ("auto", "fp32", "bf16")
# presets measured faster under CPU bf16 autocast (benchmarks/worldmodel.py, 2-core AVX-512 BF16 machine)
CPU_BF16_PRESETS = ("s", "m")


@lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    """AVX-512 BF16 or AMX: without them oneDNN emulates bf16, slower than fp32."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(precision: str, preset: str | None, device: str | torch.device) -> str:
    """`fp32` or `bf16`: what `precision` means for this world-model preset on this device
    (`preset=None`: the policy learner's small MLPs, bf16 only on CUDA)."""
    if precision not in PRECISIONS:
        raise ConfigError(f"precision: expected one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision != "auto":
        return precision
    if str(device).startswith("cuda"):
        return "bf16"
    return "bf16" if preset in CPU_BF16_PRESETS and cpu_has_native_bf16() else "fp32"


def autocast(precision: str, device: str | torch.device):
    """The context the forward pass (and loss) runs in: bf16 autocast, or nothing for fp32."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16)

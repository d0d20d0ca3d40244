"""World-model training speed: one AdamW step on batch 16x64 of 64 px frames, per preset and precision.

Prints, for fp32 and bf16 autocast side by side: train steps/s, samples (frames)/s, and the
achieved FLOP/s (FLOPs of one step counted by torch's FlopCounterMode: matmuls and
convolutions, forward and backward) as a fraction of this machine's matmul FLOP/s in the same
dtype, measured in the same run (2048x2048 matmuls, same threads): the physical limit. Then
the ratio of train-wm's defaults (`precision=auto`, `reuse_memory=true`) to the reference,
`precision=fp32` with the allocator left as it was (measured first, in a child process, since
the heap setting cannot be undone in a process), against the targets: s >= 1.5x, xs >= 1.3x.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from vlsafe.training.heap import reuse_freed_memory
from vlsafe.training.precision import autocast, resolve_precision
from vlsafe.worldmodel.rssm import PRESETS, WorldModel, WorldModelConfig

TARGETS = {"xs": 1.3, "s": 1.5}


def matmul_peak(dtype: torch.dtype = torch.float32, n: int = 2048, repeats: int = 10, trials: int = 3) -> float:
    """FLOP/s of n x n matmuls, best of `trials`: the reference rate (oneDNN's convolutions can
    beat it on some CPUs, so a fraction above 100% is possible)."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    best = 0.0
    for _ in range(trials):
        t = time.perf_counter()
        for _ in range(repeats):
            a @ b
        best = max(best, 2 * n ** 3 * repeats / (time.perf_counter() - t))
    return best


def fake_batch(B: int, T: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {"bev": torch.randint(0, 255, (B, T, 64, 64, 3), dtype=torch.uint8, generator=g),
            "action": torch.nn.functional.one_hot(torch.randint(0, 15, (B, T), generator=g), 15).float(),
            "is_first": torch.zeros(B, T, dtype=torch.bool), "reward": torch.randn(B, T, generator=g),
            "cost": (torch.rand(B, T, generator=g) < 0.05).float(), "is_terminal": torch.zeros(B, T, dtype=torch.bool),
            "valid": torch.ones(B, T, dtype=torch.bool), "p_safe": torch.rand(B, T, generator=g)}


def step_fn(model, opt, batch, precision: str = "fp32"):
    with autocast(precision, "cpu"):
        loss, _, _ = model.loss(batch)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def time_step(name: str, precision: str, batch, steps: int) -> tuple[float, float, float]:
    """(seconds per step, FLOPs per step, parameters in millions) of a fresh model."""
    torch.manual_seed(0)
    model = WorldModel(WorldModelConfig(preset=name, **PRESETS[name]))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    with FlopCounterMode(display=False) as counter:
        step_fn(model, opt, batch, precision)
    step_fn(model, opt, batch, precision)
    t = time.perf_counter()
    for _ in range(steps):
        step_fn(model, opt, batch, precision)
    return (time.perf_counter() - t) / steps, counter.get_total_flops(), sum(p.numel() for p in model.parameters()) / 1e6


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--presets", default=",".join(PRESETS))
    p.add_argument("--precisions", default="fp32,bf16")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--seq", type=int, default=64)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--reference", action="store_true", help="(child process) fp32, allocator untouched: s/step as JSON")
    args = p.parse_args(argv)
    batch = fake_batch(args.batch, args.seq)
    if args.reference:
        print(json.dumps({name: time_step(name, "fp32", batch, args.steps)[0] for name in args.presets.split(",")}))
        return 0
    child = subprocess.run([sys.executable, __file__, "--reference", "--presets", args.presets, "--batch", str(args.batch),
                            "--seq", str(args.seq), "--steps", str(args.steps)], capture_output=True, text=True, check=True)
    reference = json.loads(child.stdout.strip().splitlines()[-1])
    heap = reuse_freed_memory()
    peaks = {"fp32": matmul_peak(torch.float32), "bf16": matmul_peak(torch.bfloat16)}
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; matmul peak {peaks['fp32'] / 1e9:.1f} GFLOP/s "
          f"fp32, {peaks['bf16'] / 1e9:.1f} bf16; freed memory kept in the heap: {heap}")
    for name in args.presets.split(","):
        ref = reference[name]
        print(f"{name:>3} reference (fp32, allocator as it was): {1 / ref:6.2f} steps/s, {args.batch * args.seq / ref:7.0f} "
              f"frames/s", flush=True)
        times = {}
        for precision in args.precisions.split(","):
            dt, flops, params = time_step(name, precision, batch, args.steps)
            times[precision] = dt
            print(f"{name:>3} {precision}: {params:6.2f} M params, {1 / dt:6.2f} steps/s, {args.batch * args.seq / dt:7.0f} "
                  f"frames/s, {flops / 1e9:7.1f} GFLOP/step, {flops / dt / 1e9:6.1f} GFLOP/s = "
                  f"{flops / dt / peaks[precision]:5.1%} of the {precision} peak", flush=True)
        auto = resolve_precision("auto", name, "cpu")
        if auto in times:
            target = f" (target >= {TARGETS[name]}x)" if name in TARGETS else ""
            print(f"{name:>3}: defaults (precision=auto -> {auto}, heap reuse) {ref / times[auto]:.2f}x the reference's "
                  f"frames/s{target}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

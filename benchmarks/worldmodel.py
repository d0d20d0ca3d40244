"""World-model training speed: one AdamW step on batch 16x64 of 64 px frames, per preset.

Prints train steps/s, samples (frames)/s, and the achieved FLOP/s (FLOPs of one step counted
by torch's FlopCounterMode: matmuls and convolutions, forward and backward) as a fraction of
this machine's matmul FLOP/s measured in the same run (fp32 2048x2048 matmuls, same threads):
the physical limit. Targets: xs >= 5 steps/s on 2 cores; the fraction of peak should not fall
as the preset grows.
"""

from __future__ import annotations

import argparse
import sys
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from vlsafe.worldmodel.rssm import PRESETS, WorldModel, WorldModelConfig

XS_TARGET = 5.0


def matmul_peak(n: int = 2048, repeats: int = 10) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    t = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * n ** 3 * repeats / (time.perf_counter() - t)


def fake_batch(B: int, T: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {"bev": torch.randint(0, 255, (B, T, 64, 64, 3), dtype=torch.uint8, generator=g),
            "action": torch.nn.functional.one_hot(torch.randint(0, 15, (B, T), generator=g), 15).float(),
            "is_first": torch.zeros(B, T, dtype=torch.bool), "reward": torch.randn(B, T, generator=g),
            "cost": (torch.rand(B, T, generator=g) < 0.05).float(), "is_terminal": torch.zeros(B, T, dtype=torch.bool),
            "valid": torch.ones(B, T, dtype=torch.bool), "p_safe": torch.rand(B, T, generator=g)}


def step_fn(model, opt, batch):
    loss, _, _ = model.loss(batch)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--presets", default=",".join(PRESETS))
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--seq", type=int, default=64)
    p.add_argument("--steps", type=int, default=3)
    args = p.parse_args(argv)
    peak = matmul_peak()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; matmul peak {peak / 1e9:.1f} GFLOP/s (fp32)")
    batch = fake_batch(args.batch, args.seq)
    for name in args.presets.split(","):
        torch.manual_seed(0)
        model = WorldModel(WorldModelConfig(preset=name, **PRESETS[name]))
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        with FlopCounterMode(display=False) as counter:
            step_fn(model, opt, batch)
        flops = counter.get_total_flops()
        step_fn(model, opt, batch)
        t = time.perf_counter()
        for _ in range(args.steps):
            step_fn(model, opt, batch)
        dt = (time.perf_counter() - t) / args.steps
        target = f"  (target >= {XS_TARGET}: ratio {1 / dt / XS_TARGET:.2f})" if name == "xs" else ""
        params = sum(p.numel() for p in model.parameters()) / 1e6
        print(f"{name:>3}: {params:6.2f} M params, {1 / dt:6.2f} steps/s, {args.batch * args.seq / dt:7.0f} frames/s, "
              f"{flops / 1e9:7.1f} GFLOP/step, {flops / dt / 1e9:6.1f} GFLOP/s = {flops / dt / peak:5.1%} of peak{target}",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Data-parallel training under `torchrun`: what each rank is, and the model wrapped in DDP.

`torchrun --nproc-per-node N $(which vlsafe) train-wm ...` sets RANK, WORLD_SIZE and LOCAL_RANK;
without them a run is the plain single process. The config's `batch_size` is the *global* batch:
each rank draws batch_size / N sequences from its own shard of the training episodes with its own
seed, DDP averages the gradients (gloo on CPU, NCCL on GPU), and only rank 0 writes logs and
checkpoints. The checkpoint records the global batch and the number of ranks, so a run resumes
with another number of ranks (each rank's sampler is then reseeded from the step it resumes at).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

__all__ = ["Ranks", "ranks", "env_ranks", "LossModule", "NullLog"]


@dataclass(frozen=True)
class Ranks:
    rank: int = 0
    world: int = 1
    local: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1

    def all_mean(self, x: torch.Tensor) -> torch.Tensor:
        """The mean of a scalar over the ranks (what the logs show: the global batch's loss)."""
        if not self.distributed:
            return x
        y = x.detach().clone().float()
        torch.distributed.all_reduce(y)
        return y / self.world

    def all_true(self, flag: torch.Tensor) -> bool:
        """Whether a 0-dim boolean holds on every rank: all ranks take the same branch (stop
        together, or none does)."""
        if not self.distributed:
            return bool(flag)
        y = flag.detach().float().clone()
        torch.distributed.all_reduce(y, op=torch.distributed.ReduceOp.MIN)
        return bool(y)

    def check_replicas(self, module: torch.nn.Module, what: str) -> None:
        """DDP keeps replicas bitwise equal only if every rank applies the same update; state a
        model moves outside its gradients (batch statistics, multipliers) could split them
        silently. A fingerprint of the weights, compared over the ranks, stops that run."""
        if not self.distributed:
            return
        with torch.no_grad():
            params = list(module.parameters())  # NCCL reduces tensors on the GPU: the fingerprint stays there
            zero = torch.zeros((), dtype=torch.float64, device=params[0].device if params else "cpu")
            fp = torch.stack([sum((p.double().abs().sum() for p in params), zero),
                              sum((b.double().abs().sum() for b in module.buffers() if b.is_floating_point()), zero)])
        low, high = fp.clone(), fp.clone()
        torch.distributed.all_reduce(low, op=torch.distributed.ReduceOp.MIN)
        torch.distributed.all_reduce(high, op=torch.distributed.ReduceOp.MAX)
        if not torch.equal(low, high):
            raise RuntimeError(f"{what}: the {self.world} ranks' replicas differ (weight fingerprints "
                               f"{low.tolist()} to {high.tolist()}); stopped before writing a checkpoint")

    def close(self) -> None:
        if self.distributed and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def env_ranks() -> Ranks:
    """This process's place among torchrun's ranks, as its environment says (no process group)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Ranks()
    return Ranks(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))


def ranks(device: str) -> Ranks:
    """This process's place among torchrun's ranks; joins the process group on first call."""
    r = env_ranks()
    if r.distributed and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if str(device).startswith("cuda") else "gloo")
    return r


class LossModule(torch.nn.Module):
    """DDP synchronises gradients through `forward`; the models' training entry points are methods
    (the world model's `loss(batch)`, the policy learner's `losses(world, batch, next)`), so this
    module's forward is that call."""

    def __init__(self, model: torch.nn.Module, method: str = "loss"):
        super().__init__()
        self.model, self.method = model, method

    def forward(self, *args):
        return getattr(self.model, self.method)(*args)


class NullLog:
    """The metrics log of ranks other than 0: they write nothing."""

    def write(self, row) -> None:
        pass

    def close(self) -> None:
        pass

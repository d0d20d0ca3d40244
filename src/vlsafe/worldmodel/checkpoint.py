"""Checkpoints as safetensors plus a JSON sidecar: weights, optimizer moments, RNG, step.

Nothing here unpickles: tensors come back through safetensors, everything else is JSON. The
sidecar is written last and names the step its tensors hold, so a kill between the two writes
leaves the previous checkpoint pair intact and detectable.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

__all__ = ["save_checkpoint", "load_checkpoint", "resume_checkpoint", "CheckpointError"]


class CheckpointError(ValueError):
    """A checkpoint is missing, incomplete, or was made with another config."""


def save_checkpoint(folder: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None,
                    meta: dict[str, Any]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {f"model/{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    opt_meta = None
    if optimizer is not None:
        state = optimizer.state_dict()
        for pid, st in state["state"].items():
            for name, value in st.items():
                t = value if torch.is_tensor(value) else torch.tensor(value)
                tensors[f"optim/{pid}/{name}"] = t.detach().cpu().contiguous()
        opt_meta = state["param_groups"]
    tensors["rng/torch"] = torch.get_rng_state()
    step = int(meta["step"])
    tmp = folder / "checkpoint.safetensors.tmp"
    save_file(tensors, str(tmp), metadata={"step": str(step)})
    os.replace(tmp, folder / "checkpoint.safetensors")
    side = folder / "checkpoint.json.tmp"
    side.write_text(json.dumps({**meta, "optimizer_param_groups": opt_meta}, indent=1))
    os.replace(side, folder / "checkpoint.json")


def load_checkpoint(folder: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None = None,
                    device: str | torch.device = "cpu") -> dict[str, Any]:
    side, weights = folder / "checkpoint.json", folder / "checkpoint.safetensors"
    if not side.exists() or not weights.exists():
        raise CheckpointError(f"{folder}: no checkpoint (expected checkpoint.safetensors and checkpoint.json)")
    meta = json.loads(side.read_text())
    tensors = load_file(str(weights), device=str(device))
    own = {k[len("model/"):]: v for k, v in tensors.items() if k.startswith("model/")}
    missing = set(model.state_dict()) - set(own)
    wrong = [k for k, v in model.state_dict().items() if k in own and own[k].shape != v.shape]
    if missing or wrong:
        raise CheckpointError(f"{weights}: weights do not fit this model ({len(missing)} missing, {len(wrong)} of "
                              f"another shape, e.g. {(sorted(missing) + wrong)[:1]}): made with another preset?")
    model.load_state_dict(own)
    if optimizer is not None and meta.get("optimizer_param_groups"):
        state: dict[int, dict[str, torch.Tensor]] = {}
        for k, v in tensors.items():
            if k.startswith("optim/"):
                _, pid, name = k.split("/", 2)
                state.setdefault(int(pid), {})[name] = v
        optimizer.load_state_dict({"state": state, "param_groups": meta["optimizer_param_groups"]})
    if "rng/torch" in tensors:
        torch.set_rng_state(tensors["rng/torch"].cpu())
    return meta


def resume_checkpoint(folder: Path, identity: dict[str, Any], model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                      device: str | torch.device = "cpu", inputs: str = "dataset") -> dict[str, Any] | None:
    """The checkpoint of an interrupted run in `folder` (None when there is none), after checking
    it was made with the same `identity` (config and `inputs`); a different run is refused."""
    side = folder / "checkpoint.json"
    if not side.exists():
        return None
    old = json.loads(side.read_text()).get("identity", {})
    if old != identity:
        diff = [k for k in identity if old.get(k) != identity[k]]
        raise CheckpointError(f"{folder}: holds a run with another config or {inputs} (differs in {', '.join(diff)}); "
                              f"use another --out")
    return load_checkpoint(folder, model, optimizer, device)

"""Checkpoints as safetensors plus a JSON sidecar: weights, optimizer moments, RNG, step.

Nothing here unpickles: tensors come back through safetensors, everything else is JSON, and a
file that is not a safetensors checkpoint (a pickle, garbage, a truncated copy) is refused in one
line.

Two files cannot be replaced at once, so the pair is tied together instead: the weights file's
own metadata records the step and the SHA-256 of the sidecar text written for it, and the sidecar
records a hash of the tensors. Saving writes both under temporary names, then renames the
weights (the commit point) and then the sidecar. A kill before the first rename leaves the
previous pair; a kill between the two renames leaves the new weights with the new sidecar still
under `checkpoint.json.tmp`, which loading recognises by its hash and uses (a resuming writer
also renames it into place). Any other mismatch - weights of step 40 beside a sidecar of step 35 -
is a torn pair, and loading refuses it rather than resume one step's weights under another
step's optimizer, RNG and sampler state.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Callable

import torch
from safetensors import safe_open
from safetensors.torch import save_file

__all__ = ["save_checkpoint", "load_checkpoint", "resume_checkpoint", "read_checkpoint_meta", "CheckpointError",
           "RunMismatchError", "NonFiniteError"]

WEIGHTS, SIDECAR = "checkpoint.safetensors", "checkpoint.json"


class CheckpointError(ValueError):
    """A checkpoint is missing, incomplete, torn, not a checkpoint, or was made with another config."""


class RunMismatchError(CheckpointError):
    """The folder holds a run made with another config or inputs (`resume_checkpoint` refuses it)."""


class NonFiniteError(ValueError):
    """Training produced NaN/inf; the run stops so that no checkpoint ever holds them."""


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def tensors_digest(tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 over names, dtypes, shapes and bytes, so corruption of the weights file is seen too."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}\n".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _fsync_write(path: Path, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def save_checkpoint(folder: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None,
                    meta: dict[str, Any]) -> None:
    folder = Path(folder)
    tensors = {f"model/{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    bad = [k for k, v in tensors.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:  # the previous checkpoint stays the last good one
        raise NonFiniteError(f"{folder}: not saving a checkpoint at step {meta.get('step')}: {len(bad)} tensor(s) hold "
                             f"NaN/inf, e.g. {bad[0]}; the previous checkpoint is kept")
    folder.mkdir(parents=True, exist_ok=True)
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
    try:
        text = json.dumps({**meta, "optimizer_param_groups": opt_meta, "tensors_sha256": tensors_digest(tensors)},
                          indent=1, allow_nan=False)
    except ValueError:
        raise NonFiniteError(f"{folder}: not saving a checkpoint at step {step}: its training state holds NaN/inf; "
                             f"the previous checkpoint is kept") from None
    side_tmp, weights_tmp = folder / (SIDECAR + ".tmp"), folder / (WEIGHTS + ".tmp")
    _fsync_write(side_tmp, text)
    save_file(tensors, str(weights_tmp), metadata={"step": str(step), "sidecar_sha256": _sha(text)})
    with open(weights_tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(weights_tmp, folder / WEIGHTS)  # the commit point
    os.replace(side_tmp, folder / SIDECAR)


def _weights_metadata(path: Path) -> dict[str, str]:
    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except Exception as err:  # safetensors raises its own error type for pickles, garbage and truncation
        why = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise CheckpointError(f"{path}: not a safetensors checkpoint ({why})") from None


def _sidecar(path: Path) -> tuple[str, dict[str, Any]]:
    try:
        text = path.read_text()
        meta = json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{path}: not a JSON checkpoint sidecar ({err})") from None
    if not isinstance(meta, dict) or "step" not in meta:
        raise CheckpointError(f"{path}: not a checkpoint sidecar (no step)")
    return text, meta


def _matches(weights_meta: dict[str, str], text: str, meta: dict[str, Any]) -> bool:
    if "sidecar_sha256" in weights_meta:
        return weights_meta["sidecar_sha256"] == _sha(text)
    # checkpoints written before the sidecar hash: the step is all the weights file records
    return weights_meta.get("step") == str(meta.get("step"))


def read_checkpoint_meta(folder: Path, repair: bool = False) -> dict[str, Any]:
    """The sidecar of the checkpoint in `folder`, after checking that it belongs to the weights beside it.

    `repair` renames a finished `checkpoint.json.tmp` into place (only the run's own writer should)."""
    folder = Path(folder)
    side, weights, tmp = folder / SIDECAR, folder / WEIGHTS, folder / (SIDECAR + ".tmp")
    if not weights.exists() and not side.exists():
        raise CheckpointError(f"{folder}: no checkpoint (expected {WEIGHTS} and {SIDECAR})")
    if not weights.exists():
        raise CheckpointError(f"{folder}: {SIDECAR} without {WEIGHTS}: incomplete checkpoint")
    found = "no sidecar"
    for _ in range(3):  # a writer may rename between our reads; look again
        wmeta = _weights_metadata(weights)
        if tmp.exists():
            try:
                text, meta = _sidecar(tmp)
            except (CheckpointError, OSError):
                text, meta = "", {}
            if meta and _matches(wmeta, text, meta):  # killed between the two renames: finish the commit
                if repair:
                    os.replace(tmp, side)
                return meta
        if not side.exists():
            continue
        text, meta = _sidecar(side)
        if _matches(wmeta, text, meta):
            return meta
        found = f"{SIDECAR} describes step {meta.get('step')}"
    raise CheckpointError(f"{folder}: torn checkpoint: {WEIGHTS} holds step {wmeta.get('step', '?')} but {found}; "
                          f"refusing to mix them (restore a matching pair, or train into another --out)")


def load_checkpoint(folder: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None = None,
                    device: str | torch.device = "cpu", repair: bool = False) -> dict[str, Any]:
    folder = Path(folder)
    weights = folder / WEIGHTS
    meta = read_checkpoint_meta(folder, repair=repair)
    try:
        with safe_open(str(weights), framework="pt", device=str(device)) as f:
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as err:
        raise CheckpointError(f"{weights}: unreadable safetensors checkpoint ({str(err).splitlines()[0]})") from None
    if "tensors_sha256" in meta and tensors_digest(tensors) != meta["tensors_sha256"]:
        raise CheckpointError(f"{weights}: tensors do not match the hash recorded in {SIDECAR} (file changed or corrupt)")
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
                      device: str | torch.device = "cpu", inputs: str = "dataset",
                      upgrade: Callable[[dict[str, Any]], dict[str, Any]] | None = None) -> dict[str, Any] | None:
    """The checkpoint of an interrupted run in `folder` (None when there is none), after checking
    it was made with the same `identity` (config and `inputs`); a different run is refused.
    `upgrade` reads an identity saved before a config field existed as the run it was."""
    folder = Path(folder)
    if not (folder / WEIGHTS).exists() and not (folder / SIDECAR).exists():
        return None
    old = read_checkpoint_meta(folder, repair=True).get("identity", {})
    if upgrade is not None:
        old = upgrade(old)
    if old != identity:
        diff = [k for k in identity if old.get(k) != identity[k]]
        raise RunMismatchError(f"{folder}: holds a run with another config or {inputs} (differs in {', '.join(diff)}); "
                              f"use another --out")
    return load_checkpoint(folder, model, optimizer, device, repair=True)

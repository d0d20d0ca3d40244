"""Which torch device a run may use, checked before any work starts."""

from __future__ import annotations

from vlsafe.config import ConfigError

__all__ = ["check_device"]


def check_device(name: str) -> str:
    """`name` if torch can use it here; otherwise a one-line ConfigError before any work, instead
    of torch's traceback at the first tensor moved there."""
    import torch

    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError):
        raise ConfigError(f"--device {name!r}: not a device (expected cpu, cuda, cuda:N or mps)") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"--device {name}: CUDA is not available here (torch {torch.__version__}); use --device cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ConfigError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) here")
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"--device {name}: MPS is not available here; use --device cpu")
    elif dev.type not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"--device {name}: vlsafe runs on cpu, cuda or mps")
    return name

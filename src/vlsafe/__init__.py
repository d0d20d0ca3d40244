"""vlsafe: offline, safe RL for autonomous driving guided by a vision-language model (VL-SAFE)."""

__version__ = "0.1.0"

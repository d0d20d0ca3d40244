"""One interface for every VLM: BEV frames (N, H, W, 3) uint8 + a prompt set -> p(safe) and similarities.

A backend (`Scorer`) only embeds: `encode_images` and `encode_texts` return L2-normalised rows in
a shared space, and `logit_scale` is the model's own multiplier. Turning similarities into a
probability is done here, once, for all backends (`ProbConfig`):

- `softmax` (the paper's natural reading, default): p(safe) = total softmax mass of the safe
  prompts over `logit_scale * cos(image, prompt)`; `logit_scale=None` takes the model's.
- `calibrated`: the same softmax margin m = logsumexp(scale * sims_safe) - logsumexp(scale * sims_unsafe),
  passed through sigmoid(m / temperature + bias), with (temperature, bias) fit on held-out frames
  against "cost within the next k steps" (`fit_calibration`). It changes calibration, never ranking.

Backends live in a plain registry with lazy imports (`BACKENDS`), so `import vlsafe.vlm` stays cheap.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np

from vlsafe.config import ConfigError, closest
from vlsafe.vlm.prompts import PromptSet, get_prompt_set

__all__ = ["Scorer", "ProbConfig", "Scores", "BACKENDS", "load_scorer", "score_frames", "frame_similarities",
           "similarities_to_p_safe", "fit_calibration", "check_frames"]


class Scorer(Protocol):
    backend: str
    model_id: str  # names the exact weights: part of every label's cache key
    image_size: int | None  # the frame size the model expects, None if it resizes anything
    logit_scale: float

    def encode_images(self, frames: np.ndarray) -> np.ndarray: ...  # (N,H,W,3) uint8 -> (N,D) float32, unit rows

    def encode_texts(self, texts: list[str] | tuple[str, ...]) -> np.ndarray: ...  # -> (M,D) float32, unit rows

    def describe(self) -> dict: ...  # JSON-ready provenance


@dataclass(frozen=True)
class ProbConfig:
    method: Literal["softmax", "calibrated"] = "softmax"
    logit_scale: float | None = None  # None: the model's own
    temperature: float = 1.0  # calibrated only
    bias: float = 0.0  # calibrated only

    def __post_init__(self) -> None:
        if self.method not in ("softmax", "calibrated"):
            raise ConfigError(f"p(safe) method: expected 'softmax' or 'calibrated', got {self.method!r}")
        if self.temperature <= 0:
            raise ConfigError(f"p(safe) temperature must be > 0, got {self.temperature}")

    def describe(self) -> dict:
        return {"method": self.method, "logit_scale": self.logit_scale, "temperature": self.temperature,
                "bias": self.bias}


@dataclass(frozen=True)
class Scores:
    p_safe: np.ndarray  # (N,) float32 in [0, 1]
    sims: np.ndarray  # (N, P) float32 cosine similarities, columns in prompt_set.texts order (safe first)


def _margin(sims: np.ndarray, n_safe: int, scale: float) -> np.ndarray:
    z = scale * sims.astype(np.float64)

    def lse(a: np.ndarray) -> np.ndarray:
        m = a.max(axis=1)
        return m + np.log(np.exp(a - m[:, None]).sum(axis=1))

    return lse(z[:, :n_safe]) - lse(z[:, n_safe:])


def similarities_to_p_safe(sims: np.ndarray, n_safe: int, model_scale: float, prob: ProbConfig = ProbConfig()
                           ) -> np.ndarray:
    """(N, P) cosine similarities (safe prompts first) -> (N,) p(safe), see the module docstring."""
    assert sims.ndim == 2 and 0 < n_safe < sims.shape[1], f"sims {sims.shape}, n_safe {n_safe}"
    scale = model_scale if prob.logit_scale is None else prob.logit_scale
    m = _margin(sims, n_safe, scale)
    if prob.method == "calibrated":
        m = m / prob.temperature + prob.bias
    return (1.0 / (1.0 + np.exp(-m))).astype(np.float32)  # softmax mass of the safe side == sigmoid(margin)


def fit_calibration(sims: np.ndarray, n_safe: int, model_scale: float, unsafe: np.ndarray,
                    logit_scale: float | None = None, iters: int = 500) -> ProbConfig:
    """Fit (temperature, bias) of the calibrated variant by logistic regression on held-out frames.

    `unsafe` is the ground truth (1 where cost occurs within the next k steps)."""
    import torch

    scale = model_scale if logit_scale is None else logit_scale
    m = torch.as_tensor(_margin(sims, n_safe, scale), dtype=torch.float64)
    y_safe = torch.as_tensor(1.0 - np.asarray(unsafe, np.float64))
    a = torch.zeros((), dtype=torch.float64, requires_grad=True)  # log(1/temperature)
    b = torch.zeros((), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([a, b], max_iter=iters, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(m * a.exp() + b, y_safe)
        loss.backward()
        return loss

    opt.step(closure)
    return ProbConfig("calibrated", logit_scale, temperature=float((-a).exp().item()), bias=b.item())


def check_frames(frames: np.ndarray, image_size: int | None = None, where: str = "frames") -> np.ndarray:
    frames = np.asarray(frames)
    if frames.ndim == 3:
        frames = frames[None]
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"{where}: expected (N, H, W, 3) uint8 RGB frames, got {frames.shape} {frames.dtype}")
    if image_size is not None and frames.shape[1:3] != (image_size, image_size):
        raise ValueError(f"{where}: the model takes {image_size}x{image_size} frames, got "
                         f"{frames.shape[1]}x{frames.shape[2]}")
    return frames


def frame_similarities(scorer: Scorer, frames: np.ndarray, text_emb: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """(N, P) float32 cosine similarities of `frames` to the text embeddings, `batch_size` frames at a time."""
    sims = np.empty((len(frames), len(text_emb)), np.float32)
    for i in range(0, len(frames), batch_size):
        sims[i:i + batch_size] = scorer.encode_images(frames[i:i + batch_size]) @ text_emb.T
    return sims


def score_frames(scorer: Scorer, frames: np.ndarray, prompts: PromptSet | str = "paper-v1",
                 prob: ProbConfig = ProbConfig(), batch_size: int = 256,
                 text_emb: np.ndarray | None = None) -> Scores:
    """p(safe) and raw similarities of every frame; frames are embedded `batch_size` at a time."""
    ps = get_prompt_set(prompts)
    frames = check_frames(frames, scorer.image_size)
    if text_emb is None:
        text_emb = scorer.encode_texts(list(ps.texts))
    sims = frame_similarities(scorer, frames, text_emb, batch_size)
    return Scores(similarities_to_p_safe(sims, ps.n_safe, scorer.logit_scale, prob), sims)


# backend name -> "module:factory"; the factory takes (model, threads=..., **options)
BACKENDS: dict[str, str] = {
    "drive-clip": "vlsafe.vlm.drive_clip:load_scorer",
    "clip": "vlsafe.vlm.clip:load_scorer",
}


def load_scorer(backend: str, model: str | None = None, threads: int | None = None, **options) -> Scorer:
    """Build a scorer: `backend` from BACKENDS, `model` a folder (or, for clip, a hub id)."""
    if backend not in BACKENDS:
        raise ConfigError(f"unknown VLM backend {backend!r}{closest(backend, BACKENDS)}; valid: {', '.join(BACKENDS)}")
    module, fn = BACKENDS[backend].split(":")
    return getattr(importlib.import_module(module), fn)(model, threads=threads, **options)

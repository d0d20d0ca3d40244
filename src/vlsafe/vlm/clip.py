"""`clip` backend: the paper's scorer, transformers' CLIPModel from a local folder or a hub id.

No torchvision, no open_clip. The tokenizer and the preprocessing settings come from the model's
CLIPProcessor files; pixels are prepared in torch (`preprocess='torch'`, default: resize the
shortest side with bicubic + antialias, centre-crop, rescale, normalise with the processor's
mean/std), which matches the processor's PIL path closely and is several times faster on
batches; `preprocess='processor'` runs the processor itself. A folder loads with
`local_files_only=True`; a hub id loads from the user's cache or network (offline when
HF_HUB_OFFLINE=1), and fails with one line if neither has it.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from vlsafe.config import ConfigError
from vlsafe.vlm.scorer import check_frames

__all__ = ["ClipScorer", "load_scorer", "build_random_clip", "OPENAI_MEAN", "OPENAI_STD"]

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


def _weights_digest(folder: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(folder.glob("*.safetensors")) + sorted(folder.glob("*.bin")) + [folder / "config.json"]:
        if p.exists():
            h.update(p.name.encode())
            with open(p, "rb") as f:
                for block in iter(lambda: f.read(1 << 22), b""):
                    h.update(block)
    return h.hexdigest()[:12]


def _check_local(model: str) -> bool:
    """Whether `model` names a local folder; a path that is no folder, or a folder of pickled
    weights only, is refused here, before transformers would guess a hub id or unpickle."""
    path = Path(model).expanduser()
    if not path.exists():
        if model.startswith(("/", ".", "~")) or model.count("/") > 1 or "\\" in model:
            raise ConfigError(f"--model {model}: no such folder")
        return False  # a hub id
    if not path.is_dir():
        raise ConfigError(f"--model {model}: not a folder (expected a CLIP model folder with model.safetensors)")
    if not any(path.glob("*.safetensors")):
        pickled = sorted(p.name for p in path.iterdir() if p.suffix in (".bin", ".pt", ".pth", ".pkl", ".ckpt"))
        what = f"only pickled weights ({', '.join(pickled)})" if pickled else "no model.safetensors"
        raise ConfigError(f"--model {model}: the folder holds {what}; vlsafe loads safetensors weights only")
    return True


def _side(size, *names: str) -> int:
    """An edge length from a processor size entry (int, dict or transformers' SizeDict)."""
    if size is None or isinstance(size, (int, float)):
        return int(size or 0)
    for name in names:
        value = size.get(name) if isinstance(size, dict) else getattr(size, name, None)
        if value:
            return int(value)
    return 0


class ClipScorer:
    backend = "clip"

    def __init__(self, model: str, threads: int | None = None, preprocess: str = "torch", dtype: str = "float32"):
        from transformers import CLIPModel, CLIPProcessor
        from transformers.utils import logging as hf_logging

        if preprocess not in ("torch", "processor"):
            raise ConfigError(f"clip preprocess: expected 'torch' or 'processor', got {preprocess!r}")
        if threads:
            torch.set_num_threads(threads)
        local = _check_local(model)
        offline = local or os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false")
        verbosity = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()  # the PIL-processor fallback notice is expected here
        try:
            self.processor = CLIPProcessor.from_pretrained(model, local_files_only=offline)
            self.model = CLIPModel.from_pretrained(model, local_files_only=offline, dtype=getattr(torch, dtype),
                                                   use_safetensors=True).eval()
        except Exception as err:  # noqa: BLE001 - whatever a foreign folder makes the loader raise is one line
            where = "folder" if local else "hub id (not in the local cache and no network?)"
            why = (str(err).strip().splitlines() or [type(err).__name__])[0]
            raise ConfigError(f"cannot load CLIP {model!r} as a {where}: {why}") from None
        finally:
            hf_logging.set_verbosity(verbosity)
        ip = self.processor.image_processor
        self.resize = _side(ip.size, "shortest_edge", "height")
        self.crop = _side(getattr(ip, "crop_size", None), "height") or self.resize
        self.do_center_crop = bool(getattr(ip, "do_center_crop", True))
        self.mean = torch.tensor(ip.image_mean or OPENAI_MEAN).view(1, 3, 1, 1)
        self.std = torch.tensor(ip.image_std or OPENAI_STD).view(1, 3, 1, 1)
        self.rescale = float(getattr(ip, "rescale_factor", 1 / 255))
        self.preprocess_mode = preprocess
        self.dtype = getattr(torch, dtype)
        self.name = model
        digest = _weights_digest(Path(model)) if local else getattr(self.model.config, "_commit_hash", None) or "hub"
        self.model_id = f"clip:{Path(model).name if local else model}:{digest}"
        self.image_size = None  # any frame size: resized to the processor's
        self.logit_scale = float(self.model.logit_scale.detach().exp())

    def describe(self) -> dict:
        v = self.model.config.vision_config
        return {"backend": self.backend, "model_id": self.model_id, "source": self.name, "logit_scale": self.logit_scale,
                "input": self.crop, "vision": {"hidden": v.hidden_size, "layers": v.num_hidden_layers,
                                               "patch": v.patch_size}, "preprocess": self.preprocess_mode}

    def pixel_values(self, frames: np.ndarray) -> torch.Tensor:
        frames = check_frames(frames)
        if self.preprocess_mode == "processor":
            out = self.processor.image_processor(images=list(frames), return_tensors="pt")
            return out["pixel_values"].to(self.dtype)
        x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float()
        h, w = x.shape[-2:]
        if min(h, w) != self.resize:
            s = self.resize / min(h, w)
            x = F.interpolate(x, size=(round(h * s), round(w * s)), mode="bicubic", antialias=True,
                              align_corners=False).clamp_(0, 255)
        if self.do_center_crop:
            h, w = x.shape[-2:]
            top, left = (h - self.crop) // 2, (w - self.crop) // 2
            x = x[..., top:top + self.crop, left:left + self.crop]
        return ((x * self.rescale - self.mean) / self.std).to(self.dtype)

    @torch.inference_mode()
    def encode_images(self, frames: np.ndarray) -> np.ndarray:
        pooled = self.model.vision_model(pixel_values=self.pixel_values(frames)).pooler_output
        return F.normalize(self.model.visual_projection(pooled).float(), dim=-1).numpy()

    @torch.inference_mode()
    def encode_texts(self, texts) -> np.ndarray:
        tok = self.processor.tokenizer(list(texts), padding=True, truncation=True, return_tensors="pt")
        pooled = self.model.text_model(input_ids=tok["input_ids"], attention_mask=tok["attention_mask"]).pooler_output
        return F.normalize(self.model.text_projection(pooled).float(), dim=-1).numpy()


def load_scorer(model: str | None, threads: int | None = None, **options) -> ClipScorer:
    if model is None:
        raise ConfigError("clip needs --model FOLDER_OR_HUB_ID (e.g. a local copy of openai/clip-vit-base-patch32)")
    return ClipScorer(model, threads=threads, **options)


ASSETS = Path(__file__).parent / "assets"


def build_random_clip(folder: str | Path, image_size: int = 32, patch: int = 8, hidden: int = 32, layers: int = 2,
                      heads: int = 2, mlp: int = 64, text_hidden: int = 32, text_layers: int = 2, proj: int = 16,
                      text_heads: int | None = None, seed: int = 0) -> Path:
    """Write a randomly initialised CLIPModel + CLIPProcessor folder (for tests and the benchmark).

    The tokenizer is the tiny BPE vocabulary shipped in assets/ (built by assets/build_tiny_vocab.py).
    Compute per image equals a real checkpoint of the same shape; meaning is nil."""
    import shutil
    import tempfile

    from transformers import CLIPConfig, CLIPModel, CLIPProcessor, CLIPTokenizer
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copy(ASSETS / "tiny_clip_vocab.json", Path(tmp) / "vocab.json")
        shutil.copy(ASSETS / "tiny_clip_merges.txt", Path(tmp) / "merges.txt")
        tokenizer = CLIPTokenizer.from_pretrained(tmp)
    vocab = len(tokenizer)
    config = CLIPConfig(
        text_config=dict(vocab_size=vocab, hidden_size=text_hidden, intermediate_size=2 * text_hidden,
                         num_hidden_layers=text_layers, num_attention_heads=text_heads or heads, max_position_embeddings=77,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id),
        vision_config=dict(hidden_size=hidden, intermediate_size=mlp, num_hidden_layers=layers, num_attention_heads=heads,
                           image_size=image_size, patch_size=patch),
        projection_dim=proj)
    torch.manual_seed(seed)
    CLIPModel(config).eval().save_pretrained(folder)
    image_processor = CLIPImageProcessorPil(size={"shortest_edge": image_size},
                                            crop_size={"height": image_size, "width": image_size},
                                            image_mean=list(OPENAI_MEAN), image_std=list(OPENAI_STD))
    CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(folder)
    return folder

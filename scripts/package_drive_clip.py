"""Package a trained drive-clip folder into src/vlsafe/vlm/assets/NAME: float16 weights, the manifest
with the new file's SHA-256 (the model id), `weights_dtype` and a `note` that says how it was made.

Usage: `python scripts/package_drive_clip.py models/drive-clip-v2a drive-clip-v2 --note "..."`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from safetensors.torch import load_file, save_file

from vlsafe.data.store import sha256_file


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("name")
    ap.add_argument("--note", required=True)
    args = ap.parse_args()
    src = Path(args.model)
    dst = Path(__file__).resolve().parents[1] / "src" / "vlsafe" / "vlm" / "assets" / args.name
    dst.mkdir(parents=True, exist_ok=True)
    weights = {k: v.half().contiguous() for k, v in load_file(str(src / "model.safetensors")).items()}
    save_file(weights, str(dst / "model.safetensors"), metadata={"format": "pt", "model": "drive-clip"})
    manifest = json.loads((src / "manifest.json").read_text())
    manifest.update(model_sha256=sha256_file(dst / "model.safetensors"), weights_dtype="float16", note=args.note)
    (dst / "manifest.json").write_text(json.dumps(manifest, indent=1))
    print(f"packaged {src} -> {dst} ({(dst / 'model.safetensors').stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()

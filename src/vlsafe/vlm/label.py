"""`vlsafe label`: p(safe) and similarities for every frame of a dataset, cached, resumable, with provenance.

Labels live beside the episodes, never inside them (episode files keep their checksums):

    <dataset>/labels/<key>.h5     one group per episode `ep_<seed>`: p_safe (T+1,), sims (T+1, P)
    <dataset>/labels/<key>.json   provenance: dataset checksum, model identity, prompt set, p(safe)
                                  method, code version, timing, and label quality against real cost

`key` hashes (dataset checksum, model id, prompt set name + texts, p(safe) method), so a rerun with
the same inputs finds the finished file and costs nothing. While running, each finished episode is
written atomically to `labels/<key>.partial/ep_<seed>.npz`; a killed run resumes from those, and
the final .h5 is assembled under a temporary name and renamed into place. Labels made for another
dataset, or frames the model cannot take (other image size), are refused with one-line errors.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import h5py
import numpy as np

from vlsafe.data.store import DatasetError, EpisodeStore, dataset_checksum
from vlsafe.runlog import dumps
from vlsafe.vlm.prompts import PromptSet, get_prompt_set
from vlsafe.vlm.scorer import ProbConfig, Scorer, frame_similarities, similarities_to_p_safe

__all__ = ["LabelSet", "label_key", "label_dataset", "load_labels", "read_labels", "list_labels",
           "dataset_checksum", "verify_labels"]


def label_key(dataset: str, model_id: str, prompts: PromptSet, prob: ProbConfig) -> str:
    ident = {"dataset": dataset, "model": model_id, "prompts": [prompts.name, prompts.digest], "prob": prob.describe()}
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class LabelSet:
    key: str
    path: Path  # the .h5
    provenance: dict
    cached: bool  # True when nothing had to be computed


def _atomic_npz(path: Path, **arrays) -> None:
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".npz", dir=path.parent)
    os.close(fd)
    try:
        np.savez(tmp, **arrays)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _check_dataset(store: EpisodeStore, scorer: Scorer) -> dict:
    man = store.manifest()
    if not man.get("complete"):
        raise DatasetError(f"{store.root}: dataset is not complete (collection unfinished); finish it before labelling")
    size = man.get("bev_size")
    if scorer.image_size is not None and size != scorer.image_size:
        raise DatasetError(f"{store.root}: frames are {size}x{size} px but model {scorer.model_id} takes "
                           f"{scorer.image_size}x{scorer.image_size}; collect with --bev-size {scorer.image_size} "
                           f"or use a model trained at {size} px")
    # every file, also when the labels are cached: a truncated or changed episode is named here,
    # not after half the episodes were labelled, nor hidden behind a cache hit
    return store.validate(image_size=scorer.image_size)


class _EpisodeLabeller:
    """Ray Data's callable class for `map_batches`: one scorer per worker, loaded once; a batch is a
    few manifest rows (episode seeds). The worker reads the frames from the shared store itself and
    writes the episode's partial labels there, so only seeds and counts cross the object store."""

    def __init__(self, backend: str, model: str | None, ps: PromptSet, prob: ProbConfig, batch_size: int,
                 root: str, partial: str):
        from vlsafe.vlm.scorer import load_scorer

        self.scorer = load_scorer(backend, model, threads=1)
        self.ps, self.prob, self.batch_size = ps, prob, batch_size
        self.store, self.partial = EpisodeStore(root), Path(partial)
        self.text_emb = self.scorer.encode_texts(list(ps.texts))

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        counts = []
        for seed in batch["seed"]:
            counts.append(_label_episode(self.store, int(seed), self.scorer, self.text_emb, self.ps, self.prob,
                                         self.batch_size, self.partial))
        return {"seed": np.asarray(batch["seed"]), "frames": np.asarray(counts)}


def _label_episode(store: EpisodeStore, seed: int, scorer: Scorer, text_emb: np.ndarray, ps: PromptSet, prob: ProbConfig,
                   batch_size: int, partial: Path) -> int:
    with store.open(seed) as f:
        frames = f["bev"][()]
    sims = frame_similarities(scorer, frames, text_emb, batch_size)
    p_safe = similarities_to_p_safe(sims, ps.n_safe, scorer.logit_scale, prob)
    _atomic_npz(partial / f"ep_{seed:09d}.npz", p_safe=p_safe, sims=sims)
    return len(frames)


def _label_on_ray(store: EpisodeStore, todo: list[int], spec: tuple[str, str | None], ps: PromptSet, prob: ProbConfig,
                  batch_size: int, partial: Path, workers: int, address: str | None) -> Iterator[tuple[int, int]]:
    """(seed, frames) of every labelled episode, as Ray Data's workers finish them."""
    import ray

    from vlsafe.cluster.ray_pool import connect

    connect(address)
    ds = ray.data.from_items([{"seed": s} for s in todo]).map_batches(
        _EpisodeLabeller, batch_size=1, concurrency=workers, num_cpus=1,
        fn_constructor_args=(spec[0], spec[1], ps, prob, batch_size, str(store.root.resolve()), str(partial.resolve())))
    for row in ds.iter_rows():
        yield int(row["seed"]), int(row["frames"])


def label_dataset(store: EpisodeStore, scorer: Scorer, prompts: str | PromptSet = "paper-v1",
                  prob: ProbConfig | None = None, batch_size: int = 256, log: Callable[[str], None] = print,
                  on_episode: Callable[[int], None] | None = None, cluster: str = "local", workers: int = 1,
                  address: str | None = None, scorer_spec: tuple[str, str | None] | None = None) -> LabelSet:
    """Label every frame of `store` (cached by key; resumes a killed run). Returns the LabelSet.
    `cluster="ray"`: batched inference on `workers` Ray Data workers, each loading the scorer
    `scorer_spec` = (backend, model) once; the labels are those of the local loop."""
    from vlsafe.cluster import check_cluster
    from vlsafe.manifest import code_version
    from vlsafe.vlm.quality import label_quality

    check_cluster(cluster, address)
    if workers < 1:
        raise ValueError(f"--workers: expected >= 1, got {workers}")
    if cluster == "ray" and scorer_spec is None:
        raise ValueError("label_dataset(cluster='ray') needs scorer_spec=(backend, model) to load the scorer on the workers")
    ps = get_prompt_set(prompts)
    prob = prob or ProbConfig()
    man = _check_dataset(store, scorer)
    checksum = dataset_checksum(store)
    key = label_key(checksum, scorer.model_id, ps, prob)
    ldir = store.root / "labels"
    final, prov_path, partial = ldir / f"{key}.h5", ldir / f"{key}.json", ldir / f"{key}.partial"
    if final.exists() and prov_path.exists():
        log(f"labels {key} already in {final} (cached)")
        return LabelSet(key, final, json.loads(prov_path.read_text()), cached=True)
    partial.mkdir(parents=True, exist_ok=True)
    for p in partial.glob(".tmp-*"):
        p.unlink(missing_ok=True)
    entries = store.entries()
    done = {int(p.stem[3:]) for p in partial.glob("ep_*.npz")}
    if done:
        log(f"resuming labels {key}: {len(done)}/{len(entries)} episodes already labelled")
    total = sum(e["steps"] + 1 for e in entries)
    todo_frames = sum(e["steps"] + 1 for e in entries if int(e["seed"]) not in done)
    log(f"label {store.root} with {scorer.model_id}, prompts {ps.name}, p(safe) {prob.method}: "
        f"{len(entries) - len(done)} episodes, {todo_frames} frames, batch {batch_size}")
    todo = [int(e["seed"]) for e in entries if int(e["seed"]) not in done]
    if cluster == "ray":
        finished = _label_on_ray(store, todo, scorer_spec, ps, prob, batch_size, partial, workers, address)
    else:
        text_emb = scorer.encode_texts(list(ps.texts))
        finished = ((s, _label_episode(store, s, scorer, text_emb, ps, prob, batch_size, partial)) for s in todo)
    t0, last, n = time.perf_counter(), 0.0, 0
    for seed, frames in finished:
        n += frames
        if on_episode is not None:
            on_episode(seed)
        now = time.perf_counter()
        if now - last > 2.0:
            last = now
            rate = n / max(now - t0, 1e-9)
            log(f"  {n}/{todo_frames} frames, {rate:.0f} frames/s, ETA {(todo_frames - n) / max(rate, 1e-9):.0f}s")
    elapsed = time.perf_counter() - t0

    # assemble: read every partial back, check frame counts, write the .h5 under a temporary name
    p_all, costs, signals = {}, [], []
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".h5", dir=ldir)
    os.close(fd)
    try:
        with h5py.File(tmp, "w") as out:
            for entry in entries:
                seed = int(entry["seed"])
                with np.load(partial / f"ep_{seed:09d}.npz", allow_pickle=False) as z:
                    p_safe, sims = z["p_safe"], z["sims"]
                assert len(p_safe) == entry["steps"] + 1, f"episode {seed}: {len(p_safe)} labels for {entry['steps']} steps"
                g = out.create_group(f"ep_{seed:09d}")
                g.create_dataset("p_safe", data=p_safe)
                g.create_dataset("sims", data=sims)
                p_all[seed] = p_safe
                with store.open(seed) as f:
                    costs.append(f["cost"][()])
                    signals.append({k: f["signals"][k][()] for k in f["signals"]})
            out.attrs.update(key=key, dataset=checksum, model_id=scorer.model_id, prompts=ps.name,
                             prompt_texts=json.dumps(list(ps.texts)), n_safe=ps.n_safe)
        dt = store.dt()
        quality = label_quality(list(p_all.values()), costs, dt, signals=signals)
        prov = {
            "key": key, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "code_version": code_version(),
            "dataset": {"root": str(store.root), "checksum": checksum, "episodes": len(entries), "frames": total,
                        "bev_size": man.get("bev_size"), "task": man.get("task", {}).get("task"),
                        "variant": man.get("task", {}).get("variant", ""),
                        "backend": man.get("task", {}).get("backend"), "dt": dt},
            "model": scorer.describe(), "prompts": ps.to_json(), "prob": prob.describe(),
            "run": {"batch_size": batch_size, "seconds_last_run": round(elapsed, 2), "frames_last_run": n},
            "quality": quality,
        }
        tmp_json = prov_path.with_suffix(".json.tmp")
        tmp_json.write_text(dumps(prov, indent=1))
        os.replace(tmp, final)
        os.replace(tmp_json, prov_path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    shutil.rmtree(partial, ignore_errors=True)
    log(f"labels {key}: {total} frames in {final} ({n / max(elapsed, 1e-9):.0f} frames/s this run)")
    return LabelSet(key, final, prov, cached=False)


def verify_labels(store: EpisodeStore) -> list[str]:
    """One-line problems of the label sets in `store/labels/`: a half of a .h5/.json pair, labels of
    another dataset, an episode without labels or with another frame count, p(safe) outside [0, 1]
    or not finite, and files that belong to no label set. An unfinished run's `.partial` folder is
    not a problem (the next `vlsafe label` resumes it)."""
    ldir = store.root / "labels"
    if not ldir.exists():
        return []
    problems: list[str] = []
    mine = dataset_checksum(store)
    keys = {p.stem for p in ldir.glob("*.h5")} | {p.stem for p in ldir.glob("*.json")}
    for key in sorted(keys):
        h5, js = ldir / f"{key}.h5", ldir / f"{key}.json"
        if not (h5.exists() and js.exists()):
            problems.append(f"{h5 if not h5.exists() else js}: missing (half of label set {key})")
            continue
        try:
            prov = json.loads(js.read_text())
            made_for = prov["dataset"]["checksum"]
        except (ValueError, KeyError, TypeError) as err:
            problems.append(f"{js}: not a label provenance file ({type(err).__name__}: {err})")
            continue
        if made_for != mine:
            problems.append(f"{h5}: labels of another dataset ({made_for}, this one is {mine})")
            continue
        try:
            with h5py.File(h5, "r") as f:
                for entry in store.entries():
                    name = f"ep_{int(entry['seed']):09d}"
                    if name not in f:
                        problems.append(f"{h5}: no labels for episode {entry['seed']}")
                        continue
                    p = f[name]["p_safe"][()]
                    if len(p) != entry["steps"] + 1:
                        problems.append(f"{h5}: episode {entry['seed']} has {len(p)} labels for {entry['steps'] + 1} frames")
                    elif not (np.isfinite(p).all() and (p >= 0).all() and (p <= 1).all()):
                        problems.append(f"{h5}: episode {entry['seed']}: p_safe not finite or outside [0, 1]")
        except (OSError, KeyError) as err:
            problems.append(f"{h5}: unreadable ({err})")
    for p in sorted(ldir.iterdir()):
        if p.suffix not in (".h5", ".json") and not (p.is_dir() and p.name.endswith(".partial")):
            problems.append(f"{p}: stray file, not part of a label set")
    return problems


def list_labels(store: EpisodeStore) -> list[dict]:
    """Provenance of every finished label set of a dataset folder, oldest first."""
    ldir = store.root / "labels"
    out = []
    for p in sorted(ldir.glob("*.json")) if ldir.exists() else []:
        if (ldir / f"{p.stem}.h5").exists():
            out.append(json.loads(p.read_text()))
    return sorted(out, key=lambda d: d.get("created", ""))


def _resolve(store: EpisodeStore, key: str | None) -> dict:
    sets = list_labels(store)
    if key is not None:
        match = [s for s in sets if s["key"] == key]
        if not match:
            raise DatasetError(f"{store.root}: no label set {key!r}; present: {', '.join(s['key'] for s in sets) or 'none'}")
        prov = match[0]
    elif not sets:
        raise DatasetError(f"{store.root}: no labels; run `vlsafe label {store.root}` first")
    else:
        prov = sets[-1]
    mine = dataset_checksum(store)
    if prov["dataset"]["checksum"] != mine:
        raise DatasetError(f"{store.root}: labels {prov['key']} were made for dataset {prov['dataset']['checksum']} "
                           f"({prov['dataset']['root']}), this dataset is {mine}")
    return prov


def read_labels(store: EpisodeStore, key: str | None = None) -> tuple[dict, dict[int, np.ndarray], dict[int, np.ndarray]]:
    """(provenance, {seed: p_safe (T+1,)}, {seed: sims (T+1, P)}), checked against the dataset."""
    prov = _resolve(store, key)
    p_safe, sims = {}, {}
    path = store.root / "labels" / f"{prov['key']}.h5"
    with h5py.File(path, "r") as f:
        for entry in store.entries():
            seed = int(entry["seed"])
            name = f"ep_{seed:09d}"
            if name not in f:
                raise DatasetError(f"{path}: no labels for episode {seed} of {store.root}")
            p, s = f[name]["p_safe"][()], f[name]["sims"][()]
            if len(p) != entry["steps"] + 1:
                raise DatasetError(f"{path}: episode {seed} has {len(p)} labels but {entry['steps'] + 1} frames")
            if not (np.isfinite(p).all() and (p >= 0).all() and (p <= 1).all()):
                raise DatasetError(f"{path}: episode {seed}: p_safe not finite or outside [0, 1]; relabel with "
                                   f"`vlsafe label {store.root}` after removing it")
            p_safe[seed], sims[seed] = p, s
    return prov, p_safe, sims


def load_labels(store: EpisodeStore, key: str | None = None) -> dict[int, np.ndarray]:
    """{episode seed: p_safe (T+1,) float32}, frame-aligned with the episode's `bev` (Dreamer step k = frame k).

    `key=None` takes the newest label set of this dataset. Labels of another dataset are refused."""
    return read_labels(store, key)[1]

"""How good is a trained world model, on episodes it never trained on.

Reconstruction error, reward/cost prediction error, cost-event AUROC of ĉ, safety-head AUROC
of p̂ against the VLM label and against ground truth ("a cost within the next `horizon_s` seconds", the VLM labels' look-ahead,
turned into steps with each episode's dt), and
open-loop prediction over `horizon` imagined steps driven by the recorded actions. Also a GIF
of real vs imagined frames with ĉ and p̂ written on them.

p̂ is also scored on states imagined k steps ahead (`aheads`, 5 and 15): the states an actor that
learns in imagination meets. With an ensemble, each such state also gets the policy's
uncertainty penalty (policy.uncertainty = λ_u): p̂·exp(−λ_u·e), e = max(u/u_data − 1, 0) of the
transition into it, u_data the ensemble's mean disagreement on these episodes' own transitions.
Whether the penalty sharpens or blurs p̂'s ranking of the unsafe states, and what share of the
imagined states it flags (e > flag_excess), is the diagnostic issue 26 asks for.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from vlsafe.data.store import EpisodeStore
from vlsafe.runlog import dumps
from vlsafe.vlm.quality import auroc, future_cost, horizon_key, horizon_steps
from vlsafe.worldmodel.rssm import WorldModel
from vlsafe.worldmodel.train import to_torch

__all__ = ["auroc", "evaluate_world_model"]


@torch.no_grad()
def _episode_batch(ep, labels) -> dict[str, np.ndarray]:
    T = ep.steps
    pad = lambda a: np.concatenate([np.zeros((1,) + a.shape[1:], a.dtype), a])  # noqa: E731
    b = {"bev": ep.bev, "vector": ep.vector, "action": pad(ep.action), "reward": pad(ep.reward), "cost": pad(ep.cost),
         "is_terminal": pad(ep.terminated), "is_first": np.eye(1, T + 1, dtype=bool)[0], "valid": np.ones(T + 1, bool)}
    if labels is not None:
        b["p_safe"] = labels[ep.seed].astype(np.float32)
    return {k: v[None] for k, v in b.items()}


@torch.no_grad()
def evaluate_world_model(model: WorldModel, store: EpisodeStore, seeds: list[int], labels=None, horizon: int = 15,
                         context: int = 5, horizon_s: float = 0.5, aheads: tuple[int, ...] = (5, 15),
                         uncertainty: float = 1.0, flag_excess: float = 1.0, out: Path | None = None,
                         gif_seed: int | None = None) -> dict[str, Any]:
    if not aheads or min(aheads) < 1:
        raise ValueError(f"aheads: expected imagined steps >= 1, got {list(aheads)}")
    model.eval()
    A = model.config.action_dim
    device = next(model.parameters()).device
    ensemble = bool(model.config.ensemble)
    names = ["recon", "reward_err", "cost_err", "cost_pred", "cost_true", "p_hat", "gt_unsafe", "vlm_unsafe", "u_data"]
    names += [f"{n}{k}" for k in aheads for n in ("p_imag", "gt_imag", "u_imag")]
    rows: dict[str, list] = {n: [] for n in names}
    open_loop = np.zeros(horizon)
    n_open = 0
    gif = None
    for seed in seeds:
        ep = store.read(seed)
        batch = to_torch(_episode_batch(ep, labels), A, device)
        post, _ = model.observe(batch["bev"], batch["action"], batch["is_first"], vector=batch["vector"])
        feat = model.feat(post)
        heads = model.heads(feat)
        recon = model.decoder(feat)
        target = batch["bev"].float() / 255 - 0.5
        rows["recon"].append(((recon - target) ** 2).mean((-1, -2, -3))[0, 1:].cpu().numpy())
        rows["reward_err"].append((heads["reward"] - batch["reward"]).abs()[0, 1:].cpu().numpy())
        rows["cost_err"].append((heads["cost"] - batch["cost"]).abs()[0, 1:].cpu().numpy())
        rows["cost_pred"].append(heads["cost"][0, 1:].cpu().numpy())
        rows["cost_true"].append(ep.cost > 0)
        rows["p_hat"].append(heads["p_safe"][0].cpu().numpy())
        k = horizon_steps(horizon_s, ep.dt)
        rows["gt_unsafe"].append(future_cost(ep.cost, k))  # the same ground truth as the VLM's label quality
        if labels is not None:
            rows["vlm_unsafe"].append(labels[seed] < 0.5)
        _imagine_ahead(model, post, feat, batch["action"][0], rows["gt_unsafe"][-1], aheads, ensemble, rows)
        # open loop: posterior for `context` steps, then the prior under the recorded actions
        if ep.steps >= context + horizon:
            start = {key: v[:, context - 1] for key, v in post.items()}
            acts = iter(batch["action"][0, context:context + horizon])
            imag = model.imagine(start, lambda f, it=acts: next(it)[None], horizon)
            pred = model.decoder(imag["feat"][1:, 0])
            real = batch["bev"][0, context:context + horizon].float() / 255 - 0.5
            open_loop += ((pred - real) ** 2).mean((-1, -2, -3)).cpu().numpy()
            n_open += 1
            if gif is None and (gif_seed is None or seed == gif_seed):
                gif = (ep.bev[context:context + horizon], ((pred.cpu().numpy() + 0.5).clip(0, 1) * 255).astype(np.uint8),
                       imag["cost"][:, 0].cpu().numpy(), imag["p_safe"][:, 0].cpu().numpy())
    cat = {k2: np.concatenate(v) if v else np.zeros(0) for k2, v in rows.items()}
    report = {
        "episodes": len(seeds), "steps": int(len(cat["recon"])),
        "recon_mse": float(cat["recon"].mean()), "reward_mae": float(cat["reward_err"].mean()),
        "cost_mae": float(cat["cost_err"].mean()),
        "cost_event_auroc": auroc(cat["cost_pred"], cat["cost_true"]),
        f"safety_auroc_vs_gt_{horizon_key(horizon_s)}": auroc(1 - cat["p_hat"], cat["gt_unsafe"]),
        "unsafe_steps": int(cat["gt_unsafe"].sum()), "cost_events": int(cat["cost_true"].sum()),
        "open_loop_mse": [float(x) for x in open_loop / max(n_open, 1)], "open_loop_episodes": n_open,
    }
    report.update(_imagined_report(cat, aheads, horizon_key(horizon_s), ensemble, uncertainty, flag_excess))
    if labels is not None:
        report["safety_auroc_vs_vlm"] = auroc(1 - cat["p_hat"], cat["vlm_unsafe"])
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "eval.json").write_text(dumps(report, indent=1))  # NaN (a class absent, a diverged model) -> null
        if gif is not None:
            _write_gif(out / "imagined.gif", *gif)
    return report


def _imagine_ahead(model: WorldModel, post: dict, feat: torch.Tensor, action: torch.Tensor, gt_unsafe: np.ndarray,
                   aheads: tuple[int, ...], ensemble: bool, rows: dict[str, list]) -> None:
    """p̂ of prior states imagined k steps open-loop (recorded actions) from every posterior: the
    states the policy learner queries, scored against the same ground truth; with an ensemble also
    the disagreement of the transition into each (and of the episode's own transitions: u_data)."""
    if ensemble:
        rows["u_data"].append(model.disagreement(feat[0, :-1], action[1:]).cpu().numpy())
    # one rollout to the deepest k: at step j only the starts whose j-th recorded action exists go on
    T = len(action) - 1
    scored = {k for k in aheads if k < T}
    state = {key: v[0, :T] for key, v in post.items()}
    for j in range(1, max(scored, default=0) + 1):
        n = T + 1 - j
        state = {key: v[:n] for key, v in state.items()}
        if ensemble and j in scored:
            rows[f"u_imag{j}"].append(model.disagreement(model.feat(state), action[j:j + n]).cpu().numpy())
        state = model.img_step(state, action[j:j + n])
        if j in scored:
            rows[f"p_imag{j}"].append(model.p_safe(model.feat(state)).cpu().numpy())
            rows[f"gt_imag{j}"].append(gt_unsafe[j:])


def _imagined_report(cat: dict[str, np.ndarray], aheads: tuple[int, ...], gt: str, ensemble: bool, uncertainty: float,
                     flag_excess: float) -> dict[str, Any]:
    out: dict[str, Any] = {}
    u_data = max(float(cat["u_data"].mean()), 1e-8) if ensemble and len(cat["u_data"]) else None
    for k in aheads:
        p, y = cat[f"p_imag{k}"], cat[f"gt_imag{k}"]
        out[f"safety_auroc_imagined_{k}ahead_vs_gt_{gt}"] = auroc(1 - p, y)
        if u_data is not None:
            e = np.maximum(cat[f"u_imag{k}"] / u_data - 1, 0)
            out[f"safety_auroc_imagined_{k}ahead_penalised_vs_gt_{gt}"] = auroc(1 - p * np.exp(-uncertainty * e), y)
            out[f"imagined_flagged_{k}ahead"] = float((e > flag_excess).mean()) if len(e) else float("nan")
    if u_data is not None:
        out.update({"u_data": u_data, "uncertainty": uncertainty, "flag_excess": flag_excess})
    return out


def _write_gif(path: Path, real: np.ndarray, imagined: np.ndarray, cost: np.ndarray, p_safe: np.ndarray) -> None:
    import cv2
    import imageio.v2 as imageio

    frames = []
    for r, m, c, p in zip(real, imagined, cost, p_safe):
        up = lambda a: cv2.resize(a, (192, 192), interpolation=cv2.INTER_NEAREST)  # noqa: E731
        canvas = np.concatenate([up(r), np.full((192, 4, 3), 255, np.uint8), up(m)], 1)
        canvas = np.concatenate([canvas, np.zeros((24, canvas.shape[1], 3), np.uint8)], 0)
        cv2.putText(canvas, f"real | imagined  c={c:.2f} p={p:.2f}", (4, 210), cv2.FONT_HERSHEY_SIMPLEX, 0.45,
                    (255, 255, 255), 1, cv2.LINE_AA)
        frames.append(canvas)
    imageio.mimsave(path, frames, duration=0.2, loop=0)



"""Where does a LAVAE's location posterior put its mass? (issues 8 and 11)

For the first ``--images`` test images of a checkpoint's data set, prints the diagnostics of
lavae_core.diagnostics (eval mode) and the location ones with batch norm in train mode (batch
statistics instead of running ones),
the training-version -ELBO's reconstruction term per true object count (a draw that lands twice on
one object leaves another unexplained, which shows as recon growing faster than the count), and
for a few 2-object images the q-mass of each object's box and its six largest pixels.

    python scripts/location_check.py checkpoints/lavae_multi-mnist-1k_cpu_s0/weights.pt
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from lavae_core.baseline import gaussian_kl  # noqa: E402
from lavae_core.checkpoint import lavae_for_command  # noqa: E402
from lavae_core.cli import Parser, positive_int  # noqa: E402
from lavae_core.datasets import load  # noqa: E402
from lavae_core.diagnostics import (box_masks, diagnose, location_stats, peak_heights,  # noqa: E402
                                    recon_by_location_source, redraw_rate)
from lavae_core.lavae import f_count  # noqa: E402


def offsets_from_centres(found: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """For every true object, (row, col) of the nearest found location minus its centre:
    found (B, K, 2) (-1 = none), positions (B, K', 2) (-1 = absent) -> (n_objects, 2)."""
    out = []
    for f, p in zip(found, positions):
        f = f[f[:, 0] >= 0]
        for c in p[p[:, 0] >= 0]:
            if len(f):
                d = f - c
                out.append(d[np.abs(d).sum(1).argmin()])
    return np.array(out, dtype=float).reshape(-1, 2)


def print_extra_peaks(h, masks, data, cfg) -> None:
    """f_count's maxima above the threshold that lie outside every object's box (each one an
    over-count), and how far (Chebyshev, px) each lies from the nearest true centre."""
    peaks = f_count(h, cfg.count_threshold * cfg.gamma, cfg.count_window, h[0].numel())[1] & ~masks.any(1)
    idx = peaks.nonzero().numpy()
    d = np.array([np.abs(data.positions[b][data.positions[b][:, 0] >= 0] - (r, c)).max(1).min(initial=999)
                  for b, r, c in idx], dtype=float)
    where = (f"; Chebyshev distance to the nearest object centre: median {np.median(d):.0f}, "
             f"range {d.min():.0f}-{d.max():.0f} px" if len(idx) else "")
    print(f"  f_count maxima above the threshold outside every box: {len(idx)} in "
          f"{int(peaks.flatten(1).any(1).sum())} of {len(h)} images{where}")


def print_offsets(model, x, data) -> None:
    """Signed offset of infer's locations (f_count peaks) from the true centres: a 17-px sprite
    holds a 15-px digit only within +-1 px, so a wide spread here is blur in every reconstruction."""
    model.eval()
    with torch.no_grad():
        found = model.infer(x).locations.numpy()
    d = offsets_from_centres(found, data.positions.astype(int))
    print(f"  f_count peak - true centre (row, col) over {len(d)} objects: mean "
          f"{d.mean(0).round(2)}, std {d.std(0).round(2)}")


def print_kl_map(model, x, data) -> None:
    """The warm-up target's source: the auxiliary VAE's KL map, computed on the whole (mixed) batch
    with batch norm in train mode (as while training) and in eval mode, on its 1-object images:
    how high it peaks and where its maximum lies."""
    sel = torch.as_tensor(data.counts == 1)
    if not sel.any():
        return
    pos = data.positions[data.counts == 1][:, 0].astype(float)
    for mode in ("train", "eval"):
        model.aux.train(mode == "train")
        with torch.no_grad():
            mu, logvar = model.aux.encode(x)       # the whole mixed batch, as in training
            km = gaussian_kl(mu, logvar).sum(1)[sel]                     # (B, h, w) nats per cell
        cell = model.cfg.image_size / km.shape[-1]
        a = km.flatten(1).argmax(1)
        centre = torch.stack([a // km.shape[-1], a % km.shape[-1]], 1).double().numpy()
        d = (centre + 0.5) * cell - 0.5 - pos
        print(f"  auxiliary KL map ({mode}-mode batch norm, {int(sel.sum())} 1-object images): max "
              f"{float(km.flatten(1).max(1).values.mean()):.2f} nats per cell, median "
              f"{float(km.flatten(1).median(1).values.mean()):.2f}; argmax - true centre: mean "
              f"{d.mean(0).round(1)}, std {d.std(0).round(1)} px")
    model.eval()


def main(argv=None) -> None:
    prog = "python scripts/location_check.py"
    p = Parser(prog=prog, description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint")
    p.add_argument("--images", type=positive_int, default=200)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    model, cfg, ckpt = lavae_for_command(prog, a.checkpoint)
    data = load(cfg.dataset, "test").subset(np.arange(a.images))
    x = torch.as_tensor(data.images).float()
    print(f"{a.checkpoint}: step {ckpt['step']}, {a.images} test images")
    d = diagnose(model, data, n_images=a.images, seed=a.seed)
    print("  eval  " + "  ".join(f"{k} {v:.3f}" for k, v in d.items()))
    with torch.no_grad():                  # h_loc with batch statistics instead of running ones
        model.train()
        h_train = model.infer_maps(x)[1]
    st = location_stats(h_train, data.boxes, data.positions)
    print(f"  train-mode batch norm: top_share {st['top_share'].mean():.3f}  peak_dist "
          f"{st['peak_dist'].mean():.3f}  redraw {redraw_rate(h_train, data.boxes, data.counts, a.seed, cfg.loc_block):.3f}")
    model.train()
    torch.manual_seed(a.seed)
    with torch.no_grad():
        terms = model.loss_terms(x, tau=cfg.tau_end)
        model.eval()
        _, h = model.infer_maps(x)
    for c in np.unique(data.counts):
        sel = torch.as_tensor(data.counts == c)
        print(f"  {int(c)} objects: recon {float(terms['recon'][sel].mean()):.1f} nats "
              f"({int(sel.sum())} images)")
    print_offsets(model, x, data)
    for name, (recon, iou) in recon_by_location_source(model, data, a.images, a.seed).items():
        print(f"  recon with {name} (z_app = posterior mean): {recon:.1f} nats, ink IoU {iou:.3f}")
    print_kl_map(model, x, data)
    ph = peak_heights(h, data.boxes, cfg.count_window)
    bg = ph["background"][np.isfinite(ph["background"])]
    print(f"  h_loc at object peaks: min {ph['object'].min():.1f}, 1st percentile "
          f"{np.percentile(ph['object'], 1):.1f}, median {np.median(ph['object']):.1f}; highest "
          f"background maximum: {bg.max() if bg.size else float('nan'):.1f} (f_count threshold "
          f"{cfg.count_threshold * cfg.gamma:.1f})")
    masks = box_masks(data.boxes, h.shape[-1])
    print_extra_peaks(h, masks, data, cfg)
    q = h.flatten(1).softmax(1).view_as(h)
    mass = (q[:, None] * masks).flatten(2).sum(2)
    for i in np.where(data.counts == 2)[0][:3]:
        print(f"  image {i}: box q-mass {mass[i, :2].numpy().round(3)}")
        for k in range(2):
            top = (q[i] * masks[i, k]).flatten().topk(6)
            cells = [(int(j) // h.shape[-1], int(j) % h.shape[-1]) for j in top.indices]
            print(f"    object {k} (centre {tuple(int(v) for v in data.positions[i, k])}): top q "
                  f"{top.values.numpy().round(3)} at {cells}")


if __name__ == "__main__":
    main()

"""Evaluation (paper Section 3, Table 1): count accuracy and the importance-sampled bound.

- Count accuracy: the share of images whose inferred number of objects f_count(h_loc) equals the
  true count (ground truth is used here only, never in training), overall and per true count.
- The bound on -log p(x): -log (1/K sum_k p(x, z_k) / q(z_k | x)) with K = 100 importance samples
  from the inference model, batched over samples and images, averaged over the test images, with
  its standard error. K = 1 gives the (negative) ELBO.
"""
from __future__ import annotations

import argparse
import json
import math
import time

import numpy as np
import torch
from tqdm.auto import tqdm


def as_float(images, device) -> torch.Tensor:
    """uint8 {0,1} images (numpy or torch, (N, C, H, W)) -> float32 tensor on ``device``."""
    x = torch.as_tensor(images)
    return x.to(device=device, dtype=torch.float32)


def _device(model) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def predict_counts(model, images, batch_size: int = 256, progress: bool = False) -> np.ndarray:
    """f_count on every image: (N,) int64."""
    was_training = model.training
    model.eval()
    out = []
    for i in tqdm(range(0, len(images), batch_size), desc="count", disable=not progress, leave=False):
        _, h_loc = model.infer_maps(as_float(images[i:i + batch_size], _device(model)))
        out.append(model.count(h_loc)[0].cpu())
    model.train(was_training)
    return torch.cat(out).numpy() if out else np.zeros(0, dtype=np.int64)


def count_accuracy(model, images, counts, batch_size: int = 256, progress: bool = False) -> dict:
    """Count accuracy overall and per true count: {"accuracy", "per_count": {n: [acc, images]},
    "n_images"}."""
    counts = np.asarray(counts)
    if len(counts) != len(images):
        raise ValueError(f"{len(images)} images but {len(counts)} counts")
    pred = predict_counts(model, images, batch_size, progress)
    ok = pred == counts
    per = {int(n): [float(ok[counts == n].mean()), int((counts == n).sum())] for n in np.unique(counts)}
    return {"accuracy": float(ok.mean()) if len(ok) else float("nan"), "per_count": per,
            "n_images": int(len(ok))}


@torch.no_grad()
def iw_bound(model, images, k: int = 100, batch_size: int | None = None, seed: int = 0,
             progress: bool = True) -> dict:
    """Importance-sampled bound on -log p(x) in nats with ``k`` samples (Table 1).

    Works for any model with ``log_weights(x, k) -> (B, k)`` (LAVAE and the baseline). Returns
    mean and standard error of the per-image bound, the mean negative ELBO (the k = 1 bound in
    expectation), the number of images and the wall time."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    batch_size = batch_size or max(1, 1000 // k)
    was_training = model.training
    model.eval()
    torch.manual_seed(seed)
    bounds, elbos, t0 = [], [], time.perf_counter()
    for i in tqdm(range(0, len(images), batch_size), desc=f"bound K={k}", disable=not progress,
                  leave=False):
        lw = model.log_weights(as_float(images[i:i + batch_size], _device(model)), k).double()
        bounds.append(-(torch.logsumexp(lw, 1) - math.log(k)).cpu())
        elbos.append(-lw.mean(1).cpu())
    model.train(was_training)
    b = torch.cat(bounds).numpy()
    return {"bound": float(b.mean()), "stderr": float(b.std(ddof=1) / math.sqrt(len(b))) if len(b) > 1
            else float("nan"), "neg_elbo": float(torch.cat(elbos).mean()), "k": k,
            "n_images": int(len(b)), "wall_s": time.perf_counter() - t0, "per_image": b}


def evaluate_checkpoint(path, splits=("test", "test7"), n_images: int | None = 1000, k: int = 100,
                        device: str | None = None, progress: bool = True) -> dict:
    """Table 1 numbers for one checkpoint: for each split, the K-sample bound (mean and standard
    error) on the first ``n_images`` images, the count accuracy (LAVAE) and the data set's floor."""
    from .checkpoint import load_checkpoint
    from .train import load_split
    model, cfg, ckpt = load_checkpoint(path, device)
    out = {"checkpoint": str(path), "model": cfg.model, "dataset": cfg.dataset,
           "profile": cfg.profile, "seed": cfg.seed, "step": int(ckpt["step"]),
           "train_wall_s": float(ckpt.get("wall_s", float("nan"))),
           "trained_on": ckpt.get("hardware", "?"), "splits": {}}
    for split in splits:
        data = load_split(cfg, split, n_images, progress)
        r = iw_bound(model, data.images, k=k, progress=progress)
        res = {"bound": r["bound"], "stderr": r["stderr"], "neg_elbo": r["neg_elbo"], "k": k,
               "n_images": r["n_images"], "bound_wall_s": r["wall_s"]}
        if cfg.model == "lavae":
            acc = count_accuracy(model, data.images, data.counts, progress=progress)
            res.update(count_acc=acc["accuracy"], count_acc_per_n=acc["per_count"])
        out["splits"][split] = res
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m lavae_core.evaluate",
                                description="Evaluate a checkpoint: K-sample bound and count accuracy.")
    p.add_argument("checkpoint", help="a checkpoint .pt file or a run folder")
    p.add_argument("--splits", nargs="+", default=["test", "test7"])
    p.add_argument("--n-images", type=int, default=1000, help="test images per split (0: all)")
    p.add_argument("--k", type=int, default=100, help="importance samples")
    p.add_argument("--device")
    p.add_argument("--out", help="write the results as JSON here")
    a = p.parse_args(argv)
    res = evaluate_checkpoint(a.checkpoint, a.splits, a.n_images or None, a.k, a.device)
    text = json.dumps(res, indent=1)
    print(text)
    if a.out:
        with open(a.out, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()

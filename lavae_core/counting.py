"""Count accuracy (paper Section 3, Table 1): how often f_count(h_loc) finds the true number of
objects. Ground-truth counts are used here only, never in training. Training (held-out curves in
metrics.csv) and evaluation (Table 1) both measure it with these functions.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
from tqdm.auto import tqdm

from .datasets import as_float, generate

# held-out sets of the counting scripts: fresh draws of the training distribution and of the
# 7-object set, not the test splits of Table 1, so that nothing is chosen on the test set
HELD_OUT = {"0-3 objects": ((0, 3), 100), "7 objects": ((7, 7), 101)}   # name: (objects, seed)


def predict_counts(model, images, batch_size: int = 256, progress: bool = False) -> np.ndarray:
    """f_count on every image (uint8 (N, C, H, W)) -> (N,) int64. ``model``: a LAVAE."""
    return counts_at_thresholds(model, images, [model.cfg.count_threshold], batch_size, progress)[0]


def counts_at_thresholds(model, images, thresholds, batch_size: int = 256,
                         progress: bool = False) -> np.ndarray:
    """f_count on every image with each of ``thresholds`` (in units of gamma, as the config's
    ``count_threshold``; App. B uses 4) -> (len(thresholds), N) int64. The location net runs once
    per image; only the threshold changes, not q or the trained model."""
    return counts_at(model, images, thresholds, [model.cfg.count_window], batch_size, progress)[0]


@torch.no_grad()
def counts_at(model, images, thresholds, windows, batch_size: int = 256,
              progress: bool = False) -> np.ndarray:
    """f_count on every image with each of ``windows`` (its local-maximum window, odd) and each of
    ``thresholds`` (units of gamma) -> (len(windows), len(thresholds), N) int64. The location net
    runs once per image; only f_count changes, not q or the trained model (which trained with the
    config's ``count_window`` and ``count_threshold``)."""
    thresholds, windows = [float(t) for t in thresholds], list(windows)
    if not thresholds or min(thresholds) < 0:
        raise ValueError(f"thresholds must be a non-empty list of numbers >= 0, got {thresholds}")
    if not windows or any(not isinstance(w, int) or w < 1 or w % 2 == 0 for w in windows):
        raise ValueError(f"windows must be a non-empty list of odd positive integers, got {windows}")
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    out = []
    for i in tqdm(range(0, len(images), batch_size), desc="count", disable=not progress, leave=False):
        h_loc = model.infer_loc(as_float(images[i:i + batch_size], device))   # the location net only
        out.append(torch.stack([torch.stack([model.count(h_loc, t, w)[0] for t in thresholds])
                                for w in windows]).cpu())
    model.train(was_training)
    return (torch.cat(out, 2).numpy() if out
            else np.zeros((len(windows), len(thresholds), 0), dtype=np.int64))


def count_accuracy(model, images, counts, batch_size: int = 256, progress: bool = False) -> dict:
    """Count accuracy overall and per true count: {"accuracy", "per_count": {n: [acc, images]},
    "n_images"}."""
    counts = np.asarray(counts)
    if len(counts) != len(images):
        raise ValueError(f"{len(images)} images but {len(counts)} counts")
    return accuracy_of(predict_counts(model, images, batch_size, progress), counts)


@lru_cache(maxsize=4)
def held_out(dataset: str, n_images: int) -> dict:
    """{name: MultiObjectData} of :data:`HELD_OUT` for ``dataset``, ``n_images`` each (generated
    once per data set and size)."""
    return {name: generate(dataset, n_images, objects, seed, progress=False)
            for name, (objects, seed) in HELD_OUT.items()}


def accuracy_of(pred: np.ndarray, counts: np.ndarray) -> dict:
    """The dict of :func:`count_accuracy` for predicted and true counts."""
    ok = np.asarray(pred) == np.asarray(counts)
    per = {int(n): [float(ok[counts == n].mean()), int((counts == n).sum())] for n in np.unique(counts)}
    return {"accuracy": float(ok.mean()) if len(ok) else float("nan"), "per_count": per,
            "n_images": int(len(ok))}

"""Evaluation (paper Section 3, Table 1): count accuracy and the importance-sampled bound.

- Count accuracy: the share of images whose inferred number of objects f_count(h_loc) equals the
  true count (ground truth is used here only, never in training), overall and per true count.
- The bound on -log p(x): -log (1/K sum_k p(x, z_k) / q(z_k | x)) with K = 100 importance samples
  from the inference model, batched over samples and images, averaged over the test images, with
  its standard error. K = 1 gives the (negative) ELBO.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from . import REPO_ROOT

EVAL_CACHE = REPO_ROOT / "runs" / "eval_cache"   # git-ignored; see _cached


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


def evaluate_split(model, cfg, split: str, n_images: int | None = 1000, k: int = 100,
                   n_bound: int | None = None, seed: int = 0, progress: bool = True):
    """Bound (K samples, on the first ``n_bound`` images, all by default) and, for LAVAE, count
    accuracy (on all ``n_images``) of one test split -> (results dict, the split's data)."""
    from .train import load_split
    data = load_split(cfg, split, n_images, progress)
    r = iw_bound(model, data.images[:n_bound], k=k, seed=seed, progress=progress)
    res = {"bound": r["bound"], "stderr": r["stderr"], "neg_elbo": r["neg_elbo"], "k": k,
           "n_images": r["n_images"], "bound_wall_s": r["wall_s"]}
    if cfg.model == "lavae":
        acc = count_accuracy(model, data.images, data.counts, progress=progress)
        res.update(count_acc=acc["accuracy"], count_acc_per_n=acc["per_count"])
    return res, data


def evaluate_checkpoint(path, splits=("test", "test7"), n_images: int | None = 1000, k: int = 100,
                        device: str | None = None, progress: bool = True) -> dict:
    """Table 1 numbers for one checkpoint: for each split, the K-sample bound (mean and standard
    error) on the first ``n_images`` images and the count accuracy (LAVAE)."""
    from .checkpoint import load_checkpoint
    model, cfg, ckpt = load_checkpoint(path, device)
    out = {"checkpoint": str(path), "model": cfg.model, "dataset": cfg.dataset,
           "profile": cfg.profile, "seed": cfg.seed, "step": int(ckpt["step"]),
           "train_wall_s": float(ckpt.get("wall_s", float("nan"))),
           "trained_on": ckpt.get("hardware", "?"), "splits": {}}
    for split in splits:
        out["splits"][split] = evaluate_split(model, cfg, split, n_images, k, progress=progress)[0]
    return out


# Table 1 of the paper: -log p(x) bound (K = 100) and count accuracy (LAVAE) on the test sets.
PAPER_TABLE1 = {
    "multi-mnist-1k": {"lavae": (42.2, 1.1, ">= 99.9%"), "baseline": (51.6, 0.6, None)},
    "multi-mnist-10k": {"lavae": (60.4, 2.8, ">= 99.7%"), "baseline": (64.6, 0.8, None)},
    "multi-dsprites": {"lavae": (43.9, 1.0, ">= 99.9%"), "baseline": (45.8, 0.7, None)},
}


def _cached(path, params: dict, compute, cache_dir):
    """``compute()`` once per (contents of the checkpoint file ``path``, ``params``): the result is
    kept as JSON in ``cache_dir`` (None: no cache), so that rerunning Table 1 (run_all.sh resumes)
    skips checkpoints that are already evaluated. A retrained checkpoint has other bytes, so it is
    evaluated again."""
    if cache_dir is None:
        return compute()
    weights = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    key = hashlib.sha256(json.dumps({**params, "weights": weights}, sort_keys=True).encode()).hexdigest()
    f = Path(cache_dir) / f"{Path(path).parent.name}-{key[:16]}.json"
    if f.exists():
        try:
            return json.loads(f.read_text())
        except (OSError, ValueError):
            pass  # unreadable: evaluate again
    result = compute()
    f.parent.mkdir(parents=True, exist_ok=True)
    tmp = f.with_suffix(".tmp")
    tmp.write_text(json.dumps(result))
    tmp.replace(f)
    return result


def table1(datasets, profile: str = "cpu", seeds=(0, 1, 2), n_images: int | None = 1000,
           k: int = 100, smoke: bool = False, progress: bool = True,
           n_bound: dict | None = None, cache_dir: Path | None = EVAL_CACHE) -> dict:
    """Evaluate every available model (LAVAE, baseline) x seed on each data set's test splits.

    Missing checkpoints are reported, not invented. Returns {"rows": [...], "markdown": str}: one
    row per data set and model with the bound's mean and std over seeds, the count accuracy on the
    0-3 and the 7-object test sets, the data floor, the paper's numbers, and what produced them.
    ``n_bound`` ({"test": 500, "test7": 200}) caps the images the K-sample bound is averaged over
    (its cost grows with the number of objects); the count accuracy uses all ``n_images``.
    ``cache_dir``: where each checkpoint's numbers are kept (see :func:`_cached`; default the
    git-ignored ``runs/eval_cache``); None evaluates everything again. Smoke mode never caches."""
    from .checkpoint import CheckpointError, find_checkpoint, get_model, load_checkpoint
    from .config import make_config
    from .floor import data_floor
    from .train import load_split
    rows, missing = [], []
    for ds in datasets:
        floor = None
        for model_name in ("lavae", "baseline"):
            runs = []
            for seed in seeds:
                try:
                    path = None if smoke else find_checkpoint(ds, model_name, profile, seed)
                except CheckpointError as e:
                    missing.append(str(e).split(":")[0])
                    continue

                def evaluate_run():
                    model, cfg, ckpt = (get_model(ds, model_name, profile, seed, smoke) if smoke
                                        else load_checkpoint(path))
                    r = {"seed": seed, "step": int(ckpt["step"]), "hardware": ckpt.get("hardware", "?"),
                         "train_wall_s": float(ckpt.get("wall_s", float("nan")))}
                    for split in ("test", "test7"):
                        res, _ = evaluate_split(model, cfg, split, n_images, k, (n_bound or {}).get(split),
                                                seed, progress)
                        r[f"n_bound_{split}"] = res["n_images"]
                        r[f"bound_{split}"] = res["bound"]
                        if model_name == "lavae":
                            r[f"acc_{split}"] = res["count_acc"]
                    return r

                params = {"n_images": n_images, "k": k, "n_bound": n_bound, "seed": seed}
                runs.append(_cached(path, params, evaluate_run, None if smoke else cache_dir))
                if floor is None:
                    cfg = make_config("smoke" if smoke else profile, ds, model_name, seed=seed)
                    floor = data_floor(load_split(cfg, "test", n_images, progress), progress=progress)["floor"]
            if not runs:
                continue
            bounds = np.array([r["bound_test"] for r in runs])
            row = {"dataset": ds, "model": model_name, "profile": profile, "seeds": [r["seed"] for r in runs],
                   "bound": float(bounds.mean()), "bound_std": float(bounds.std(ddof=1)) if len(runs) > 1 else None,
                   "bound_test7": float(np.mean([r["bound_test7"] for r in runs])),
                   "steps": sorted({r["step"] for r in runs}), "hardware": sorted({r["hardware"] for r in runs}),
                   "train_minutes": [round(r["train_wall_s"] / 60, 1) for r in runs],
                   "floor": floor, "k": k, "n_images": n_images, "paper": PAPER_TABLE1[ds][model_name],
                   "n_bound_test": runs[0]["n_bound_test"], "n_bound_test7": runs[0]["n_bound_test7"]}
            if model_name == "lavae":
                for split in ("test", "test7"):
                    accs = np.array([r[f"acc_{split}"] for r in runs])
                    row[f"acc_{split}"] = float(accs.mean())
                    row[f"acc_{split}_std"] = float(accs.std(ddof=1)) if len(runs) > 1 else None
            row["per_seed"] = runs
            rows.append(row)
    return {"rows": rows, "missing": missing, "markdown": table1_markdown(rows, missing)}


def _pct(row: dict, key: str) -> str:
    """A Table 1 accuracy cell: mean % (± std over seeds when there are several), or a dash."""
    if row.get(key) is None:
        return "—"
    sd = row.get(f"{key}_std")
    return f"{100 * row[key]:.1f}%" + (f" ± {100 * sd:.1f}" if sd is not None else "")


def table1_markdown(rows, missing=()) -> str:
    """Table 1 as Markdown, ours beside the paper's."""
    head = ("| data set | model | -log p(x) <= (ours) | paper | floor | -log p(x) <=, 7 objects | n acc. 0-3 |"
            " n acc. 7 | paper n acc. | seeds | steps | train min | hardware |\n"
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
    lines = []
    for r in rows:
        std = f" ± {r['bound_std']:.1f}" if r["bound_std"] is not None else ""
        pm, ps, pacc = r["paper"]
        lines.append(f"| {r['dataset']} | {r['model']} | {r['bound']:.1f}{std} | {pm} ± {ps} | "
                     f"{r['floor']:.1f} | {r['bound_test7']:.1f} | {_pct(r, 'acc_test')} | {_pct(r, 'acc_test7')} | "
                     f"{pacc or '—'} | {len(r['seeds'])} | {', '.join(map(str, r['steps']))} | "
                     f"{', '.join(map(str, r['train_minutes']))} | {'; '.join(r['hardware'])} |")
    if rows:
        r = rows[0]
        lines.append(f"\nBound: K = {r['k']} importance samples, mean over the first {r['n_bound_test']} test "
                     f"images ({r['n_bound_test7']} for 7 objects); count accuracy over {r['n_images']} "
                     "images per split; ± is the standard deviation over seeds; floor: -log p(x) of the generating "
                     "process on the same test images.")
    note = f"\n\nNot trained yet: {', '.join(missing)}." if missing else ""
    return head + "\n".join(lines) + note


def per_seed_markdown(rows) -> str:
    """The runs behind Table 1, one line per seed: where it was trained, for how long, its bounds
    and (LAVAE) count accuracies. ``rows`` as :func:`table1` returns them (or its JSON file)."""
    out = ["| data set | model | seed | steps | trained on | train min | -log p(x) <= | 7 objects | "
           "n acc. 0-3 | n acc. 7 |", "|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        for r in row["per_seed"]:
            acc = [f"{100 * r[k]:.1f}%" if k in r else "—" for k in ("acc_test", "acc_test7")]
            out.append(f"| {row['dataset']} | {row['model']} | {r['seed']} | {r['step']} | "
                       f"{r['hardware'].split(',')[0]} | {r['train_wall_s'] / 60:.1f} | "
                       f"{r['bound_test']:.1f} | {r['bound_test7']:.1f} | {acc[0]} | {acc[1]} |")
    return "\n".join(out)


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

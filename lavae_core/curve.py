"""The bound against training minutes (issues 8 and 11): LAVAE and the baseline on one clock.

Table 1 compares the models at the end of training; on a CPU budget the ordering can depend on the
budget. A run trained with ``snapshot_every`` keeps its weights every that many steps in
``<run>/snapshots/``; this module evaluates every snapshot's K-sample bound (Table 1's estimator,
:func:`lavae_core.evaluate.iw_bound`, same images and seeds for every snapshot) and writes one CSV
row per snapshot with the training minutes it had cost (evaluation excluded), so that both models'
curves can be drawn against minutes (:func:`lavae_core.viz.plot_bound_curve`).

    python -m lavae_core.curve runs/lavae_x runs/baseline_x --out results/curves/x.csv --plot
"""
from __future__ import annotations

import csv
from pathlib import Path

from tqdm.auto import tqdm

from .checkpoint import CheckpointError, load_checkpoint
from .cli import Parser, fail, non_negative_int, positive_int
from .evaluate import iw_bound, split_data
from .mnist import MNISTError

COLUMNS = ("run", "model", "dataset", "seed", "step", "train_minutes", "bound", "stderr", "neg_elbo",
           "k", "n_images", "split", "trained_on", "eval_seed")


def snapshots(run_dir) -> list[Path]:
    """The snapshots of a run folder, by step; ValueError if it has none."""
    paths = sorted(Path(run_dir).glob("snapshots/step_*.pt"))
    if not paths:
        raise ValueError(f"{run_dir} holds no snapshots/step_*.pt: train it with --set snapshot_every=N")
    return paths


def read_rows(path) -> list[dict]:
    if not Path(path).exists():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def evaluate_runs(run_dirs, out_csv, n_images: int = 200, k: int = 100, split: str = "test",
                  seed: int = 0, progress: bool = True) -> list[dict]:
    """Evaluate every snapshot of ``run_dirs`` not yet in ``out_csv`` (same run, step, k, images,
    split and seed) and rewrite it; returns all its rows. Rows are written as they are computed,
    so an interrupted call loses at most one snapshot."""
    out_csv = Path(out_csv)
    rows = read_rows(out_csv)
    key = lambda r: (str(r["run"]), int(r["step"]), int(r["k"]), int(r["n_images"]), str(r["split"]),  # noqa: E731
                     int(r["eval_seed"]))
    done = {key(r) for r in rows}
    todo = [(Path(d), p) for d in run_dirs for p in snapshots(d)]
    out_csv.parent.mkdir(parents=True, exist_ok=True)
    data: dict = {}
    for run_dir, path in tqdm(todo, desc="snapshots", disable=not progress):
        step = int(path.stem.split("_")[1])
        if (str(run_dir), step, k, n_images, split, seed) in done:
            continue
        model, cfg, ckpt = load_checkpoint(path)
        if cfg.dataset not in data:
            data[cfg.dataset] = split_data(cfg, split, n_images).images[:n_images]
        r = iw_bound(model, data[cfg.dataset], k, seed=seed, progress=False)
        rows.append({"run": str(run_dir), "model": cfg.model, "dataset": cfg.dataset, "seed": cfg.seed,
                     "step": step, "train_minutes": round(float(ckpt["wall_s"]) / 60, 3),
                     "bound": round(r["bound"], 4), "stderr": round(r["stderr"], 4),
                     "neg_elbo": round(r["neg_elbo"], 4), "k": k, "n_images": r["n_images"],
                     "split": split, "trained_on": ckpt.get("hardware", "?"), "eval_seed": seed})
        with out_csv.open("w", newline="") as f:
            w = csv.DictWriter(f, COLUMNS)
            w.writeheader()
            w.writerows(rows)
    return rows


def main(argv=None) -> None:
    prog = "python -m lavae_core.curve"
    p = Parser(prog=prog, description="K-sample bound of every snapshot of some runs, against their "
                                      "training minutes (one CSV row per snapshot).")
    p.add_argument("runs", nargs="+", help="run folders trained with snapshot_every > 0")
    p.add_argument("--out", required=True, help="CSV (snapshots already in it are not recomputed)")
    p.add_argument("--images", type=positive_int, default=200, help="first test images (default 200)")
    p.add_argument("--k", type=positive_int, default=100, help="importance samples (default 100)")
    p.add_argument("--seed", type=non_negative_int, default=0, help="seed of the bound's samples")
    p.add_argument("--plot", action="store_true", help="also draw the curve next to the CSV (.png)")
    a = p.parse_args(argv)
    try:
        rows = evaluate_runs(a.runs, a.out, a.images, a.k, seed=a.seed)
    except (ValueError, CheckpointError, MNISTError) as e:
        fail(prog, e)
    if a.plot:
        from .viz import plot_bound_curve, save_figure
        out = Path(a.out)
        print(f"wrote {save_figure(plot_bound_curve(rows), out.stem, out.parent)}")
    print(f"{len(rows)} rows in {a.out}")


if __name__ == "__main__":
    main()

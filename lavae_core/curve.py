"""The bound against training minutes (issues 8 and 11): LAVAE and the baseline on one clock.

Table 1 compares the models at the end of training; on a CPU budget the ordering can depend on the
budget. A run trained with ``snapshot_every`` keeps its weights every that many steps in
``<run>/snapshots/``; this module evaluates every snapshot's K-sample bound (Table 1's estimator,
:func:`lavae_core.evaluate.iw_bound`, same images and seeds for every snapshot) and writes one CSV
row per snapshot with the training minutes it had cost (evaluation excluded), so that both models'
curves can be drawn against minutes (:func:`lavae_core.viz.plot_bound_curve`).

    python -m lavae_core.curve runs/lavae_x runs/baseline_x --out results/curves/x.csv --plot

Runs trained apart (other days, other machines, resumed beside other work) have no common clock;
``--on-clock`` puts curve rows on the clock of a side-by-side timing of both models' steps
(scripts/step_cost.py; :func:`clock_minutes`):

    python -m lavae_core.curve --on-clock results/curves/step_cost_x.json lavae.csv old.csv:baseline \
        --out results/curves/bound_vs_clock_x.csv --plot
"""
from __future__ import annotations

import csv
import json
from pathlib import Path

from tqdm.auto import tqdm

from .checkpoint import CheckpointError, load_checkpoint
from .cli import Parser, fail, non_negative_int, positive_int
from .evaluate import iw_bound, split_data
from .mnist import MNISTError

CLOCK_LABEL = "training minutes on one clock (steps x seconds per step timed side by side)"
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
        write_rows(rows, out_csv)
    return rows


def step_seconds(metrics_csv, batch_size: int, first_step: int = 0, last_step: int | None = None,
                 skip: int = 1) -> dict:
    """Seconds per training step of a run, from its metrics.csv: each logged row's ``images_per_s``
    is the throughput of the steps since the row before (evaluations excluded). Rows with
    ``first_step < step <= last_step`` are used, less the first ``skip`` of them (start-up: data
    loading, allocation). Returns the median, the number of rows it rests on and the last step;
    ValueError when no row is left."""
    rows = [r for r in read_rows(metrics_csv) if r.get("images_per_s")]
    used = [(int(r["step"]), float(r["images_per_s"])) for r in rows
            if int(r["step"]) > first_step and (last_step is None or int(r["step"]) <= last_step)][skip:]
    if not used or any(v <= 0 for _, v in used):
        raise ValueError(f"{metrics_csv}: no timed rows with {first_step} < step"
                         f"{'' if last_step is None else f' <= {last_step}'} (after skipping {skip})")
    per_step = sorted(batch_size / v for _, v in used)
    return {"s_per_step": per_step[len(per_step) // 2], "rows": len(used),
            "last_step": used[-1][0]}


def clock_minutes(step: int, phases) -> float:
    """Training minutes that ``step`` steps cost on one clock: ``phases`` is a list of
    ``(from_step, seconds_per_step)``, sorted, the first from step 0 (LAVAE's warm-up costs more a
    step than what follows). Used to put runs trained apart on the clock of a side-by-side timing
    (scripts/step_cost.py)."""
    phases = sorted((int(a), float(b)) for a, b in phases)
    if not phases or phases[0][0] != 0 or any(b <= 0 for _, b in phases):
        raise ValueError(f"phases must start at step 0 with positive seconds per step, got {phases}")
    total = 0.0
    for i, (start, sec) in enumerate(phases):
        end = phases[i + 1][0] if i + 1 < len(phases) else None
        if step <= start:
            break
        total += (min(step, end) - start if end is not None else step - start) * sec
    return total / 60


def on_clock(rows: list[dict], phases_by_model: dict) -> list[dict]:
    """Copies of curve rows whose ``train_minutes`` is :func:`clock_minutes` of their step, with the
    phases of their model (``{"lavae": [...], "baseline": [...]}``)."""
    return [{**r, "train_minutes": round(clock_minutes(int(r["step"]), phases_by_model[r["model"]]), 3)}
            for r in rows]


def clock_rows(step_cost_json, sources) -> list[dict]:
    """Curve rows of several CSVs put on one clock: ``sources`` are ``PATH`` or ``PATH:MODEL`` (only
    that model's rows), ``step_cost_json`` a side-by-side timing (scripts/step_cost.py) whose
    ``phases`` give each model's seconds per step. The rows must share data set, K, images, split
    and eval seed (the same bound, paired image by image); ValueError otherwise."""
    phases = json.loads(Path(step_cost_json).read_text())["phases"]
    rows = []
    for src in sources:
        path, _, model = str(src).partition(":")
        if not Path(path).exists():
            raise ValueError(f"no curve CSV at {path}")
        got = [r for r in read_rows(path) if not model or r["model"] == model]
        if not got:
            raise ValueError(f"{path} has no rows{f' of model {model}' if model else ''}")
        rows += got
    same = {(r["dataset"], str(r["k"]), str(r["n_images"]), r["split"], str(r["eval_seed"])) for r in rows}
    if len(same) > 1:
        raise ValueError(f"the rows are not one bound (data set, K, images, split, eval seed): {sorted(same)}")
    missing = {r["model"] for r in rows} - set(phases)
    if missing:
        raise ValueError(f"{step_cost_json} has no step cost of {sorted(missing)}")
    return on_clock(rows, phases)


def write_rows(rows, out_csv) -> None:
    out_csv = Path(out_csv)
    out_csv.parent.mkdir(parents=True, exist_ok=True)
    with out_csv.open("w", newline="") as f:
        w = csv.DictWriter(f, COLUMNS)
        w.writeheader()
        w.writerows(rows)


def main(argv=None) -> None:
    prog = "python -m lavae_core.curve"
    p = Parser(prog=prog, description="K-sample bound of every snapshot of some runs, against their "
                                      "training minutes (one CSV row per snapshot).")
    p.add_argument("runs", nargs="+", help="run folders trained with snapshot_every > 0 (with "
                   "--on-clock: curve CSVs, PATH or PATH:MODEL)")
    p.add_argument("--out", required=True, help="CSV (snapshots already in it are not recomputed)")
    p.add_argument("--images", type=positive_int, default=200, help="first test images (default 200)")
    p.add_argument("--k", type=positive_int, default=100, help="importance samples (default 100)")
    p.add_argument("--seed", type=non_negative_int, default=0, help="seed of the bound's samples")
    p.add_argument("--plot", action="store_true", help="also draw the curve next to the CSV (.png)")
    p.add_argument("--on-clock", metavar="STEP_COST_JSON",
                   help="evaluate nothing: write the rows of the given curve CSVs with train_minutes "
                        "= their steps on the clock of this side-by-side timing (scripts/step_cost.py)")
    a = p.parse_args(argv)
    try:
        if a.on_clock:
            rows = clock_rows(a.on_clock, a.runs)
            write_rows(rows, a.out)
        else:
            rows = evaluate_runs(a.runs, a.out, a.images, a.k, seed=a.seed)
    except (ValueError, CheckpointError, MNISTError) as e:
        fail(prog, e)
    if a.plot:
        from .viz import plot_bound_curve, save_figure
        out = Path(a.out)
        fig = plot_bound_curve(rows, xlabel=CLOCK_LABEL if a.on_clock else None)
        print(f"wrote {save_figure(fig, out.stem, out.parent)}")
    print(f"{len(rows)} rows in {a.out}")


if __name__ == "__main__":
    main()

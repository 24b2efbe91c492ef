"""Table 1 of the paper (Section 3), from the evaluation records of the trained models.

One row per data set, model and recipe: the bound on -log p(x) (K = 100) on the 0-3-object and
the 7-object test sets, the count accuracy (LAVAE) on both, the data floor, the paper's numbers,
and what produced them. Every number comes from a checkpoint's record (``records.py``); a record
that is missing or does not match the weights or the parameters is evaluated first. A checkpoint
whose stored config differs from today's profile (``config.make_config``) was trained with an
earlier recipe: it gets its own row, marked and explained under the table, never mixed into the
current one.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from . import REPO_ROOT
from .checkpoint import CheckpointError, find_checkpoint, run_name
from .cli import Parser, fail, non_negative_int
from .config import BOOKKEEPING, DATASETS, PROFILES, SPEED_FIELDS, Config, make_config, recipe_fields
from .datasets import load_split
from .evaluate import BOUND_PARAMS, COUNT_PARAMS, check_params
from .floor import data_floor
from .mnist import MNISTError
from .params import check_notebook_params
from .records import ensure_record, read_record, sha256_file, stale_parts
from .train import smoke_checkpoint

# Table 1 of the paper: -log p(x) bound (K = 100) and count accuracy (LAVAE) on the test sets.
PAPER_TABLE1 = {
    "multi-mnist-1k": {"lavae": (42.2, 1.1, ">= 99.9%"), "baseline": (51.6, 0.6, None)},
    "multi-mnist-10k": {"lavae": (60.4, 2.8, ">= 99.7%"), "baseline": (64.6, 0.8, None)},
    "multi-dsprites": {"lavae": (43.9, 1.0, ">= 99.9%"), "baseline": (45.8, 0.7, None)},
}
NO_FIELD = "no such field"   # today's side of a stored field that Config no longer has
# Smoke scale (CI): seconds, on in-memory data.
SMOKE_BOUND = {"k": 5, "images": {"test": 8, "test7": 4}, "chunk": 4, "seed": 0}
SMOKE_COUNT = {"images": {"test": 16, "test7": 16}, "chunk": 8}


def recipe_diff(record: dict) -> dict:
    """{field: (stored, today's)} where a record's config differs from today's profile for its
    data set, model and seed (bookkeeping fields, execution switches such as tf32, and fields the
    model does not read, aside); {}
    for the current recipe. A field that
    the stored config lacks (added to Config later) counts at its dataclass default, the behaviour
    before it existed; a stored field that Config no longer has counts as a difference."""
    names = {f.name for f in dataclasses.fields(Config)}
    stored = record["config"]
    full = dataclasses.asdict(Config(**{k: v for k, v in stored.items() if k in names}))
    today = make_config(record["profile"], record["dataset"], record["model"], seed=record["seed"]).to_dict()
    fields = recipe_fields(record["model"])
    diff = {k: (full[k], v) for k, v in today.items()
            if k in fields and k not in (*BOOKKEEPING, *SPEED_FIELDS) and full[k] != v}
    diff.update({k: (v, NO_FIELD) for k, v in stored.items() if k not in names})
    return diff


def run_is_current(run_dir) -> bool:
    """Whether a run folder (``runs/<run>`` or shipped ``checkpoints/<run>``) was trained with
    today's recipe, judged by :func:`recipe_diff` on its stored config (config.json, else the
    weights or checkpoint file)."""
    import torch
    run_dir = Path(run_dir)
    if (run_dir / "config.json").exists():
        config = json.loads((run_dir / "config.json").read_text())
    else:
        path = next(p for p in (run_dir / "weights.pt", run_dir / "checkpoint.pt") if p.exists())
        config = torch.load(path, map_location="cpu", weights_only=True)["config"]
    record = {k: config[k] for k in ("model", "dataset", "profile", "seed")}
    return not recipe_diff(dict(record, config=config))


def collect(datasets, profile: str = "cpu", seeds=(0, 1, 2, 3, 4), bound: dict = BOUND_PARAMS,
            count: dict = COUNT_PARAMS, smoke: bool = False, evaluate: bool = True,
            reevaluate: bool = False, progress: bool = True) -> tuple[list[dict], list[str], list[str]]:
    """The records of every trained model x seed -> (records, not trained, not evaluated).

    ``evaluate``: evaluate (and write) records that are missing or stale; else list them as not
    evaluated. ``smoke``: trains seconds-long models in temporary folders and evaluates them there."""
    check_notebook_params(datasets=datasets, profile=profile, seeds=seeds)
    check_params("bound", bound)
    check_params("count", count)
    records, untrained, unevaluated = [], [], []
    for ds in datasets:
        for model in ("lavae", "baseline"):
            for seed in seeds:
                if smoke:
                    path = smoke_checkpoint(ds, model, seed)
                else:
                    try:
                        path = find_checkpoint(ds, model, profile, seed)
                    except CheckpointError:
                        untrained.append(run_name(model, ds, profile, seed))
                        continue
                if not evaluate and stale_parts(read_record(path), sha256_file(path), bound, count):
                    unevaluated.append(run_name(model, ds, profile, seed))
                    continue
                records.append(ensure_record(path, bound, count, reevaluate, progress))
    return records, untrained, unevaluated


def _group(records: list[dict]) -> list[tuple[dict, list[dict]]]:
    """Records grouped by (data set, model, recipe), in the order of the records."""
    groups: dict = {}
    for r in records:
        diff = recipe_diff(r)
        key = (r["dataset"], r["model"], json.dumps(diff, sort_keys=True))
        groups.setdefault(key, (diff, []))[1].append(r)
    return list(groups.values())


def _mean_std(values) -> tuple[float | None, float | None]:
    v = np.asarray([x for x in values if x is not None], dtype=float)
    if not len(v):
        return None, None
    return float(v.mean()), (float(v.std(ddof=1)) if len(v) > 1 else None)


def per_seed(r: dict) -> dict:
    """One run's line of Table 1's per-seed table (and of its JSON)."""
    b, c = r["bound"]["splits"], (r.get("count") or {}).get("splits", {})
    line = {"seed": r["seed"], "step": r["step"], "hardware": r["trained_on"],
            "train_wall_s": r["train_wall_s"], "weights_sha256": r["weights_sha256"],
            "bound_test": b["test"]["bound"], "bound_test7": b.get("test7", {}).get("bound"),
            "n_bound_test": b["test"]["n_images"], "n_bound_test7": b.get("test7", {}).get("n_images"),
            "eval_wall_s": r["bound"]["evaluated"]["wall_s"] + (r["count"]["evaluated"]["wall_s"] if c else 0),
            "eval_hardware": r["bound"]["evaluated"]["hardware"], "eval_commit": r["bound"]["evaluated"]["commit"]}
    for split in ("test", "test7"):
        if split in c:
            line[f"acc_{split}"], line[f"n_count_{split}"] = c[split]["accuracy"], c[split]["n_images"]
    return line


def rows_of(records: list[dict], floors: dict) -> list[dict]:
    """Table 1's rows: per data set, model and recipe, means and spreads over the seeds."""
    rows = []
    for diff, recs in _group(records):
        r0, runs = recs[0], [per_seed(r) for r in recs]
        bound, bound_std = _mean_std(x["bound_test"] for x in runs)
        row = {"dataset": r0["dataset"], "model": r0["model"], "profile": r0["profile"],
               "recipe": "current" if not diff else "earlier",
               "recipe_diff": {k: list(v) for k, v in diff.items()},
               "seeds": [x["seed"] for x in runs], "bound": bound, "bound_std": bound_std,
               "bound_test7": _mean_std(x["bound_test7"] for x in runs)[0],
               "steps": sorted({x["step"] for x in runs}), "hardware": sorted({x["hardware"] for x in runs}),
               "train_minutes": [round(x["train_wall_s"] / 60, 1) for x in runs],
               "floor": floors.get(r0["dataset"]), "k": r0["bound"]["params"]["k"],
               "paper": PAPER_TABLE1[r0["dataset"]][r0["model"]],
               "n_bound_test": runs[0]["n_bound_test"], "n_bound_test7": runs[0]["n_bound_test7"]}
        if r0["model"] == "lavae":
            for split in ("test", "test7"):
                row[f"acc_{split}"], row[f"acc_{split}_std"] = _mean_std(x.get(f"acc_{split}") for x in runs)
            row["n_count"] = runs[0].get("n_count_test")
        row["per_seed"] = runs
        rows.append(row)
    return rows


def floors_of(datasets, profile: str, n_images: int, smoke: bool = False, progress: bool = True) -> dict:
    """The data floor (``floor.py``) of each data set on the first ``n_images`` test images (the
    bound's images)."""
    out = {}
    for ds in datasets:
        cfg = make_config("smoke" if smoke else profile, ds, "lavae")
        out[ds] = data_floor(load_split(cfg, "test", n_images, progress=False), progress=progress)["floor"]
    return out


def table1(datasets=DATASETS, profile: str = "cpu", seeds=(0, 1, 2, 3, 4), bound: dict = BOUND_PARAMS,
           count: dict = COUNT_PARAMS, smoke: bool = False, evaluate: bool = True,
           reevaluate: bool = False, progress: bool = True) -> dict:
    """Table 1 -> {"rows", "records", "missing", "unevaluated", "markdown"}; see :func:`collect`.
    Smoke mode uses ``SMOKE_BOUND``/``SMOKE_COUNT`` unless other parameters are given."""
    if smoke:
        bound = SMOKE_BOUND if bound is BOUND_PARAMS else bound
        count = SMOKE_COUNT if count is COUNT_PARAMS else count
    records, missing, unevaluated = collect(datasets, profile, seeds, bound, count, smoke, evaluate,
                                            reevaluate, progress)
    floors = floors_of(sorted({r["dataset"] for r in records}), profile, bound["images"]["test"], smoke,
                       progress)
    rows = rows_of(records, floors)
    return {"rows": rows, "records": records, "missing": missing, "unevaluated": unevaluated,
            "markdown": table1_markdown(rows, missing, unevaluated)}


def _pct(row: dict, key: str) -> str:
    """A Table 1 accuracy cell: mean % (± std over seeds when there are several), or a dash."""
    if row.get(key) is None:
        return "—"
    sd = row.get(f"{key}_std")
    return f"{100 * row[key]:.2f}%" + (f" ± {100 * sd:.2f}" if sd is not None else "")


def _num(x, fmt: str = ".1f") -> str:
    return "—" if x is None else format(x, fmt)


def table1_markdown(rows, missing=(), unevaluated=()) -> str:
    """Table 1 as Markdown, ours beside the paper's; earlier recipes marked and explained."""
    head = ("| data set | model | recipe | -log p(x) <= (ours) | paper | floor | -log p(x) <=, 7 objects | "
            "n acc. 0-3 | n acc. 7 | paper n acc. | seeds | steps | train min | hardware |\n"
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
    lines, notes = [], []
    for r in rows:
        recipe = r["profile"]
        if r["recipe"] != "current":
            notes.append(r)
            recipe += f", earlier †{len(notes)}"
        std = f" ± {r['bound_std']:.1f}" if r["bound_std"] is not None else ""
        pm, ps, pacc = r["paper"]
        lines.append(f"| {r['dataset']} | {r['model']} | {recipe} | {r['bound']:.1f}{std} | {pm} ± {ps} | "
                     f"{_num(r['floor'])} | {_num(r['bound_test7'])} | {_pct(r, 'acc_test')} | "
                     f"{_pct(r, 'acc_test7')} | {pacc or '—'} | {', '.join(map(str, r['seeds']))} | "
                     f"{', '.join(map(str, r['steps']))} | {', '.join(map(str, r['train_minutes']))} | "
                     f"{'; '.join(r['hardware'])} |")
    if rows:
        r = rows[0]
        n_count = next((x["n_count"] for x in rows if x.get("n_count")), None)
        counted = f"count accuracy over {n_count} images per split; " if n_count else ""
        lines.append(f"\nBound: K = {r['k']} importance samples, mean over the first {r['n_bound_test']} test "
                     f"images ({r['n_bound_test7']} for 7 objects); {counted}± is the standard deviation over "
                     "seeds; floor: "
                     "-log p(x) of the generating process on the bound's test images. Each number comes "
                     "from the checkpoint's evaluation record (checkpoints/<run>/eval.json).")
    for i, r in enumerate(notes, 1):
        diff = ", ".join(f"{k} = {old} (today: {new})" for k, (old, new) in r["recipe_diff"].items())
        lines.append(f"\n†{i} Trained with an earlier `{r['profile']}` recipe: {diff}.")
    if missing:
        lines.append("\nNo shipped checkpoint (not trained with this profile, or not shipped): "
                     f"{', '.join(missing)}.")
    if unevaluated:
        lines.append(f"\nNo up-to-date evaluation record yet: {', '.join(unevaluated)}.")
    return head + "\n".join(lines)


def per_seed_markdown(rows) -> str:
    """The runs behind Table 1, one line per seed: where it was trained, for how long, its bounds
    and (LAVAE) count accuracies. ``rows`` as :func:`table1` returns them (or its JSON file)."""
    out = ["| data set | model | recipe | seed | steps | trained on | train min | -log p(x) <= | 7 objects | "
           "n acc. 0-3 | n acc. 7 |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        for r in row["per_seed"]:
            acc = [f"{100 * r[k]:.2f}%" if r.get(k) is not None else "—" for k in ("acc_test", "acc_test7")]
            out.append(f"| {row['dataset']} | {row['model']} | {row.get('recipe', 'current')} | {r['seed']} | "
                       f"{r['step']} | {r['hardware'].split(',')[0]} | {r['train_wall_s'] / 60:.1f} | "
                       f"{_num(r['bound_test'])} | {_num(r['bound_test7'])} | {acc[0]} | {acc[1]} |")
    return "\n".join(out)


def paper_runs(folder=REPO_ROOT / "gpu_runs") -> list[dict]:
    """The ``paper``-profile runs advanced one GPU lease at a time (``gpu_runs/<run>/``, issue 9), one
    line each from its latest evaluation (``eval.json``, written by ``scripts/gpu_lease.sh``),
    finished or not: Table 1's paper-scale rows as they grow."""
    rows = []
    for path in sorted(Path(folder).glob("*/eval.json")):
        r = json.loads(path.read_text())
        b, c = r["bound"]["splits"], (r.get("count") or {}).get("splits", {})
        run = path.parent
        rows.append({"run": run.name, "dataset": r["dataset"], "model": r["model"], "seed": r["seed"],
                     "step": r["step"], "steps": r["config"]["steps"],
                     "finished": (run / "finished").exists(),
                     "resumable": (run / "checkpoint.pt").exists(),
                     "train_minutes": round(r["train_wall_s"] / 60, 1), "hardware": r["trained_on"],
                     "k": r["bound"]["params"]["k"], "bound_test": b["test"]["bound"],
                     "bound_test7": b.get("test7", {}).get("bound"),
                     "acc_test": c.get("test", {}).get("accuracy"),
                     "acc_test7": c.get("test7", {}).get("accuracy"),
                     "paper": PAPER_TABLE1[r["dataset"]][r["model"]]})
    return sorted(rows, key=lambda x: (DATASETS.index(x["dataset"]), x["model"] != "lavae", x["seed"]))


def paper_runs_markdown(rows) -> str:
    """:func:`paper_runs` as Markdown, beside the paper's numbers; "" when there is none."""
    if not rows:
        return ""
    out = ["| data set | model | state | -log p(x) <= (ours) | paper | 7 objects | n acc. 0-3 | n acc. 7 | "
           "paper n acc. | train min | trained on |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        state = ("finished" if r["finished"] else f"step {r['step']:,} of {r['steps']:,}"
                 + ("" if r["resumable"] else " (state not kept)"))
        acc = [f"{100 * r[k]:.2f}%" if r[k] is not None else "—" for k in ("acc_test", "acc_test7")]
        pm, ps, pacc = r["paper"]
        out.append(f"| {r['dataset']} | {r['model']} | {state} | {_num(r['bound_test'])} | {pm} ± {ps} | "
                   f"{_num(r['bound_test7'])} | {acc[0]} | {acc[1]} | {pacc or '—'} | {r['train_minutes']} | "
                   f"{r['hardware'].split(',')[0]} |")
    out.append(f"\n`paper` profile (Appendix B), seed {rows[0]['seed']}, K = {rows[0]['k']}; a run in "
               "progress is evaluated as it stands (during LAVAE's 60k-step warm-up n is forced to 1 in "
               "training, so its counts and bound mean little yet). State and history: gpu_runs/README.md.")
    return "\n".join(out)


def count_curves(records, split: str = "test0-10") -> dict:
    """{data set: {n objects: [count accuracy of each seed]}} from the records' count parts."""
    curves: dict = {}
    for r in records:
        part = ((r.get("count") or {}).get("splits") or {}).get(split)
        if part:
            for n, (acc, _) in part["per_count"].items():
                curves.setdefault(r["dataset"], {}).setdefault(int(n), []).append(acc)
    return curves


def write_results(res: dict, profile: str, folder=REPO_ROOT / "results") -> list[Path]:
    """results/table1_<profile>.md, _seeds.md and .json; and results/table1_paper_runs.md, the
    ``paper`` runs of gpu_runs/ as they stand (:func:`paper_runs`), when there are any."""
    folder = Path(folder)
    folder.mkdir(exist_ok=True)
    out = [folder / f"table1_{profile}.md", folder / f"table1_{profile}_seeds.md", folder / f"table1_{profile}.json"]
    out[0].write_text(res["markdown"] + "\n")
    out[1].write_text(per_seed_markdown(res["rows"]) + "\n")
    out[2].write_text(json.dumps(res["rows"], indent=1) + "\n")
    paper = paper_runs_markdown(paper_runs())
    if paper:
        out.append(folder / "table1_paper_runs.md")
        out[-1].write_text(paper + "\n")
    return out


def main(argv=None) -> None:
    prog = "python -m lavae_core.table1"
    p = Parser(prog=prog, description="Table 1 from the evaluation records of the trained models; "
                                            "writes results/table1_<profile>.md, _seeds.md and .json.")
    p.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=DATASETS)
    p.add_argument("--profile", default="cpu", choices=PROFILES)
    p.add_argument("--seeds", nargs="+", type=non_negative_int, default=[0, 1, 2, 3, 4])
    p.add_argument("--no-evaluate", action="store_true",
                   help="list checkpoints without an up-to-date record instead of evaluating them")
    p.add_argument("--reevaluate", action="store_true", help="recompute every record")
    p.add_argument("--print-only", action="store_true", help="print the table, write nothing to results/")
    a = p.parse_args(argv)
    try:
        res = table1(a.datasets, a.profile, a.seeds, evaluate=not a.no_evaluate, reevaluate=a.reevaluate)
    except (ValueError, CheckpointError, MNISTError) as e:
        fail(prog, e)
    print(res["markdown"])
    if not a.print_only:
        print("wrote", ", ".join(str(x) for x in write_results(res, a.profile)))


if __name__ == "__main__":
    main()

"""Committed evaluation records: ``checkpoints/<run>/eval.json`` beside each shipped ``weights.pt``.

A record holds Table 1's numbers for one checkpoint (paper Section 3): the bound part and, for
LAVAE, the count part (see ``evaluate.py``), each with the parameters it was computed with and
where, when and by which commit it was computed, plus the sha256 of the weights file. A record is
reused only while that hash and a part's parameters match the request; anything else is evaluated
again, part by part. ``python -m lavae_core.records`` (run by run_all.sh) brings every shipped
checkpoint's record up to date; ``--reevaluate`` recomputes them all.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import time
from pathlib import Path

from tqdm.auto import tqdm

from .checkpoint import CHECKPOINTS, CheckpointError, load_checkpoint
from .cli import Parser, fail
from .evaluate import BOUND_PARAMS, COUNT_PARAMS, bound_part, check_params, count_part, describe
from .mnist import MNISTError

RECORD = "eval.json"
# Measured cost of a record with Table 1's parameters, 1 thread of the 2-core Xeon (seconds); only
# for the progress bar's ETA.
COST_S = {"baseline": 165.0, "lavae": 450.0}


def sha256_file(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def record_path(weights) -> Path:
    return Path(weights).parent / RECORD


def read_record(weights) -> dict | None:
    """The record beside ``weights``, or None when there is none (or it cannot be read)."""
    path = record_path(weights)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        print(f"[records] cannot read {path} ({e}); evaluating again", file=sys.stderr)
        return None


def stale_parts(record: dict | None, sha: str, bound: dict, count: dict) -> list[str]:
    """The parts of ``record`` that do not fit the weights' hash ``sha`` and the parameters."""
    if record is None or record.get("weights_sha256") != sha:
        return ["bound", "count"]
    out = [] if (record.get("bound") or {}).get("params") == bound else ["bound"]
    if record.get("model") == "lavae" and (record.get("count") or {}).get("params") != count:
        out.append("count")
    return out


def dumps(record: dict) -> str:
    """JSON with one key a line but every list of numbers on one line (readable diffs)."""
    text = json.dumps(record, indent=1)
    return re.sub(r"\[\s+([-+0-9.eE,\s]+?)\s+\]",
                  lambda m: "[" + ", ".join(v.strip() for v in m.group(1).split(",")) + "]", text)


def write_record(weights, record: dict) -> Path:
    path = record_path(weights)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(dumps(record) + "\n")
    os.replace(tmp, path)
    return path


def ensure_record(weights, bound: dict = BOUND_PARAMS, count: dict = COUNT_PARAMS,
                  reevaluate: bool = False, progress: bool = True, device: str | None = None) -> dict:
    """The up-to-date record of the checkpoint file ``weights``: the committed one where its hash
    and parameters match, else evaluated (only the parts that differ) and written beside it."""
    check_params("bound", bound)
    check_params("count", count)
    sha = sha256_file(weights)
    record = None if reevaluate else read_record(weights)
    todo = stale_parts(record, sha, bound, count)
    if not todo:
        return record
    model, cfg, ckpt = load_checkpoint(weights, device)
    if record is None or record.get("weights_sha256") != sha:
        record = {"run": Path(weights).parent.name, "weights": Path(weights).name,
                  "weights_sha256": sha, **describe(cfg, ckpt), "bound": None, "count": None}
    if "bound" in todo:
        record["bound"] = bound_part(model, cfg, bound, progress)
    if "count" in todo and cfg.model == "lavae":
        record["count"] = count_part(model, cfg, count, progress)
    write_record(weights, record)
    return json.loads(dumps(record))   # as read back from disk (JSON keys are strings)


def shipped(folder=CHECKPOINTS, only=()) -> list[Path]:
    """Every shipped weights file, baselines first (the cheap ones), then LAVAE, each seed by seed
    (so that a partial pass covers every data set); ``only``: keep runs whose name contains one of
    these strings."""
    def order(p):
        name = p.parent.name
        return not name.startswith("baseline"), name.rsplit("_s", 1)[-1].zfill(4), name
    paths = sorted(Path(folder).glob("*/weights.pt"), key=order)
    return [p for p in paths if not only or any(s in p.parent.name for s in only)]


def ensure_all(paths, bound: dict = BOUND_PARAMS, count: dict = COUNT_PARAMS, reevaluate: bool = False,
               device: str | None = None) -> dict:
    """:func:`ensure_record` for every path: the up-to-date records are reused, the others evaluated
    under a progress bar whose ETA weighs each by its measured cost (``COST_S``). Returns
    {path: record}."""
    stale = [p for p in paths if reevaluate or stale_parts(read_record(p), sha256_file(p), bound, count)]
    out = {p: read_record(p) for p in paths if p not in stale}
    print(f"[records] {len(out)} of {len(paths)} records up to date, reused; {len(stale)} to evaluate",
          flush=True)
    cost = {p: COST_S["lavae" if p.parent.name.startswith("lavae") else "baseline"] for p in stale}
    with tqdm(total=round(sum(cost.values())), unit="s", desc="evaluation records", file=sys.stdout,
              bar_format="{desc}: {percentage:3.0f}%|{bar:30}| {n_fmt}/{total_fmt} est. s "
                         "[{elapsed}<{remaining}]", disable=not stale) as bar:
        for p in stale:
            t0 = time.perf_counter()
            out[p] = ensure_record(p, bound, count, reevaluate, progress=False, device=device)
            bar.update(round(cost[p]))
            tqdm.write(f"[records] {p.parent.name}: evaluated in {time.perf_counter() - t0:.0f} s",
                       file=sys.stdout)
    return {p: out[p] for p in paths}


def main(argv=None) -> None:
    prog = "python -m lavae_core.records"
    p = Parser(prog=prog, description="Bring the evaluation record (checkpoints/<run>/eval.json) of every "
                                      "shipped checkpoint up to date: reuse those whose weights hash and "
                                      "parameters match, evaluate the others.")
    p.add_argument("--reevaluate", action="store_true", help="recompute every record")
    p.add_argument("--only", nargs="+", default=[], metavar="TEXT",
                   help="only runs whose name contains one of these, e.g. --only lavae_multi-dsprites")
    p.add_argument("--folder", default=str(CHECKPOINTS), help="where the shipped runs are")
    p.add_argument("--device", help="default: CUDA when available, else the CPU")
    a = p.parse_args(argv)
    paths = shipped(a.folder, a.only)
    if not paths:
        fail(prog, f"no shipped weights.pt under {a.folder}" + (f" matching {' '.join(a.only)}" if a.only else ""))
    try:
        ensure_all(paths, reevaluate=a.reevaluate, device=a.device)
    except (ValueError, CheckpointError, MNISTError) as e:
        fail(prog, e)


if __name__ == "__main__":
    main()

"""Paired comparison of two evaluation records (``eval.json``, see ``evaluate.py``).

Two models evaluated with the same bound parameters (K, seed, images) see the same test images and,
image for image, samples drawn from the same RNG streams, so their per-image bounds pair up. The
difference of two bounds averaged over images then has a much smaller standard error than either
bound's own (the images' spread cancels): the mean and standard error of B - A per image, and the
share of images on which B is lower. This is how the results' "paired" rows are computed.

    python -m lavae_core.compare checkpoints/lavae_multi-mnist-1k_cpu_s1 runs/score/s1_eval.json
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from .cli import Parser, fail
from .records import RECORD


def load_record(path) -> dict:
    """An evaluation record from a JSON file or a folder holding ``eval.json``."""
    p = Path(path)
    if p.is_dir():
        p = p / RECORD
    try:
        rec = json.loads(p.read_text())
    except FileNotFoundError:
        raise ValueError(f"no evaluation record at {p}") from None
    except (OSError, ValueError) as e:
        raise ValueError(f"cannot read {p} as an evaluation record ({e})") from None
    if not isinstance(rec, dict) or not isinstance(rec.get("bound"), dict):
        raise ValueError(f"{p} holds no bound part (is it an eval.json?)")
    return rec


def paired_difference(a: dict, b: dict) -> dict:
    """Per split shared by the two records' bound parts: {"n", "a", "b", "diff", "stderr",
    "b_lower"}: the mean bounds, the mean of b - a per image and its standard error, and the share
    of images where b's bound is lower. Raises ValueError when the records were not computed with
    the same K, seed and chunking, or on different data sets (then their images do not pair up)."""
    pa, pb = a["bound"]["params"], b["bound"]["params"]
    for key in ("k", "seed", "chunk"):
        if pa.get(key) != pb.get(key):
            raise ValueError(f"the records differ in the bound's {key} ({pa.get(key)} vs {pb.get(key)}): "
                             "their samples do not pair up")
    if a.get("dataset") != b.get("dataset"):
        raise ValueError(f"the records are on different data sets ({a.get('dataset')} vs {b.get('dataset')})")
    out = {}
    for split in a["bound"]["splits"]:
        if split not in b["bound"]["splits"]:
            continue
        xa = np.asarray(a["bound"]["splits"][split]["per_image"], dtype=np.float64)
        xb = np.asarray(b["bound"]["splits"][split]["per_image"], dtype=np.float64)
        n = min(len(xa), len(xb))           # the first n images are the same in both
        if n < 2:
            continue
        d = xb[:n] - xa[:n]
        out[split] = {"n": n, "a": float(xa[:n].mean()), "b": float(xb[:n].mean()),
                      "diff": float(d.mean()), "stderr": float(d.std(ddof=1) / math.sqrt(n)),
                      "b_lower": float((d < 0).mean())}
    if not out:
        raise ValueError("the records share no split with at least 2 per-image bounds")
    return out


def main(argv: list[str] | None = None) -> None:
    prog = "python -m lavae_core.compare"
    p = Parser(prog=prog, description="Paired comparison of two evaluation records: the mean and standard "
                                      "error of B - A per test image (same images and samples).")
    p.add_argument("a", help="record A: an eval.json or a folder holding one")
    p.add_argument("b", help="record B: an eval.json or a folder holding one")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    args = p.parse_args(argv)
    try:
        res = paired_difference(load_record(args.a), load_record(args.b))
    except ValueError as e:
        fail(prog, e)
    if args.json:
        print(json.dumps(res, indent=1))
        return
    print(f"A = {args.a}\nB = {args.b}")
    print("| split | images | bound A | bound B | B - A, paired | B lower on |")
    print("|---|---|---|---|---|---|")
    for split, r in res.items():
        print(f"| {split} | {r['n']} | {r['a']:.1f} | {r['b']:.1f} | {r['diff']:+.2f} ± {r['stderr']:.2f} "
              f"| {100 * r['b_lower']:.0f} % |")


if __name__ == "__main__":
    main()

"""Where are the maxima that f_count counts too many? (issue 8, multi-dSprites over-counts)

For each LAVAE checkpoint and each of its data set's test splits (the first ``--images``): count
accuracy, how many images are counted too high and too low, and every counted maximum not within
``--near`` px of a true centre ("extra"), split by :func:`lavae_core.diagnostics.maxima_kinds` into
those within ``--border`` px of the image's edge (no test object of any data set is centred there:
multi-dSprites' centres lie in rows and columns 2-61) and the rest. The last column counts the
over-counted images whose extra maxima are all on the border. Only the location net runs.

    python scripts/where_maxima.py checkpoints/lavae_multi-dsprites_cpu_s*/weights.pt --images 2000
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch
from tqdm.auto import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from lavae_core.checkpoint import lavae_for_command  # noqa: E402
from lavae_core.cli import Parser, positive_int  # noqa: E402
from lavae_core.datasets import as_float, load  # noqa: E402
from lavae_core.diagnostics import maxima_kinds  # noqa: E402

HEADER = ("| checkpoint | split | images | count acc. | counted too high / too low | extra maxima: "
          "border / other | over-counts only from the border |")


@torch.no_grad()
def where(model, data, n: int, near: int, border: int, batch_size: int = 500) -> dict:
    """The row of one checkpoint on the first ``n`` images of ``data`` (a MultiObjectData)."""
    model.eval()
    pred, kinds = [], []
    for i in range(0, n, batch_size):
        j = min(i + batch_size, n)
        counts, peaks = model.count(model.infer_loc(as_float(data.images[i:j])))
        pred.append(counts)
        kinds.append(maxima_kinds(peaks, data.positions[i:j], near, border))
    pred, kinds = torch.cat(pred).numpy(), torch.cat(kinds)
    true = data.counts[:n]
    on_border = (kinds == 1).flatten(1).sum(1).numpy()
    other = (kinds == 2).flatten(1).sum(1).numpy()
    over = pred > true
    return {"images": n, "accuracy": float((pred == true).mean()), "over": int(over.sum()),
            "under": int((pred < true).sum()), "border": int(on_border.sum()), "other": int(other.sum()),
            "border_only": int((over & (other == 0) & (on_border > 0)).sum())}


def main(argv=None) -> None:
    prog = "python scripts/where_maxima.py"
    p = Parser(prog=prog, description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoints", nargs="+")
    p.add_argument("--images", type=positive_int, default=2000, help="first images of each test split")
    p.add_argument("--splits", nargs="+", default=["test", "test7"], choices=["test", "test7", "test0-10"])
    p.add_argument("--near", type=positive_int, default=6, help="px from a true centre that make a maximum an object's")
    p.add_argument("--border", type=positive_int, default=2, help="px from the edge that make a maximum a border one")
    p.add_argument("--threads", type=positive_int, default=None, help="torch CPU threads")
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    print(HEADER)
    print("|---|---|---|---|---|---|---|")
    cache = {}
    for path in tqdm(a.checkpoints, desc="checkpoints", leave=False):
        model, cfg, _ = lavae_for_command(prog, path)
        for split in a.splits:
            if (cfg.dataset, split) not in cache:
                cache[cfg.dataset, split] = load(cfg.dataset, split, progress=False)
            data = cache[cfg.dataset, split]
            r = where(model, data, min(a.images, len(data)), a.near, a.border)
            print(f"| {path} | {split} | {r['images']} | {100 * r['accuracy']:.2f} % | {r['over']} / "
                  f"{r['under']} | {r['border']} / {r['other']} | {r['border_only']} |", flush=True)


if __name__ == "__main__":
    main()

"""Which objects does f_count miss, and why? (issue 8)

For each LAVAE checkpoint, on held-out images of its data set (lavae_core.counting.held_out, as
scripts/count_threshold.py: 0-3 objects, seed 100, and 7 objects, seed 101), with f_count as the
model trained with (its ``count_threshold`` and ``count_window``): the count accuracy, the share of
objects without a counted maximum in their box (and with more than one), why each missed object
was missed (lavae_core.diagnostics.missed_objects: h_loc under the threshold in its whole box, or
its highest pixel under a higher value of f_count's window in another object's box or in no box),
how many missed ones have a peak of their own (a 3x3 maximum above the threshold near the centre),
and the miss rate by each object attribute of the data set (multi-dSprites: shape, scale, colour;
multi-MNIST: label). Only the location net runs.

    python scripts/missed_objects.py checkpoints/lavae_multi-dsprites_cpu_s*/weights.pt
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from lavae_core.checkpoint import lavae_for_command  # noqa: E402
from lavae_core.cli import Parser, positive_int  # noqa: E402
from lavae_core.counting import held_out  # noqa: E402
from lavae_core.datasets import as_float  # noqa: E402
from lavae_core.diagnostics import MISS_REASONS, missed_objects  # noqa: E402

ATTRIBUTES = {"multi-dsprites": ("shape", "scale", "color"), "multi-mnist-1k": ("label",),
              "multi-mnist-10k": ("label",)}


@torch.no_grad()
def reasons_for(model, data, threshold: float, batch_size: int = 250) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(predicted counts (N,), missed_objects' dict over all present objects of ``data``), with
    f_count's ``threshold`` on h_loc as the model trained with it."""
    model.eval()
    cfg, counts, parts = model.cfg, [], []
    for i in range(0, len(data.counts), batch_size):
        h = model.infer_loc(as_float(data.images[i:i + batch_size]))
        counts.append(model.count(h)[0].numpy())
        parts.append(missed_objects(h, data.boxes[i:i + batch_size], cfg.count_window, threshold,
                                    data.positions[i:i + batch_size]))
    return np.concatenate(counts), {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def main(argv=None) -> None:
    prog = "python scripts/missed_objects.py"
    p = Parser(prog=prog, description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoints", nargs="+")
    p.add_argument("--images", type=positive_int, default=1000, help="held-out images per set")
    a = p.parse_args(argv)
    print("| checkpoint | held-out set | count acc. | objects missed | of which: " +
          " / ".join(MISS_REASONS[1:]) + " | missed: median box max (threshold) | missed with a peak of "
          "their own (3x3, within 2 px of the centre) | objects with > 1 "
          "maximum | miss rate by attribute |")
    print("|---|---|---|---|---|---|---|---|---|")
    for path in a.checkpoints:
        model, cfg, _ = lavae_for_command(prog, path)
        thr = cfg.count_threshold * cfg.gamma
        for name, data in held_out(cfg.dataset, a.images).items():
            pred, r = reasons_for(model, data, thr)
            missed = r["reason"] > 0
            why = " / ".join(f"{100 * (r['reason'][missed] == i).mean():.0f} %" if missed.any() else "-"
                             for i in range(1, len(MISS_REASONS)))
            median_max = f"{np.median(r['box_max'][missed]):.1f}" if missed.any() else "-"
            own = f"{100 * r['own_peak'][missed].mean():.0f} %" if missed.any() else "-"
            by_attr = []
            for attr in ATTRIBUTES.get(cfg.dataset, ()):
                v = data.attrs[attr][data.attrs[attr] >= 0]    # present objects, in missed_objects' order
                by_attr.append(f"{attr} " + " ".join(f"{int(u)}: {100 * missed[v == u].mean():.1f}"
                                                     for u in np.unique(v)))
            print(f"| {path} | {name} ({a.images}) | {100 * (pred == data.counts).mean():.1f} % | "
                  f"{100 * missed.mean():.2f} % | {why} | {median_max} ({thr:g}) | {own} | "
                  f"{100 * (r['peaks'] > 1).mean():.2f} % | "
                  f"{'; '.join(by_attr)} |")


if __name__ == "__main__":
    main()

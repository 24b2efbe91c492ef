"""Which of h_loc's counted maxima does the training loss still shape? (issue 8, multi-dSprites)

f_count (App. B) counts every local maximum of h_loc above its threshold, and sets n in training.
This script takes one batch of test images, runs the training loss (``loss_terms``, after the
warm-up: aux weight 0, ``--tau``), and reads d loss / d h_loc at each counted maximum. A maximum
within ``--near`` px (in both axes) of a true object centre is "real", the others "spurious". The
loss reaches h_loc only through q = softmax(h_loc) (Eq. 8, 11), whose gradient at a pixel scales
with q there; so a low maximum that no draw lands on gets almost none, and its height rides on
the shared weights of the location net rather than on the bound.

    python scripts/maxima_gradient.py checkpoints/lavae_multi-dsprites_cpu_s0/weights.pt
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from lavae_core.checkpoint import lavae_for_command  # noqa: E402
from lavae_core.cli import Parser, non_negative_int, positive_int, positive_number  # noqa: E402
from lavae_core.datasets import as_float, load  # noqa: E402
from lavae_core.diagnostics import maxima_kinds  # noqa: E402


def maxima_gradients(model, x: torch.Tensor, positions, tau: float = 0.02, near: int = 6):
    """Rows (image, row, col, h_loc, |d loss / d h_loc|, real) for every maximum f_count counts in
    ``x``; ``positions`` (N, M, 2) are the true object centres (-1 for absent slots); "real" is
    :func:`lavae_core.diagnostics.maxima_kinds`' "object"."""
    store = {}
    own = model._h_loc

    def keep(xx):
        h = own(xx)
        h.retain_grad()
        store["h"] = h
        return h

    model._h_loc = keep
    try:
        model.loss_terms(x, tau=tau)["loss"].sum().backward()
    finally:
        del model._h_loc   # back to the class's method
    h, g = store["h"].detach(), store["h"].grad.abs()
    _, peaks = model.count(h)
    kinds = maxima_kinds(peaks, positions, near=near)
    return [(i, r, c, float(h[i, r, c]), float(g[i, r, c]), bool(kinds[i, r, c] == 0))
            for i, r, c in peaks.nonzero().tolist()]


def main(argv=None) -> None:
    prog = "python scripts/maxima_gradient.py"
    p = Parser(prog=prog, description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoints", nargs="+")
    p.add_argument("--images", type=positive_int, default=64, help="test images (one batch)")
    p.add_argument("--tau", type=positive_number, default=0.02, help="Gumbel-softmax temperature")
    p.add_argument("--near", type=positive_int, default=6, help="px from a true centre that make a maximum real")
    p.add_argument("--seed", type=non_negative_int, default=0)
    a = p.parse_args(argv)
    print("| checkpoint | step | real maxima: n, mean h_loc, median abs. gradient | "
          "spurious maxima: n, mean h_loc, median (max) abs. gradient |")
    print("|---|---|---|---|")
    test = {}   # data set -> its test split, read once for all checkpoints
    for path in a.checkpoints:
        model, cfg, ckpt = lavae_for_command(prog, path)
        model.train()   # the training loss, batch statistics as in training
        torch.manual_seed(a.seed)
        if cfg.dataset not in test:
            test[cfg.dataset] = load(cfg.dataset, "test", progress=False)
        data = test[cfg.dataset]
        n = min(a.images, len(data))
        rows = maxima_gradients(model, as_float(data.images[:n]), data.positions[:n], a.tau,
                                a.near)
        cells = []
        for want in (True, False):
            sel = np.array([(h, g) for *_, h, g, real in rows if real == want]).reshape(-1, 2)
            if len(sel) == 0:
                cells.append("0")
                continue
            extra = f" ({sel[:, 1].max():.3g})" if not want else ""
            cells.append(f"{len(sel)}, {sel[:, 0].mean():.1f}, {np.median(sel[:, 1]):.3g}{extra}")
        print(f"| {path} | {ckpt['step']} | {cells[0]} | {cells[1]} |")


if __name__ == "__main__":
    main()

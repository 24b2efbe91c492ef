"""The data set's own -log p(x): the floor beside the models' bounds in Table 1.

The generator (``datasets.py``, paper Sections 3.1-3.2) draws n uniformly from its range, then for
each object slot in turn a box position uniformly among the positions that do not intersect the
boxes placed before it, and the object's appearance independently (an MNIST pool index; or a
dSprites shape, scale, angle and colour). So for an image with boxes b_1..b_n

    p(x) = p(n) * sum over the n! slot orders s of prod_i 1 / V_i(s) * prod_j p(appearance_j)

where V_i(s) is the number of free positions for the i-th box of the order. The sum over orders is
estimated by Monte Carlo (all orders when n <= 3). Other decompositions that render the same pixels
(a digit with empty border rows could sit one pixel higher, a rotated square equals another angle)
are counted per object where that is cheap: MNIST digit shifts inside their empty margins, and
dSprites masks that several (shape, scale, angle) triples render identically. What is left out
(two pool digits that binarise alike, shifts blocked by a neighbour) makes p(x) slightly larger, so
the floor printed is a close upper bound on the exact -log p(x) of the data.
"""
from __future__ import annotations

import math
from itertools import permutations

import numpy as np
from tqdm.auto import tqdm

from .datasets import (COLORS, N_ANGLES, POOL_SIZES, SCALES, MultiObjectData, _free_positions,
                       dsprite_table, mnist_pool)


def free_positions(boxes: np.ndarray, order: np.ndarray) -> np.ndarray:
    """log prod_i 1 / V_i for boxes placed in ``order``: boxes (N, n, 4) as (top, left, h, w),
    order (n,) -> (N,) log-probability of that ordered placement. Vectorised over images; the free
    positions are counted by the generator's own ``datasets._free_positions``."""
    b = boxes[:, order]
    tl, hw, rows = b[..., :2], b[..., 2:], np.arange(len(boxes))
    logp = np.zeros(len(boxes))
    for i in range(len(order)):
        valid = _free_positions(tl, hw, i, rows, hw[:, i, 0], hw[:, i, 1])
        logp -= np.log(valid.sum((1, 2)))
    return logp


def placement_log_prob(boxes: np.ndarray, n: int, n_orders: int = 24, seed: int = 0) -> np.ndarray:
    """log sum over slot orders of prod 1/V_i for images that all hold ``n`` boxes: (N,)."""
    if n == 0:
        return np.zeros(len(boxes))
    rng = np.random.default_rng(seed)
    if math.factorial(n) <= n_orders:
        orders = [np.array(p) for p in permutations(range(n))]
        scale = 0.0
    else:
        orders = [rng.permutation(n) for _ in range(n_orders)]
        scale = math.lgamma(n + 1) - math.log(n_orders)  # mean over sampled orders times n!
    lp = np.stack([free_positions(boxes[:, :n], o) for o in orders])
    m = lp.max(0)
    return m + np.log(np.exp(lp - m).sum(0)) + scale


def mnist_shift_log_multiplicity(sprites: np.ndarray, boxes: np.ndarray, size: int = 64) -> np.ndarray:
    """log of the number of box positions that render the same pixels for each digit: shifts by up
    to its empty margin rows/columns that stay on the canvas. sprites (M, 15, 15) {0,1}; boxes of
    the objects (N_obj, 4) -> (N_obj,)."""
    rows, cols = sprites.any(2), sprites.any(1)                                   # (M, 15)
    first = lambda a: a.argmax(1)                                                 # noqa: E731
    top, bottom = first(rows), first(rows[:, ::-1])
    left, right = first(cols), first(cols[:, ::-1])
    t, l, h, w = boxes.T
    up = np.minimum(top, t)
    down = np.minimum(bottom, size - (t + h))
    lf = np.minimum(left, l)
    rt = np.minimum(right, size - (l + w))
    return np.log((up + down + 1) * (lf + rt + 1))


def appearance_log_prob(data: MultiObjectData, mnist_dir=None) -> np.ndarray:
    """log p(appearance of all objects) per image (N,), for the data floor.

    Each object's appearance is drawn independently and uniformly: a pool index (multi-MNIST) or
    (shape, scale, angle, colour) (multi-dSprites). Renderings that give the same pixels are
    counted where cheap: for a digit, shifts of its box inside its empty margin rows/columns
    (:func:`mnist_shift_log_multiplicity`); for a dSprite, the (shape, scale, angle) triples
    whose mask is identical.
    """
    present = data.boxes[..., 0] >= 0                             # (N, K)
    out = np.zeros(len(data))
    if data.name in POOL_SIZES:
        pool_size = data.params.get("pool_size", POOL_SIZES[data.name])
        sprites, _ = mnist_pool(pool_size, mnist_dir)
        d = data.attrs["digit_index"][present]
        boxes = data.boxes[present].astype(np.int64)
        lp = -math.log(pool_size) + mnist_shift_log_multiplicity(sprites[d], boxes)
    else:
        masks, hw, _ = dsprite_table()
        keys = np.concatenate([hw, masks.reshape(len(masks), -1)], 1)
        _, inverse, mult = np.unique(keys, axis=0, return_inverse=True, return_counts=True)
        same = mult[inverse.ravel()]                              # (720,) identical masks
        a = data.attrs
        sprite = ((a["shape"] * len(SCALES) + a["scale"]) * N_ANGLES + a["angle"])[present]
        lp = np.log(same[sprite] / len(masks)) - math.log(len(COLORS))
    np.add.at(out, np.nonzero(present)[0], lp)
    return out


def data_floor(data, n_orders: int = 24, progress: bool = True) -> dict:
    """-log p(x) of each image under the generating process; returns mean, stderr, per image."""
    counts = np.asarray(data.counts)
    nll = np.zeros(len(counts))
    lo, hi = data.params["n_objects"]
    nll += math.log(hi - lo + 1)
    for n in tqdm(np.unique(counts), desc="floor", disable=not progress, leave=False):
        sel = counts == n
        nll[sel] -= placement_log_prob(data.boxes[sel].astype(np.int64), int(n), n_orders)
    nll -= appearance_log_prob(data)
    return {"floor": float(nll.mean()), "stderr": float(nll.std(ddof=1) / math.sqrt(len(nll))),
            "per_image": nll, "n_images": int(len(nll))}

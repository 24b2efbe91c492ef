"""Multi-object data sets of the paper: multi-MNIST-1k/10k and multi-dSprites (Sections 3, 3.1, 3.2).

Section 3: each data set has 200k images of 64x64 pixels with 0 to 3 objects; 190k train and 10k
test images, plus a test set of 10k images with exactly 7 objects (Section 3.3 uses it to test
generalisation to more objects). We add an optional ``test0-10`` split (0..10 objects) for a
generalisation curve; it is not in the paper.

How an image is made (both data sets):

1. the number of objects n is drawn uniformly from the inclusive range ``n_objects`` (default 0..3);
2. each object's appearance is drawn independently (below), which fixes its sprite and its box size;
3. the objects are placed one after the other, each at a top-left position drawn uniformly among
   the positions where its box lies on the canvas and does not intersect the boxes placed before
   it ("scattered at random, avoiding overlaps", Section 3.1). Boxes may touch but never share a
   pixel. Sampling is by rejection, vectorised over images (after 32 rejected rounds the few
   images left draw exactly from their free positions). If an image jams (some object has no free
   position left) its objects are redrawn with the same count: the process conditioned on success.
   This never happens with up to 3 objects; it does for 0.4% of 7-digit (0.1% of 7-dSprite)
   images and for two thirds of the tries with 10 digits;
4. the sprites are pasted onto a black canvas.

Multi-MNIST (Section 3.1): the sprite is an MNIST digit from a fixed pool, the first 1000 (``-1k``)
or 10000 (``-10k``) images of the MNIST *training* split (the pool does not depend on the seed).
Each digit is rescaled from 28x28 to 15x15 by bilinear interpolation
(``torch.nn.functional.interpolate(mode="bilinear", align_corners=False, antialias=False)`` on
values/255) and binarised by rounding. One binary channel. The box of a digit is its full 15x15
square (including empty margin rows/columns).

Multi-dSprites (Section 3.2): the sprite is a square, ellipse or triangle; scale one of
``linspace(0.6, 1.0, 6)``; orientation one of 40 angles ``linspace(0, 2 pi, 40, endpoint=False)``;
colour one of the 7 saturated RGB colours (each channel 0 or 1, not all 0), so the image has three
binary channels. Every (shape, scale, angle) triple is rasterised once into a lookup table of
19x19 binary masks (720 masks): a shape of scale s has circumradius 9.5 s pixels (so it stays
inside 19x19 at any angle; square: circumradius = half diagonal; ellipse: semi-axes 9.5 s and
4.75 s; triangle: equilateral), rendered with 8x8 supersampling per pixel and kept where at least
half the pixel is covered. The box of a dSprite is the tight bounding box of its mask (at most
19x19).

Object centre convention: an object with box top-left (t, l) and size (h, w) has centre
(t + h // 2, l + w // 2); for a 15x15 digit that is top-left + 7, the middle pixel. A model that
places an odd-sized sprite centred on a pixel (LAVAE's Eq. 4 convolution with a one-hot location)
therefore puts the box's middle pixel on the location; for even sizes the centre is the pixel just
below/right of the middle.

Determinism: images are made in chunks of :data:`CHUNK`; chunk c uses
``Generator(PCG64(SeedSequence(seed).spawn(...)[c]))``, so the same (name, n_images, n_objects, seed)
gives the same bytes, and a smaller set is a prefix of a larger one with the same seed.
"""
from __future__ import annotations

import json
import math
import os
import sys
import time
import zipfile
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from . import data_dir
from .cli import Parser, fail, non_negative_int, positive_int
from .mnist import MNISTError

__all__ = ["NAMES", "SPLITS", "MultiObjectData", "generate", "load", "cache_path", "mnist_pool",
           "dsprite_table", "dsprite_masks_centred", "load_splits", "load_split", "as_float", "count_overlaps",
           "pack_images", "unpack_images", "main"]

VERSION = 1
CANVAS = 64
CHUNK = 4096
NAMES = ("multi-mnist-1k", "multi-mnist-10k", "multi-dsprites")
POOL_SIZES = {"multi-mnist-1k": 1000, "multi-mnist-10k": 10000}
MNIST_SPRITE = 15

DSPRITE_SIZE = 19
SHAPES = ("square", "ellipse", "triangle")
SCALES = np.linspace(0.6, 1.0, 6)
N_ANGLES = 40
ANGLES = np.linspace(0.0, 2 * np.pi, N_ANGLES, endpoint=False)
#: the 7 saturated colours (index -> RGB in {0,1}); binary code of index + 1 read as (R, G, B)
COLORS = np.array([[(c >> 2) & 1, (c >> 1) & 1, c & 1] for c in range(1, 8)], np.uint8)
SUPERSAMPLE = 8

#: split -> (n_images, n_objects, seed offset). Section 3: 190k train / 10k test (0-3 objects),
#: 10k test images with 7 objects; test0-10 is ours (generalisation curve).
SPLITS = {
    "train": (190_000, (0, 3), 0),
    "test": (10_000, (0, 3), 1),
    "test7": (10_000, (7, 7), 2),
    "test0-10": (10_000, (0, 10), 3),
}
PAPER_SPLITS = ("train", "test", "test7")

MAX_ROUNDS = 32      # rejection rounds per object slot before the exact free-position fallback
MAX_ATTEMPTS = 20    # give up after placing this many times the chunk size in images
MAX_RESTARTS = 500   # ... or after this many passes over the jammed images


def _check_name(name: str) -> None:
    if name not in NAMES:
        raise ValueError(f"unknown data set {name!r}; choose one of {', '.join(NAMES)}")


# ---------------------------------------------------------------------------------------------
# Sprites
# ---------------------------------------------------------------------------------------------
@lru_cache(maxsize=4)
def _mnist_pool_cached(pool_size: int, folder: str, mnist_dir: str | None):
    import torch
    import torch.nn.functional as F

    from .mnist import load_mnist

    images, labels = load_mnist("train", mnist_dir)       # verifies (and downloads if needed)
    x = torch.from_numpy(images[:pool_size]).float().div(255.0)[:, None]
    x = F.interpolate(x, size=(MNIST_SPRITE, MNIST_SPRITE), mode="bilinear", align_corners=False,
                      antialias=False)
    sprites = x.round().clamp(0, 1)[:, 0].to(torch.uint8).numpy()
    sprites.flags.writeable = False
    lab = labels[:pool_size].copy()
    lab.flags.writeable = False
    return sprites, lab


def mnist_pool(pool_size: int, mnist_dir=None) -> tuple[np.ndarray, np.ndarray]:
    """The multi-MNIST digit pool (Section 3.1): the first ``pool_size`` MNIST training digits
    resized to 15x15 (bilinear) and binarised by rounding. Returns (sprites uint8 {0,1}
    (P, 15, 15), labels int64 (P,)), read-only, cached per process and MNIST folder."""
    from .mnist import resolve_mnist_dir

    folder, _ = resolve_mnist_dir(mnist_dir)
    return _mnist_pool_cached(int(pool_size), str(folder.resolve()),
                              None if mnist_dir is None else str(mnist_dir))


def _shape_coverage(shape: str, scale: float, angle: float, size: int = DSPRITE_SIZE,
                    ss: int = SUPERSAMPLE) -> np.ndarray:
    """Fraction of each pixel of a size x size window covered by the rotated shape."""
    sub = (np.arange(size * ss) + 0.5) / ss - size / 2            # sub-pixel centres, origin at middle
    y, x = np.meshgrid(sub, sub, indexing="ij")
    c, s = math.cos(angle), math.sin(angle)
    u, v = c * x + s * y, -s * x + c * y                          # shape frame (rotated by -angle)
    r = (size / 2) * scale                                        # circumradius: 9.5 * scale
    if shape == "square":
        a = r / math.sqrt(2)
        inside = (np.abs(u) <= a) & (np.abs(v) <= a)
    elif shape == "ellipse":
        inside = (u / r) ** 2 + (v / (r / 2)) ** 2 <= 1
    elif shape == "triangle":
        inside = np.ones_like(u, bool)
        for phi in (-np.pi / 2, np.pi / 6, 5 * np.pi / 6):         # vertex directions (apex up)
            inside &= u * math.cos(phi) + v * math.sin(phi) >= -r / 2
    else:
        raise ValueError(shape)
    return inside.reshape(size, ss, size, ss).mean((1, 3))


@lru_cache(maxsize=1)
def dsprite_table() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The 720 multi-dSprites masks (Section 3.2), index ``(shape * 6 + scale) * 40 + angle``.

    Returns (masks uint8 {0,1} (720, 19, 19) cropped to their tight box and moved to the top-left
    corner, hw int64 (720, 2) box heights/widths, offset int64 (720, 2) the crop's top-left inside
    the centred 19x19 window). Read-only, cached per process.
    """
    n = len(SHAPES) * len(SCALES) * N_ANGLES
    masks = np.zeros((n, DSPRITE_SIZE, DSPRITE_SIZE), np.uint8)
    hw = np.zeros((n, 2), np.int64)
    offset = np.zeros((n, 2), np.int64)
    for si, shape in enumerate(SHAPES):
        for ki, scale in enumerate(SCALES):
            for ai, angle in enumerate(ANGLES):
                i = (si * len(SCALES) + ki) * N_ANGLES + ai
                m = _shape_coverage(shape, float(scale), float(angle)) >= 0.5
                rows, cols = np.flatnonzero(m.any(1)), np.flatnonzero(m.any(0))
                r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
                masks[i, :r1 - r0, :c1 - c0] = m[r0:r1, c0:c1]
                hw[i] = (r1 - r0, c1 - c0)
                offset[i] = (r0, c0)
    for a in (masks, hw, offset):
        a.flags.writeable = False
    return masks, hw, offset


def dsprite_masks_centred() -> np.ndarray:
    """The 720 dSprites masks (720, 19, 19) as rendered, centred in their 19x19 window (for display;
    generation uses the top-left-aligned tight crops of :func:`dsprite_table`)."""
    masks, hw, offset = dsprite_table()
    out = np.zeros_like(masks)
    for i, ((h, w), (r, c)) in enumerate(zip(hw, offset)):
        out[i, r:r + h, c:c + w] = masks[i, :h, :w]
    return out


# ---------------------------------------------------------------------------------------------
# The data container
# ---------------------------------------------------------------------------------------------
@dataclass
class MultiObjectData:
    """Images and ground truth of a multi-object data set.

    images: uint8 {0,1} (N, C, 64, 64), C = 1 (multi-MNIST) or 3 (multi-dSprites).
    counts: int64 (N,) number of objects.
    positions: int16 (N, K, 2) object centres (row, col) = (top + h // 2, left + w // 2); -1 for
        absent slots; K = the largest count of the range.
    boxes: int16 (N, K, 4) (top, left, height, width), -1 for absent slots.
    attrs: per object (N, K) int64, -1 padded: multi-MNIST "digit_index" (in the pool), "label";
        multi-dSprites "shape", "scale", "angle", "color" (indices into SHAPES, SCALES, ANGLES,
        COLORS).
    params: generator parameters, seed and version (JSON-serialisable).
    """
    name: str
    images: np.ndarray
    counts: np.ndarray
    positions: np.ndarray
    boxes: np.ndarray
    attrs: dict = field(default_factory=dict)
    params: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.images)

    def subset(self, idx) -> "MultiObjectData":
        """The images ``idx`` (indices, slice or boolean mask) with their ground truth."""
        if isinstance(idx, slice):
            idx = np.arange(len(self))[idx]
        idx = np.atleast_1d(np.asarray(idx))
        params = dict(self.params, n_images=int(idx.sum() if idx.dtype == bool else idx.size),
                      subset=True)
        return MultiObjectData(self.name, self.images[idx], self.counts[idx], self.positions[idx],
                               self.boxes[idx], {k: v[idx] for k, v in self.attrs.items()}, params)

    @property
    def max_objects(self) -> int:
        return self.boxes.shape[1]

    def __repr__(self) -> str:
        return (f"MultiObjectData({self.name!r}, n={len(self)}, images={self.images.shape}, "
                f"n_objects={self.params.get('n_objects')}, seed={self.params.get('seed')})")


# ---------------------------------------------------------------------------------------------
# Generation
# ---------------------------------------------------------------------------------------------
def _normalise_range(n_objects) -> tuple[int, int]:
    if isinstance(n_objects, (int, np.integer)):
        lo = hi = int(n_objects)
    else:
        lo, hi = (int(v) for v in n_objects)
    if lo < 0 or hi < lo:
        raise ValueError(f"n_objects must be an inclusive range (lo, hi) with 0 <= lo <= hi, "
                         f"got {n_objects!r}")
    return lo, hi


def make_params(name: str, n_images: int, n_objects=(0, 3), seed: int = 0) -> dict:
    """The JSON-serialisable description of a generated set (stored with cached files)."""
    _check_name(name)
    lo, hi = _normalise_range(n_objects)
    p = dict(name=name, n_images=int(n_images), n_objects=[lo, hi], seed=int(seed),
             version=VERSION, canvas=CANVAS, chunk=CHUNK, placement="sequential uniform, no box overlap")
    if name in POOL_SIZES:
        p.update(pool_size=POOL_SIZES[name], pool="first MNIST training digits",
                 sprite_size=MNIST_SPRITE,
                 resize="bilinear align_corners=False antialias=False", binarise="round(x/255)")
    else:
        p.update(sprite_max=DSPRITE_SIZE, shapes=list(SHAPES), scales=[float(s) for s in SCALES],
                 n_angles=N_ANGLES, colors=COLORS.tolist(), supersample=SUPERSAMPLE)
    return p


def _check_fits(hw_all: np.ndarray, hi: int, name: str) -> None:
    """Quick necessary condition: ``hi`` disjoint boxes of the smallest size must fit the canvas."""
    h, w = int(hw_all[:, 0].min()), int(hw_all[:, 1].min())
    fit = (CANVAS // h) * (CANVAS // w)        # axis-parallel h x w boxes: at most this many
    if hi > fit:
        raise ValueError(f"{hi} objects cannot fit without overlap on a {CANVAS}x{CANVAS} canvas for "
                         f"{name} (boxes are at least {h}x{w}, so at most {fit} fit); lower n_objects")


def _free_positions(tl, hw, k, rows_img, h, w):
    """Exact top-left positions (n, 64, 64) free for slot k in images ``rows_img``."""
    ar = np.arange(CANVAS)
    valid = (ar[None, :, None] <= (CANVAS - h)[:, None, None]) & \
            (ar[None, None, :] <= (CANVAS - w)[:, None, None])
    for j in range(k):
        tj, lj = tl[rows_img, j, 0], tl[rows_img, j, 1]
        hj, wj = hw[rows_img, j, 0], hw[rows_img, j, 1]
        r = (ar[None] > (tj - h)[:, None]) & (ar[None] < (tj + hj)[:, None])
        c = (ar[None] > (lj - w)[:, None]) & (ar[None] < (lj + wj)[:, None])
        valid &= ~(r[:, :, None] & c[:, None, :])
    return valid


def _place_once(hw: np.ndarray, counts: np.ndarray, rng: np.random.Generator):
    """One sequential placement pass: top-left corners (B, K, 2) int64 (-1 absent) and a mask of
    the images that jammed (some object had no free position left)."""
    b, k_max = counts.shape[0], hw.shape[1]
    tl = np.full((b, k_max, 2), -1, np.int64)
    jammed = np.zeros(b, bool)
    for k in range(k_max):
        todo = np.flatnonzero((counts > k) & ~jammed)
        for _ in range(MAX_ROUNDS):
            if todo.size == 0:
                break
            h, w = hw[todo, k, 0], hw[todo, k, 1]
            t = rng.integers(0, CANVAS - h + 1)
            left = rng.integers(0, CANVAS - w + 1)
            clash = np.zeros(todo.size, bool)
            for j in range(k):
                tj, lj = tl[todo, j, 0], tl[todo, j, 1]
                hj, wj = hw[todo, j, 0], hw[todo, j, 1]
                clash |= (t < tj + hj) & (tj < t + h) & (left < lj + wj) & (lj < left + w)
            ok = ~clash
            tl[todo[ok], k, 0] = t[ok]
            tl[todo[ok], k, 1] = left[ok]
            todo = todo[clash]
        if todo.size:   # still unplaced: draw exactly from the free positions (or detect a jam)
            h, w = hw[todo, k, 0], hw[todo, k, 1]
            free = _free_positions(tl, hw, k, todo, h, w).reshape(todo.size, -1)
            n_free = free.sum(1)
            jam = n_free == 0
            jammed[todo[jam]] = True
            todo, free, n_free = todo[~jam], free[~jam], n_free[~jam]
            pick = (rng.random(todo.size) * n_free).astype(np.int64)
            flat = (free.cumsum(1) > pick[:, None]).argmax(1)
            tl[todo, k, 0], tl[todo, k, 1] = flat // CANVAS, flat % CANVAS
    return tl, jammed


class _Spec:
    """Sprite table and attribute sampler of one data set."""

    def __init__(self, name: str, mnist_dir=None):
        _check_name(name)
        self.name = name
        if name in POOL_SIZES:
            self.sprites, self.labels = mnist_pool(POOL_SIZES[name], mnist_dir)
            self.hw = np.full((len(self.sprites), 2), MNIST_SPRITE, np.int64)
            self.channels = 1
            self.attr_names = ("digit_index", "label")
        else:
            self.sprites, self.hw, _ = dsprite_table()
            self.channels = 3
            self.attr_names = ("shape", "scale", "angle", "color")
        self.s = self.sprites.shape[-1]
        self.pad = int(self.s - self.hw.min())          # canvas margin for windows past the box
        w = CANVAS + self.pad
        self.window = (np.arange(self.s)[:, None] * w + np.arange(self.s)[None, :]).ravel()
        self.flat_sprites = np.ascontiguousarray(self.sprites.reshape(len(self.sprites), -1))

    def sample_attrs(self, rng, shape):
        if self.channels == 1:
            d = rng.integers(0, len(self.sprites), shape)
            return {"digit_index": d, "label": self.labels[d]}, d, np.ones(shape, np.uint8)
        sh = rng.integers(0, len(SHAPES), shape)
        sc = rng.integers(0, len(SCALES), shape)
        an = rng.integers(0, N_ANGLES, shape)
        co = rng.integers(0, len(COLORS), shape)
        sprite = (sh * len(SCALES) + sc) * N_ANGLES + an
        return {"shape": sh, "scale": sc, "angle": an, "color": co}, sprite, (co + 1).astype(np.uint8)


def _generate_chunk(spec: _Spec, b: int, lo: int, hi: int, rng: np.random.Generator, out: np.ndarray):
    """Fill ``out`` (b, C, 64, 64) uint8; return ground truth arrays for the chunk.

    Counts, then appearances, then positions (sequential, uniform among free positions). An image
    whose objects do not fit (random placement jams; never with up to 3 objects, 0.4% of 7-digit
    images, 2/3 of the tries with 10 digits) is redrawn with the same count, appearances and
    positions anew: the process conditioned on success. ValueError when jams persist.
    """
    k_max = hi
    counts = rng.integers(lo, hi + 1, b)
    attrs, sprite, value = spec.sample_attrs(rng, (b, k_max))
    hw = spec.hw[sprite]                                         # (b, K, 2)
    tl = np.full((b, k_max, 2), -1, np.int64)
    idx = np.arange(b)
    attempts, passes = 0, 0
    while idx.size:
        hopeless = passes >= 3 and idx.size == b            # not one image placed yet
        if hopeless or (passes and (attempts > MAX_ATTEMPTS * b or passes >= MAX_RESTARTS)):
            raise ValueError(
                f"could not place {int(counts[idx].max())} non-overlapping objects on a "
                f"{CANVAS}x{CANVAS} canvas ({spec.name}): random sequential placement jammed for "
                f"{idx.size} of {b} images after {passes} attempts ({attempts} image placements); "
                f"the object count range is too dense, lower n_objects")
        if passes:                                          # redraw the jammed images' objects
            a2, s2, v2 = spec.sample_attrs(rng, (idx.size, k_max))
            for key in attrs:
                attrs[key][idx] = a2[key]
            sprite[idx], value[idx], hw[idx] = s2, v2, spec.hw[s2]
        present = np.arange(k_max)[None, :] < counts[idx, None]
        too_big = np.where(present, hw[idx].prod(-1), 0).sum(1) > CANVAS * CANVAS
        fit = idx[~too_big]
        sub, jam = _place_once(hw[fit], counts[fit], rng)
        tl[fit] = sub
        attempts += idx.size
        passes += 1
        idx = np.concatenate([idx[too_big], fit[jam]])
    present = np.arange(k_max)[None, :] < counts[:, None]
    w = CANVAS + spec.pad
    canvas = np.zeros((b, w, w), np.uint8)                       # 1 for MNIST; colour + 1 for dSprites
    flat = canvas.reshape(-1)
    for k in range(k_max):
        img = np.flatnonzero(present[:, k])
        if img.size == 0:
            continue
        base = img * (w * w) + tl[img, k, 0] * w + tl[img, k, 1]
        idx = base[:, None] + spec.window[None, :]
        vals = spec.flat_sprites[sprite[img, k]]
        if spec.channels > 1:
            vals = vals * value[img, k][:, None]
        flat[idx] |= vals                    # windows may reach past the box, onto zeros only
    canvas = canvas[:, :CANVAS, :CANVAS]
    if spec.channels == 1:
        out[:, 0] = canvas
    else:
        lut = np.vstack([np.zeros((1, 3), np.uint8), COLORS])   # colour id -> RGB
        for c in range(3):
            out[:, c] = lut[:, c][canvas]
    boxes = np.concatenate([tl, hw], -1)
    boxes[~present] = -1
    pos = tl + hw // 2
    pos[~present] = -1
    attrs = {k_: np.where(present, v, -1).astype(np.int64) for k_, v in attrs.items()}
    return counts.astype(np.int64), pos.astype(np.int16), boxes.astype(np.int16), attrs


def generate(name: str, n_images: int, n_objects=(0, 3), seed: int = 0, mnist_dir=None,
             progress: bool = True) -> MultiObjectData:
    """Generate ``n_images`` images of data set ``name`` (Sections 3.1, 3.2) in memory.

    ``n_objects``: inclusive range (lo, hi) of the uniform object count, or an int for an exact
    count. Deterministic in (name, n_images, n_objects, seed); raises ValueError for an unknown
    name or a count range whose objects cannot fit on the canvas.
    """
    from tqdm.auto import tqdm

    _check_name(name)
    lo, hi = _normalise_range(n_objects)
    n_images = int(n_images)
    if n_images < 0:
        raise ValueError(f"n_images must be >= 0, got {n_images}")
    spec = _Spec(name, mnist_dir)
    _check_fits(spec.hw, hi, name)
    params = make_params(name, n_images, (lo, hi), seed)
    images = np.zeros((n_images, spec.channels, CANVAS, CANVAS), np.uint8)
    counts = np.zeros(n_images, np.int64)
    positions = np.full((n_images, hi, 2), -1, np.int16)
    boxes = np.full((n_images, hi, 4), -1, np.int16)
    attrs = {a: np.full((n_images, hi), -1, np.int64) for a in spec.attr_names}
    n_chunks = -(-n_images // CHUNK)
    seeds = np.random.SeedSequence(int(seed)).spawn(n_chunks)
    for c in tqdm(range(n_chunks), desc=f"{name} ({n_images} images)", unit="chunk",
                  disable=not progress or n_chunks < 2, leave=False):
        rng = np.random.Generator(np.random.PCG64(seeds[c]))
        a, b = c * CHUNK, min(n_images, (c + 1) * CHUNK)
        full = b - a == CHUNK     # the last chunk is made whole and cut: sets are prefixes
        buf = images[a:b] if full else np.zeros((CHUNK,) + images.shape[1:], np.uint8)
        cnt, pos, box, att = _generate_chunk(spec, CHUNK, lo, hi, rng, buf)
        if not full:
            images[a:b] = buf[:b - a]
        counts[a:b], positions[a:b], boxes[a:b] = cnt[:b - a], pos[:b - a], box[:b - a]
        for key in attrs:
            attrs[key][a:b] = att[key][:b - a]
    return MultiObjectData(name, images, counts, positions, boxes, attrs, params)


def count_overlaps(boxes: np.ndarray) -> np.ndarray:
    """Number of intersecting pairs of present boxes per image; boxes (N, K, 4) (top, left, h, w),
    -1 for absent slots. All zeros for the data sets of this module."""
    b = np.asarray(boxes).astype(np.int64)
    out = np.zeros(len(b), np.int64)
    for i in range(b.shape[1]):
        for j in range(i + 1, b.shape[1]):
            p, q = b[:, i], b[:, j]
            out += ((p[:, 0] >= 0) & (q[:, 0] >= 0)
                    & (p[:, 0] < q[:, 0] + q[:, 2]) & (q[:, 0] < p[:, 0] + p[:, 2])
                    & (p[:, 1] < q[:, 1] + q[:, 3]) & (q[:, 1] < p[:, 1] + p[:, 3]))
    return out


# ---------------------------------------------------------------------------------------------
# Cached splits
# ---------------------------------------------------------------------------------------------
def pack_images(images: np.ndarray) -> np.ndarray:
    """uint8 {0,1} (..., 64) -> bits packed along the last axis (..., 8)."""
    return np.packbits(images, axis=-1)


def unpack_images(packed: np.ndarray, width: int = CANVAS) -> np.ndarray:
    return np.unpackbits(packed, axis=-1, count=width)


def _split_defaults(split: str, n_images, seed):
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    n_default, n_objects, offset = SPLITS[split]
    n = n_default if n_images is None else int(n_images)
    base = 0 if seed is None else int(seed)
    return n, n_objects, base + offset


def cache_path(name: str, split: str = "train", n_images=None, seed=None) -> Path:
    """``data_dir()/<name>/<split>.npz`` for the paper-sized split with the default seed; other
    sizes/seeds get their own file ``<split>-n<N>-s<seed>.npz`` so they never evict the default."""
    _check_name(name)
    _split_defaults(split, n_images, seed)
    custom = [f"n{int(n_images)}" if n_images is not None and int(n_images) != SPLITS[split][0] else "",
              f"s{int(seed)}" if seed is not None and int(seed) != 0 else ""]
    suffix = "".join("-" + c for c in custom if c)
    return data_dir() / name / f"{split}{suffix}.npz"


def save(data: MultiObjectData, path: str | Path) -> Path:
    """Write ``data`` to ``path`` (npz, images bit-packed), atomically (temporary file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    arrays = dict(images=pack_images(data.images), image_shape=np.array(data.images.shape),
                  counts=data.counts, positions=data.positions, boxes=data.boxes,
                  params=np.array(json.dumps(data.params, sort_keys=True)), name=np.array(data.name))
    arrays.update({f"attr_{k}": v for k, v in data.attrs.items()})
    try:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def read(path: str | Path) -> MultiObjectData:
    """Read a file written by :func:`save`."""
    with np.load(path, allow_pickle=False) as z:
        shape = tuple(int(s) for s in z["image_shape"])
        images = unpack_images(z["images"], shape[-1])
        if images.shape != shape:
            raise ValueError(f"{path}: images of shape {images.shape}, expected {shape}")
        attrs = {k[5:]: z[k] for k in z.files if k.startswith("attr_")}
        return MultiObjectData(str(z["name"]), images, z["counts"], z["positions"], z["boxes"],
                               attrs, json.loads(str(z["params"])))


def _read_params(path: Path) -> dict | None:
    try:
        with np.load(path, allow_pickle=False) as z:
            return json.loads(str(z["params"]))
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as e:
        print(f"[lavae data] cannot read {path} ({e}); regenerating", file=sys.stderr)
        return None


def load(name: str, split: str = "train", mnist_dir=None, n_images=None, seed=None,
         progress: bool = True) -> MultiObjectData:
    """A split of the paper's data sets (Section 3), generated once and cached.

    Splits: "train" 190k images with 0-3 objects, "test" 10k with 0-3, "test7" 10k with exactly 7,
    "test0-10" 10k with 0-10 (ours). ``seed`` is the base seed (default 0); the splits use base +
    0, 1, 2, 3, so they never share images' random draws. ``n_images``/``seed`` override the
    defaults (cached in their own file, see :func:`cache_path`). A cached file is used only when
    its stored parameters equal the request; otherwise it is regenerated (with a note).
    """
    _check_name(name)
    n, n_objects, split_seed = _split_defaults(split, n_images, seed)
    want = json.loads(json.dumps(make_params(name, n, n_objects, split_seed), sort_keys=True))
    path = cache_path(name, split, n_images, seed)
    if path.exists():
        have = _read_params(path)
        if have == want:
            try:
                return read(path)
            except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as e:
                print(f"[lavae data] cannot read {path} ({e}); regenerating", file=sys.stderr)
        elif have is not None:
            diff = sorted(k for k in set(have) | set(want) if have.get(k) != want.get(k))
            print(f"[lavae data] {path} was made with other parameters (differ: {', '.join(diff)}); "
                  f"regenerating", file=sys.stderr)
    data = generate(name, n, n_objects, split_seed, mnist_dir=mnist_dir, progress=progress)
    save(data, path)
    return data


def load_splits(name: str, splits=PAPER_SPLITS, smoke: bool = False, n_images=None, seed=None,
                mnist_dir=None, progress: bool = True) -> dict:
    """{split: MultiObjectData} for ``splits`` of data set ``name``.

    Full mode: :func:`load` (paper sizes, cached). Smoke mode: ``n_images`` (default 64) images per
    split generated in memory with the split's count range and seed; nothing is written.
    """
    out = {}
    for split in splits:
        if smoke:
            n, n_objects, split_seed = _split_defaults(split, n_images or 64, seed)
            out[split] = generate(name, n, n_objects, split_seed, mnist_dir=mnist_dir, progress=False)
        else:
            out[split] = load(name, split, mnist_dir=mnist_dir, n_images=n_images, seed=seed,
                              progress=progress)
    return out


def load_split(cfg, split: str, n_images: int | None = None, progress: bool = True) -> MultiObjectData:
    """The split a config trains or is evaluated on (``cfg``: a :class:`lavae_core.config.Config`).

    The smoke profile generates a tiny set in memory (``n_images``, default 64; seeds cfg.seed +
    0/1/2); the others read (or create) the cached paper-sized split and take its first
    ``n_images`` (all when None)."""
    if cfg.profile == "smoke":
        n_obj = {"train": (0, 3), "test": (0, 3), "test7": (7, 7)}[split]
        seed = cfg.seed + {"train": 0, "test": 1, "test7": 2}[split]
        return generate(cfg.dataset, n_images or 64, n_objects=n_obj, seed=seed, progress=False)
    data = load(cfg.dataset, split, progress=progress)
    return data.subset(np.arange(min(n_images, len(data)))) if n_images else data


def as_float(images, device="cpu"):
    """uint8 {0,1} images (numpy or torch, (N, C, H, W)) -> float32 torch tensor on ``device``: the
    form in which the data enters a model."""
    import torch
    return torch.as_tensor(images).to(device=device, dtype=torch.float32)


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------
def main(argv=None) -> None:
    """``lavae-data`` / ``python -m lavae_core.datasets``: write the cached splits."""
    prog = "python -m lavae_core.datasets"
    p = Parser(prog=prog, description="Generate and cache the multi-object data sets (LAVAE paper, Section 3).")
    p.add_argument("--name", nargs="+", choices=NAMES, help="data set(s)")
    p.add_argument("--split", nargs="+", default=list(PAPER_SPLITS), choices=list(SPLITS))
    p.add_argument("--all", action="store_true", help="all three data sets x (train, test, test7)")
    p.add_argument("--n-images", type=positive_int, default=None, help="override the split's size")
    p.add_argument("--seed", type=non_negative_int, default=None, help="base seed (default 0)")
    p.add_argument("--mnist-dir", default=None, help="folder with the 4 MNIST files "
                                                     "(default: $LAVAE_MNIST_DIR or download)")
    p.add_argument("--no-progress", action="store_true")
    a = p.parse_args(argv)
    if a.all:
        names, splits = list(NAMES), list(PAPER_SPLITS)
    elif a.name:
        names, splits = a.name, a.split
    else:
        p.error("give --name NAME [NAME ...] or --all")
    for name in names:
        for split in splits:
            t0 = time.perf_counter()
            try:
                data = load(name, split, mnist_dir=a.mnist_dir, n_images=a.n_images, seed=a.seed,
                            progress=not a.no_progress)
            except (ValueError, OSError, MNISTError) as e:
                fail(prog, e)
            dt = time.perf_counter() - t0
            path = cache_path(name, split, a.n_images, a.seed)
            print(f"{name:16s} {split:9s} {len(data):7d} images  {path}  "
                  f"{path.stat().st_size / 2**20:7.1f} MiB  {dt:6.1f} s", flush=True)


if __name__ == "__main__":
    main()

"""Figures: image grids, data-set samples and statistics (paper Section 3), saved as PNG + PDF.

Model figures (reconstructions, prior samples, traversals) belong here too; keep one function per
figure type and route every saved figure through :func:`save_figure`.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt  # headless: matplotlib falls back to Agg without a display
import numpy as np
from matplotlib.ticker import MaxNLocator

from . import REPO_ROOT

__all__ = ["FIGURES_DIR", "save_figure", "image_grid", "show_grid", "show_image", "plot_sprites", "plot_dataset_samples",
           "plot_dataset_stats", "plot_inference", "plot_samples", "plot_swap", "plot_location_traversal",
           "plot_appearance_traversal", "plot_count_curve", "plot_training_curves", "plot_bound_curve"]

FIGURES_DIR = REPO_ROOT / "figures"


def save_figure(fig, name: str, folder: str | Path | None = None, dpi: int = 150) -> Path:
    """Save ``fig`` as ``<folder>/<name>.png`` (``dpi``) and ``.pdf``; returns the PNG path.
    ``folder`` defaults to ``<repo>/figures``."""
    folder = Path(folder) if folder is not None else FIGURES_DIR
    folder.mkdir(parents=True, exist_ok=True)
    png = folder / f"{name}.png"
    fig.savefig(png, dpi=dpi, bbox_inches="tight")
    fig.savefig(folder / f"{name}.pdf", bbox_inches="tight", metadata={"CreationDate": None})  # reproducible bytes
    return png


def _to_float_nchw(images) -> np.ndarray:
    """(N, C, H, W) or (N, H, W), uint8 {0,1} / {0..255}, bool, float [0,1] or torch -> float."""
    if hasattr(images, "detach"):
        images = images.detach().cpu().numpy()
    x = np.asarray(images)
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim != 4:
        raise ValueError(f"expected images of shape (N, C, H, W), got {x.shape}")
    if x.dtype == np.uint8 and x.max(initial=0) > 1:
        x = x / 255.0
    return np.clip(x.astype(np.float32), 0.0, 1.0)


def image_grid(images, nrow: int = 8, pad: int = 1, pad_value: float = 0.5) -> np.ndarray:
    """Tile (N, C, H, W) images into one (rows*(H+pad)+pad, nrow*(W+pad)+pad[, 3]) float array with
    ``pad``-pixel separators of grey ``pad_value``. C = 1 gives a 2-D array (use a grey colormap),
    C = 3 an RGB array. Accepts uint8 {0,1} (or 0..255) and floats in [0, 1]."""
    x = _to_float_nchw(images)
    n, c, h, w = x.shape
    if c not in (1, 3):
        raise ValueError(f"images must have 1 or 3 channels, got {c}")
    nrow = max(1, min(nrow, n)) if n else max(1, nrow)
    rows = max(1, -(-n // nrow))
    grid = np.full((c, rows * (h + pad) + pad, nrow * (w + pad) + pad), pad_value, np.float32)
    for i in range(n):
        r, q = divmod(i, nrow)
        top, left = pad + r * (h + pad), pad + q * (w + pad)
        grid[:, top:top + h, left:left + w] = x[i]
    return grid[0] if c == 1 else grid.transpose(1, 2, 0)


def show_grid(ax, images, nrow: int = 8, title: str | None = None, **kw):
    """Draw :func:`image_grid` on ``ax`` without ticks."""
    g = image_grid(images, nrow, **kw)
    ax.imshow(g, cmap="gray" if g.ndim == 2 else None, vmin=0, vmax=1, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title)
    return ax


def show_image(ax, image, title: str | None = None, fontsize: int = 8):
    """Draw one image, (C, H, W) with C in {1, 3} or (H, W), uint8 {0,1} or float [0, 1], on ``ax``."""
    x = _to_float_nchw(np.asarray(image.detach().cpu() if hasattr(image, "detach") else image)[None])[0]
    ax.imshow(x[0] if x.shape[0] == 1 else x.transpose(1, 2, 0), cmap="gray" if x.shape[0] == 1 else None,
              vmin=0, vmax=1, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=fontsize)
    return ax


def plot_sprites(sprites, nrow: int = 20, title: str | None = None, scale: float = 0.45):
    """Grid of sprites: (N, h, w) masks or (N, C, h, w) images (e.g. the MNIST pool, dSprites masks)."""
    s = np.asarray(sprites)
    s = s[:, None] if s.ndim == 3 else s
    rows = max(1, -(-len(s) // nrow))
    fig, ax = plt.subplots(figsize=(scale * nrow, scale * rows + 0.4))
    show_grid(ax, s, nrow)
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def plot_dataset_samples(data, n: int = 32, nrow: int = 8, title: str | None = None,
                         show_counts: bool = True):
    """Grid of the first ``n`` images of a :class:`~lavae_core.datasets.MultiObjectData`."""
    n = min(n, len(data))
    nrow = min(nrow, max(n, 1))
    rows = max(1, -(-n // nrow))
    fig, ax = plt.subplots(figsize=(1.2 * nrow, 1.2 * rows + 0.4))
    show_grid(ax, data.images[:n], nrow)
    if show_counts:
        h = data.images.shape[-2]
        for i in range(n):
            r, q = divmod(i, nrow)
            ax.text(1 + q * (h + 1) + 1, 1 + r * (h + 1) + 1, str(int(data.counts[i])), color="yellow",
                    fontsize=6, va="top", ha="left")
    if title is None:
        p = data.params
        title = f"{data.name}: {p.get('n_objects')} objects, seed {p.get('seed')}"
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def plot_dataset_stats(data, title: str | None = None):
    """Histograms of the object count and of the object box heights and widths."""
    present = data.boxes[..., 0] >= 0
    heights, widths = data.boxes[..., 2][present], data.boxes[..., 3][present]
    fig, axes = plt.subplots(1, 3, figsize=(10, 2.8))
    lo, hi = int(data.counts.min(initial=0)), int(data.counts.max(initial=0))
    k = np.arange(lo, hi + 1)
    axes[0].bar(k, np.bincount(data.counts, minlength=hi + 1)[lo:] / max(len(data), 1), color="C0")
    axes[0].set_xticks(k)
    axes[0].set_xlabel("objects per image")
    axes[0].set_ylabel("fraction of images")
    for ax, v, lab, col in ((axes[1], heights, "box height (px)", "C1"),
                            (axes[2], widths, "box width (px)", "C2")):
        if v.size:
            lo_, hi_ = int(v.min()) - 2, int(v.max()) + 2
            ax.hist(v, bins=np.arange(lo_, hi_ + 2) - 0.5, color=col, density=True)
            ax.set_xlim(lo_ - 0.5, hi_ + 0.5)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel(lab)
        ax.set_ylabel("fraction of objects")
    fig.suptitle(title or f"{data.name}: {len(data)} images, {int(present.sum())} objects", fontsize=10)
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------------------------
# Model figures (paper Figures 1-11). Each takes a model and images and returns a Figure.
# ---------------------------------------------------------------------------------------------
def location_canvas(locations, size: int = 64) -> np.ndarray:
    """Black (1, size, size) canvas with a white 3x3 dot at each (row, col) location: the summary of
    inferred locations in Figures 1 and 5."""
    canvas = np.zeros((1, size, size), np.float32)
    for r, c in np.asarray(locations).reshape(-1, 2).tolist():
        canvas[0, max(r - 1, 0):r + 2, max(c - 1, 0):c + 2] = 1.0
    return canvas


def plot_inference(model, images, n_sprites: int | None = None):
    """Figures 1 and 5: per row input, reconstruction, inferred locations and the sprite generated
    from each appearance latent."""
    import torch
    x = torch.as_tensor(np.asarray(images)).float().to(next(model.parameters()).device)
    inf = model.infer(x)
    k = n_sprites or max(int(inf.n.max()), 1)
    fig, axes = plt.subplots(len(x), 3 + k, figsize=(1.1 * (3 + k), 1.15 * len(x)), squeeze=False)
    for i in range(len(x)):
        show_image(axes[i, 0], x[i], "input" if i == 0 else None)
        show_image(axes[i, 1], inf.recon[i], "reconstruction" if i == 0 else None)
        show_image(axes[i, 2], location_canvas(inf.locations[i][inf.mask[i]].cpu(), x.shape[-1]), "locations" if i == 0 else None)
        for j in range(k):
            ax = axes[i, 3 + j]
            if j < inf.sprites.shape[1] and inf.mask[i, j]:
                show_image(ax, inf.sprites[i, j], "sprites" if i == 0 and j == 0 else None)
            else:
                ax.axis("off")
    fig.tight_layout(pad=0.2)
    return fig


def plot_samples(images, nrow: int = 8, title: str | None = None):
    """A grid of generated images (Figures 2, 4, 9, 10)."""
    images = np.asarray(images.detach().cpu() if hasattr(images, "detach") else images)
    grid = image_grid(images, nrow)
    fig, ax = plt.subplots(figsize=(nrow * 0.9, int(np.ceil(len(images) / nrow)) * 0.9))
    ax.imshow(grid, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.axis("off")
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout(pad=0.2)
    return fig


def plot_swap(model, images, shift: int = 1):
    """Figures 3, 6 and 11 (object swap): top row the reconstruction, bottom row the objects' order
    of appearance latents rolled by ``shift`` (equivalently, of locations)."""
    import torch
    x = torch.as_tensor(np.asarray(images)).float().to(next(model.parameters()).device)
    inf = model.infer(x)
    z = inf.z_app.clone()
    for i in range(len(x)):
        n = int(inf.n[i])
        if n > 1:
            z[i, :n] = inf.z_app[i, :n].roll(shift, 0)
    swapped, _ = model.decode(inf.locations, z, inf.mask)
    fig, axes = plt.subplots(2, len(x), figsize=(1.2 * len(x), 2.5), squeeze=False)
    for i in range(len(x)):
        show_image(axes[0, i], inf.recon[i], "original" if i == 0 else None)
        show_image(axes[1, i], swapped[i], "swapped" if i == 0 else None)
    fig.tight_layout(pad=0.2, h_pad=1.2)   # room for the second row's title
    return fig


def plot_location_traversal(model, image, obj: int = 0, steps: int = 8, axis: int = 1):
    """Figures 3, 7, 8, 11 (location traversal): object ``obj`` moved across the canvas along
    ``axis`` (1: left to right, 0: top to bottom), everything else fixed."""
    import torch
    x = torch.as_tensor(np.asarray(image)[None]).float().to(next(model.parameters()).device)
    inf = model.infer(x)
    if obj >= int(inf.n[0]):
        raise ValueError(f"object {obj} asked for, but only {int(inf.n[0])} objects were inferred")
    size = model.cfg.image_size
    pos = np.linspace(4, size - 5, steps).round().astype(int)
    locs = inf.locations.repeat(steps, 1, 1)
    locs[:, obj, axis] = torch.as_tensor(pos)
    out, _ = model.decode(locs, inf.z_app.repeat(steps, 1, 1), inf.mask.repeat(steps, 1))
    fig, axes = plt.subplots(1, steps, figsize=(1.1 * steps, 1.3), squeeze=False)
    for s in range(steps):
        show_image(axes[0, s], out[s])
    fig.tight_layout(pad=0.2)
    return fig


def plot_appearance_traversal(model, image, obj: int = 0, dims=(0, 1, 2), steps: int = 8,
                              span: float = 2.5):
    """Figures 3, 7, 8, 11 (appearance traversal): one row per latent dimension of object
    ``obj``'s z_app, swept over [-span, span]; all other latents fixed."""
    import torch
    x = torch.as_tensor(np.asarray(image)[None]).float().to(next(model.parameters()).device)
    inf = model.infer(x)
    if obj >= int(inf.n[0]):
        raise ValueError(f"object {obj} asked for, but only {int(inf.n[0])} objects were inferred")
    vals = torch.linspace(-span, span, steps)
    fig, axes = plt.subplots(len(dims), steps, figsize=(1.1 * steps, 1.15 * len(dims)), squeeze=False)
    for r, d in enumerate(dims):
        z = inf.z_app.repeat(steps, 1, 1)
        z[:, obj, d] = vals
        out, _ = model.decode(inf.locations.repeat(steps, 1, 1), z, inf.mask.repeat(steps, 1))
        for s in range(steps):
            show_image(axes[r, s], out[s])
        axes[r, 0].set_ylabel(f"dim {d}", fontsize=7)
    fig.tight_layout(pad=0.2)
    return fig


def plot_count_curve(results: dict, title: str = "count accuracy vs number of objects"):
    """Count accuracy per true number of objects (0..10), one line per run: {label: {n: acc}}.

    An entry may hold one accuracy per seed ({n: [acc, ...]}): the line is their mean and the band
    spans their minimum to maximum."""
    fig, ax = plt.subplots(figsize=(4.5, 3))
    for label, per_n in results.items():
        per_n = {int(n): np.atleast_1d(np.asarray(v, dtype=float)) for n, v in per_n.items()}
        ns = sorted(per_n)
        n_seeds = max(len(per_n[n]) for n in ns)
        line, = ax.plot(ns, [per_n[n].mean() for n in ns], "o-",
                        label=label + (f" (mean of {n_seeds} seeds)" if n_seeds > 1 else ""))
        if n_seeds > 1:
            ax.fill_between(ns, [per_n[n].min() for n in ns], [per_n[n].max() for n in ns],
                            color=line.get_color(), alpha=0.2, linewidth=0)
    ax.axvspan(-0.5, 3.5, color="0.9", label="training range", zorder=0)  # under the seed bands
    ax.set_xlabel("true number of objects")
    ax.set_ylabel("count accuracy")
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=7)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def plot_training_curves(csv_paths: dict, columns=("count_acc", "count_acc7"), x: str = "wall_s",
                         per_row: int = 3):
    """Training curves from metrics.csv files: {label: path}. x is wall_s (shown in minutes) or step.
    One panel per column, ``per_row`` panels to a row; columns a file lacks are skipped."""
    import csv
    n_rows = -(-len(columns) // per_row)
    n_cols = min(len(columns), per_row)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(4.2 * n_cols, 3 * n_rows), squeeze=False)
    for ax in axes.flat[len(columns):]:
        ax.set_visible(False)
    for label, path in csv_paths.items():
        rows = [r for r in csv.DictReader(open(path))]
        for ax, col in zip(axes.flat, columns):
            pts = [(float(r[x]), float(r[col])) for r in rows if r.get(col)]
            if not pts:
                continue
            xs, ys = zip(*pts)
            xs = [v / 60 for v in xs] if x == "wall_s" else xs
            ax.plot(xs, ys, label=label)
            ax.set_xlabel("training minutes" if x == "wall_s" else x)
            ax.set_title(col, fontsize=9)
            ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def plot_bound_curve(rows, title: str | None = None, x: str = "minutes", xlabel: str | None = None):
    """The K-sample bound (lower is better) against training minutes (``x="minutes"``) or steps
    (``x="steps"``), one line per run, from the rows of :mod:`lavae_core.curve` (LAVAE solid,
    baseline dashed; bars: standard error). ``xlabel`` names what the minutes are (e.g.
    :data:`lavae_core.curve.CLOCK_LABEL`)."""
    if x not in ("minutes", "steps"):
        raise ValueError(f"x must be 'minutes' or 'steps', got {x!r}")
    column = "train_minutes" if x == "minutes" else "step"
    runs: dict = {}
    for r in rows:
        runs.setdefault(r["run"], []).append(r)
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for run, rs in sorted(runs.items()):
        rs = sorted(rs, key=lambda r: int(r["step"]))
        first = rs[0]
        ax.errorbar([float(r[column]) for r in rs], [float(r["bound"]) for r in rs],
                    yerr=[float(r["stderr"]) for r in rs], marker="o", ms=3, capsize=2,
                    ls="-" if first["model"] == "lavae" else "--",
                    label=f"{'LAVAE' if first['model'] == 'lavae' else 'baseline'} s{first['seed']} "
                          f"({int(rs[-1]['step']):,} steps)")
    if rows:
        r = rows[0]
        ax.set_title(title or f"{r['dataset']}: K = {r['k']} bound on {r['n_images']} {r['split']} images",
                     fontsize=9)
    ax.set_xlabel(xlabel or ("training minutes (evaluation excluded)" if x == "minutes" else "training steps"))
    ax.set_ylabel("-log p(x) <= (nats)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig

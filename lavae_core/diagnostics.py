"""Diagnostics of what a LAVAE has learned about location and appearance (ours, not in the paper).

They use the data's ground truth (object boxes and centres) and are for debugging and for
metrics.csv only; training never sees them.

Location (is q(z_loc | x) one sharp peak per object? Eq. 8, 11):
- ``top_share``: inside each object's box, the share of the box's q-mass held by its top pixel
  (1 for a spike, ~1/area for a plateau). Sampling without replacement blocks only the pixel drawn
  (Eq. 11), so a plateau lets a second draw land on the same object and miss another.
- ``redraw``: that failure measured directly: n draws from q for an image with n objects; the share
  of the 2nd..n-th draws that land in the box of an object drawn before.
- ``peak_dist``: distance in pixels between each box's top q pixel and the object's true centre.
- ``bg_peak``: the highest local maximum of h_loc (f_count's window) outside every object's box,
  over the images: f_count over-counts once it passes the threshold (``count_threshold`` x gamma).
  After the warm-up nothing in the ELBO holds it down (``loc_bg_hinge``); watch it drift.
- ``blank_max``: h_loc's highest value on an empty canvas (the model alone, no data): once it
  passes the threshold, f_count counts an object in every image. With zero padding it sits on
  the border and is the same for every image's blank parts: the cleanest sign of that drift.
- :func:`peak_heights` (not logged): h_loc at each object's highest pixel vs the highest local
  maximum outside every box; any f_count threshold between the two counts those images right.
- :func:`maxima_kinds` (not logged): where f_count's counted maxima lie: near a true centre, on
  the image's border, elsewhere; an over-count is made of the last two.

Appearance (does z_app describe the object? Eq. 4, 9-10):
- ``sprite_max``: mean over objects of the decoded sprite's largest value (a blob stays dim).
- ``ink_iou``: intersection over union of the thresholded (0.5) reconstruction of ``infer`` and
  the input's ink, mean over images that have ink.
- ``kl_app_obj``: KL(q(z_app | x) || N(0, I)) per inferred object, in nats: near 0 when the
  decoder ignores z_app (posterior collapse). :func:`active_app_dims` (not logged) splits it by
  latent dimension: which dimensions a traversal should sweep.
- ``shift_slope``: how far the drawn object moves, in image coordinates, when its location moves
  by a pixel and z_app is read at the new location (:func:`shift_slope`): 1 for a sprite pinned
  to its location, 0 when z_app undoes the move (then a plateau of locations explains the object
  as well as one pixel does, and nothing makes q sharp).

Both (not logged): :func:`recon_by_location_source`, the reconstruction with the true centres,
with f_count's peaks and with draws from q: what the location posterior costs the appearance.
"""
from __future__ import annotations

import numpy as np
import torch

from .baseline import gaussian_kl
from .lavae import bernoulli_log_prob, f_count, sample_without_replacement, sprite_offsets

COLUMNS = ("top_share", "redraw", "peak_dist", "bg_peak", "blank_max", "sprite_max", "ink_iou",
           "kl_app_obj", "shift_slope")


def box_masks(boxes: torch.Tensor, size: int) -> torch.Tensor:
    """boxes (B, K, 4) (top, left, height, width; -1 = absent) -> bool masks (B, K, size, size)."""
    boxes = torch.as_tensor(np.asarray(boxes), dtype=torch.long)
    ar = torch.arange(size)
    top, left, h, w = boxes.unbind(-1)
    rows = (ar >= top[..., None]) & (ar < (top + h)[..., None])      # (B, K, size)
    cols = (ar >= left[..., None]) & (ar < (left + w)[..., None])
    return (rows[..., :, None] & cols[..., None, :]) & (h > 0)[..., None, None]


def location_stats(h_loc: torch.Tensor, boxes, positions) -> dict[str, np.ndarray]:
    """Per present object: top-pixel share of q inside its box and the distance of that pixel
    from the true centre. h_loc (B, H, W) logits; boxes (B, K, 4); positions (B, K, 2) (row, col).
    Returns {"top_share": (n_objects,), "peak_dist": (n_objects,)}."""
    b, hh, ww = h_loc.shape
    q = h_loc.detach().float().cpu().flatten(1).softmax(1).view(b, 1, hh, ww)
    masks = box_masks(boxes, hh)                                         # (B, K, H, W)
    present = masks.flatten(2).any(2)                                    # (B, K)
    qm = (q * masks).flatten(2)                                          # (B, K, D)
    top, arg = qm.max(2)
    share = top / qm.sum(2).clamp_min(1e-30)
    pos = torch.as_tensor(np.asarray(positions), dtype=torch.float32)
    peak = torch.stack([arg // ww, arg % ww], -1).float()
    dist = (peak - pos).norm(dim=-1)
    return {"top_share": share[present].numpy(), "peak_dist": dist[present].numpy()}


def peak_heights(h_loc: torch.Tensor, boxes, window: int) -> dict[str, np.ndarray]:
    """h_loc's highest value inside each present object's box ("object", (n_objects,)), and per
    image the highest local maximum (``window`` x ``window``, as f_count) outside every box
    ("background", (B,), -inf when there is none)."""
    h = h_loc.detach().float().cpu()
    masks = box_masks(boxes, h.shape[-1])                                # (B, K, H, W)
    present = masks.flatten(2).any(2)
    inside = h[:, None].masked_fill(~masks, float("-inf")).flatten(2).max(2).values
    peaks = f_count(h, float("-inf"), window, h[0].numel())[1] & ~masks.any(1)  # f_count's maxima
    background = h.masked_fill(~peaks, float("-inf")).flatten(1).max(1).values
    return {"object": inside[present].numpy(), "background": background.numpy()}


MISS_REASONS = ("found", "below threshold", "under another object's maximum", "under a background maximum")


def missed_objects(h_loc: torch.Tensor, boxes, window: int, threshold: float, positions=None,
                   near: int = 2) -> dict[str, np.ndarray]:
    """Why f_count (``window``, ``threshold`` on h_loc) misses an object, per present object:
    "reason" (index into ``MISS_REASONS``): 0 if a counted maximum lies in its box; else 1 if h_loc
    stays at or below the threshold in the whole box; else 2 or 3: its box's highest pixel is
    not a local maximum, and the higher value of the ``window`` x ``window`` square around it (the
    one f_count kept) lies in another object's box (2) or in no box (3). Also "peaks" (maxima
    counted in the box: > 1 is an over-count there) and "box_max" (h_loc's highest value in it).
    With ``positions`` (B, K, 2) (the true centres) also "own_peak": whether a 3x3 local maximum
    above the threshold lies within ``near`` px (both axes) of the centre: a missed object with one
    has a peak of its own that f_count's wider window hid."""
    import torch.nn.functional as F
    h = h_loc.detach().float().cpu()
    _, hh, ww = h.shape
    masks = box_masks(boxes, hh)                                         # (B, K, H, W)
    present = masks.flatten(2).any(2)
    _, src = F.max_pool2d(h[:, None], window, stride=1, padding=window // 2,
                          return_indices=True)      # src: flat index of each window's max
    peaks = f_count(h, threshold, window, h[0].numel())[1]             # what f_count counts
    n_peaks = (peaks[:, None] & masks).flatten(2).sum(2)                  # (B, K)
    box_max, arg = h[:, None].masked_fill(~masks, float("-inf")).flatten(2).max(2)
    winner = src[:, 0].flatten(1).gather(1, arg)                         # (B, K) where the max lies
    in_box = masks.flatten(2).gather(2, winner[:, None, :].expand(-1, masks.shape[1], -1))  # (B, K', K)
    other = (in_box & ~torch.eye(masks.shape[1], dtype=torch.bool)[None]).any(1)
    reason = torch.where(n_peaks > 0, 0, torch.where(box_max <= threshold, 1, torch.where(other, 2, 3)))
    out = {"reason": reason[present].numpy(), "peaks": n_peaks[present].numpy(),
           "box_max": box_max[present].numpy()}
    if positions is not None:
        own = f_count(h, threshold, 3, h[0].numel())[1].float()[:, None]  # 3x3 maxima (B, 1, H, W)
        around = F.max_pool2d(own, 2 * near + 1, stride=1, padding=near)[:, 0] > 0
        pos = torch.as_tensor(np.asarray(positions), dtype=torch.long).clamp_min(0)
        hit = around.flatten(1).gather(1, pos[..., 0] * ww + pos[..., 1])   # (B, K)
        out["own_peak"] = hit[present].numpy()
    return out


MAXIMA_KINDS = ("object", "border", "other")


def maxima_kinds(peaks: torch.Tensor, positions, near: int = 6, border: int = 2) -> torch.Tensor:
    """The kind of every maximum that f_count counted (``peaks`` (B, H, W) bool, as returned by
    ``model.count``): ``MAXIMA_KINDS`` index 0 if it lies within ``near`` px (both axes) of a true
    centre (``positions`` (B, K, 2), -1 = absent), else 1 if within ``border`` px of the image's
    edge, else 2. Returns (B, H, W) long, -1 where there is no counted maximum."""
    peaks = torch.as_tensor(peaks).cpu()
    b, hh, ww = peaks.shape
    pos = torch.as_tensor(np.asarray(positions), dtype=torch.long)
    r, c = torch.arange(hh), torch.arange(ww)
    dr = (r[None, None, :] - pos[..., 0:1]).abs() <= near                # (B, K, H)
    dc = (c[None, None, :] - pos[..., 1:2]).abs() <= near                # (B, K, W)
    present = (pos[..., 0] >= 0)[..., None, None]
    on_object = (dr[..., :, None] & dc[..., None, :] & present).any(1)    # (B, H, W)
    edge = torch.zeros(hh, ww, dtype=torch.bool)
    if border > 0:   # (edge[-0:] would be every row)
        edge[:border], edge[-border:], edge[:, :border], edge[:, -border:] = True, True, True, True
    kind = torch.where(on_object, 0, torch.where(edge.expand(b, -1, -1), 1, 2))
    return torch.where(peaks, kind, torch.full_like(kind, -1))


def redraw_rate(h_loc: torch.Tensor, boxes, counts, seed: int = 0, block: int = 1) -> float:
    """Draw n locations from q (Eq. 8, 11, exact Gumbel-max; ``block`` as the model's
    ``cfg.loc_block``) for each image with n >= 2 objects and return the share of the 2nd..n-th
    draws that land in a box already drawn from (nan if none)."""
    counts = torch.as_tensor(np.asarray(counts), dtype=torch.long)
    keep = counts >= 2
    if not keep.any():
        return float("nan")
    h = h_loc.detach().float().cpu()[keep]
    masks = box_masks(np.asarray(boxes)[keep.numpy()], h.shape[-1]).flatten(2)   # (B, K, D)
    n = counts[keep]
    k = int(n.max())
    gen = torch.Generator().manual_seed(seed)
    idx = sample_without_replacement(h.flatten(1), k, generator=gen, block=block)[0]  # (B, k)
    hit = masks.gather(2, idx[:, None, :].expand(-1, masks.shape[1], -1))        # (B, K, k)
    seen = hit.cumsum(2) - hit.long()            # draws before this one in the same box
    again = (hit & (seen > 0)).any(1)                                            # (B, k)
    valid = (torch.arange(k)[None] < n[:, None]) & (torch.arange(k)[None] >= 1)
    return float(again[valid].float().mean())


def ink_iou(recon: torch.Tensor, images: torch.Tensor, threshold: float = 0.5) -> np.ndarray:
    """Per image: |recon > t AND x > t| / |recon > t OR x > t| over pixels and channels; nan for
    images with neither ink nor reconstructed ink."""
    a = (torch.as_tensor(recon).float() > threshold).flatten(1)
    bb = (torch.as_tensor(images).float() > threshold).flatten(1)
    inter = (a & bb).sum(1).float()
    union = (a | bb).sum(1).float()
    return torch.where(union > 0, inter / union.clamp_min(1), torch.full_like(union, float("nan"))).numpy()


@torch.no_grad()
def shift_slope(model, h_app: torch.Tensor, idx: torch.Tensor, mask: torch.Tensor,
                radius: int = 1) -> np.ndarray:
    """Per present object: the least-squares slope of the drawn sprite's centre of mass (image
    coordinates: location + :func:`lavae_core.lavae.sprite_offsets`) against the location, as the
    location moves over the (2 radius + 1)^2 square around ``idx`` (B, K) and z_app is its
    posterior mean read there (Eq. 9), averaged over rows and columns. h_app (B, 2L, H, W); mask
    (B, K) -> (n_objects,). Locations off the image are clamped to it (they add no spread)."""
    b, k = idx.shape
    hw = h_app.shape[-1]
    off = torch.arange(-radius, radius + 1, device=idx.device)
    rows = ((idx // hw)[..., None, None] + off[:, None]).clamp(0, hw - 1)          # (B, K, w, 1)
    cols = ((idx % hw)[..., None, None] + off[None, :]).clamp(0, hw - 1)           # (B, K, 1, w)
    rows, cols = torch.broadcast_tensors(rows, cols)
    where = (rows * hw + cols).flatten(2)                                           # (B, K, w*w)
    if not mask.any():
        return np.zeros(0)
    mu = model.appearance_at(h_app, where.flatten(1))[0].view(b, k, where.shape[-1], -1)[mask]
    where = where[mask]                                                             # (N, w*w)
    sprites = model.decode_sprites(mu, torch.ones(mu.shape[:2], dtype=torch.bool, device=mu.device))
    loc = torch.stack([where // hw, where % hw], -1).to(sprites.dtype)             # (N, w*w, 2)
    com = loc + sprite_offsets(sprites)
    dl, dc = loc - loc.mean(1, keepdim=True), com - com.mean(1, keepdim=True)
    slope = (dl * dc).sum(1) / (dl * dl).sum(1).clamp_min(1e-6)                     # (N, 2)
    return slope.mean(-1).cpu().numpy()


def app_kl(inf) -> torch.Tensor:
    """KL(q(z_app | x) || N(0, I)) of every slot and latent dimension of an :class:`Inference`,
    (B, K, L) in nats (Eq. 9-10's appearance term, per dimension; padded slots included)."""
    return gaussian_kl(inf.z_app, inf.logvar.clamp(-12.0, 8.0))


@torch.no_grad()
def active_app_dims(model, images, k: int = 4, batch_size: int = 100) -> tuple[tuple[int, ...], np.ndarray]:
    """The ``k`` appearance dimensions that carry the most information: the mean over the objects
    LAVAE infers in ``images`` (uint8 or float (N, C, H, W)) of each dimension's KL from the prior,
    in nats -> (the k dimensions, most informative first; the (L,) mean KL per dimension). A
    dimension with ~0 nats is ignored by the decoder, so traversing it (Figs. 3, 7, 8, 11) changes
    nothing; pick the traversed dimensions from the top of this list."""
    if k < 1:
        raise ValueError(f"k must be a positive number of dimensions, got {k}")
    was_training = model.training
    model.eval()
    dev = next(model.parameters()).device
    total, count = torch.zeros(model.cfg.latent_dim, dtype=torch.float64), 0
    for i in range(0, len(images), batch_size):
        inf = model.infer(torch.as_tensor(np.asarray(images[i:i + batch_size])).to(dev, torch.float32))
        m = inf.mask.cpu()
        total += app_kl(inf).cpu()[m].double().sum(0)
        count += int(m.sum())
    model.train(was_training)
    if count == 0:
        raise ValueError("LAVAE infers no object in these images: no appearance latent to rank")
    per_dim = (total / count).numpy()
    order = np.argsort(-per_dim, kind="stable")[:min(k, per_dim.size)]
    return tuple(int(d) for d in order), per_dim


@torch.no_grad()
def diagnose(model, data, n_images: int = 200, seed: int = 0, batch_size: int = 100) -> dict[str, float]:
    """Every diagnostic of the module docstring on the first ``n_images`` of ``data`` (a
    :class:`lavae_core.datasets.MultiObjectData`), as means -> {column: float}. For the baseline
    VAE only ``ink_iou`` (of its posterior-mean reconstruction, the reference for LAVAE's); the
    other columns are nan."""
    was_training = model.training
    model.eval()
    dev = next(model.parameters()).device
    n = min(n_images, len(data))
    if not hasattr(model, "infer"):                  # the baseline: p(x | z = posterior mean)
        ious = [ink_iou(torch.sigmoid(model.decode(model.encode(x)[0])).cpu(), x.cpu())
                for x in (torch.as_tensor(data.images[i:i + batch_size]).to(dev, torch.float32)
                          for i in range(0, n, batch_size))]
        model.train(was_training)
        v = np.concatenate(ious)
        return {**{c: float("nan") for c in COLUMNS}, "ink_iou": float(np.nanmean(v))}
    tops, dists, sprite_max, ious, kls, redraws, slopes, bgs = [], [], [], [], [], [], [], []
    for i in range(0, n, batch_size):
        j = min(i + batch_size, n)
        x = torch.as_tensor(data.images[i:j]).to(dev, torch.float32)
        inf = model.infer(x)
        st = location_stats(inf.h_loc, data.boxes[i:j], data.positions[i:j])
        tops.append(st["top_share"])
        dists.append(st["peak_dist"])
        bgs.append(peak_heights(inf.h_loc, data.boxes[i:j], model.cfg.count_window)["background"])
        r = redraw_rate(inf.h_loc, data.boxes[i:j], data.counts[i:j], seed=seed + i,
                        block=model.cfg.loc_block)
        if not np.isnan(r):
            redraws.append((r, int(np.clip(data.counts[i:j] - 1, 0, None).sum())))
        m = inf.mask.cpu()
        if m.any():
            sprite_max.append(inf.sprites.cpu()[m].flatten(1).max(1).values.numpy())
            kl = app_kl(inf).sum(-1).cpu()
            kls.append(kl[m].numpy())
            idx = model.locations_to_index(inf.locations)
            slopes.append(shift_slope(model, model.infer_maps(x)[0], idx, inf.mask))
        ious.append(ink_iou(inf.recon.cpu(), x.cpu()))
    with torch.no_grad():   # in eval mode, as the rest
        blank = float(model.infer_loc(torch.zeros(1, *data.images.shape[1:], device=dev)).max())
    model.train(was_training)

    def mean(parts):
        v = np.concatenate(parts) if parts else np.zeros(0)
        v = v[~np.isnan(v)]
        return float(v.mean()) if v.size else float("nan")

    redraw = (sum(r * w for r, w in redraws) / max(sum(w for _, w in redraws), 1)) if redraws else float("nan")
    bg = np.concatenate(bgs)
    bg = bg[np.isfinite(bg)]
    return {"top_share": mean(tops), "redraw": float(redraw), "peak_dist": mean(dists),
            "bg_peak": float(bg.max()) if bg.size else float("nan"), "blank_max": blank,
            "sprite_max": mean(sprite_max), "ink_iou": mean(ious), "kl_app_obj": mean(kls),
            "shift_slope": mean(slopes)}


@torch.no_grad()
def recon_by_location_source(model, data, n_images: int = 200, seed: int = 0) -> dict[str, tuple[float, float]]:
    """Reconstruction term (nats per image; z_app at its posterior mean, Eq. 9-10; hard rendering,
    Eq. 4; eval mode) and ink IoU on the first ``n_images`` of ``data``, with the locations from
    three sources: "true centres" (and true counts), "f_count peaks" (``infer``'s locations) and
    "draws from q" (Eq. 8, 11, with the model's count, as the bound samples them) ->
    {source: (recon, ink_iou)}. A sharp q gives the same for the last two; a decoder that relies
    on another anchor than the box centre does better with its peaks than with the true centres."""
    was_training = model.training
    model.eval()
    dev = next(model.parameters()).device
    n = min(n_images, len(data))
    x = torch.as_tensor(data.images[:n]).to(dev, torch.float32)
    h_app, h_loc = model.infer_maps(x)
    inf = model.infer(x)                   # counts and peaks (it recomputes the maps: eval only)
    flat = model.locations_to_index        # absent (-1) slots map to pixel 0; they are masked
    pos = torch.as_tensor(data.positions[:n]).long().to(dev)
    gen = torch.Generator().manual_seed(seed)
    drawn = sample_without_replacement(h_loc.flatten(1), int(inf.n.max()), generator=gen,
                                       block=model.cfg.loc_block)[0]
    sources = {"true centres": (flat(pos), pos[..., 0] >= 0),
               "f_count peaks": (flat(inf.locations), inf.mask),
               "draws from q": (drawn, inf.mask)}
    out = {}
    for name, (idx, mask) in sources.items():
        mu, _ = model.appearance_at(h_app, idx)
        lam = model.render(model.decode_sprites(mu, mask), idx, mask)
        out[name] = (float(-bernoulli_log_prob(lam, x).mean()), float(np.nanmean(ink_iou(lam.cpu(), x.cpu()))))
    model.train(was_training)
    return out


def main(argv=None) -> None:
    """``python -m lavae_core.diagnostics CHECKPOINT... [--images N]``: the diagnostics of runs
    (e.g. every snapshot of one, to watch bg_peak drift), one line each."""
    from .checkpoint import CheckpointError, load_checkpoint
    from .cli import Parser, fail, positive_int
    from .datasets import load_split
    from .mnist import MNISTError
    prog = "python -m lavae_core.diagnostics"
    p = Parser(prog=prog, description="Location and appearance diagnostics of a checkpoint on the "
                                      "first test images of its data set.")
    p.add_argument("checkpoint", nargs="+", help="weights.pt, checkpoint.pt or snapshots")
    p.add_argument("--images", type=positive_int, default=200)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    for path in a.checkpoint:
        try:
            model, cfg, ckpt = load_checkpoint(path)
            data = load_split(cfg, "test", n_images=a.images, progress=False)
        except (CheckpointError, MNISTError, ValueError) as e:
            fail(prog, e)
        d = diagnose(model, data, n_images=a.images, seed=a.seed)
        print(f"{path} ({cfg.model}, {cfg.dataset}, step {ckpt.get('step')}), first {min(a.images, len(data))} "
              "test images: " + "  ".join(f"{k} {v:.3f}" for k, v in d.items() if not np.isnan(v)), flush=True)


if __name__ == "__main__":
    main()

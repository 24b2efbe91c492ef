"""Appearance probe (issue 11): does LAVAE's appearance path learn when the locations are right?

Trains only the appearance inference net and f_sprite of a LAVAE, with every object's location
and the count given by the ground truth (the true box centres, hard one-hot, Eq. 4 and 9), on the
negative ELBO's recon + kl_app terms. If z_app collapses here too, the cause is in the appearance
path (widths, KL weight, batch norm, optimiser); if it does not, it is in the location dynamics.
``--jitter J`` moves each location by a random offset in [-J, J] pixels (per axis, per step), to
measure how much location noise the appearance path tolerates. ``--locations CHECKPOINT`` takes
the count and locations from that LAVAE's location net instead (f_count's peaks, hard, as
``infer`` finds them; frozen), for training and test images: are a trained run's locations good
enough for appearance to be learned? ``--init CHECKPOINT`` starts the appearance net and f_sprite
from that LAVAE's weights (and its config) instead of a fresh initialisation: can a path that
collapsed in joint training recover when the locations are right?

    python scripts/appearance_probe.py --steps 400 --out runs/probe_j0.csv
    python scripts/appearance_probe.py --steps 400 --jitter 2 --out runs/probe_j2.csv
"""
from __future__ import annotations

import csv
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from lavae_core.baseline import gaussian_kl  # noqa: E402
from lavae_core.cli import Parser, fail, non_negative_int, parse_value, positive_int  # noqa: E402
from lavae_core.checkpoint import lavae_for_command  # noqa: E402
from lavae_core.config import DATASETS, PROFILES, make_config  # noqa: E402
from lavae_core.datasets import load  # noqa: E402
from lavae_core.diagnostics import ink_iou  # noqa: E402
from lavae_core.lavae import LAVAE, bernoulli_log_prob  # noqa: E402


def step_terms(model: LAVAE, x: torch.Tensor, positions: torch.Tensor, kl_weight: float = 1.0):
    """recon and kl_app per image with the given (row, col) locations (B, K, 2), -1 = absent."""
    hw = model.cfg.image_size
    mask = positions[..., 0] >= 0
    idx = (positions[..., 0].clamp(min=0) * hw + positions[..., 1].clamp(min=0)).long()
    h_app = model.app_net(x)
    mu, logvar = model.appearance_at(h_app, idx)
    logvar = logvar.clamp(-12.0, 8.0)
    z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
    lam = model.render(model.decode_sprites(z, mask), idx, mask)
    recon = -bernoulli_log_prob(lam, x)
    kl = (gaussian_kl(mu, logvar).sum(-1) * mask).sum(1)
    return recon, kl, lam, mask


@torch.no_grad()
def peak_positions(loc_model: LAVAE, x: torch.Tensor, k: int) -> torch.Tensor:
    """(row, col) of the highest f_count peaks of ``loc_model`` (at most k per image; -1 beyond
    its count): (B, k, 2) long."""
    h = loc_model.infer_loc(x)
    n, peaks = loc_model.count(h)
    idx = loc_model.top_peaks(h, peaks, k)
    hw = h.shape[-1]
    pos = torch.stack([idx // hw, idx % hw], -1)
    return pos.masked_fill((torch.arange(k)[None] >= n[:, None])[..., None], -1)


def main(argv=None) -> None:
    prog = "python scripts/appearance_probe.py"
    p = Parser(prog=prog, description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="multi-mnist-1k", choices=DATASETS)
    p.add_argument("--profile", default="cpu", choices=PROFILES)
    p.add_argument("--steps", type=positive_int, default=400)
    p.add_argument("--jitter", type=non_negative_int, default=0,
                   help="random location offset, pixels per axis")
    p.add_argument("--kl-anneal", type=non_negative_int, default=0,
                   help="kl_app weight 0 -> 1 over these steps")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides")
    p.add_argument("--locations", metavar="CHECKPOINT",
                   help="use this LAVAE's f_count peaks as the locations (default: the true centres)")
    p.add_argument("--init", metavar="CHECKPOINT",
                   help="start the appearance net and f_sprite from this LAVAE (default: fresh)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="CSV of the curve")
    a = p.parse_args(argv)
    over = {}
    for kv in a.set:
        k, eq, v = kv.partition("=")
        if not eq:
            p.error(f"--set expects KEY=VALUE, got {kv!r}")
        over[k] = parse_value(v)
    try:
        cfg = make_config(a.profile, a.dataset, seed=a.seed, **over)
    except ValueError as e:
        fail(prog, e)
    locate = None
    if a.locations:
        loc_model = lavae_for_command(prog, a.locations)[0].eval()
        locate = lambda x, k: peak_positions(loc_model, x, k)  # noqa: E731
    torch.manual_seed(a.seed)
    if a.init:
        model, cfg, _ = lavae_for_command(prog, a.init)
        model.train()
    else:
        model = LAVAE(cfg)
    params = list(model.app_net.parameters()) + list(model.sprite.parameters())
    opt = torch.optim.Adamax(params, lr=cfg.lr)
    train, test = load(a.dataset, "train"), load(a.dataset, "test")
    test = test.subset(np.arange(200))
    gen = np.random.default_rng(a.seed)
    rows, t0 = [], time.perf_counter()
    for step in range(1, a.steps + 1):
        i = gen.integers(0, len(train), cfg.batch_size)
        x = torch.as_tensor(train.images[i]).float()
        pos = torch.as_tensor(train.positions[i]).long()
        if locate is not None:
            pos = locate(x, pos.shape[1])
        if a.jitter:
            off = torch.as_tensor(gen.integers(-a.jitter, a.jitter + 1, pos.shape))
            pos = torch.where(pos >= 0, (pos + off).clamp(0, cfg.image_size - 1), pos)
        w = min(step / a.kl_anneal, 1.0) if a.kl_anneal else 1.0
        recon, kl, _, _ = step_terms(model, x, pos)
        loss = (recon + w * kl).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % 50 == 0 or step == a.steps:
            model.eval()
            with torch.no_grad():
                xt = torch.as_tensor(test.images).float()
                tpos = torch.as_tensor(test.positions).long()
                r, k, lam, m = step_terms(model, xt, tpos if locate is None else locate(xt, tpos.shape[1]))
                iou = float(np.nanmean(ink_iou(lam, xt)))
                kl_obj = float(k.sum() / m.sum().clamp(min=1))
            model.train()
            row = {"step": step, "wall_s": round(time.perf_counter() - t0, 1),
                   "test_recon": round(float(r.mean()), 2), "test_kl_app": round(float(k.mean()), 2),
                   "kl_app_obj": round(kl_obj, 2), "ink_iou": round(iou, 3), "kl_weight": w}
            rows.append(row)
            print(row, flush=True)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    with open(a.out, "w", newline="") as f:
        wr = csv.DictWriter(f, list(rows[0]))
        wr.writeheader()
        wr.writerows(rows)


if __name__ == "__main__":
    main()

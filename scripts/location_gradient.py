"""Does the reconstruction still teach the location net at low temperature? (issues 8 and 11)

For a LAVAE checkpoint and a batch of test images (eval mode, z_app at its posterior mean, the
model's own count), the gradient of the reconstruction term with respect to the location logits,
through the Gumbel-softmax sample (Eq. 8, 11; relaxed rendering, or ``straight-through``: hard
forward), at several temperatures: its norm per draw and the norm of its mean over ``--draws``
draws. Their ratio is ~1 when every draw points the same way (a usable signal) and ~1/sqrt(draws)
for pure noise. The location KL's gradient norm (analytic term) is printed for scale.

    python scripts/location_gradient.py checkpoints/lavae_multi-mnist-1k_cpu_s0/weights.pt
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from lavae_core.checkpoint import lavae_for_command  # noqa: E402
from lavae_core.cli import Parser, positive_int  # noqa: E402
from lavae_core.datasets import load  # noqa: E402
from lavae_core.lavae import bernoulli_log_prob, sample_without_replacement  # noqa: E402


def gradient_consistency(model, x: torch.Tensor, tau: float, straight_through: bool, draws: int):
    """(mean recon, mean per-draw gradient norm, norm of the mean gradient) over ``draws`` draws."""
    with torch.no_grad():
        h_app, h_loc = model.infer_maps(x)
        n, _ = model.count(h_loc)
    k = max(int(n.max()), 1)
    mask = torch.arange(k)[None] < n[:, None]
    grads, recons = [], []
    for _ in range(draws):
        logits = h_loc.flatten(1).clone().requires_grad_(True)
        idx, y, _, _ = sample_without_replacement(logits, k, tau, block=model.cfg.loc_block)
        if straight_through:
            y = F.one_hot(idx, logits.shape[1]).to(y.dtype) - y.detach() + y
        mu, _ = torch.einsum("bkd,bcd->bkc", y, h_app.flatten(2)).chunk(2, -1)
        lam = model.render(model.decode_sprites(mu, mask), y, mask)
        recon = -bernoulli_log_prob(lam, x)
        grads.append(torch.autograd.grad(recon.sum(), logits)[0])
        recons.append(float(recon.detach().mean()))
    g = torch.stack(grads)
    return float(np.mean(recons)), float(g.norm(dim=2).mean()), float(g.mean(0).norm(dim=1).mean())


def main(argv=None) -> None:
    prog = "python scripts/location_gradient.py"
    p = Parser(prog=prog, description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint")
    p.add_argument("--images", type=positive_int, default=64)
    p.add_argument("--draws", type=positive_int, default=8)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    model, cfg, ckpt = lavae_for_command(prog, a.checkpoint)
    model.eval()
    torch.manual_seed(a.seed)
    x = torch.as_tensor(load(cfg.dataset, "test").images[:a.images]).float()
    print(f"{a.checkpoint}: step {ckpt['step']}, {a.images} test images, {a.draws} draws")
    for st in (False, True):
        for tau in (0.5, 0.2, 0.1, 0.05, 0.02):
            r, per, mean = gradient_consistency(model, x, tau, st, a.draws)
            print(f"  {'straight-through' if st else 'relaxed'} tau {tau}: recon {r:.1f}, gradient "
                  f"norm per draw {per:.3g}, of the mean {mean:.3g}, ratio {mean / per:.2f}")
    with torch.no_grad():
        h_loc = model.infer_loc(x)
    logits = h_loc.flatten(1).clone().requires_grad_(True)
    k = max(int(model.count(h_loc)[0].max()), 1)
    neg_ent = sample_without_replacement(logits, k, 0.5, block=cfg.loc_block)[3]
    g = torch.autograd.grad(neg_ent.sum(), logits)[0]
    print(f"  location KL (analytic, all {k} slots): gradient norm {float(g.norm(dim=1).mean()):.3g}")


if __name__ == "__main__":
    main()

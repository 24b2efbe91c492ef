"""Fully convolutional VAE (Appendix B, "Baseline implementation" and "Training warm-up").

One class serves two roles:
- the baseline beta-VAE: 1024 latents as a 16 x 8 x 8 tensor, beta annealed 0 -> 1 (App. B);
- the auxiliary VAE of LAVAE's warm-up: 8 x 11 x 11 latents whose location-wise KL map is the
  target that h_loc is pulled towards (App. B, "Training warm-up"; Nash et al., 2017).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .nets import ResBlock, conv_act_bn

LOG_2PI = math.log(2 * math.pi)


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Elementwise KL(N(mu, exp(logvar)) || N(0, 1))."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar)


def log_normal(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Elementwise log N(z; mu, exp(logvar))."""
    return -0.5 * (LOG_2PI + logvar + (z - mu).pow(2) * torch.exp(-logvar))


def bernoulli_log_lik(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """log p(x | logits) summed over all but the first dimension (Eq. 12)."""
    return -F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1)


class ConvVAE(nn.Module):
    """Fully convolutional VAE with a 3-D latent tensor (App. B).

    Encoder: a stem conv (stride ``stem_stride``), ``blocks`` residual blocks with a stride-2 conv
    after the blocks listed in ``down_after``, and a final conv to 2 x ``z_channels`` (a valid conv
    when the trunk is larger than ``z_size``). The decoder mirrors it with transposed convs, except
    that a stride-2 stem is undone by bilinear interpolation and an ordinary conv. Convs between two
    residual blocks have no activation/batch norm, as in the paper. Outputs Bernoulli logits.
    """

    def __init__(self, in_ch: int, width: int, z_channels: int, z_size: int, image_size: int = 64,
                 stem_stride: int = 2, blocks: int = 4, down_after: tuple[int, ...] = (0, 1)):
        super().__init__()
        self.z_shape = (z_channels, z_size, z_size)
        trunk = image_size // stem_stride // 2 ** len(down_after)
        if trunk < z_size:
            raise ValueError(f"trunk {trunk}x{trunk} is smaller than the latent grid {z_size}")
        k = trunk - z_size + 1  # valid conv from trunk to z_size, or 3x3 'same' when equal
        enc = [conv_act_bn(in_ch, width, 3, stem_stride, 1)]
        for b in range(blocks):
            enc.append(ResBlock(width))
            if b in down_after:
                enc.append(nn.Conv2d(width, width, 4, 2, 1))
        enc.append(nn.Conv2d(width, 2 * z_channels, 3 if k == 1 else k, 1, 1 if k == 1 else 0))
        self.encoder = nn.Sequential(*enc)

        dec = [nn.ConvTranspose2d(z_channels, width, 3 if k == 1 else k, 1, 1 if k == 1 else 0),
               nn.LeakyReLU(0.2), nn.BatchNorm2d(width)]
        for b in reversed(range(blocks)):
            if b in down_after:
                dec.append(nn.ConvTranspose2d(width, width, 4, 2, 1))
            dec.append(ResBlock(width))
        if stem_stride == 2:
            dec.append(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False))
        dec.append(nn.Conv2d(width, in_ch, 3, padding=1))
        self.decoder = nn.Sequential(*dec)
        self.bf16 = False  # bf16 autocast of the nets while training (cfg.bf16, issue 9)

    @classmethod
    def baseline(cls, cfg) -> "ConvVAE":
        """The paper's baseline: latents d_VAE/64 x 8 x 8."""
        if cfg.vae_latents % 64:
            raise ValueError(f"vae_latents must be a multiple of 64, got {cfg.vae_latents}")
        vae = cls(cfg.channels, cfg.vae_width, cfg.vae_latents // 64, 8, cfg.image_size)
        vae.bf16 = bool(cfg.bf16)
        return vae

    @classmethod
    def auxiliary(cls, cfg) -> "ConvVAE":
        """LAVAE's warm-up VAE: 3 residual blocks, downsampling between them, 8 x 11 x 11 latents."""
        vae = cls(cfg.channels, cfg.aux_width, cfg.aux_latent_channels, cfg.aux_latent_size,
                  cfg.image_size, stem_stride=1, blocks=3, down_after=(0, 1))
        vae.bf16 = bool(cfg.bf16)
        return vae

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.encoder(x).chunk(2, dim=1)
        return mu, logvar.clamp(-12.0, 8.0)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Bernoulli logits of the image."""
        return self.decoder(z)

    def loss_terms(self, x: torch.Tensor, beta=1.0) -> dict[str, torch.Tensor]:
        """Per-image negative beta-ELBO terms (analytic KL) and the location-wise KL map.

        ``beta`` may be a 0-dim tensor (torch.compile). With ``bf16`` (training only) the nets run
        under bf16 autocast and their outputs are cast back to x's dtype (float32) before the likelihood and KL."""
        amp = torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=self.bf16 and self.training)
        with amp:
            mu, logvar = self.encode(x)
        mu, logvar = mu.to(x.dtype), logvar.to(x.dtype)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
        with amp:
            logits = self.decode(z)
        recon = -bernoulli_log_lik(logits.to(x.dtype), x)
        kl_map = gaussian_kl(mu, logvar).sum(1, keepdim=True)  # (B, 1, h, w)
        kl = kl_map.flatten(1).sum(1)
        return {"loss": recon + beta * kl, "recon": recon, "kl": kl, "elbo": -(recon + kl),
                "kl_map": kl_map}

    def log_weights(self, x: torch.Tensor, k: int) -> torch.Tensor:
        """log p(x, z_k) - log q(z_k | x) for k samples per image: (B, k). Batched over samples."""
        mu, logvar = self.encode(x)
        b = x.shape[0]
        eps = torch.randn((k,) + mu.shape, device=x.device, dtype=mu.dtype)
        z = mu + eps * (0.5 * logvar).exp()                           # (k, B, c, h, w)
        log_q = log_normal(z, mu, logvar).flatten(2).sum(2)
        log_p = (-0.5 * (LOG_2PI + z.pow(2))).flatten(2).sum(2)
        logits = self.decode(z.flatten(0, 1))
        xk = x.unsqueeze(0).expand((k,) + x.shape).flatten(0, 1)
        log_lik = bernoulli_log_lik(logits, xk).view(k, b)
        return (log_lik + log_p - log_q).t()

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Bernoulli means of n images drawn from the prior p(z)."""
        dev = next(self.parameters()).device
        z = torch.randn((n,) + self.z_shape, generator=generator, device="cpu").to(dev)
        return torch.sigmoid(self.decode(z))

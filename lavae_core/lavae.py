"""LAVAE: the Location-Appearance VAE (paper Section 2, Appendices A and B).

Generative model (Eq. 1-4, 12): n ~ Cat(M + 1, a) with a learned; n locations drawn uniformly
without replacement among the D pixels (Eq. 3); z_app ~ N(0, I_L); each sprite f_sprite(z_app) is
convolved with its location's one-hot map and the n results are summed into the Bernoulli means.

Inference model (Eq. 5, 7-11): two fully convolutional nets give h_app (2L channels) and h_loc
(1 channel, times gamma); n is f_count(h_loc) (a point mass); locations are sampled sequentially
without replacement from softmax(h_loc) (Gumbel-softmax while training; hard samples with the
score-function gradient under ``loc_estimator = "score"``, not in the paper); the appearance posterior's
mean and log-variance are read off h_app at each location.

Loss: the negative ELBO (Eq. 6) with the KL split as in Appendix A.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .baseline import ConvVAE, gaussian_kl, log_normal
from .nets import ResBlock, ResNet, conv_act_bn, set_padding_mode

EPS = 1e-5  # Bernoulli means are clamped to [EPS, 1 - EPS]; see LAVAE.render


def bernoulli_log_prob(lam: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """log Bernoulli(x; lam) summed over channels and pixels (Eq. 12): one term per pixel and
    channel, so 3D terms for multi-dSprites."""
    return (x * lam.log() + (1 - x) * (-lam).log1p()).flatten(1).sum(1)


def f_count(h_loc: torch.Tensor, threshold: float, window: int, max_objects: int):
    """f_count of Appendix B: keep the points of h_loc that are local maxima (within a ``window``
    x ``window`` neighbourhood) and count those above ``threshold``; at most ``max_objects``.

    h_loc: (B, H, W) or (B, 1, H, W). Returns (counts (B,) long, peaks (B, H, W) bool).
    A 3x3 neighbourhood over-counts on blurry maps; a sprite-sized window does not, and never merges
    two objects of the data sets, whose centres are at least a box width apart.
    """
    h = h_loc.reshape(h_loc.shape[0], 1, *h_loc.shape[-2:])
    # the window's maximum, separably (rows, then columns): the same values, ~window/2 x cheaper
    pooled = F.max_pool2d(h, (1, window), stride=1, padding=(0, window // 2))
    pooled = F.max_pool2d(pooled, (window, 1), stride=1, padding=(window // 2, 0))
    peaks = ((h == pooled) & (h > threshold)).squeeze(1)
    return peaks.flatten(1).sum(1).clamp(max=max_objects), peaks


TAKEN = -1e4  # logit of an already drawn location: finite, so q log q and its gradient stay 0


def sample_without_replacement(logits: torch.Tensor, k: int, tau=None,
                               generator: torch.Generator | None = None,
                               noise: torch.Tensor | None = None, block: int = 1):
    """Eq. 8 and 11: k sequential draws from Cat(softmax(logits)) without replacement.

    After each draw the chosen location's logit is set to a large negative value (``TAKEN``),
    which is Eq. 11's renormalised b^(i) (its probability underflows to exactly 0; unlike -inf it
    keeps q log q and every gradient finite). ``block`` > 1 (odd; not in the paper) takes the
    ``block`` x ``block`` square around each drawn location out of the later draws (logits are
    then a square H x W map flattened): a variational family in which two draws cannot land on one
    object's plateau. The prior (Eq. 3) is unchanged and q's support stays inside it, so the ELBO
    remains a bound; log_q and neg_entropy are those of the blocked distributions. Draws use the
    Gumbel-max trick; with ``tau`` the relaxed one-hot sample softmax((logits + g) / tau) (Gumbel-softmax) is returned too, for
    single-sample gradients.

    Returns idx (B, k) long, y (B, k, D) float or None, log_q (B, k): log b^(i)[idx_i], and
    neg_entropy (B, k): sum_d b^(i)_d log b^(i)_d, the analytic E[log q(z_loc^(i) | z_loc^(<i))]
    given the earlier draws (see :meth:`LAVAE.loss_terms`).

    ``noise`` (at least (k, B, D) uniforms in (0, 1)) replaces the per-draw ``torch.rand``: the
    training step draws it once for all M slots, so that its eager and static-slot versions
    consume the same random numbers. ``tau`` may be a float or a 0-dim tensor (no recompilation
    when it is annealed under torch.compile). Nothing here reads a value back to the host.
    """
    b, d = logits.shape
    if k > d:
        raise ValueError(f"cannot draw {k} locations without replacement from {d}")
    side = math.isqrt(d)
    if block > 1 and (block % 2 == 0 or side * side != d):
        raise ValueError(f"block must be odd and the logits a flattened square map, got block {block}, D = {d}")
    taken = torch.zeros(b, d, dtype=torch.bool, device=logits.device)
    if block > 1:   # row and column of every location, to block the square around each draw
        pix = torch.arange(d, device=logits.device)
        rows, cols, half = pix // side, pix % side, block // 2
    idx, ys, log_q, neg_ent = [], [], [], []
    for _ in range(k):
        lg = logits.masked_fill(taken, TAKEN)
        if noise is not None:
            u = noise[len(idx)]
        else:
            u = torch.rand(b, d, generator=generator,
                           device="cpu" if generator is not None else logits.device)
        g = -torch.log(-torch.log(u.to(logits.device).clamp(1e-10, 1 - 1e-7)))
        i = (lg + g).argmax(1)
        lq = lg.log_softmax(1)
        log_q.append(lq.gather(1, i[:, None]).squeeze(1))
        neg_ent.append((lq.exp() * lq).sum(1))
        if tau is not None:
            ys.append(((lg + g) / tau).softmax(1))
        idx.append(i)
        if block == 1:
            taken = taken.scatter(1, i[:, None], True)
        else:
            near_r = (rows[None] - (i // side)[:, None]).abs() <= half
            taken = taken | (near_r & ((cols[None] - (i % side)[:, None]).abs() <= half))
    if k == 0:
        empty = logits.new_zeros(b, 0)
        return (empty.long(), (logits.new_zeros(b, 0, d) if tau is not None else None), empty,
                empty)
    return (torch.stack(idx, 1), torch.stack(ys, 1) if tau is not None else None,
            torch.stack(log_q, 1), torch.stack(neg_ent, 1))


def local_entropy(logits: torch.Tensor, idx: torch.Tensor, window: int) -> torch.Tensor:
    """Entropy of softmax(``logits``) renormalised within the ``window`` x ``window`` square around
    each drawn location (``loc_sharpen_window``; not in the paper): one object's spread, where the
    entropy of the whole q also counts the spread across objects.

    logits (B, H, W), idx (B, k) flattened locations -> (B, k) nats. Pixels outside the image are
    left out. Gathered, not unfolded: B x k x window^2 values; no host read.
    """
    b, hgt, wid = logits.shape
    r = window // 2
    padded = F.pad(logits, (r, r, r, r), value=TAKEN).flatten(1)         # (B, (H+2r)(W+2r))
    off = torch.arange(-r, r + 1, device=logits.device)
    rows = (idx // wid)[..., None, None] + r + off[:, None]               # (B, k, w, 1)
    cols = (idx % wid)[..., None, None] + r + off[None, :]                # (B, k, 1, w)
    flat = (rows * (wid + 2 * r) + cols).flatten(2)                       # (B, k, w * w)
    lq = padded.gather(1, flat.flatten(1)).view(flat.shape).log_softmax(-1)
    return -(lq.exp() * lq).sum(-1)


def background_hinge(h_loc: torch.Tensor, x: torch.Tensor, window: int, margin: float) -> torch.Tensor:
    """``loc_bg_hinge``'s penalty (not in the paper): per image, the sum of relu(h_loc - margin)^2
    over the blank pixels of ``x``: those whose ``window`` x ``window`` square holds no ink.

    h_loc (B, H, W), x (B, C, H, W) -> (B,). f_count (App. B) counts the local maxima above an
    absolute threshold, but once q is sharp the background holds ~e^-30 of its mass, so no term of
    the ELBO keeps it below that threshold: it drifts with the weights the objects' peaks share.
    Where the image is blank there is no object to find, whatever the model has learned; near ink
    the penalty says nothing (measured: a version that also pressed on ink outside the drawn
    locations' squares taught the net to suppress neighbouring objects, 7-digit count 99.6 % ->
    28.8 % in 500 steps). No host read.
    """
    ink = x.detach().amax(1, keepdim=True)                                # (B, 1, H, W)
    near = F.max_pool2d(ink, window, stride=1, padding=window // 2)[:, 0] > 0
    return (F.relu(h_loc - margin).pow(2) * (~near).to(h_loc.dtype)).flatten(1).sum(1)


def sprite_offsets(sprites: torch.Tensor) -> torch.Tensor:
    """Each sprite's centre of mass (its values summed over channels as weights) minus the canvas
    centre, in pixels: sprites (..., C, S, S) -> (..., 2) (row, col). ``sprite_centre`` (not in the
    paper) penalises its square: a decoder that may draw its object anywhere on the canvas lets
    z_app undo a shifted location, so a plateau of locations explains an object as well as one
    pixel does (measured: ``diagnostics.shift_slope`` 0.07-0.21 on the shipped multi-dSprites
    models; pinned by this penalty, q stayed as spread: results/appearance/README.md)."""
    s = sprites.shape[-1]
    w = sprites.sum(-3)                                                   # (..., S, S)
    mass = w.sum((-2, -1)).clamp_min(1e-3)
    ar = torch.arange(s, device=sprites.device, dtype=sprites.dtype) - (s // 2)
    return torch.stack([(w.sum(-1) * ar).sum(-1), (w.sum(-2) * ar).sum(-1)], -1) / mass[..., None]


class _SampleWeights:
    """Holder of the per-sample weights (N,) that :class:`MaskedBatchNorm2d` layers read; None
    outside a static-slot training step. ``update`` False: batch statistics without touching the
    running ones (the ``loc_estimator = "score"`` baseline's extra pass). A plain object (not a
    module or buffer): nothing is saved."""
    value: torch.Tensor | None = None
    update: bool = True


class MaskedBatchNorm2d(nn.BatchNorm2d):
    """Batch norm whose training statistics see only the samples of weight 1 (issue 9).

    With ``holder.value`` None, or in eval mode, this is exactly ``nn.BatchNorm2d``. With weights
    w (N,) in {0, 1} the batch mean and (biased) variance are those of the samples with w = 1, and
    the running statistics are updated as ``nn.BatchNorm2d`` would on that sub-batch (unbiased
    variance, momentum); with no such sample they are left alone. So f_sprite run on all B x M
    slots of a static step, absent slots weighted 0, matches f_sprite run on the present objects
    alone (the eager step's boolean indexing) in its output for them, in every gradient, and in
    its running statistics (tests/test_lavae.py). Same parameters and buffers: state_dicts are
    unchanged. Absent samples are normalised with the present ones' statistics and must be
    discarded by the caller (LAVAE.render multiplies them by 0).
    """

    holder: _SampleWeights | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.holder.value if self.holder is not None else None
        if w is None or not self.training:
            return super().forward(x)
        keep = (w > 0)[:, None, None, None]
        per = x.shape[2] * x.shape[3]
        n = w.sum() * per                                   # values per channel in the sub-batch
        n1 = n.clamp(min=1.0)
        xs = torch.where(keep, x, torch.zeros((), dtype=x.dtype, device=x.device))
        mean = xs.sum((0, 2, 3)) / n1
        xc = x - mean[None, :, None, None]
        var = torch.where(keep, xc, torch.zeros((), dtype=x.dtype, device=x.device)).pow(2).sum((0, 2, 3)) / n1
        if self.track_running_stats and self.running_mean is not None and self.holder.update:
            with torch.no_grad():
                any_ = n > 0
                self.num_batches_tracked.add_(any_.long())
                mom = self.momentum if self.momentum is not None else \
                    1.0 / self.num_batches_tracked.clamp(min=1).to(x.dtype)
                unbiased = var.detach() * n / (n - 1).clamp(min=1.0)
                self.running_mean.copy_(torch.where(any_, torch.lerp(self.running_mean, mean.detach(), mom),
                                                    self.running_mean))
                self.running_var.copy_(torch.where(any_, torch.lerp(self.running_var, unbiased, mom),
                                                   self.running_var))
        y = xc * torch.rsqrt(var + self.eps)[None, :, None, None]
        if self.affine:
            y = y * self.weight[None, :, None, None] + self.bias[None, :, None, None]
        return y


def use_masked_batch_norm(module: nn.Module) -> _SampleWeights:
    """Turn every ``nn.BatchNorm2d`` inside ``module`` into a :class:`MaskedBatchNorm2d` (in place,
    same parameters and buffers) sharing one weights holder, which is returned."""
    holder = _SampleWeights()
    for m in module.modules():
        if type(m) is nn.BatchNorm2d:
            m.__class__ = MaskedBatchNorm2d
            m.holder = holder
    return holder


class SpriteDecoder(nn.Module):
    """f_sprite (App. B): FC -> conv -> bilinear up-sampling to the sprite size -> concat z
    (expanded over space) -> 3 residual blocks of 2 convs -> conv -> sigmoid. Leaky ReLU and batch
    norm after every layer except in the last residual block."""

    def __init__(self, latent_dim: int, width: int, base: int, size: int, out_ch: int):
        super().__init__()
        self.width, self.base, self.size = width, base, size
        self.fc = nn.Sequential(nn.Linear(latent_dim, width * base * base), nn.LeakyReLU(0.2))
        self.fc_bn = nn.BatchNorm2d(width)
        self.conv = conv_act_bn(width, width)
        self.blocks = nn.Sequential(ResBlock(width + latent_dim, width), ResBlock(width),
                                    ResBlock(width, plain=True))
        self.out = nn.Conv2d(width, out_ch, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """z (N, L) -> sprites (N, C, S, S) in (0, 1)."""
        h = self.fc_bn(self.fc(z).view(-1, self.width, self.base, self.base))
        h = F.interpolate(self.conv(h), size=(self.size, self.size), mode="bilinear",
                          align_corners=False)
        h = torch.cat([h, z[:, :, None, None].expand(-1, -1, self.size, self.size)], 1)
        return torch.sigmoid(self.out(self.blocks(h)))


@dataclass
class Inference:
    """What LAVAE infers for a batch (used by figures and widgets). K = max count in the batch;
    slots at or beyond an image's count are padding (mask False, location -1)."""
    n: torch.Tensor          # (B,) inferred number of objects
    mask: torch.Tensor       # (B, K) bool
    locations: torch.Tensor  # (B, K, 2) long, (row, col) of each object's centre, -1 if absent
    z_app: torch.Tensor      # (B, K, L): posterior means (or samples)
    logvar: torch.Tensor     # (B, K, L)
    sprites: torch.Tensor    # (B, K, C, S, S)
    recon: torch.Tensor      # (B, C, H, W) Bernoulli means
    h_loc: torch.Tensor      # (B, H, W) location logits


class LAVAE(nn.Module):
    """The LAVAE model; see the module docstring. ``cfg`` is a :class:`lavae_core.config.Config`."""

    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        c, w, L = cfg.channels, cfg.inf_width, cfg.latent_dim
        self.app_net = ResNet(c, w, 2 * L, cfg.inf_blocks)
        self.loc_net = nn.Sequential(ResNet(c, w, w, cfg.inf_blocks), conv_act_bn(w, w),
                                     conv_act_bn(w, w), nn.Conv2d(w, 1, 3, padding=1))
        set_padding_mode(self.loc_net, cfg.loc_padding)
        self.prior_n_logits = nn.Parameter(torch.zeros(cfg.max_objects + 1))  # a of Eq. 2
        self.sprite = SpriteDecoder(L, cfg.dec_width, cfg.dec_base, cfg.sprite_size, c)
        # static-slot steps run f_sprite on all slots; its batch norms see present objects only
        self._sprite_weights = use_masked_batch_norm(self.sprite)
        self.aux = ConvVAE.auxiliary(cfg)  # warm-up only (App. B)

    # ---------------------------------------------------------------- parameter groups
    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        """'loc': the location inference net (its own learning rate and decay, App. B);
        'rest': appearance net, f_sprite, p(n) and the auxiliary VAE."""
        loc = list(self.loc_net.parameters())
        ids = {id(p) for p in loc}
        return {"loc": loc, "rest": [p for p in self.parameters() if id(p) not in ids]}

    @property
    def D(self) -> int:
        return self.cfg.image_size ** 2

    def autocast(self, x: torch.Tensor):
        """bf16 autocast for the convolutional nets while training with ``cfg.bf16`` (issue 9);
        callers cast the nets' outputs back to the input's dtype (float32), so sampling, rendering, the likelihood and
        every KL are computed in float32. Evaluation always runs in float32."""
        return torch.autocast(x.device.type, dtype=torch.bfloat16,
                              enabled=bool(self.cfg.bf16) and self.training)

    def check_input(self, x: torch.Tensor) -> None:
        c, s = self.cfg.channels, self.cfg.image_size
        if x.dim() != 4 or tuple(x.shape[1:]) != (c, s, s):
            raise ValueError(f"expected images of shape (B, {c}, {s}, {s}) for {self.cfg.dataset}, "
                             f"got {tuple(x.shape)}")

    # ---------------------------------------------------------------- inference pieces
    def infer_maps(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """h_app (B, 2L, H, W) and h_loc = gamma * logits (B, H, W) (Section 2, App. B).

        The logits are measured from each image's median logit. Softmax, hence sampling and every
        term of the ELBO, ignores such a shift; f_count's absolute threshold does not. App. B's
        rescaling argument assumes "the logits ... are either 0 or h": centring on the median (the
        background, as objects cover well under half of the pixels) makes that hold by
        construction, so the background's level cannot drift towards the threshold once the
        warm-up target is annealed away. Its local maxima can: on the image's border (zero
        padding) they drifted from 1.8 at step 3,000 to over the cpu profile's threshold 4 at
        ~7,700 steps on one long run (results/stability); ``loc_bg_hinge`` holds them down.
        """
        x = self._prepare(x)
        with self.autocast(x):
            h_app = self.app_net(x)
        return h_app.to(x.dtype), self._h_loc(x)

    def infer_loc(self, x: torch.Tensor) -> torch.Tensor:
        """h_loc alone, as :meth:`infer_maps` computes it: all that f_count needs (half the cost)."""
        return self._h_loc(self._prepare(x))

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        return x.contiguous(memory_format=torch.channels_last) if self.cfg.channels_last else x

    def _h_loc(self, x: torch.Tensor) -> torch.Tensor:
        with self.autocast(x):
            raw = self.loc_net(x)[:, 0]
        raw = raw.to(x.dtype)
        return self.cfg.gamma * (raw - raw.flatten(1).median(1).values[:, None, None])

    def count(self, h_loc: torch.Tensor, threshold: float | None = None, window: int | None = None):
        """f_count with the threshold 4 gamma (App. B; ``threshold`` in units of gamma, default the
        config's ``count_threshold``; ``window`` its local-maximum window, default the config's
        ``count_window``); returns (counts, peaks)."""
        cfg = self.cfg
        threshold = cfg.count_threshold if threshold is None else threshold
        window = cfg.count_window if window is None else window
        return f_count(h_loc, threshold * cfg.gamma, window, cfg.max_objects)

    def log_prior_n(self) -> torch.Tensor:
        """log p(n), n = 0..M (Eq. 2)."""
        return self.prior_n_logits.log_softmax(0)

    def log_prior_loc(self, k: int, device=None) -> torch.Tensor:
        """log p(z_loc^(i) | z_loc^(<i)) = -log(D - i + 1), i = 1..k (Eq. 3)."""
        return -torch.log(self.D - torch.arange(k, device=device, dtype=torch.float32))

    # ---------------------------------------------------------------- generative pieces
    def decode_sprites(self, z: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """f_sprite on the present objects only: z (B, K, L), mask (B, K) -> (B, K, C, S, S)."""
        b, k, _ = z.shape
        s, c = self.cfg.sprite_size, self.cfg.channels
        sprites = z.new_zeros(b, k, c, s, s)
        if mask.any():
            with self.autocast(z):
                sprites[mask] = self.sprite(z[mask]).to(z.dtype)
        return sprites

    def decode_sprites_static(self, z: torch.Tensor, mask: torch.Tensor,
                              update_stats: bool = True) -> torch.Tensor:
        """f_sprite on every slot, with static shapes (issue 9): z (B, K, L), mask (B, K) ->
        (B, K, C, S, S). Absent slots' sprites are garbage (finite) and must be masked out, as
        :meth:`render` does; the batch norms' statistics see the present objects only
        (:class:`MaskedBatchNorm2d`), so present sprites, gradients and running statistics equal
        :meth:`decode_sprites`'. ``update_stats`` False leaves the running statistics alone."""
        b, k, latent = z.shape
        self._sprite_weights.value = mask.reshape(b * k).to(z.dtype)
        self._sprite_weights.update = update_stats
        try:
            with self.autocast(z):
                sprites = self.sprite(z.reshape(b * k, latent)).to(z.dtype)
        finally:
            self._sprite_weights.value = None
            self._sprite_weights.update = True
        return sprites.view(b, k, *sprites.shape[1:])

    def render(self, sprites: torch.Tensor, where: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Eq. 4: lambda = sum_i f_sprite(z_app^(i)) * z_loc^(i), each sprite centred on its location.

        ``where`` is either location indices (B, K) long (hard one-hot: the sprites are pasted by a
        scatter-add, cheap) or relaxed one-hot maps (B, K, D) float (Gumbel-softmax samples: the 2-D
        convolution the paper writes, computed with FFTs, ~10x cheaper than a direct convolution
        with 17x17 kernels). Absent slots (mask False) add
        nothing. Overlapping sprites could sum past 1, and pixels no sprite touches are exactly 0,
        so the means are clamped to [1e-5, 1 - 1e-5]; the data sets' objects do not overlap, so the
        upper clamp only acts on overlapping sprites, and the lower one costs < 0.05 nats an image.
        """
        b, k, c, s, _ = sprites.shape
        hw = self.cfg.image_size
        sprites = sprites * mask[:, :, None, None, None].to(sprites.dtype)
        if k == 0:
            return sprites.new_full((b, c, hw, hw), EPS)
        if where.dtype == torch.long:
            hp = hw + s - 1  # canvas padded by s//2 on every side
            r, col = where // hw, where % hw
            base = r * hp + col                                                 # (B, K)
            ar = torch.arange(s, device=where.device)
            offs = (ar[:, None] * hp + ar[None, :]).flatten()                   # (S*S,)
            index = (base[:, :, None] + offs).reshape(b, 1, k * s * s).expand(b, c, -1)
            src = sprites.permute(0, 2, 1, 3, 4).reshape(b, c, k * s * s)
            canvas = sprites.new_zeros(b, c, hp * hp).scatter_add(2, index, src)
            lam = canvas.view(b, c, hp, hp)[:, :, s // 2: s // 2 + hw, s // 2: s // 2 + hw]
        else:  # full linear convolution via FFT, summed over objects in the frequency domain
            n = hw + s - 1
            spec = torch.fft.rfft2(where.view(b, k, 1, hw, hw), s=(n, n)) * torch.fft.rfft2(sprites, s=(n, n))
            lam = torch.fft.irfft2(spec.sum(1), s=(n, n))[:, :, s // 2: s // 2 + hw, s // 2: s // 2 + hw]
        return lam.clamp(EPS, 1 - EPS)

    def locations_to_index(self, locations: torch.Tensor) -> torch.Tensor:
        """(..., 2) (row, col) -> flat index row * W + col; absent (-1) maps to 0."""
        hw = self.cfg.image_size
        if ((locations >= hw) | (locations < -1)).any():
            raise ValueError(f"locations must lie in [0, {hw}) (or -1 for absent)")
        return (locations[..., 0] * hw + locations[..., 1]).clamp(min=0)

    def decode(self, locations: torch.Tensor, z_app: torch.Tensor,
               mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Render an (edited) set of latents: locations (B, K, 2) (row, col), z_app (B, K, L);
        mask (B, K) defaults to locations >= 0. Returns (Bernoulli means (B, C, H, W), sprites)."""
        if mask is None:
            mask = (locations >= 0).all(-1)
        sprites = self.decode_sprites(z_app, mask)
        return self.render(sprites, self.locations_to_index(locations), mask), sprites

    # ---------------------------------------------------------------- the ELBO (Eq. 6, App. A)
    def loss_terms(self, x: torch.Tensor, tau, p_force_one=0.0, aux_weight=0.0,
                   kl_weight: float = 1.0, static: bool | None = None,
                   aux: bool | None = None) -> dict[str, torch.Tensor]:
        """Per-image terms of the negative ELBO, training version (relaxed locations).

        -ELBO = recon + kl_app + kl_loc + kl_n (Appendix A):
          kl_app = sum_i KL(q(z_app^(i) | z_loc^(i), x) || N(0, I))   (analytic)
          kl_loc = sum_i E[log q(z_loc^(i) | z_loc^(<i), x)] - log p(z_loc^(i) | z_loc^(<i))
          kl_n   = KL(delta(n - n_hat) || p(n)) = -log p(n_hat)
        kl_loc takes the inner expectation analytically, sum_d b_d log b_d + log(D - i + 1) given the
        earlier (sampled) draws: an unbiased estimate of Appendix A's term whose gradient is not
        pure noise (log q of the hard Gumbel-max sample has zero expected gradient).
        ``kl_weight`` < 1 (a KL warm-up, not in the paper) scales kl_app and kl_loc in ``loss``; the
        ``elbo`` returned stays the true bound. With ``cfg.app_free_bits`` = lambda > 0 (not in the
        paper) ``loss`` takes kl_app only over the latent dimensions whose KL, averaged over the
        batch's present objects, is >= lambda: the gradient of Kingma et al.'s (2016) free-bits
        objective sum_j max(lambda, E[KL_j]); ``elbo`` and ``kl_app`` stay the true terms.
        With ``cfg.loc_sharpen`` = lambda > 0 (not in the paper) ``loss`` adds lambda x (1 -
        ``aux_weight``) x the entropy of every present slot's q (``loc_ent``): the location KL
        rewards a spread q by its entropy, and a decoder that draws blurred prototypes rewards it
        too, so q can stay a plateau; this pulls the other way once the warm-up has placed h_loc.
        With ``cfg.loc_sharpen_forced`` False the images forced to n = 1 take no penalty. With
        ``cfg.loc_sharpen_window`` = w > 0 the penalty is each draw's :func:`local_entropy` in the
        w x w square around it instead (the whole q's entropy includes log n across n objects, so
        sharpening it pushes every object's peak but one down).
        With ``cfg.loc_bg_hinge`` = lambda > 0 (not in the paper) ``loss`` adds lambda x (1 -
        ``aux_weight``) x :func:`background_hinge` at half f_count's threshold (returned as
        ``bg_hinge``): h_loc stays below the threshold where the image is blank after the
        warm-up's squared loss, which held it there, has faded out.
        With ``cfg.sprite_centre`` = lambda > 0 (not in the paper) ``loss`` adds lambda x the squared
        distance (px^2) of every present sprite's centre of mass from its canvas centre
        (:func:`sprite_offsets`; their sum per image is returned as ``sprite_off2``): it pins each object
        to its location, so that z_app cannot undo a shifted location.
        With ``cfg.straight_through`` the forward pass renders and reads h_app at the hard (one-hot)
        locations while gradients flow through the Gumbel-softmax sample (not in the paper).
        With ``cfg.loc_estimator = "score"`` (not in the paper, which relaxes the sample with
        Gumbel-softmax) the locations are hard samples throughout and the location logits learn
        from the score-function (REINFORCE) estimator of the gradient of E_q[recon + kl_app +
        kl_loc]: ``loss`` adds (cost - baseline) x sum_i log q(z_loc^(i) | z_loc^(<i), x), with the
        cost's value held fixed and the baseline the same cost at the greedy locations
        (:meth:`_greedy_cost`, one more f_sprite pass without gradient); returned as ``score_adv``.
        Unbiased, where the relaxed gradient is biased and, at a low temperature, local.
        ``cfg.loc_estimator = "score-after-warmup"`` is the relaxed one while ``aux`` (the warm-up's
        terms) is on and the score-function one after.
        With probability ``p_force_one`` an image is explained with n = 1 object (the warm-up trick
        of App. B); p(n) is always fitted to the inferred n_hat, so forcing does not bias the prior.
        With ``cfg.forced_no_loc_grad`` the forced images send no gradient into h_loc: one sample
        per image would otherwise teach the location net to push every object's peak but one down.
        ``aux_weight`` > 0 adds the warm-up terms of App. B: the auxiliary VAE, "trained in
        parallel", at full weight (its own negative ELBO; no parameter is shared, so this only
        trains it), plus ``aux_weight`` x the squared distance between h_loc and its KL map
        (bilinearly up-sampled to D, times ``cfg.aux_target_scale``, no gradient into it; with
        ``cfg.aux_target_centred`` measured from its per-image median, as h_loc is), weighted by
        ``cfg.aux_sq_weight``. App. B's h_loc is the net's output before gamma, ours after it, so the
        paper's (h_loc - KL map)^2 is ours with scale gamma and weight 1/gamma^2 (the paper profile's
        4 and 1/16). Only the squared distance is "linearly annealed to 0".

        Two executions of the same function (issue 9). Eager (``static`` False): K = max n over
        the batch slots and f_sprite on the present objects (boolean indexing): one host read per
        step (K), few wasted slots; the CPU default. Static (``static`` True): always K = M
        slots, absent ones masked arithmetically, f_sprite's batch norm statistics restricted to
        present objects (:class:`MaskedBatchNorm2d`): no host synchronisation and fixed shapes,
        so that torch.compile / CUDA graphs capture the step once. Both draw their noise (the
        forcing coin, Gumbel noise and z_app's epsilon for all M slots) in the same calls, so on
        one seed they give the same terms and gradients up to float rounding
        (tests/test_lavae.py). ``static`` None: ``cfg.static_slots`` (None there: on CUDA only).
        ``tau``, ``p_force_one`` and ``aux_weight`` may be 0-dim tensors (no recompilation as they
        anneal); then pass ``aux`` (whether the warm-up terms are on) as a Python bool.
        """
        cfg = self.cfg
        if static is None:
            static = cfg.static_slots if cfg.static_slots is not None else x.is_cuda
        if aux is None:
            aux = bool(aux_weight > 0)
        h_app, h_loc = self.infer_maps(x)
        b, hw = x.shape[0], cfg.image_size
        d, big_m, dev = hw * hw, cfg.max_objects, x.device
        # every random number of the step, drawn up front for all M slots (same in both paths)
        forced = torch.rand(b, device=dev) < p_force_one
        gumbel_u = torch.rand(big_m, b, d, device=dev)
        eps = torch.randn(big_m, b, cfg.latent_dim, device=dev)
        n_hat, _ = self.count(h_loc.detach())
        n = torch.where(forced, torch.ones_like(n_hat), n_hat)
        logits = h_loc.flatten(1)
        if cfg.forced_no_loc_grad and (static or forced.any()):
            logits = torch.where(forced[:, None], logits.detach(), logits)
        k = big_m if static else int(n.max())
        score = cfg.loc_estimator == "score" or (cfg.loc_estimator == "score-after-warmup" and not aux)
        idx, y, log_q, neg_ent = sample_without_replacement(logits, k, None if score else tau,
                                                            noise=gumbel_u, block=cfg.loc_block)
        if cfg.straight_through:   # hard one-hot forward, Gumbel-softmax gradient
            y = F.one_hot(idx, logits.shape[1]).to(y.dtype) - y.detach() + y
        mask = torch.arange(k, device=dev)[None] < n[:, None]
        if score:                  # hard locations: Eq. 9 read at them, sprites pasted there
            mu, logvar = self.appearance_at(h_app, idx)
        else:                      # Eq. 9 at the relaxed location
            mu, logvar = torch.einsum("bkd,bcd->bkc", y, h_app.flatten(2)).chunk(2, -1)
        logvar = logvar.clamp(-12.0, 8.0)
        z = mu + eps[:k].transpose(0, 1) * (0.5 * logvar).exp()
        sprites = self.decode_sprites_static(z, mask) if static else self.decode_sprites(z, mask)
        lam = self.render(sprites, idx if score else y, mask)
        m = mask.to(x.dtype)
        recon = -bernoulli_log_prob(lam, x)
        kl_dims = gaussian_kl(mu, logvar) * m[..., None]          # (B, K, L), absent slots 0
        kl_app = kl_dims.sum((1, 2))
        kl_app_loss = kl_app
        if cfg.app_free_bits > 0:   # free bits: dimensions under the floor feel no KL gradient
            per_dim = kl_dims.detach().sum((0, 1)) / m.sum().clamp_min(1.0)
            kl_app_loss = (kl_dims * (per_dim >= cfg.app_free_bits).to(x.dtype)).sum((1, 2))
        kl_loc = ((neg_ent - self.log_prior_loc(k, dev)) * m).sum(1)
        kl_n = -self.log_prior_n()[n_hat]
        neg_elbo = recon + kl_app + kl_loc + kl_n
        loss = recon + kl_weight * (kl_app_loss + kl_loc) + kl_n   # = neg_elbo at weight 1, no free bits
        loc_ent = -(neg_ent * m).sum(1)                             # entropy of each drawn q, summed
        if cfg.loc_sharpen > 0:    # entropy penalty, faded in as the warm-up's squared loss fades
            pen = loc_ent if cfg.loc_sharpen_window == 0 else (
                local_entropy(logits.view(b, hw, hw), idx, cfg.loc_sharpen_window) * m).sum(1)
            pen = pen if cfg.loc_sharpen_forced else pen * (~forced).to(x.dtype)
            loss = loss + cfg.loc_sharpen * (1.0 - aux_weight) * pen
        extra = {}
        if cfg.loc_bg_hinge > 0:   # hold the background under f_count's threshold (not in the paper)
            extra["bg_hinge"] = background_hinge(h_loc, x, cfg.count_window, 0.5 * cfg.count_threshold * cfg.gamma)
            loss = loss + cfg.loc_bg_hinge * (1.0 - aux_weight) * extra["bg_hinge"]
        if score:   # the score-function gradient of E_q[cost] w.r.t. the location logits
            cost = recon + kl_app + kl_loc
            base = self._greedy_cost(x, h_app, logits, mask, eps[:k].transpose(0, 1))
            extra["score_adv"] = (cost - base).detach()
            loss = loss + extra["score_adv"] * (log_q * m).sum(1)
        if cfg.sprite_centre > 0:  # pin each drawn object to its location (not in the paper)
            extra["sprite_off2"] = (sprite_offsets(sprites).pow(2).sum(-1) * m).sum(1)
            loss = loss + cfg.sprite_centre * extra["sprite_off2"]
        out = {"loss": loss, "elbo": -neg_elbo, "recon": recon, "kl_app": kl_app,
               "kl_loc": kl_loc, "kl_n": kl_n, "n_hat": n_hat, "loc_ent": loc_ent, **extra}
        if aux:
            aux_terms = self.aux.loss_terms(x)
            target = cfg.aux_target_scale * F.interpolate(
                aux_terms["kl_map"].detach(), size=(hw, hw), mode="bilinear", align_corners=False)[:, 0]
            if cfg.aux_target_centred:   # measured from its median, like h_loc itself
                target = target - target.flatten(1).median(1).values[:, None, None]
            sq = (h_loc - target).pow(2).flatten(1).sum(1)
            out.update(aux_vae=aux_terms["loss"], aux_sq=sq,
                       loss=loss + aux_terms["loss"] + aux_weight * cfg.aux_sq_weight * sq)
        return out

    @torch.no_grad()
    def _greedy_cost(self, x: torch.Tensor, h_app: torch.Tensor, logits: torch.Tensor,
                     mask: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """recon + kl_app + kl_loc per image at the greedy locations (each draw the highest logit
        left, the same blocking) with the same z_app noise ``eps`` (B, K, L): the baseline of the
        ``loc_estimator = "score"`` gradient. It does not depend on the sampled locations, so the
        estimator stays unbiased; f_sprite's running statistics are left alone."""
        b, k = mask.shape
        half = logits.new_full((1, 1, 1), 0.5).expand(k, b, logits.shape[1])   # constant noise
        idx, _, _, neg_ent = sample_without_replacement(logits.detach(), k, noise=half,
                                                        block=self.cfg.loc_block)
        mu, logvar = self.appearance_at(h_app.detach(), idx)
        logvar = logvar.clamp(-12.0, 8.0)
        sprites = self.decode_sprites_static(mu + eps * (0.5 * logvar).exp(), mask, update_stats=False)
        m = mask.to(x.dtype)
        return (-bernoulli_log_prob(self.render(sprites, idx, mask), x)
                + (gaussian_kl(mu, logvar) * m[..., None]).sum((1, 2))
                + ((neg_ent - self.log_prior_loc(k, x.device)) * m).sum(1))

    def log_weights(self, x: torch.Tensor, k: int) -> torch.Tensor:
        """log p(x, n, z_loc, z_app) - log q(n, z_loc, z_app | x) for k exact (hard) samples per
        image, batched over samples: (B, k). Their log-mean-exp is the importance-sampled bound of
        Table 1; their mean is the ELBO (Eq. 6)."""
        h_app, h_loc = self.infer_maps(x)
        b = x.shape[0]
        n_hat, _ = self.count(h_loc)
        kmax = int(n_hat.max())
        rows = torch.arange(b, device=x.device).repeat_interleave(k)      # (B*k,) image of each row
        n = n_hat[rows]
        idx, _, log_q_loc, _ = sample_without_replacement(h_loc.flatten(1)[rows], kmax,
                                                           block=self.cfg.loc_block)
        mask = torch.arange(kmax, device=x.device)[None] < n[:, None]
        stats = h_app.flatten(2).transpose(1, 2)[rows[:, None], idx]       # (B*k, K, 2L), Eq. 9
        mu, logvar = stats.chunk(2, -1)
        logvar = logvar.clamp(-12.0, 8.0)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
        lam = self.render(self.decode_sprites(z, mask), idx, mask)
        m = mask.to(x.dtype)
        log_lik = bernoulli_log_prob(lam, x[rows])
        log_pz = (-0.5 * (math.log(2 * math.pi) + z.pow(2))).sum(-1)
        log_qz = log_normal(z, mu, logvar).sum(-1)
        latents = ((self.log_prior_loc(kmax, x.device) - log_q_loc + log_pz - log_qz) * m).sum(1)
        return (log_lik + self.log_prior_n()[n] + latents).view(b, k)

    # ---------------------------------------------------------------- figures and widgets
    @staticmethod
    def appearance_at(h_app: torch.Tensor, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Eq. 9: the posterior mean and log-variance of z_app read off h_app (B, 2L, H, W) at the
        hard locations idx (B, K) (flat pixel indices) -> (mu, logvar), each (B, K, L)."""
        stats = h_app.flatten(2).transpose(1, 2).gather(1, idx[:, :, None].expand(-1, -1, h_app.shape[1]))
        return stats.chunk(2, -1)

    @staticmethod
    def top_peaks(h_loc: torch.Tensor, peaks: torch.Tensor, k: int) -> torch.Tensor:
        """Flat indices (B, k) of the k highest f_count peaks of each map (h_loc, peaks: (B, H, W));
        an image with fewer peaks gets other pixels in its last slots, which callers mask by n."""
        score = h_loc.flatten(1).masked_fill(~peaks.flatten(1), float("-inf"))
        return score.topk(k, 1).indices if k else score.new_zeros(score.shape[0], 0).long()

    @torch.no_grad()
    def infer(self, x: torch.Tensor, sample: bool = False,
              generator: torch.Generator | None = None) -> Inference:
        """Count, locate and describe the objects of a batch.

        ``sample=False``: the locations are the n_hat peaks of h_loc found by f_count (highest
        first) and z_app is the posterior mean. ``sample=True``: locations drawn from q (Eq. 8, 11)
        and z_app from q (Eq. 10)."""
        h_app, h_loc = self.infer_maps(x)
        b, hw = x.shape[0], self.cfg.image_size
        n, peaks = self.count(h_loc)
        k = int(n.max())
        if sample:
            idx = sample_without_replacement(h_loc.flatten(1), k, generator=generator,
                                             block=self.cfg.loc_block)[0]
        else:
            idx = self.top_peaks(h_loc, peaks, k)
        mask = torch.arange(k, device=x.device)[None] < n[:, None]
        mu, logvar = self.appearance_at(h_app, idx)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp() if sample else mu
        locations = torch.stack([idx // hw, idx % hw], -1).masked_fill(~mask[..., None], -1)
        sprites = self.decode_sprites(z, mask)
        recon = self.render(sprites, idx, mask)
        return Inference(n, mask, locations, z, logvar, sprites, recon, h_loc)

    @torch.no_grad()
    def sample_prior(self, n_images: int, p_n: torch.Tensor | None = None,
                     generator: torch.Generator | None = None) -> tuple[torch.Tensor, dict]:
        """Images (Bernoulli means) from the generative model (Eq. 1-4). ``p_n``: a probability
        vector over 0..M replacing the learned p(n) (e.g. uniform on {4, 5} for Figure 9).
        Returns (images, latents dict with n, locations, z_app, mask)."""
        cfg, dev = self.cfg, self.prior_n_logits.device
        probs = self.log_prior_n().exp() if p_n is None else torch.as_tensor(p_n, dtype=torch.float32)
        if probs.shape != (cfg.max_objects + 1,) or (probs < 0).any() or probs.sum() <= 0:
            raise ValueError(f"p_n must be {cfg.max_objects + 1} non-negative probabilities")
        n = torch.multinomial(probs.cpu() / probs.sum(), n_images, True, generator=generator).to(dev)
        k = int(n.max())
        idx = torch.rand(n_images, self.D, generator=generator).argsort(1)[:, :k].to(dev)  # Eq. 3
        mask = torch.arange(k, device=dev)[None] < n[:, None]
        z = torch.randn(n_images, k, cfg.latent_dim, generator=generator).to(dev)
        hw = cfg.image_size
        locations = torch.stack([idx // hw, idx % hw], -1).masked_fill(~mask[..., None], -1)
        images, sprites = self.decode(locations, z, mask)
        return images, {"n": n, "locations": locations, "z_app": z, "mask": mask, "sprites": sprites}

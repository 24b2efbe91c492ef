"""LAVAE model: KL terms, location sampling, f_count, rendering, gradients, errors."""
import math

import pytest
import torch

from lavae_core.baseline import gaussian_kl, log_normal
from lavae_core.config import make_config
from lavae_core.lavae import LAVAE, bernoulli_log_prob, f_count, local_entropy, sample_without_replacement
from synthetic import blob_scenes


@pytest.fixture
def model():
    torch.manual_seed(0)
    return LAVAE(make_config("smoke"))


def test_gaussian_kl_matches_monte_carlo():
    torch.manual_seed(0)
    mu, logvar = torch.randn(5), torch.randn(5) * 0.5
    z = mu + torch.randn(200_000, 5) * (0.5 * logvar).exp()
    mc = (log_normal(z, mu, logvar) - log_normal(z, torch.zeros(5), torch.zeros(5))).mean(0)
    assert torch.allclose(gaussian_kl(mu, logvar), mc, atol=0.02)


def test_location_kl_matches_exact_enumeration():
    """E_q[sum_i log q(z_i | z_<i) - log p(z_i | z_<i)] for k = 2 draws without replacement from
    D = 16 locations: the one-sample estimator used in training, averaged, equals the exact KL."""
    torch.manual_seed(0)
    d = 16
    logits = torch.randn(d) * 2
    p = logits.softmax(0)
    exact = 0.0
    for i in range(d):
        for j in range(d):
            if i != j:
                pj = p[j] / (1 - p[i])
                exact += p[i] * pj * (math.log(p[i]) + math.log(pj) + math.log(d) + math.log(d - 1))
    _, _, log_q, neg_ent = sample_without_replacement(logits.expand(100_000, d), 2)
    prior = torch.log(torch.tensor([d, d - 1.0]))
    est = (log_q + prior).sum(1).mean()
    assert abs(float(est) - float(exact)) < 0.02
    # the analytic per-step term used in training estimates the same KL, with less variance
    analytic = (neg_ent + prior).sum(1)
    assert abs(float(analytic.mean()) - float(exact)) < 0.01
    assert float(analytic.var()) < 0.5 * float((log_q + prior).sum(1).var())


def test_analytic_location_kl_gradient_is_the_exact_gradient():
    """For one draw the analytic term sum_d q_d log q_d + log D is the exact KL(q || uniform);
    its gradient matches the exact one, while log q of the hard sample averages to ~0 gradient."""
    torch.manual_seed(0)
    logits = torch.randn(1, 16, requires_grad=True)
    _, _, _, neg_ent = sample_without_replacement(logits, 1)
    (g_analytic,) = torch.autograd.grad(neg_ent.sum(), logits)
    q = logits.detach().softmax(1)
    exact = q * (q.log() - (q * q.log()).sum())          # d/dlogits of sum q log q
    assert torch.allclose(g_analytic, exact, atol=1e-6)
    many = logits.detach().expand(50_000, 16).clone().requires_grad_(True)
    _, _, log_q, _ = sample_without_replacement(many, 1)
    (g_sample,) = torch.autograd.grad(log_q.sum() / 50_000, many)
    assert g_sample.sum(0).abs().max() < 0.02             # score function: expectation zero
    assert exact.abs().max() > 0.05


def test_taken_locations_keep_gradients_finite():
    logits = torch.zeros(2, 8)
    logits[:, 0] = 50.0
    logits.requires_grad_(True)
    _, y, log_q, neg_ent = sample_without_replacement(logits, 8, tau=0.1)
    (log_q.sum() + neg_ent.sum() + y.sum()).backward()
    assert torch.isfinite(logits.grad).all() and torch.isfinite(neg_ent).all()


def test_first_draw_follows_softmax():
    torch.manual_seed(0)
    logits = torch.tensor([2.0, 0.0, -1.0, 1.0])
    idx = sample_without_replacement(logits.expand(100_000, 4), 1)[0]
    freq = torch.bincount(idx[:, 0], minlength=4).float() / 100_000
    assert torch.allclose(freq, logits.softmax(0), atol=0.01)


def test_sampled_locations_never_repeat():
    torch.manual_seed(0)
    logits = torch.zeros(500, 64)
    logits[:, :3] = 30.0  # three dominant locations, ten draws: the rest must be new locations
    idx, y, log_q, _ = sample_without_replacement(logits, 10, tau=0.5)
    assert all(len(set(row.tolist())) == 10 for row in idx)
    assert set(idx[:, :3].flatten().tolist()) == {0, 1, 2}
    assert torch.allclose(y.sum(-1), torch.ones(500, 10))
    assert (y.argmax(-1) == idx).all()  # the relaxed sample peaks at the hard one
    assert torch.isfinite(log_q).all()


def test_sampling_too_many_locations_errors():
    with pytest.raises(ValueError, match="without replacement"):
        sample_without_replacement(torch.zeros(1, 4), 5)


def test_blocked_draws_keep_their_distance():
    """cfg.loc_block: each draw takes the block x block square around it out of the later draws."""
    torch.manual_seed(0)
    logits = torch.randn(300, 256) * 3                      # 16 x 16 maps
    idx = sample_without_replacement(logits, 6, tau=0.5, block=5)[0]
    r, c = idx // 16, idx % 16
    cheb = torch.maximum((r[:, :, None] - r[:, None]).abs(), (c[:, :, None] - c[:, None]).abs())
    off_diagonal = ~torch.eye(6, dtype=torch.bool)
    assert (cheb[:, off_diagonal] > 2).all()
    # without blocking, neighbours are drawn (the test would notice a block that does nothing)
    idx1 = sample_without_replacement(logits, 6, block=1)[0]
    r1, c1 = idx1 // 16, idx1 % 16
    cheb1 = torch.maximum((r1[:, :, None] - r1[:, None]).abs(), (c1[:, :, None] - c1[:, None]).abs())
    assert (cheb1[:, off_diagonal] <= 2).any()
    with pytest.raises(ValueError, match="block must be odd"):
        sample_without_replacement(logits, 2, block=4)
    with pytest.raises(ValueError, match="square map"):
        sample_without_replacement(torch.zeros(2, 20), 2, block=3)
    with pytest.raises(ValueError, match="loc_block must be odd"):
        make_config("smoke", loc_block=2)


def test_blocked_draws_equal_a_max_pool_reference():
    """The blocked square is built from rows and columns (cheap); on the same noise it takes out
    exactly what a block x block max-pool of each draw's one-hot map does, also at the edges."""
    torch.manual_seed(1)
    b, side, k, block = 64, 12, 5, 5
    logits = torch.randn(b, side * side) * 2
    noise = torch.rand(k, b, side * side)
    idx = sample_without_replacement(logits, k, noise=noise, block=block)[0]
    taken = torch.zeros(b, side * side, dtype=torch.bool)
    ref = []
    for j in range(k):
        g = -torch.log(-torch.log(noise[j].clamp(1e-10, 1 - 1e-7)))
        i = (logits.masked_fill(taken, -1e4) + g).argmax(1)
        ref.append(i)
        hot = torch.nn.functional.one_hot(i, side * side).float().view(b, 1, side, side)
        taken |= torch.nn.functional.max_pool2d(hot, block, 1, block // 2).view(b, -1) > 0
    assert torch.equal(idx, torch.stack(ref, 1))
    assert (idx % side < 2).any() and (idx // side >= side - 2).any()   # the edges were exercised


def test_f_count_equals_a_square_max_pool():
    """f_count's separable window maximum finds the same peaks as the square max-pool."""
    torch.manual_seed(2)
    h = torch.randn(8, 64, 64).cumsum(1).cumsum(2) / 8      # smooth-ish maps with many maxima
    for window in (3, 11, 15):
        pooled = torch.nn.functional.max_pool2d(h[:, None], window, 1, window // 2)[:, 0]
        ref = (h == pooled) & (h > 0.5)
        counts, peaks = f_count(h, 0.5, window, 10_000)
        assert torch.equal(peaks, ref) and torch.equal(counts, ref.flatten(1).sum(1))


def test_blocked_location_kl_matches_exact_enumeration():
    """With block = 3 on a 4 x 4 map the analytic per-step term still estimates the exact
    E_q[log q(z_1) + log q(z_2 | z_1) - log p(z_1, z_2)] (q blocks the 3x3 square, the prior only
    the drawn pixel): the ELBO of a blocked q is computed consistently."""
    torch.manual_seed(0)
    d, side = 16, 4
    logits = torch.randn(d) * 2
    p = logits.softmax(0)
    exact = 0.0
    for i in range(d):
        near = [j for j in range(d) if abs(j // side - i // side) <= 1 and abs(j % side - i % side) <= 1]
        rest = p.clone()
        rest[near] = 0
        for j in range(d):
            if rest[j] > 0:
                pj = rest[j] / rest.sum()
                exact += p[i] * pj * (math.log(p[i]) + math.log(pj) + math.log(d) + math.log(d - 1))
    _, _, log_q, neg_ent = sample_without_replacement(logits.expand(100_000, d), 2, block=3)
    prior = torch.log(torch.tensor([d, d - 1.0]))
    assert abs(float((neg_ent + prior).sum(1).mean()) - float(exact)) < 0.01
    assert abs(float((log_q + prior).sum(1).mean()) - float(exact)) < 0.02


def test_f_count_on_hand_made_maps():
    h = torch.zeros(4, 64, 64)
    h[0, 10, 10] = h[0, 40, 40] = h[0, 10, 50] = 20.0           # three clear peaks
    h[1, 10, 10] = 20.0
    h[1, 30, 30] = 15.0                                          # below the threshold 16
    yy, xx = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
    h[2] = 20.0 * torch.exp(-((yy - 20) ** 2 + (xx - 20) ** 2) / 50)   # one broad blob
    h[2, 20, 24] = h[2, 20, 20] - 0.1                                   # a near-peak inside it
    for r in range(12):                                              # 12 peaks: capped at M = 10
        h[3, 4 + (r // 4) * 20, 4 + (r % 4) * 16] = 20.0
    counts, peaks = f_count(h, threshold=16.0, window=15, max_objects=10)
    assert counts.tolist() == [3, 1, 1, 10]
    assert peaks[0, 40, 40] and not peaks[1, 30, 30]
    # a 3x3 window over-counts two peaks 4 px apart that a sprite-sized window merges
    h2 = torch.zeros(1, 64, 64)
    h2[0, 20, 20], h2[0, 20, 24] = 20.0, 19.0
    assert f_count(h2, 16.0, 3, 10)[0].item() == 2
    assert f_count(h2, 16.0, 15, 10)[0].item() == 1


def test_render_equals_pasting(model):
    cfg = model.cfg
    s = cfg.sprite_size
    torch.manual_seed(1)
    sprites = torch.rand(2, 3, cfg.channels, s, s) * 0.3
    locs = torch.tensor([[[20, 30], [50, 5], [0, 63]], [[32, 32], [-1, -1], [-1, -1]]])
    mask = (locs >= 0).all(-1)
    idx = model.locations_to_index(locs)
    hard = model.render(sprites, idx, mask)
    # reference: paste each sprite centred on its location on a padded canvas, then crop
    ref = torch.zeros(2, cfg.channels, 64 + s - 1, 64 + s - 1)
    for b in range(2):
        for k in range(3):
            if mask[b, k]:
                r, c = locs[b, k].tolist()
                ref[b, :, r:r + s, c:c + s] += sprites[b, k]
    ref = ref[:, :, s // 2:s // 2 + 64, s // 2:s // 2 + 64].clamp(1e-5, 1 - 1e-5)
    assert torch.allclose(hard, ref, atol=1e-6)
    # the convolution with one-hot maps (the relaxed path of Eq. 4) gives the same image
    onehot = torch.nn.functional.one_hot(idx, 64 * 64).float()
    assert torch.allclose(model.render(sprites, onehot, mask), hard, atol=1e-5)


def test_loss_terms_and_kl_n(model):
    x = torch.as_tensor(blob_scenes(8)[0]).float()
    t = model.loss_terms(x, tau=0.5)
    neg = t["recon"] + t["kl_app"] + t["kl_loc"] + t["kl_n"]
    assert torch.allclose(t["loss"], neg)
    assert torch.allclose(t["kl_n"], -model.prior_n_logits.log_softmax(0)[t["n_hat"]])
    assert (t["kl_app"] >= 0).all() and torch.isfinite(t["loss"]).all()


def test_gradients_reach_every_parameter_group(model):
    x = torch.as_tensor(blob_scenes(8)[0]).float()
    model.loss_terms(x, tau=0.5, p_force_one=1.0, aux_weight=1.0)["loss"].mean().backward()
    for name, params in model.param_groups().items():
        assert all(p.grad is not None for p in params), name
    for part in ("app_net", "loc_net", "sprite", "aux"):
        grads = [p.grad.abs().sum() for p in getattr(model, part).parameters()]
        assert sum(grads) > 0, part
    assert model.prior_n_logits.grad.abs().sum() > 0


def test_forcing_one_object_uses_one_slot(model):
    x = torch.as_tensor(blob_scenes(8)[0]).float()
    t = model.loss_terms(x, tau=0.5, p_force_one=1.0)
    # one location sampled per image: kl_loc = log q(z_1) + log D, log q <= 0
    assert (t["kl_loc"] <= math.log(64 * 64) + 1e-4).all()


def test_wrong_image_shape_is_a_clear_error(model):
    with pytest.raises(ValueError, match=r"expected images of shape \(B, 1, 64, 64\)"):
        model.loss_terms(torch.zeros(2, 3, 64, 64), tau=0.5)
    with pytest.raises(ValueError, match="expected images"):
        model.infer(torch.zeros(64, 64))


def test_infer_decode_and_prior(model):
    model.eval()
    x = torch.as_tensor(blob_scenes(4)[0]).float()
    inf = model.infer(x)
    assert inf.recon.shape == x.shape and inf.h_loc.shape == (4, 64, 64)
    recon, _ = model.decode(inf.locations, inf.z_app, inf.mask)
    assert torch.allclose(recon, inf.recon)
    images, lat = model.sample_prior(6, p_n=torch.tensor([0, 0, 0, 0, .5, .5] + [0] * 5))
    assert images.shape == (6, 1, 64, 64)
    assert set(lat["n"].tolist()) <= {4, 5}
    assert lat["mask"].sum(1).tolist() == lat["n"].tolist()
    with pytest.raises(ValueError, match="p_n"):
        model.sample_prior(2, p_n=torch.ones(3))


def test_forced_images_can_keep_their_gradient_out_of_h_loc():
    x = torch.as_tensor(blob_scenes(8)[0]).float()
    for flag, expect_grad in ((False, True), (True, False)):
        torch.manual_seed(0)
        m = LAVAE(make_config("smoke", forced_no_loc_grad=flag))
        m.loss_terms(x, tau=0.5, p_force_one=1.0)["loss"].mean().backward()
        g = sum(float(p.grad.abs().sum()) for p in m.loc_net.parameters() if p.grad is not None)
        assert (g > 0) == expect_grad
        assert sum(float(p.grad.abs().sum()) for p in m.sprite.parameters()) > 0


@pytest.mark.parametrize("centred", [False, True])
def test_centred_warmup_target_ignores_a_constant_kl_background(centred):
    """h_loc is measured from its median, so a KL map with a constant background (multi-dSprites)
    is an unreachable target unless it is centred the same way (cfg.aux_target_centred)."""
    torch.manual_seed(0)
    model = LAVAE(make_config("smoke", aux_target_centred=centred))
    x = torch.as_tensor(blob_scenes(4)[0]).float()
    kl_map = torch.rand(4, 1, 11, 11)

    def aux_sq(background):
        model.aux.loss_terms = lambda x_: {"loss": torch.zeros(len(x_)), "kl_map": kl_map + background}
        return model.loss_terms(x, tau=0.5, aux_weight=1.0)["aux_sq"]

    same = torch.allclose(aux_sq(0.0), aux_sq(0.7), rtol=1e-5)
    assert same == centred


def test_straight_through_renders_hard_and_passes_gradient_to_h_loc():
    """straight_through: the forward pass equals the hard (one-hot) rendering at the sampled
    locations; the gradient still reaches the location net through the relaxed sample."""
    from synthetic import blob_scenes
    images, _ = blob_scenes(4)
    x = torch.as_tensor(images).float()
    torch.manual_seed(0)
    m = LAVAE(make_config("smoke", straight_through=True))
    m.train()
    k = 2
    h_app, h_loc = m.infer_maps(x)
    logits = h_loc.flatten(1)
    idx, y, _, _ = sample_without_replacement(logits, k, tau=0.5)
    y_st = torch.nn.functional.one_hot(idx, logits.shape[1]).float() - y.detach() + y
    mask = torch.ones(4, k, dtype=torch.bool)
    sprites = torch.rand(4, k, 1, m.cfg.sprite_size, m.cfg.sprite_size)
    hard = m.render(sprites, idx, mask)
    st = m.render(sprites, y_st, mask)
    assert torch.allclose(st, hard, atol=1e-5)
    terms = m.loss_terms(x, tau=0.5, p_force_one=1.0)      # every image explained by n = 1
    terms["loss"].mean().backward()
    g = [p.grad for p in m.loc_net.parameters() if p.grad is not None]
    assert g and max(float(t.abs().max()) for t in g) > 0


def test_kl_warmup_weight_scales_only_the_training_loss():
    """kl_weight (the cpu profile's KL warm-up) scales kl_app + kl_loc in the loss; the reported
    ELBO stays the true bound."""
    from synthetic import blob_scenes
    x = torch.as_tensor(blob_scenes(8)[0]).float()
    m = LAVAE(make_config("smoke")).train()
    out = {}
    for w in (0.0, 0.5):
        torch.manual_seed(1)
        out[w] = m.loss_terms(x, tau=0.5, p_force_one=1.0, kl_weight=w)
    t = out[0.5]
    assert torch.allclose(out[0.0]["elbo"], t["elbo"])
    assert torch.allclose(out[0.0]["loss"], t["recon"] + t["kl_n"], atol=1e-4)
    assert torch.allclose(t["loss"], t["recon"] + 0.5 * (t["kl_app"] + t["kl_loc"]) + t["kl_n"], atol=1e-4)
    assert (t["kl_app"] > 0).all()


def test_free_bits_drop_the_kl_gradient_only_under_the_floor():
    """app_free_bits: with a floor above every dimension's KL the loss holds no kl_app (so z_app's
    statistics get only the reconstruction's gradient); at 0 the loss is the negative ELBO; with a
    floor at the mean dimension's KL only part of kl_app stays in the loss; the reported ELBO and
    kl_app never change."""
    x = torch.as_tensor(blob_scenes(8)[0]).float()
    m = LAVAE(make_config("smoke")).train()
    out = {}
    for bits in (0.0, 1e9):
        m.cfg.app_free_bits = bits
        torch.manual_seed(2)
        out[bits] = m.loss_terms(x, tau=0.5, p_force_one=1.0)
    free, none = out[1e9], out[0.0]
    assert torch.allclose(free["elbo"], none["elbo"]) and torch.allclose(free["kl_app"], none["kl_app"])
    assert torch.allclose(none["loss"], -none["elbo"], atol=1e-4)
    assert torch.allclose(free["loss"], free["recon"] + free["kl_loc"] + free["kl_n"], atol=1e-4)
    assert (none["kl_app"] > 0).all()
    # a floor at the mean per-dimension KL: some dimensions keep their KL, the others drop out
    m.cfg.app_free_bits = float(none["kl_app"].detach().mean()) / m.cfg.latent_dim
    torch.manual_seed(2)
    f = m.loss_terms(x, tau=0.5, p_force_one=1.0)
    kept = f["loss"] - f["recon"] - f["kl_loc"] - f["kl_n"]
    assert 0 < float(kept.detach().sum()) < float(f["kl_app"].detach().sum()) - 1e-3


def _step_grads(model, x, static, seed, **kw):
    model.zero_grad(set_to_none=True)
    torch.manual_seed(seed)
    terms = model.loss_terms(x, static=static, **kw)
    terms["loss"].mean().backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return terms, grads


@pytest.mark.parametrize("phase", [dict(tau=0.5, p_force_one=1.0, aux_weight=1.0),
                                   dict(tau=0.1, p_force_one=0.3, aux_weight=0.0),
                                   dict(tau=0.1, p_force_one=0.3, aux_weight=0.0, loc_block=7),
                                   dict(tau=0.1, p_force_one=0.3, aux_weight=0.0, loc_block=7,
                                        loc_estimator="score")])
def test_static_slot_step_equals_the_eager_step(phase):
    """Issue 9: the static-shape step (M slots, absent ones masked, masked batch norm) is the same
    function as the eager step (max n slots, boolean indexing): on one seed, the same terms,
    gradients and batch-norm running statistics. In float64 they agree to 1e-9 relative (what is
    left is summation order); in float32 the whole gradient to 1e-3 relative (its norm)."""
    import copy
    images = torch.as_tensor(blob_scenes(8)[0])
    torch.manual_seed(0)
    phase = dict(phase)
    block = phase.pop("loc_block", 1)
    estimator = phase.pop("loc_estimator", "gumbel")
    # a low threshold: n_hat varies over the batch (here 0 to 9 of M = 10 slots)
    base = LAVAE(make_config("smoke", count_threshold=2.0, count_window=9, loc_block=block,
                             loc_estimator=estimator)).train()
    for dtype, tol in ((torch.float64, 1e-9), (torch.float32, 1e-3)):
        a = copy.deepcopy(base).to(dtype)
        b = copy.deepcopy(base).to(dtype)
        x = images.to(dtype)
        ta, ga = _step_grads(a, x, False, 3, **phase)
        tb, gb = _step_grads(b, x, True, 3, **phase)
        n_hat = ta["n_hat"].tolist()
        assert 0 < max(n_hat) < 10 and len(set(n_hat)) > 2, f"the test needs varying counts: {n_hat}"
        for k in ta:
            assert torch.allclose(ta[k], tb[k], rtol=tol, atol=tol), k
        assert ga.keys() == gb.keys() and any(k.startswith("sprite.") for k in ga)
        if dtype == torch.float64:
            for k in ga:
                assert (ga[k] - gb[k]).abs().max() <= tol * max(float(ga[k].abs().max()), 1.0), k
        va = torch.cat([g.flatten() for g in ga.values()])
        vb = torch.cat([gb[k].flatten() for k in ga])
        assert (va - vb).norm() <= tol * va.norm()
        sa, sb = a.sprite.state_dict(), b.sprite.state_dict()
        for k in sa:
            assert torch.allclose(sa[k].to(dtype), sb[k].to(dtype), rtol=tol, atol=tol), k


def test_masked_batch_norm_equals_batch_norm_on_the_kept_samples():
    from lavae_core.lavae import MaskedBatchNorm2d, _SampleWeights
    torch.manual_seed(0)
    ref = torch.nn.BatchNorm2d(5)
    ref.weight.data.uniform_(0.5, 2)
    ref.bias.data.normal_()
    masked = torch.nn.BatchNorm2d(5)
    masked.load_state_dict(ref.state_dict())
    masked.__class__ = MaskedBatchNorm2d
    masked.holder = _SampleWeights()
    x = torch.randn(7, 5, 4, 4) * 3 + 1
    keep = torch.tensor([1, 0, 1, 1, 0, 0, 1], dtype=torch.bool)
    x1 = x.clone().requires_grad_()
    x2 = x.clone().requires_grad_()
    out_ref = ref(x1[keep])
    masked.holder.value = keep.float()
    out = masked(x2)
    assert torch.allclose(out[keep], out_ref, atol=1e-5)
    g = torch.randn_like(out_ref)
    out_ref.backward(g)
    (out[keep] * g).sum().backward()
    assert torch.allclose(x2.grad[keep], x1.grad[keep], atol=1e-5)
    assert torch.equal(x2.grad[~keep], torch.zeros_like(x2.grad[~keep]))
    for k, v in ref.state_dict().items():
        assert torch.allclose(masked.state_dict()[k].float(), v.float(), atol=1e-6), k
    # nothing kept: statistics untouched; holder None or eval mode: plain batch norm
    before = {k: v.clone() for k, v in masked.state_dict().items()}
    masked.holder.value = torch.zeros(7)
    masked(x)
    assert all(torch.equal(before[k], v) for k, v in masked.state_dict().items())
    masked.holder.value = None
    ref.eval(), masked.eval()
    assert torch.allclose(masked(x), ref(x), atol=1e-6)


def test_loc_sharpen_adds_the_entropy_of_each_drawn_q_to_the_loss_only():
    """loc_sharpen: loss gains lambda x (1 - aux_weight) x the summed entropy of the present slots'
    q; the ELBO is untouched, and a gradient step on the penalty alone makes q sharper."""
    from synthetic import blob_scenes
    x = torch.as_tensor(blob_scenes(8)[0]).float()
    torch.manual_seed(0)
    m = LAVAE(make_config("smoke")).train()
    out = {}
    for lam in (0.0, 2.0):
        m.cfg.loc_sharpen = lam
        torch.manual_seed(1)
        out[lam] = m.loss_terms(x, tau=0.5, p_force_one=1.0, aux_weight=0.25)
    ent = out[0.0]["loc_ent"]
    assert bool((ent > 0).all())                               # n = 1 forced: one q per image
    # (the losses are ~1e5 here, the warm-up's squared distance of an untrained net: float32 rounding)
    assert torch.allclose(out[2.0]["loss"] - out[0.0]["loss"], 2.0 * 0.75 * ent, rtol=1e-3, atol=0.05)
    assert torch.allclose(out[2.0]["elbo"], out[0.0]["elbo"])
    m.zero_grad()
    out[2.0]["loc_ent"].sum().backward()
    with torch.no_grad():
        for p in m.loc_net.parameters():
            if p.grad is not None:
                p -= 1e-3 * p.grad
        torch.manual_seed(1)
        after = m.loss_terms(x, tau=0.5, p_force_one=1.0)["loc_ent"]
    assert float(after.sum()) < float(ent.detach().sum())


def test_background_hinge_presses_on_blank_pixels_only_and_reaches_h_loc():
    """background_hinge: relu(h_loc - margin)^2 summed over the pixels with no ink in their
    window x window square; a bump next to ink is left alone, one in a blank corner is not."""
    from lavae_core.lavae import background_hinge
    h = torch.zeros(2, 9, 9)
    h[:, 4, 4], h[:, 0, 0], h[:, 8, 8] = 10.0, 5.0, 2.5       # an object and two background bumps
    h.requires_grad_(True)
    x = torch.zeros(2, 3, 9, 9)
    x[:, 1, 4, 4] = 1.0                                       # ink (one channel) under the object
    x[1, 2, 1, 1] = 1.0                                       # image 1: ink next to the (0, 0) bump
    got = background_hinge(h, x, 3, 2.0)
    assert got.tolist() == pytest.approx([9.0 + 0.25, 0.25])
    got.sum().backward()
    assert h.grad[0, 0, 0] == pytest.approx(6.0) and h.grad[1, 0, 0] == 0 and h.grad[:, 4, 4].eq(0).all()
    assert float(background_hinge(h.detach(), torch.ones(2, 3, 9, 9), 3, 2.0).sum()) == 0   # all ink


def test_loc_bg_hinge_adds_the_faded_penalty_to_the_loss_only():
    """loc_bg_hinge = lambda: the loss gains lambda x (1 - aux_weight) x bg_hinge; the ELBO is
    untouched; the static path gives the same penalty; during the warm-up (aux_weight 1) none."""
    from synthetic import blob_scenes
    x = torch.as_tensor(blob_scenes(8)[0]).float()
    torch.manual_seed(0)
    m = LAVAE(make_config("smoke", count_threshold=0.0)).train()   # margin 0: an untrained net's
    out = {}                                                         # blank half is above it
    for lam, static in ((0.0, False), (3.0, False), (3.0, True)):
        m.cfg.loc_bg_hinge = lam
        torch.manual_seed(1)
        out[lam, static] = m.loss_terms(x, tau=0.5, p_force_one=0.0, aux_weight=0.0, static=static)
    pen = out[3.0, False]["bg_hinge"].detach()
    assert float(pen.sum()) > 0 and "bg_hinge" not in out[0.0, False]
    assert torch.allclose(out[3.0, False]["loss"] - out[0.0, False]["loss"], 3.0 * pen, rtol=1e-4, atol=1e-3)
    assert torch.allclose(out[3.0, False]["elbo"], out[0.0, False]["elbo"])
    assert torch.allclose(out[3.0, True]["bg_hinge"], pen, atol=1e-4)
    m.cfg.loc_bg_hinge = 0.0
    torch.manual_seed(1)
    plain = m.loss_terms(x, tau=0.5, p_force_one=1.0, aux_weight=1.0)["loss"]
    m.cfg.loc_bg_hinge = 3.0
    torch.manual_seed(1)
    warm = m.loss_terms(x, tau=0.5, p_force_one=1.0, aux_weight=1.0)
    assert torch.allclose(warm["loss"], plain) and float(warm["bg_hinge"].detach().sum()) > 0


def test_replicate_padding_leaves_an_empty_image_without_border_maxima():
    """On a blank image the location net with zero padding tells the border from the inside (the
    multi-dSprites border maxima of issue 8); with replicate padding every pixel sees the same
    context, so h_loc is flat and f_count finds nothing. Same weights either way."""
    torch.manual_seed(0)
    zeros = LAVAE(make_config("smoke", "multi-dsprites")).eval()
    rep = LAVAE(make_config("smoke", "multi-dsprites", loc_padding="replicate")).eval()
    rep.load_state_dict(zeros.state_dict())
    assert [m.padding_mode for m in zeros.loc_net.modules() if isinstance(m, torch.nn.Conv2d)
            and m.padding[0] > 0] == ["zeros"] * 7    # the default is the usual padding
    blank = torch.zeros(2, 3, 64, 64)
    with torch.no_grad():
        h_zero, h_rep = zeros.infer_loc(blank), rep.infer_loc(blank)
        x = torch.rand(2, 3, 64, 64).round()
        assert torch.equal(zeros.loc_net(x)[..., 8:-8, 8:-8], rep.loc_net(x)[..., 8:-8, 8:-8])
    assert (h_zero[:, 0].abs().amax() > 1e-3) and (h_rep.abs().amax() < 1e-5)
    assert (rep.count(h_rep, 0.0)[0] == 0).all()


def test_loc_sharpen_forced_false_spares_the_images_forced_to_one_object():
    """loc_sharpen_forced = False: images forced to n = 1 take no entropy penalty (all forced: the
    loss is the unpenalised one), the others take it as before."""
    from synthetic import blob_scenes
    x = torch.as_tensor(blob_scenes(8)[0]).float()
    torch.manual_seed(0)
    m = LAVAE(make_config("smoke")).train()
    out = {}
    for lam, forced_too, p in ((0.0, True, 1.0), (2.0, False, 1.0), (2.0, True, 0.0), (2.0, False, 0.0)):
        m.cfg.loc_sharpen, m.cfg.loc_sharpen_forced = lam, forced_too
        torch.manual_seed(1)
        out[lam, forced_too, p] = m.loss_terms(x, tau=0.5, p_force_one=p)["loss"]
    assert torch.equal(out[2.0, False, 1.0], out[0.0, True, 1.0])
    assert torch.equal(out[2.0, False, 0.0], out[2.0, True, 0.0])


def test_local_entropy_measures_one_objects_spread_not_the_spread_across_objects():
    """Hand-made maps: a spike has local entropy ~0 and a 5-pixel plateau log 5 in any window
    that holds it, while the whole q's entropy of two such spikes is log 2; a window at the border
    leaves out the pixels outside the image."""
    h = torch.zeros(1, 16, 16)
    h[0, 3, 3] = h[0, 12, 12] = 40.0                          # two spikes
    idx = torch.tensor([[3 * 16 + 3, 12 * 16 + 12]])
    assert torch.allclose(local_entropy(h, idx, 5), torch.zeros(1, 2), atol=1e-6)
    q = h.flatten(1).softmax(1)
    assert math.isclose(float(-(q * q.clamp_min(1e-30).log()).sum()), math.log(2), rel_tol=1e-4)
    p = torch.zeros(1, 16, 16)
    p[0, 8, 7:10] = p[0, 7, 8] = p[0, 9, 8] = 40.0            # a plus-shaped plateau of 5 pixels
    for w in (3, 5, 7):
        assert math.isclose(float(local_entropy(p, torch.tensor([[8 * 16 + 8]]), w)), math.log(5), rel_tol=1e-5)
    flat = torch.zeros(1, 16, 16)                             # uniform: log of the pixels inside
    assert math.isclose(float(local_entropy(flat, torch.tensor([[0]]), 5)), math.log(9), rel_tol=1e-5)
    assert math.isclose(float(local_entropy(flat, torch.tensor([[8 * 16 + 8]]), 5)), math.log(25), rel_tol=1e-5)


def test_loc_sharpen_window_penalises_each_draws_local_entropy_and_reaches_h_loc():
    """loc_sharpen_window = w: the loss gains lambda x (1 - aux_weight) x the summed local entropy
    of the present slots (not the whole q's); the ELBO is untouched and the gradient reaches h_loc."""
    x = torch.as_tensor(blob_scenes(8)[0]).float()
    torch.manual_seed(0)
    m = LAVAE(make_config("smoke", loc_block=5)).train()
    out = {}
    for lam, w in ((0.0, 0), (2.0, 0), (2.0, 5)):
        m.cfg.loc_sharpen, m.cfg.loc_sharpen_window = lam, w
        torch.manual_seed(1)
        out[lam, w] = m.loss_terms(x, tau=0.5, p_force_one=1.0, aux_weight=0.25)   # one draw each
    local = out[2.0, 5]["loss"] - out[0.0, 0]["loss"]
    whole = out[2.0, 0]["loss"] - out[0.0, 0]["loss"]
    assert torch.allclose(whole, 1.5 * out[0.0, 0]["loc_ent"], rtol=1e-3, atol=0.05)
    assert bool((local > -0.05).all()) and bool((local <= 1.5 * math.log(25) + 0.05).all())
    spread = out[0.0, 0]["loc_ent"] > math.log(25) + 1       # the whole q: spread over the image
    assert bool(spread.any()) and bool((local[spread] < whole[spread] - 1.5).all())
    assert torch.allclose(out[2.0, 5]["elbo"], out[0.0, 0]["elbo"])
    m.zero_grad()
    out[2.0, 5]["loss"].sum().backward()
    assert all(p.grad is not None for p in m.loc_net.parameters())


def test_sprite_offsets_are_centres_of_mass_from_the_canvas_centre():
    from lavae_core.lavae import sprite_offsets
    s = torch.zeros(2, 3, 17, 17)
    s[0, 0, 8, 11] = 1.0                        # one pixel 3 to the right of the centre
    s[1, :, 5:12, 5:12] = 0.5                   # a square centred on the canvas, in every channel
    s[1, 2, 8, 8] = 1.0
    assert torch.allclose(sprite_offsets(s), torch.tensor([[0.0, 3.0], [0.0, 0.0]]), atol=1e-6)
    s[1, 1, 0, 0] = 10.0                        # channels are summed: 10 of 84 units at (-8, -8)
    assert torch.allclose(sprite_offsets(s)[1], torch.full((2,), -80 / 84), atol=1e-6)
    assert torch.isfinite(sprite_offsets(torch.zeros(1, 1, 9, 9))).all()       # empty: 0, not nan


def test_sprite_centre_adds_the_squared_offsets_of_present_sprites_and_reaches_f_sprite():
    """sprite_centre = lambda: the loss gains lambda x the summed squared centre-of-mass offsets
    (px^2) of the present slots' sprites, in the warm-up too; the ELBO is untouched; f_sprite gets
    the gradient. The same in the static-slot path."""
    x = torch.as_tensor(blob_scenes(8)[0]).double()      # float64: the warm-up's loss is ~1e5
    for static in (False, True):
        out = {}
        for lam in (0.0, 3.0):
            torch.manual_seed(0)
            m = LAVAE(make_config("smoke", sprite_centre=lam)).double().train()
            torch.manual_seed(1)
            out[lam] = m.loss_terms(x, tau=0.5, p_force_one=1.0, aux_weight=0.5,   # n = 1 each,
                                    static=static)                                # in the warm-up
        off2 = out[3.0]["sprite_off2"]
        assert "sprite_off2" not in out[0.0] and bool((off2 > 0).all())
        assert torch.allclose(out[3.0]["loss"] - out[0.0]["loss"], 3.0 * off2, rtol=1e-4, atol=1e-4)
        assert torch.allclose(out[3.0]["elbo"], out[0.0]["elbo"])
        m.zero_grad()
        off2.sum().backward()
        assert m.sprite.out.weight.grad.abs().sum() > 0


def test_score_surrogate_gradient_is_the_exact_gradient_of_the_expected_cost():
    """loc_estimator = "score": (cost - baseline) x sum_i log q(z_i | z_<i), cost held fixed, has
    as its expected gradient the exact gradient of E_q[cost] for k = 2 draws without replacement
    (exact enumeration over D = 9 locations), with or without a constant baseline."""
    torch.manual_seed(0)
    d = 9
    logits = (torch.randn(d) * 1.5).requires_grad_(True)
    table = torch.randn(d, d) * 3 + 10                   # cost of each ordered pair of locations
    q = logits.softmax(0)
    exact = sum(q[i] * q[j] / (1 - q[i]) * table[i, j] for i in range(d) for j in range(d) if i != j)
    (g_exact,) = torch.autograd.grad(exact, logits)
    n = 400_000
    many = logits.detach().expand(n, d).clone().requires_grad_(True)
    idx, _, log_q, _ = sample_without_replacement(many, 2)
    cost = table[idx[:, 0], idx[:, 1]]
    for base in (0.0, 10.0):
        (g,) = torch.autograd.grad(((cost - base) * log_q.sum(1)).sum() / n, many, retain_graph=True)
        assert torch.allclose(g.sum(0), g_exact, atol=0.06), (g.sum(0), g_exact)
    assert float(g_exact.abs().max()) > 0.5           # a gradient worth matching


@pytest.mark.parametrize("static", [False, True])
def test_score_estimator_renders_hard_locations_and_teaches_h_loc(static):
    """loc_estimator = "score": the loss carries (cost - greedy cost) x log q, whose gradient
    reaches the location net; the ELBO is the sum of its terms; f_sprite's running statistics move
    once per step, as without the extra greedy pass. (That recon is the hard rendering's: next test.)"""
    x = torch.as_tensor(blob_scenes(8)[0]).double()
    torch.manual_seed(0)
    m = LAVAE(make_config("smoke", loc_estimator="score", count_threshold=2.0, count_window=9)).double().train()
    before = {k: v.clone() for k, v in m.sprite.state_dict().items()}
    torch.manual_seed(1)
    t = m.loss_terms(x, tau=0.5, p_force_one=0.3, static=static)
    adv = t["score_adv"]
    assert adv.shape == (8,) and bool(torch.isfinite(adv).all()) and float(adv.abs().max()) > 0
    assert torch.allclose(t["elbo"], -(t["recon"] + t["kl_app"] + t["kl_loc"] + t["kl_n"]))
    # the loss is -ELBO plus the surrogate, whose value is adv x sum log q (<= 0 per draw)
    surrogate = (t["loss"] + t["elbo"]).detach()
    assert bool(((surrogate * adv.sign()) <= 1e-9).all()) and float(surrogate.abs().max()) > 0
    m.zero_grad()
    t["loss"].mean().backward()
    g = [p.grad for p in m.loc_net.parameters() if p.grad is not None]
    assert g and max(float(p.abs().max()) for p in g) > 0
    # the greedy pass leaves the running statistics alone: one update per step, as without it
    counts = {k: v for k, v in m.sprite.state_dict().items() if k.endswith("num_batches_tracked")}
    assert counts and all(int(v - before[k]) == 1 for k, v in counts.items())


def test_score_estimator_on_hard_samples_equals_rendering_at_them():
    """With loc_estimator = "score" the recon term is that of the sprites pasted at the sampled
    indices: re-drawn from the same seed with the same noise, the hard rendering gives it exactly."""
    x = torch.as_tensor(blob_scenes(4)[0]).double()
    torch.manual_seed(0)
    m = LAVAE(make_config("smoke", loc_estimator="score")).double().eval()
    torch.manual_seed(5)
    t = m.loss_terms(x, tau=0.5, p_force_one=1.0)                # n = 1 for every image
    torch.manual_seed(5)
    h_app, h_loc = m.infer_maps(x)
    forced = torch.rand(4) < 1.0
    u = torch.rand(m.cfg.max_objects, 4, h_loc[0].numel())       # as loss_terms draws them
    eps = torch.randn(m.cfg.max_objects, 4, m.cfg.latent_dim)
    assert bool(forced.all())
    idx = sample_without_replacement(h_loc.flatten(1), 1, noise=u, block=m.cfg.loc_block)[0]
    mu, logvar = m.appearance_at(h_app, idx)
    z = mu + eps[:1].transpose(0, 1) * (0.5 * logvar.clamp(-12.0, 8.0)).exp()
    mask = torch.ones(4, 1, dtype=torch.bool)
    lam = m.render(m.decode_sprites(z, mask), idx, mask)
    assert torch.allclose(t["recon"], -bernoulli_log_prob(lam, x), rtol=1e-10)


@pytest.mark.parametrize("static", [False, True])
def test_score_after_warmup_is_gumbel_in_the_warmup_and_score_after(static):
    """loc_estimator = "score-after-warmup": while the warm-up's terms are on (aux) the step is the
    relaxed (Gumbel-softmax) step, term for term and gradient for gradient; after it, the score step."""
    import copy
    x = torch.as_tensor(blob_scenes(8)[0]).double()
    torch.manual_seed(0)
    kw = dict(count_threshold=2.0, count_window=9)
    switched = LAVAE(make_config("smoke", loc_estimator="score-after-warmup", **kw)).double().train()
    for estimator, phase in (("gumbel", dict(aux_weight=0.5)), ("score", dict(aux_weight=0.0))):
        ref = copy.deepcopy(switched)
        ref.cfg = make_config("smoke", loc_estimator=estimator, **kw)
        a, ga = _step_grads(copy.deepcopy(switched), x, static, 3, tau=0.3, p_force_one=0.3, **phase)
        b, gb = _step_grads(ref, x, static, 3, tau=0.3, p_force_one=0.3, **phase)
        assert set(a) == set(b) and ("score_adv" in a) == (estimator == "score")
        for k in a:
            assert torch.allclose(a[k].double(), b[k].double(), rtol=1e-10, atol=1e-10), k
        assert set(ga) == set(gb) and all(torch.allclose(ga[n], gb[n], rtol=1e-10, atol=1e-12) for n in ga)

"""Location and appearance diagnostics on hand-made maps and reconstructions (lavae_core.diagnostics)."""
import numpy as np
import pytest
import torch

from lavae_core.datasets import generate
from lavae_core.diagnostics import (COLUMNS, MAXIMA_KINDS, box_masks, diagnose, ink_iou, location_stats,
                                   maxima_kinds, redraw_rate)
from lavae_core.lavae import LAVAE
from synthetic import peaked_lavae

# two objects: boxes (top, left, h, w) and true centres (row, col) = (top + h // 2, left + w // 2)
BOXES = np.array([[[5, 5, 15, 15], [30, 40, 15, 15]]])
CENTRES = np.array([[[12, 12], [37, 47]]])


def maps(kind: str) -> torch.Tensor:
    h = torch.zeros(1, 64, 64)
    for r, c in CENTRES[0]:
        if kind == "spike":
            h[0, r, c] = 30.0
        else:                       # a 5x5 plateau: 25 pixels with the same logit
            h[0, r - 2:r + 3, c - 2:c + 3] = 30.0
    return h


def test_box_masks_cover_the_boxes_only():
    m = box_masks(np.array([[[2, 3, 4, 5], [-1, -1, -1, -1]]]), 16)
    assert m.shape == (1, 2, 16, 16)
    assert int(m[0, 0].sum()) == 20 and bool(m[0, 0, 2, 3]) and not bool(m[0, 0, 6, 3])
    assert not m[0, 1].any()        # an absent slot has no mask


def test_spike_vs_plateau():
    spike = location_stats(maps("spike"), BOXES, CENTRES)
    plateau = location_stats(maps("plateau"), BOXES, CENTRES)
    assert spike["top_share"] == pytest.approx([1.0, 1.0], abs=1e-6)
    assert spike["peak_dist"] == pytest.approx([0.0, 0.0])
    assert plateau["top_share"] == pytest.approx([1 / 25, 1 / 25], rel=1e-4)
    assert (plateau["peak_dist"] > 0).all() and (plateau["peak_dist"] <= 2 * 2 ** 0.5 + 1e-6).all()


def test_redraw_rate_spike_vs_plateau():
    counts = np.array([2] * 400)
    boxes, spike, plateau = (np.repeat(BOXES, 400, 0), maps("spike").expand(400, -1, -1),
                             maps("plateau").expand(400, -1, -1))
    assert redraw_rate(spike, boxes, counts) == 0.0
    # second draw from a plateau: 24 of the 49 remaining hot pixels are on the object drawn first
    assert redraw_rate(plateau, boxes, counts) == pytest.approx(24 / 49, abs=0.06)
    assert np.isnan(redraw_rate(spike[:3], boxes[:3], np.array([1, 0, 1])))
    # a q that blocks a 9x9 square around each draw (cfg.loc_block) never returns to a 5x5 plateau
    # (drawn at a corner it still covers the opposite one); a 7x7 square does not
    assert redraw_rate(plateau, boxes, counts, block=9) == 0.0
    assert 0 < redraw_rate(plateau, boxes, counts, block=7) < redraw_rate(plateau, boxes, counts)
    assert redraw_rate(plateau, boxes, counts, block=3) > 0.1       # a 3x3 square is too small


def test_ink_iou_perfect_empty_shifted():
    x = torch.zeros(3, 1, 64, 64)
    x[:, :, 10:20, 10:20] = 1.0
    assert ink_iou(x, x) == pytest.approx([1, 1, 1])
    assert ink_iou(torch.zeros_like(x), x) == pytest.approx([0, 0, 0])
    shifted = torch.roll(x, 1, dims=-1)           # 10x10 square moved by one pixel: 90 / 110
    assert ink_iou(shifted, x) == pytest.approx([90 / 110] * 3)
    assert np.isnan(ink_iou(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 4, 4))[0])


def test_diagnose_returns_every_column_in_range():
    data = generate("multi-dsprites", 24, n_objects=(0, 3), seed=0, progress=False)
    d = diagnose(peaked_lavae(dataset="multi-dsprites"), data, n_images=24)
    assert set(d) == set(COLUMNS)
    assert 0 < d["top_share"] <= 1 and 0 <= d["redraw"] <= 1 and d["peak_dist"] >= 0
    assert 0 < d["sprite_max"] < 1 and 0 <= d["ink_iou"] <= 1 and d["kl_app_obj"] > 0
    assert np.isfinite(d["shift_slope"]) and np.isfinite(d["bg_peak"])


def test_peak_heights_separate_objects_from_background():
    from lavae_core.diagnostics import peak_heights
    h = maps("spike")
    h[0, 60, 2] = 7.0                     # a background bump outside both boxes
    h[0, 13, 13] = 29.0                   # a shoulder inside the first box: not a background peak
    r = peak_heights(h, BOXES, window=15)
    assert r["object"] == pytest.approx([30.0, 30.0])
    assert r["background"] == pytest.approx([7.0])
    assert peak_heights(maps("spike"), BOXES, window=15)["background"][0] <= 0.0


def test_bg_peak_is_the_highest_background_maximum_over_the_images():
    """bg_peak: the worst image's highest local maximum outside every box (what f_count would
    count first once it passes the threshold); a bump put on one image's background is it.
    blank_max: h_loc's maximum on an empty canvas; the same bump on every image is it."""
    from lavae_core.diagnostics import peak_heights
    data = generate("multi-dsprites", 24, n_objects=(1, 3), seed=0, progress=False)
    model = peaked_lavae(dataset="multi-dsprites")
    x = torch.as_tensor(data.images).float()
    torch.manual_seed(3)
    h = model.infer(x).h_loc
    torch.manual_seed(3)
    d = diagnose(model, data, n_images=24)
    assert d["bg_peak"] == pytest.approx(float(peak_heights(h, data.boxes, model.cfg.count_window)["background"].max()))

    assert abs(d["blank_max"]) < 0.01                                 # the box filter's noise only

    class Bumped(torch.nn.Module):   # the box filter plus a bump at (62, 1) on image 7 or on all
        def __init__(self, inner, every):
            super().__init__()
            self.inner, self.every = inner, every

        def forward(self, x_):
            bump = torch.zeros_like(x_[:, :1])
            bump[slice(None) if self.every else slice(7, 8), 0, 62, 1] = 20.0
            return self.inner(x_) + bump

    box_filter = model.loc_net
    model.loc_net = Bumped(box_filter, every=False)
    torch.manual_seed(3)
    bumped = diagnose(model, data, n_images=24)
    assert not box_masks(torch.as_tensor(data.boxes[7:8]), 64)[0, :, 62, 1].any()   # background there
    assert bumped["bg_peak"] >= 0.99 * 20.0 * model.cfg.gamma > d["bg_peak"]   # the bump (x gamma)
    assert abs(bumped["blank_max"]) < 0.01
    model.loc_net = Bumped(box_filter, every=True)
    assert diagnose(model, data, n_images=24)["blank_max"] == pytest.approx(20.0 * model.cfg.gamma, abs=0.01)


def test_diagnose_of_the_baseline_is_its_ink_iou_only():
    from lavae_core.baseline import ConvVAE
    from lavae_core.config import make_config
    data = generate("multi-dsprites", 16, n_objects=(1, 3), seed=0, progress=False)
    torch.manual_seed(0)
    vae = ConvVAE.baseline(make_config("smoke", "multi-dsprites", model="baseline")).eval()
    d = diagnose(vae, data, n_images=16)
    assert set(d) == set(COLUMNS)
    assert all(np.isnan(v) for k, v in d.items() if k != "ink_iou")
    assert 0 <= d["ink_iou"] <= 1


def test_diagnostics_command_line_error_is_one_line(tmp_path, capsys):
    from lavae_core.diagnostics import main
    with pytest.raises(SystemExit) as e:
        main([str(tmp_path / "nothing.pt")])
    assert e.value.code != 0
    err = capsys.readouterr().err.strip()
    assert "no checkpoint at" in err and "\n" not in err


def test_diagnostics_command_line_prints_one_line_per_checkpoint(capsys):
    from lavae_core.diagnostics import main
    from lavae_core.train import smoke_checkpoint
    ck = str(smoke_checkpoint("multi-dsprites", "lavae"))
    main([ck, ck, "--images", "8"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and all(line.startswith(ck) and "step 6" in line and "bg_peak" in line for line in lines)


def test_recon_by_location_source_draws_equal_peaks_only_when_q_is_a_spike():
    from lavae_core.diagnostics import recon_by_location_source
    data = generate("multi-dsprites", 16, n_objects=(1, 3), seed=0, progress=False)
    model = peaked_lavae(dataset="multi-dsprites")
    plateau = recon_by_location_source(model, data, seed=0)
    assert set(plateau) == {"true centres", "f_count peaks", "draws from q"}
    assert all(r > 0 and 0 <= iou <= 1 for r, iou in plateau.values())
    # the box filter's plateau: draws wander off the peaks
    assert plateau["draws from q"][0] != pytest.approx(plateau["f_count peaks"][0], abs=1e-3)

    # the same peaks, each now a spike of one height (q ~ 1/k on each of the k remaining ones)
    found = model.infer(torch.as_tensor(data.images).float()).locations
    raw = torch.zeros(len(data), 1, 64, 64)
    for i, j in (found[..., 0] >= 0).nonzero().tolist():
        raw[i, 0, found[i, j, 0], found[i, j, 1]] = 10.0

    class Spikes(torch.nn.Module):
        def forward(self, x):
            return raw

    model.loc_net = Spikes()
    spike = recon_by_location_source(model, data, seed=0)
    assert spike["draws from q"] == pytest.approx(spike["f_count peaks"], abs=1e-4)
    assert spike["true centres"] == pytest.approx(plateau["true centres"], abs=1e-4)


def test_maxima_kinds_on_hand_placed_peaks():
    peaks = torch.zeros(2, 64, 64, dtype=torch.bool)
    spots = {(0, 12, 13): "object", (0, 4, 4): "object", (0, 0, 30): "border", (0, 62, 12): "border",
             (0, 8, 1): "border", (0, 30, 30): "other", (0, 10, 17): "other", (1, 10, 10): "other",
             (1, 63, 63): "border"}
    for i, r, c in spots:
        peaks[i, r, c] = True
    positions = np.array([[[10, 10], [-1, -1]], [[-1, -1], [-1, -1]]])   # image 1 is empty
    kinds = maxima_kinds(peaks, positions, near=6, border=2)
    assert {(i, r, c): MAXIMA_KINDS[int(kinds[i, r, c])] for i, r, c in spots} == spots
    assert int((kinds >= 0).sum()) == len(spots) and int(kinds[~peaks].max()) == -1
    # without a border strip the border maxima are "other"
    assert {MAXIMA_KINDS[int(maxima_kinds(peaks, positions, border=0)[i, r, c])] for i, r, c in spots
            if spots[i, r, c] == "border"} == {"other"}
    # an object centre on the border wins: a maximum near it is the object's
    assert MAXIMA_KINDS[int(maxima_kinds(peaks, np.array([[[1, 31]], [[-1, -1]]]))[0, 0, 30])] == "object"


def test_missed_objects_tells_why_f_count_misses_each_object():
    """Five hand-placed objects (8x8 boxes): one whose highest pixel lies in the window of a
    higher maximum in the next box, that next one (found, with a second maximum in its box), one
    under the threshold, one under a higher background pixel, one found; an absent slot is left
    out."""
    from lavae_core.diagnostics import MISS_REASONS, missed_objects
    boxes = np.array([[[0, 0, 8, 8], [0, 8, 8, 8], [30, 30, 8, 8], [50, 50, 8, 8], [20, 0, 8, 8],
                       [-1, -1, -1, -1]]])
    h = torch.zeros(1, 64, 64)
    h[0, 4, 9] = 20.0                # second box: its highest pixel ...
    h[0, 4, 6] = 15.0                # first box's own highest pixel, 3 px from a higher one
    h[0, 4, 15] = 9.0                # ... and the second box's other maximum, 6 px away
    h[0, 34, 34] = 3.0               # third box: under the threshold 4
    h[0, 53, 56], h[0, 53, 58] = 8.0, 12.0   # fourth box: a higher pixel just outside it
    h[0, 24, 4], h[0, 24, 2] = 9.0, 6.0      # fifth box: found, a lower pixel in its window
    centres = boxes[..., :2] + boxes[..., 2:] // 2                       # (row, col) = top-left + 4
    r = missed_objects(h, boxes, window=7, threshold=4.0, positions=centres)
    assert [MISS_REASONS[i] for i in r["reason"]] == [
        "under another object's maximum", "found", "below threshold", "under a background maximum",
        "found"]
    assert r["peaks"].tolist() == [0, 2, 0, 0, 1]
    # own 3x3 maxima above 4 within 2 px of the centre: the first box's (4, 6) and the fourth's
    # (53, 56), hidden by the window; the second's are 3 px from its centre (4, 12); the fifth's
    # (24, 4) is at it
    assert r["own_peak"].tolist() == [True, False, False, True, True]
    assert "own_peak" not in missed_objects(h, boxes, window=7, threshold=4.0)
    assert r["box_max"] == pytest.approx([15.0, 20.0, 3.0, 8.0, 9.0])


class _DotDecoder:
    """A stand-in for LAVAE.decode_sprites that draws one bright pixel per sprite, at the canvas
    centre plus (z[0], z[1]) pixels: z = 0 gives a sprite pinned to its location. z is read off
    h_app as LAVAE reads it."""
    appearance_at = staticmethod(LAVAE.appearance_at)

    def decode_sprites(self, z, mask):
        s = 9
        sprites = torch.zeros(*z.shape[:2], 1, s, s)
        r = (s // 2 + z[..., 0]).round().long().clamp(0, s - 1)
        c = (s // 2 + z[..., 1]).round().long().clamp(0, s - 1)
        sprites.view(-1, s * s).scatter_(1, (r * s + c).view(-1, 1), 1.0)
        return sprites


def test_shift_slope_rigid_sprite_vs_one_that_undoes_the_move():
    """1 when the drawn object follows its location; 0 when z_app read at a moved location moves
    the drawing back (the plateau case); locations off the image are clamped, not extrapolated."""
    from lavae_core.diagnostics import shift_slope
    rows, cols = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
    idx = torch.tensor([[12 * 64 + 12, 37 * 64 + 47], [0, 30 * 64 + 63]])
    mask = torch.tensor([[True, True], [True, False]])
    rigid = torch.zeros(2, 4, 64, 64)                                   # L = 2: mu = 0 everywhere
    assert shift_slope(_DotDecoder(), rigid, idx, mask, radius=2) == pytest.approx([1, 1, 1])
    undo = torch.zeros(2, 4, 64, 64)               # image 0 draws at (12, 12), image 1 at (0, 0),
    undo[0, 0], undo[0, 1] = 12.0 - rows, 12.0 - cols  # wherever z_app is read
    undo[1, 0], undo[1, 1] = -rows, -cols
    got = shift_slope(_DotDecoder(), undo, idx[:, :1], mask[:, :1], radius=2)
    assert got == pytest.approx([0.0, 0.0], abs=1e-6)
    assert shift_slope(_DotDecoder(), rigid, idx, torch.zeros_like(mask)).size == 0


def test_location_check_lists_counted_maxima_outside_every_box(capsys):
    """scripts/location_check.py's over-count line: a maximum above the threshold outside every box
    is listed with its distance to the nearest centre; one inside a box or below it is not."""
    from types import SimpleNamespace
    from test_cli import _script_module
    module = _script_module("location_check")
    h = torch.zeros(2, 64, 64)
    h[0, 20, 20] = 30.0                                  # the object's own peak, inside its box
    h[0, 20, 31] = 12.0                                  # a side peak 11 px away, outside the box
    h[1, 40, 40] = 8.0                                   # below the threshold: not counted
    boxes = np.array([[[13, 13, 15, 15]], [[33, 33, 15, 15]]])
    data = SimpleNamespace(positions=np.array([[[20, 20]], [[40, 40]]]), boxes=boxes)
    cfg = SimpleNamespace(count_threshold=2.5, gamma=4.0, count_window=9)
    module.print_extra_peaks(h, box_masks(boxes, 64), data, cfg)
    out = capsys.readouterr().out
    assert "outside every box: 1 in 1 of 2 images" in out and "median 11, range 11-11 px" in out


def test_active_app_dims_ranks_dimensions_by_kl_of_present_objects_only():
    """Hand-made posteriors: dimension 2 carries 8 nats, dimension 0 2 nats, the rest none; a
    padded slot with a huge KL on dimension 3 must not count."""
    from types import SimpleNamespace
    from lavae_core.diagnostics import active_app_dims
    from lavae_core.lavae import Inference

    L = 5
    z = torch.zeros(2, 2, L)
    z[:, 0, 2], z[:, 0, 0] = 4.0, 2.0            # KL of N(mu, 1) from N(0, 1) is mu^2 / 2
    z[:, 1, 3] = 100.0                           # padding
    mask = torch.tensor([[True, False], [True, False]])

    class Fake(torch.nn.Module):
        cfg = SimpleNamespace(latent_dim=L)

        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def infer(self, x):
            b = x.shape[0]
            return Inference(n=mask[:b].sum(1), mask=mask[:b], locations=torch.zeros(b, 2, 2, dtype=torch.long),
                             z_app=z[:b], logvar=torch.zeros(b, 2, L), sprites=None, recon=None, h_loc=None)

    model = Fake().train()
    dims, per_dim = active_app_dims(model, np.zeros((2, 1, 8, 8), np.uint8), k=2, batch_size=1)
    assert dims == (2, 0)
    assert per_dim == pytest.approx([2.0, 0.0, 8.0, 0.0, 0.0])
    assert model.training                        # the model's mode is restored
    assert active_app_dims(model, np.zeros((2, 1, 8, 8), np.uint8), k=9)[0] == (2, 0, 1, 3, 4)
    with pytest.raises(ValueError, match="positive number of dimensions"):
        active_app_dims(model, np.zeros((2, 1, 8, 8), np.uint8), k=0)
    mask[:] = False
    with pytest.raises(ValueError, match="infers no object"):
        active_app_dims(model, np.zeros((2, 1, 8, 8), np.uint8))

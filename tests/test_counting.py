"""Count accuracy: f_count over a data set against the true counts."""
import numpy as np
import pytest
import torch

from lavae_core.counting import accuracy_of, count_accuracy, counts_at, counts_at_thresholds, predict_counts
from synthetic import blob_scenes, peaked_lavae


def test_count_accuracy_counts_right_and_wrong():
    model = peaked_lavae()
    images, counts = blob_scenes(32, seed=1)
    pred = count_accuracy(model, images, counts)
    assert 0.0 <= pred["accuracy"] <= 1.0 and pred["n_images"] == 32
    assert sum(v[1] for v in pred["per_count"].values()) == 32
    # against its own predictions the accuracy is exactly 1, against shifted counts exactly 0
    own = predict_counts(model, images)
    assert count_accuracy(model, images, own)["accuracy"] == 1.0
    assert count_accuracy(model, images, own + 1)["accuracy"] == 0.0
    with pytest.raises(ValueError, match="counts"):
        count_accuracy(model, images, counts[:3])


def test_accuracy_per_true_count():
    acc = accuracy_of(np.array([0, 1, 2, 2, 3]), np.array([0, 1, 1, 2, 2]))
    assert acc["accuracy"] == pytest.approx(0.6)
    assert acc["per_count"] == {0: [1.0, 1], 1: [0.5, 2], 2: [0.5, 2]}


def test_counting_needs_only_the_location_net():
    """predict_counts uses LAVAE.infer_loc, which must give infer_maps' h_loc exactly."""
    from lavae_core.config import make_config
    from lavae_core.lavae import LAVAE
    torch.manual_seed(0)
    model = LAVAE(make_config("smoke", channels_last=True)).eval()
    x = torch.as_tensor(blob_scenes(8, seed=2)[0]).float()
    with torch.no_grad():
        assert torch.equal(model.infer_loc(x), model.infer_maps(x)[1])
        expected = model.count(model.infer_maps(x)[1])[0].numpy()
    assert (predict_counts(model, blob_scenes(8, seed=2)[0], batch_size=3) == expected).all()


def lavae_with_peaks(peaks: dict):
    """A smoke LAVAE whose location net puts h_loc = value at each {(row, col): value} of ``peaks``
    and 0 (the median) elsewhere, whatever the image."""
    model = peaked_lavae()

    class Peaks(torch.nn.Module):             # raw logits; h_loc = gamma * (raw - median)
        def forward(self, x):
            raw = torch.zeros(len(x), 1, 64, 64)
            for (r, c), v in peaks.items():
                raw[:, :, r, c] = v / model.cfg.gamma
            return raw

    model.loc_net = Peaks()
    return model


def test_counts_at_thresholds_on_a_hand_made_map():
    """Two peaks of h_loc, 6 and 14 above the median: 2 objects at 1 gamma (4), 1 at 2 and 3 gamma,
    none at the paper's 4 gamma (16); the config's own threshold gives predict_counts."""
    model = lavae_with_peaks({(16, 16): 6, (40, 44): 14})
    images = np.zeros((5, 1, 64, 64), np.uint8)
    counts = counts_at_thresholds(model, images, [1, 2, 3, 4], batch_size=2)
    assert counts.shape == (4, 5)
    assert (counts == np.array([[2], [1], [1], [0]])).all()
    assert (counts_at_thresholds(model, images, [model.cfg.count_threshold])[0]
            == predict_counts(model, images)).all()
    for bad in ([], [-1.0]):
        with pytest.raises(ValueError, match="thresholds"):
            counts_at_thresholds(model, images, bad)


def test_counts_at_windows_merges_close_peaks_only_in_a_wide_window():
    """Two peaks 6 px apart (rows), 8 and 12 above the median: a 3, 9 or 11 px window keeps both
    as local maxima, a 13 px one (+-6) only the higher; the threshold still applies per window."""
    model = lavae_with_peaks({(20, 30): 8, (26, 30): 12})
    images = np.zeros((3, 1, 64, 64), np.uint8)
    counts = counts_at(model, images, [1, 2.5], [3, 9, 11, 13], batch_size=2)
    assert counts.shape == (4, 2, 3)
    assert (counts[:, :, 0] == np.array([[2, 1], [2, 1], [2, 1], [1, 1]])).all()
    assert (counts_at(model, images, [1, 2.5], [model.cfg.count_window])[0]
            == counts_at_thresholds(model, images, [1, 2.5])).all()
    for bad in ([], [4], [0], [3.0]):
        with pytest.raises(ValueError, match="windows"):
            counts_at(model, images, [1], bad)


def test_held_out_sets_are_fresh_draws_with_the_named_counts():
    """The counting scripts' held-out sets: 0-3 objects and exactly 7, drawn with their own seeds
    (other images than a draw with seed 0), the same objects on every call (cached)."""
    from lavae_core.counting import held_out
    from lavae_core.datasets import generate
    sets = held_out("multi-dsprites", 20)
    assert list(sets) == ["0-3 objects", "7 objects"]
    assert sets["0-3 objects"].counts.max() <= 3 and (sets["7 objects"].counts == 7).all()
    assert held_out("multi-dsprites", 20)["7 objects"] is sets["7 objects"]
    assert not np.array_equal(sets["0-3 objects"].images, generate("multi-dsprites", 20, (0, 3), 0,
                                                                    progress=False).images)

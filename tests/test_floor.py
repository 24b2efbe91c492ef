"""The data set's floor: -log p(x) under the generating process."""
import math

import numpy as np
import pytest

from lavae_core.datasets import generate
from lavae_core.floor import appearance_log_prob, data_floor, free_positions, placement_log_prob


def test_free_positions_match_brute_force():
    boxes = np.array([[[3, 5, 15, 15], [30, 40, 15, 15], [40, 2, 12, 9]]])
    lp = free_positions(boxes, np.array([0, 1, 2]))
    brute = 0.0
    for i in range(3):
        h, w = boxes[0, i, 2:]
        free = 0
        for t in range(64 - h + 1):
            for l in range(64 - w + 1):
                free += all(not (t < tt + hh and tt < t + h and l < ll + ww and ll < l + w)
                            for tt, ll, hh, ww in boxes[0, :i])
        brute -= math.log(free)
    assert lp[0] == pytest.approx(brute)
    # the sum over orders is symmetric in the boxes
    perm = boxes[:, [2, 0, 1]]
    assert placement_log_prob(boxes, 3)[0] == pytest.approx(placement_log_prob(perm, 3)[0])


def test_floor_of_single_digit_images_is_closed_form(mnist_dir):
    data = generate("multi-mnist-1k", 200, n_objects=(1, 1), seed=0, mnist_dir=mnist_dir, progress=False)
    f = data_floor(data, progress=False)
    # one digit: 50 x 50 positions, 1 of 1000 pool digits, shifts inside its empty margins
    expected = math.log(50 * 50) - appearance_log_prob(data, mnist_dir)
    assert np.allclose(f["per_image"], expected)
    assert math.log(2500) < f["floor"] <= math.log(2500) + math.log(1000)


def test_floor_grows_with_objects(mnist_dir):
    f = [data_floor(generate("multi-dsprites", 100, n_objects=(n, n), seed=1, progress=False),
                    progress=False)["floor"] for n in (0, 1, 3, 7)]
    assert f[0] == 0.0
    assert f[0] < f[1] < f[2] < f[3]


def test_appearance_log_prob(mnist_dir):
    d = generate("multi-dsprites", 300, n_objects=(7, 7), seed=2, progress=False)
    lp = appearance_log_prob(d)
    assert lp.shape == (300,) and np.isfinite(lp).all()
    assert (lp <= 7 * -np.log(7) + 1e-9).all() and (lp >= 7 * -np.log(720 * 7) - 1e-9).all()
    m = generate("multi-mnist-1k", 200, seed=0, mnist_dir=mnist_dir, progress=False)
    lpm = appearance_log_prob(m, mnist_dir)
    assert (lpm[m.counts == 0] == 0).all() and (lpm[m.counts == 1] <= 0).all()

"""Multi-object data sets (paper Sections 3, 3.1, 3.2): content, ground truth, determinism, cache."""
import json

import numpy as np
import pytest

from lavae_core import datasets as D
from lavae_core.datasets import NAMES, generate, load

N = 2000
_cache = {}


def gen(name, mnist_dir, n=N, n_objects=(0, 3), seed=0):
    key = (name, n, tuple(np.atleast_1d(n_objects)), seed)
    if key not in _cache:
        _cache[key] = generate(name, n, n_objects, seed=seed, mnist_dir=mnist_dir, progress=False)
    return _cache[key]


def boxes_disjoint(boxes):
    """True per image when no two present boxes (top, left, h, w) intersect."""
    b = boxes.astype(np.int64)
    ok = np.ones(len(b), bool)
    for i in range(b.shape[1]):
        for j in range(i + 1, b.shape[1]):
            p, q = b[:, i], b[:, j]
            both = (p[:, 0] >= 0) & (q[:, 0] >= 0)
            hit = ((p[:, 0] < q[:, 0] + q[:, 2]) & (q[:, 0] < p[:, 0] + p[:, 2])
                   & (p[:, 1] < q[:, 1] + q[:, 3]) & (q[:, 1] < p[:, 1] + p[:, 3]))
            ok &= ~(both & hit)
    return ok


def render(data, mnist_dir, i):
    """Image i rebuilt from its ground truth alone (sprite tables + boxes + attributes)."""
    c = data.images.shape[1]
    img = np.zeros((c, 64, 64), np.uint8)
    for k in range(data.counts[i]):
        t, l, h, w = data.boxes[i, k]
        if c == 1:
            pool, _ = D.mnist_pool(data.params["pool_size"], mnist_dir)
            img[0, t:t + h, l:l + w] = pool[data.attrs["digit_index"][i, k]]
        else:
            masks, hw, _ = D.dsprite_table()
            a = {key: v[i, k] for key, v in data.attrs.items()}
            s = (a["shape"] * len(D.SCALES) + a["scale"]) * D.N_ANGLES + a["angle"]
            assert tuple(hw[s]) == (h, w)
            img[:, t:t + h, l:l + w] = masks[s, :h, :w][None] * D.COLORS[a["color"]][:, None, None]
    return img


@pytest.mark.parametrize("name", NAMES)
def test_shapes_types_and_ground_truth(name, mnist_dir):
    d = gen(name, mnist_dir)
    c = 3 if name == "multi-dsprites" else 1
    assert len(d) == N and d.images.shape == (N, c, 64, 64) and d.images.dtype == np.uint8
    assert set(np.unique(d.images)) <= {0, 1}
    assert d.counts.dtype == np.int64 and d.counts.min() == 0 and d.counts.max() == 3
    assert d.positions.shape == (N, 3, 2) and d.positions.dtype == np.int16
    assert d.boxes.shape == (N, 3, 4) and d.boxes.dtype == np.int16
    present = np.arange(3)[None] < d.counts[:, None]
    assert (d.boxes[present] >= 0).all() and (d.boxes[~present] == -1).all()
    assert (d.positions[~present] == -1).all()
    for v in d.attrs.values():
        assert v.shape == (N, 3) and (v[present] >= 0).all() and (v[~present] == -1).all()
    t, l, h, w = (d.boxes[..., j][present].astype(int) for j in range(4))
    assert (t + h <= 64).all() and (l + w <= 64).all()
    assert (d.positions[..., 0][present] == t + h // 2).all()     # centre convention
    assert (d.positions[..., 1][present] == l + w // 2).all()
    assert boxes_disjoint(d.boxes).all()
    json.dumps(d.params)
    assert d.params["n_objects"] == [0, 3] and d.params["seed"] == 0
    # every pixel is explained by the ground truth: nothing outside the boxes, exact sprites inside
    for i in range(300):
        np.testing.assert_array_equal(d.images[i], render(d, mnist_dir, i))


@pytest.mark.parametrize("name", NAMES)
def test_counts_roughly_uniform(name, mnist_dir):
    counts = np.bincount(gen(name, mnist_dir).counts, minlength=4)
    expected = N / 4
    chi2 = ((counts - expected) ** 2 / expected).sum()
    assert chi2 < 16.3, counts                                    # 3 dof, p = 0.001


@pytest.mark.parametrize("name,pool_size", [("multi-mnist-1k", 1000), ("multi-mnist-10k", 10000)])
def test_mnist_digits(name, pool_size, mnist_dir):
    d = gen(name, mnist_dir)
    present = d.boxes[..., 0] >= 0
    assert (d.boxes[..., 2:][present] == 15).all()               # 15x15 sprites
    idx = d.attrs["digit_index"][present]
    assert idx.max() < pool_size and idx.max() > 0.9 * pool_size
    pool, labels = D.mnist_pool(pool_size, mnist_dir)
    assert pool.shape == (pool_size, 15, 15) and set(np.unique(pool)) == {0, 1}
    assert (d.attrs["label"][present] == labels[idx]).all()
    assert d.params["pool_size"] == pool_size


def test_mnist_pool_is_fixed_first_training_digits(mnist_dir):
    import torch
    import torch.nn.functional as F

    from lavae_core.mnist import load_mnist

    small, lab_small = D.mnist_pool(1000, mnist_dir)
    big, lab_big = D.mnist_pool(10000, mnist_dir)
    np.testing.assert_array_equal(small, big[:1000])
    x, y = load_mnist("train", mnist_dir)
    np.testing.assert_array_equal(lab_big, y[:10000])
    ref = F.interpolate(torch.tensor(x[:5] / 255.0, dtype=torch.float32)[:, None], size=(15, 15),
                        mode="bilinear", align_corners=False).round()[:, 0].numpy()
    np.testing.assert_array_equal(small[:5], ref)


def test_dsprites_objects(mnist_dir):
    d = gen("multi-dsprites", mnist_dir)
    present = d.boxes[..., 0] >= 0
    hw = d.boxes[..., 2:][present]
    assert hw.max() <= 19 and hw.min() >= 3
    a = d.attrs
    assert a["shape"].max() == 2 and a["scale"].max() == 5 and a["angle"].max() == 39 and a["color"].max() == 6
    assert np.unique(a["angle"][present]).size == 40
    # each object's pixels carry exactly its saturated colour, never black
    assert (D.COLORS.sum(1) > 0).all() and len(np.unique(D.COLORS, axis=0)) == 7
    for i in range(200):
        for k in range(d.counts[i]):
            t, l, h, w = d.boxes[i, k]
            patch = d.images[i, :, t:t + h, l:l + w].reshape(3, -1)
            on = patch.any(0)
            assert on.any()
            assert (patch[:, on] == D.COLORS[a["color"][i, k]][:, None]).all()


def test_dsprite_table():
    masks, hw, offset = D.dsprite_table()
    assert masks.shape == (720, 19, 19) and hw.shape == (720, 2)
    assert (hw <= 19).all() and (offset + hw <= 19).all()
    for s in range(720):
        h, w = hw[s]
        m = masks[s]
        assert not m[h:].any() and not m[:, w:].any()            # content only inside the box
        assert m[0, :w].any() and m[h - 1, :w].any() and m[:h, 0].any() and m[:h, w - 1].any()  # tight
    big = [(sh * 6 + 5) * 40 for sh in range(3)]                  # scale 1, angle 0
    assert masks[big[0]].sum() == hw[big[0]].prod()              # an upright square fills its box
    assert masks[big[1]].sum() > masks[(1 * 6 + 0) * 40].sum()   # scale grows the ellipse
    assert hw.max() == 19


def test_determinism_and_prefix(mnist_dir):
    for name in ("multi-mnist-1k", "multi-dsprites"):
        a = generate(name, 300, seed=5, mnist_dir=mnist_dir, progress=False)
        b = generate(name, 300, seed=5, mnist_dir=mnist_dir, progress=False)
        c = generate(name, 300, seed=6, mnist_dir=mnist_dir, progress=False)
        assert a.images.tobytes() == b.images.tobytes()
        assert a.boxes.tobytes() == b.boxes.tobytes() and a.counts.tobytes() == b.counts.tobytes()
        assert all(np.array_equal(a.attrs[k], b.attrs[k]) for k in a.attrs)
        assert a.images.tobytes() != c.images.tobytes()
        big = generate(name, 5000, seed=5, mnist_dir=mnist_dir, progress=False)  # > one chunk
        assert big.images[:300].tobytes() == a.images.tobytes()


@pytest.mark.parametrize("name", NAMES)
def test_seven_objects(name, mnist_dir):
    d = gen(name, mnist_dir, n=300, n_objects=(7, 7), seed=2)
    assert (d.counts == 7).all() and d.boxes.shape == (300, 7, 4)
    assert boxes_disjoint(d.boxes).all() and (d.boxes[..., 0] >= 0).all()
    for i in range(20):
        np.testing.assert_array_equal(d.images[i], render(d, mnist_dir, i))


@pytest.mark.parametrize("name", ["multi-mnist-1k", "multi-dsprites"])
def test_zero_to_ten_objects(name, mnist_dir):
    d = gen(name, mnist_dir, n=1100, n_objects=(0, 10), seed=3)
    assert d.boxes.shape[1] == 10 and d.counts.min() == 0 and d.counts.max() == 10
    assert np.bincount(d.counts, minlength=11).min() > 50
    assert boxes_disjoint(d.boxes).all()
    i = int(np.argmax(d.counts == 10))
    np.testing.assert_array_equal(d.images[i], render(d, mnist_dir, i))


def test_empty_range(mnist_dir):
    d = generate("multi-dsprites", 10, (0, 0), progress=False)
    assert not d.images.any() and d.boxes.shape == (10, 0, 4) and (d.counts == 0).all()


def test_unknown_name():
    with pytest.raises(ValueError, match="multi-mnist-1k.*multi-mnist-10k.*multi-dsprites"):
        generate("multi-fashion", 10)
    with pytest.raises(ValueError, match="multi-dsprites"):
        load("mnist", "train")


def test_bad_arguments():
    with pytest.raises(ValueError, match="n_objects"):
        generate("multi-dsprites", 10, (3, 1))
    with pytest.raises(ValueError, match="split"):
        load("multi-dsprites", "validation")


def test_impossible_counts(mnist_dir):
    with pytest.raises(ValueError, match="cannot fit"):
        generate("multi-mnist-1k", 10, (40, 40), mnist_dir=mnist_dir, progress=False)
    with pytest.raises(ValueError, match="too dense"):                 # fits on paper, jams in practice
        generate("multi-mnist-1k", 10, (16, 16), mnist_dir=mnist_dir, progress=False)
    with pytest.raises(ValueError):
        generate("multi-dsprites", 10, (100, 100), progress=False)


def test_packbits_round_trip():
    rng = np.random.default_rng(0)
    x = (rng.random((7, 3, 64, 64)) < 0.3).astype(np.uint8)
    p = D.pack_images(x)
    assert p.shape == (7, 3, 64, 8) and p.dtype == np.uint8
    np.testing.assert_array_equal(D.unpack_images(p), x)


def test_subset(mnist_dir):
    d = gen("multi-mnist-1k", mnist_dir)
    s = d.subset(np.arange(10, 20))
    assert len(s) == 10 and s.params["n_images"] == 10
    np.testing.assert_array_equal(s.images, d.images[10:20])
    np.testing.assert_array_equal(s.attrs["label"], d.attrs["label"][10:20])
    assert len(d.subset(d.counts == 2)) == (d.counts == 2).sum()


def test_cache_round_trip_and_regeneration(mnist_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LAVAE_DATA_DIR", str(tmp_path))
    a = load("multi-dsprites", "test7", n_images=40, progress=False)
    path = D.cache_path("multi-dsprites", "test7", n_images=40)
    assert path == tmp_path / "multi-dsprites" / "test7-n40.npz" and path.exists()
    assert (a.counts == 7).all() and a.params["seed"] == 2
    assert [p.name for p in path.parent.iterdir()] == [path.name]         # no temp files left

    def no_generation(*args, **kw):
        raise AssertionError("regenerated a valid cache")
    monkeypatch.setattr(D, "generate", no_generation)
    b = load("multi-dsprites", "test7", n_images=40, progress=False)
    assert b.images.tobytes() == a.images.tobytes() and b.params == a.params
    assert all(np.array_equal(a.attrs[k], b.attrs[k]) for k in a.attrs)
    assert b.boxes.dtype == np.int16 and b.name == "multi-dsprites"
    monkeypatch.undo()

    monkeypatch.setenv("LAVAE_DATA_DIR", str(tmp_path))
    monkeypatch.setattr(D, "VERSION", D.VERSION + 1)                       # params differ now
    c = load("multi-dsprites", "test7", n_images=40, progress=False)
    assert "regenerating" in capsys.readouterr().err
    assert c.params["version"] == D.VERSION
    with np.load(path) as z:
        assert json.loads(str(z["params"]))["version"] == D.VERSION

    path.write_bytes(b"garbage")                                          # unreadable: regenerate too
    d = load("multi-dsprites", "test7", n_images=40, progress=False)
    assert d.images.tobytes() == c.images.tobytes()


def test_split_seeds_and_paths(tmp_path, monkeypatch, mnist_dir):
    monkeypatch.setenv("LAVAE_DATA_DIR", str(tmp_path))
    assert D.cache_path("multi-mnist-1k", "train") == tmp_path / "multi-mnist-1k" / "train.npz"
    assert D.cache_path("multi-mnist-1k", "test", seed=3).name == "test-s3.npz"
    tr = load("multi-mnist-1k", "train", mnist_dir=mnist_dir, n_images=30, progress=False)
    te = load("multi-mnist-1k", "test", mnist_dir=mnist_dir, n_images=30, progress=False)
    assert tr.params["seed"] == 0 and te.params["seed"] == 1
    assert tr.images.tobytes() != te.images.tobytes()
    assert D.SPLITS["train"][0] == 190_000 and D.SPLITS["test"][0] == 10_000
    assert D.SPLITS["test7"][1] == (7, 7)


def test_command_line(tmp_path, monkeypatch, mnist_dir, capsys):
    monkeypatch.setenv("LAVAE_DATA_DIR", str(tmp_path))
    D.main(["--name", "multi-mnist-10k", "--split", "test", "test7", "--n-images", "20",
            "--mnist-dir", str(mnist_dir), "--no-progress"])
    out = capsys.readouterr().out
    for split in ("test", "test7"):
        path = tmp_path / "multi-mnist-10k" / f"{split}-n20.npz"
        assert path.exists() and str(path) in out


def test_pool_from_the_download_folder(mnist_dir, tmp_path, monkeypatch):
    """No LAVAE_MNIST_DIR: the pool comes from data_dir()/mnist, downloaded (here from file://)."""
    from lavae_core import mnist

    monkeypatch.delenv("LAVAE_MNIST_DIR", raising=False)
    monkeypatch.setenv("LAVAE_DATA_DIR", str(tmp_path))
    monkeypatch.setattr(mnist, "MIRRORS", (mnist_dir.as_uri() + "/",))
    d = generate("multi-mnist-1k", 20, progress=False)
    assert (tmp_path / "mnist" / "train-images-idx3-ubyte.gz").exists()
    np.testing.assert_array_equal(D.mnist_pool(1000)[0], D.mnist_pool(1000, mnist_dir)[0])
    assert d.images.any()


def test_figures(mnist_dir, tmp_path):
    import matplotlib.pyplot as plt

    from lavae_core import viz

    d = gen("multi-dsprites", mnist_dir)
    g = viz.image_grid(d.images[:5], nrow=4)
    assert g.shape == (2 * 65 + 1, 4 * 65 + 1, 3) and g[0, 0, 0] == 0.5          # 1-px separators
    np.testing.assert_array_equal(g[1:65, 1:65], d.images[0].transpose(1, 2, 0))
    assert viz.image_grid(np.ones((3, 1, 8, 8)), 3).shape == (10, 28)
    for fig, name in ((viz.plot_dataset_samples(d, n=8), "s"), (viz.plot_dataset_stats(d), "t")):
        png = viz.save_figure(fig, name, tmp_path)
        assert png == tmp_path / f"{name}.png" and png.stat().st_size > 0
        assert (tmp_path / f"{name}.pdf").exists()
        plt.close(fig)

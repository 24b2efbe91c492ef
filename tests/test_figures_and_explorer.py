"""Model figures (viz) and the latent explorer on a small untrained model that sees objects."""
import matplotlib
import pytest
import numpy as np
import torch

matplotlib.use("Agg")
from lavae_core import viz  # noqa: E402
from lavae_core.explorer import Explorer, SceneState  # noqa: E402
from synthetic import blob_scenes, peaked_lavae  # noqa: E402


@pytest.fixture(scope="module")
def model():
    return peaked_lavae()


@pytest.fixture(scope="module")
def images():
    ims, counts = blob_scenes(12, seed=2)
    return ims[counts > 0][:4]


def test_every_figure_renders_and_saves(model, images, tmp_path):
    assert int(model.infer(torch.as_tensor(images).float()).n.min()) >= 1
    figs = {
        "inference": viz.plot_inference(model, images),
        "samples": viz.plot_samples(model.sample_prior(8)[0]),
        "swap": viz.plot_swap(model, images),
        "loc": viz.plot_location_traversal(model, images[0], steps=5),
        "app": viz.plot_appearance_traversal(model, images[0], dims=(0, 1), steps=4),
        "count": viz.plot_count_curve({"run": {0: 1.0, 1: 0.5, 7: 0.25}}),
    }
    assert figs["inference"].axes[0].get_title() == "input"
    assert len(figs["app"].axes) == 2 * 4 and len(figs["loc"].axes) == 5
    for name, fig in figs.items():
        png = viz.save_figure(fig, name, tmp_path)
        assert png.exists() and png.with_suffix(".pdf").exists()


def test_count_curve_over_seeds_draws_the_mean_and_the_seed_range():
    fig = viz.plot_count_curve({"a": {0: [1.0, 0.8], 3: [0.5, 0.3], "7": [0.2, 0.0]}, "b": {0: 0.9}})
    ax = fig.axes[0]
    a, b = ax.get_lines()[:2]
    assert list(a.get_xdata()) == [0, 3, 7] and np.allclose(a.get_ydata(), [0.9, 0.4, 0.1])
    assert "mean of 2 seeds" in a.get_label() and "seeds" not in b.get_label()
    band = ax.collections[0].get_paths()[0].vertices[:, 1]
    assert np.isclose(band.min(), 0.0) and np.isclose(band.max(), 1.0)


def test_location_traversal_moves_only_one_object(model, images):
    inf = model.infer(torch.as_tensor(images[:1]).float())
    locs = inf.locations.clone()
    locs[0, 0] = torch.tensor([10, 10])
    moved, sprites = model.decode(locs, inf.z_app, inf.mask)
    # sprites (appearance) do not depend on location: location and appearance are disentangled
    assert torch.allclose(sprites, inf.sprites)
    assert not torch.allclose(moved, inf.recon)


def test_traversal_of_a_missing_object_is_a_clear_error(model, images):
    with pytest.raises(ValueError, match="object 9 asked for"):
        viz.plot_location_traversal(model, images[0], obj=9)


def test_scene_state_edits(model, images):
    st = SceneState(model, images[0])
    n0 = st.n
    assert n0 >= 1
    img0, _ = st.decode()
    st.add()
    assert st.n == n0 + 1
    st.swap(0, st.n - 1)
    st.move(0, 5, 60)
    assert st.locations[0].tolist() == [5, 60]
    st.set_dim(0, 1, 2.5)
    assert float(st.z[0, 1]) == 2.5
    st.delete(st.n - 1)
    st.set_n(0)
    empty, _ = st.decode()
    assert float(empty.max()) < 1e-3 < float(img0.max())
    with pytest.raises(IndexError, match="does not exist"):
        st.delete(0)
    with pytest.raises(ValueError, match="off the"):
        SceneState(model, images[0]).move(0, 64, 0)
    with pytest.raises(ValueError, match="n must be"):
        st.set_n(11)


def test_explorer_widgets_drive_the_state(model, images):
    ex = Explorer(model, images)
    assert ex.w_n.value == ex.state.n
    ex.w_add.click()
    assert ex.state.n == ex.w_n.value
    ex.w_obj.value = 0
    ex.w_col.value = 33
    assert ex.state.locations[0, 1] == 33
    ex.w_n.value = 1
    assert ex.state.n == 1
    ex.w_prior.click()
    assert ex.state.image is None
    fig = ex.figure()
    assert "reconstruction" in fig.axes[1].get_title()


def test_rgb_figures_render(tmp_path):
    """multi-dSprites models (3 channels, 21-px sprites) go through the same figure code."""
    model = peaked_lavae(dataset="multi-dsprites")
    ims, counts = blob_scenes(8, channels=3, seed=3)
    ims = ims[counts > 0][:3]
    inf = model.infer(torch.as_tensor(ims).float())
    assert inf.recon.shape == (3, 3, 64, 64) and inf.sprites.shape[-3:] == (3, 21, 21)
    for name, fig in {"inference": viz.plot_inference(model, ims), "swap": viz.plot_swap(model, ims),
                      "app": viz.plot_appearance_traversal(model, ims[0], dims=(0,), steps=3),
                      "samples": viz.plot_samples(model.sample_prior(4)[0])}.items():
        assert viz.save_figure(fig, f"rgb_{name}", tmp_path).exists()
    st = SceneState(model, ims[0])
    assert st.decode()[0].shape[0] == 3

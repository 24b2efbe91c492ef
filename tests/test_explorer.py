"""The latent explorer (issue 10): one redraw at a time, no value echo, pictures without pyplot,
a static twin on a copy, a disabled "swap" until a partner is chosen, the selection highlighted,
"prior sample" never empty, and a one-line error for every bad input. The real-browser test is
tests/test_explorer_browser.py."""
import io
import threading
import time

import matplotlib
import numpy as np
import pytest
import torch

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from PIL import Image  # noqa: E402  (a dependency of matplotlib)

from lavae_core.explorer import (HIGHLIGHT, Explorer, SceneState, before_after_figure,  # noqa: E402
                                 round_to_step, scene_figure)
from synthetic import blob_scenes, peaked_lavae  # noqa: E402


@pytest.fixture(scope="module")
def model():
    return peaked_lavae()


@pytest.fixture(scope="module")
def images():
    ims, counts = blob_scenes(24, seed=2)
    ims = ims[counts >= 2][:4]
    assert len(ims) == 4
    return ims


@pytest.fixture()
def ex(model, images):
    e = Explorer(model, images)
    assert e.state.n >= 2 and e.message == ""
    return e


def _pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)


def _orange(png: bytes) -> np.ndarray:
    """Mask of the highlight colour's pixels."""
    want = np.array(matplotlib.colors.to_rgb(HIGHLIGHT)) * 255
    return (np.abs(_pixels(png) - want) < 30).all(-1)


# ---------------------------------------------------------------- bad input: one-line errors
@pytest.mark.parametrize("edit, error, match", [
    (lambda st: st.move(0, 64, 0), ValueError, r"location \(64, 0\) is off the 64x64 canvas"),
    (lambda st: st.move(0, 1.5, 0), TypeError, "row must be an integer, got 1.5"),
    (lambda st: st.move(0, 3, "7"), TypeError, "col must be an integer, got '7'"),
    (lambda st: st.move(None, 3, 3), ValueError, "choose the object first"),
    (lambda st: st.move(9, 3, 3), IndexError, r"object 9 does not exist: the scene has \d objects"),
    (lambda st: st.move(-1, 3, 3), IndexError, "object -1 does not exist"),
    (lambda st: st.move(True, 3, 3), TypeError, "object must be an integer, got True"),
    (lambda st: st.set_dim(0, 4, 1.0), IndexError, r"dim 4 does not exist: the appearance latent has 4 dimensions"),
    (lambda st: st.set_dim(0, 0, float("nan")), ValueError, "value must be finite"),
    (lambda st: st.set_dim(0, 0, "big"), TypeError, "value must be a number, got 'big'"),
    (lambda st: st.swap(0, None), ValueError, "choose the object to swap with first"),
    (lambda st: st.swap(1, 1), ValueError, "cannot swap object 1 with itself"),
    (lambda st: st.swap(0, 9), IndexError, "object to swap with 9 does not exist"),
    (lambda st: st.delete(9), IndexError, "object 9 does not exist"),
    (lambda st: st.set_n(11), ValueError, r"n must be in 0\.\.10, got 11"),
    (lambda st: st.set_n(2.0), TypeError, "n must be an integer"),
    (lambda st: [st.add() for _ in range(11)], ValueError, "the scene is full: the model allows at most M = 10"),
    (lambda st: st.load_image(np.zeros((64, 64))), ValueError, r"image must have shape \(1, 64, 64\) for this model, got \(64, 64\)"),
    (lambda st: st.load_image(np.full((1, 64, 64), 255, np.uint8)), ValueError, r"image values must lie in \[0, 1\]"),
    (lambda st: st.load_image(np.array([["a"]])), TypeError, "image must be an array of numbers"),
])
def test_every_bad_scene_edit_is_a_one_line_error(model, images, edit, error, match):
    st = SceneState(model, images[0])
    with pytest.raises(error, match=match) as info:
        edit(st)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("args, error, match", [
    (([],), ValueError, "images is empty"),
    ((None,), ValueError, "images is empty"),
    (("images", 4), IndexError, r"image 4 does not exist: there are 4 images \(0\.\.3\)"),
    (("images", "0"), TypeError, "index must be an integer"),
    ((np.zeros((2, 64, 64)),), ValueError, r"image must have shape \(1, 64, 64\) for this model, got \(64, 64\)"),
])
def test_bad_explorer_arguments_are_one_line_errors(model, images, args, error, match):
    args = tuple(images if isinstance(a, str) and a == "images" else a for a in args)
    with pytest.raises(error, match=match) as info:
        Explorer(model, *args)
    assert "\n" not in str(info.value)


def test_bad_widget_input_shows_a_one_line_message_and_changes_nothing(ex):
    """Clicking "swap" without a partner (a programmatic click passes the disabled button) and
    a failing edit report in the status line; the scene, and no exception reaches the kernel log."""
    key = ex.state.key()
    assert ex.partner is None and ex.w_other.label == "(choose)" and ex.w_swap.disabled
    ex.w_swap.click()
    assert "ValueError: choose the object to swap with first" in ex.w_status.value
    assert "lavae-error" in ex.w_status.value and ex.state.key() == key
    ex.w_n.value = ex.state.n  # a good edit clears the message
    ex.w_obj.value = 1
    assert "lavae-error" not in ex.w_status.value and "object 1" in ex.w_status.value


def test_swap_is_disabled_until_a_partner_is_chosen(ex):
    ex.w_obj.value = 0
    assert ex.w_swap.disabled and ex.w_other.label == "(choose)"
    assert "object 0" not in ex.w_other.options, "an object cannot be swapped with itself"
    z0, z1 = ex.state.z[0].clone(), ex.state.z[1].clone()
    ex.w_other.value = 1
    assert not ex.w_swap.disabled
    before = ex.w_recon.value
    ex.w_swap.click()
    assert torch.equal(ex.state.z[0], z1) and torch.equal(ex.state.z[1], z0)
    assert ex.w_recon.value != before
    ex.w_swap.click()  # swapping back gives the very same picture
    assert ex.w_recon.value == before
    ex.w_obj.value = 1  # the partner cannot stay the selected object itself
    assert ex.partner is None and ex.w_other.label == "(choose)" and ex.w_swap.disabled
    ex.w_other.value = 0
    ex.w_index.value = 1  # a new scene forgets the partner
    assert ex.partner is None and ex.w_swap.disabled


# ---------------------------------------------------------------- no value echo
def test_selecting_an_object_leaves_its_latent_alone(ex):
    ex.state.z[1, 0] = -1.7431
    ex.state.z[1, 1] = 0.8392
    ex.w_obj.value = 1
    assert ex.w_val.value == pytest.approx(-1.7)
    ex.w_val.value = -1.7  # what the browser sends back after rounding: no edit
    ex.w_dim.value = 1
    assert ex.w_val.value == pytest.approx(0.8)
    ex.w_val.value = 0.8
    ex.w_obj.value = 0
    ex.w_obj.value = 1
    assert float(ex.state.z[1, 0]) == pytest.approx(-1.7431) and float(ex.state.z[1, 1]) == pytest.approx(0.8392)


def test_quick_value_steps_all_arrive(ex):
    """5 x PageUp (5 steps of 0.1 each) from 0.4 ends at 2.9; the explorer never writes the slider back."""
    ex.w_obj.value = 0
    ex.w_val.value = 0.4
    assert float(ex.state.z[0, 0]) == pytest.approx(0.4)
    writes = []
    ex.w_val.observe(lambda c: writes.append(c["new"]), "value")
    for k in range(1, 6):
        ex.w_val.value = round(0.4 + 0.5 * k, 1)
    assert writes == pytest.approx([0.9, 1.4, 1.9, 2.4, 2.9])
    assert float(ex.state.z[0, 0]) == pytest.approx(2.9)
    assert round_to_step(0.8392) == 0.8 and round_to_step(-1.7431) == -1.7 and round_to_step(2.95) == 3.0


def test_changes_that_leave_the_scene_the_same_do_not_redraw(ex):
    ex.w_obj.value = 0
    r, c = ex.state.locations[0].tolist()
    n = ex.redraws
    ex.w_row.value = r            # same value: no trait change at all
    ex.w_dim.value = 1            # another dimension: the sliders follow, the pictures stay
    ex.w_val.value = round_to_step(float(ex.state.z[0, 1]))
    assert ex.redraws == n
    ex.w_col.value = (c + 5) % 64
    assert ex.redraws == n + 1 and ex.state.locations[0].tolist() == [r, (c + 5) % 64]


# ---------------------------------------------------------------- one redraw at a time
def test_events_from_several_threads_never_draw_at_once(ex, monkeypatch):
    render, active, peak = ex._render, [0], [0]
    guard = threading.Lock()

    def slow_render(*a):
        with guard:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        time.sleep(0.02)
        try:
            return render(*a)
        finally:
            with guard:
                active[0] -= 1

    monkeypatch.setattr(ex, "_render", slow_render)
    n0 = ex.state.n
    ex.w_obj.value = 0
    threads = [threading.Thread(target=ex.w_add.click) for _ in range(3)]
    threads += [threading.Thread(target=lambda v=v: setattr(ex.w_col, "value", v)) for v in (3, 9, 27)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert peak[0] == 1, "two redraws ran at once"
    assert ex.state.n == n0 + 3, "an edit was lost"
    assert ex._shown[0] == ex.state.key(), "the picture does not show the final scene"
    assert ex.w_n.value == ex.state.n and len(ex.w_obj.options) == ex.state.n
    assert ex.message == ""


def test_the_explorer_draws_without_pyplot(model, images):
    plt.close("all")
    e = Explorer(model, images)
    e.w_add.click()
    e.w_col.value = 12
    e.figure()
    assert plt.get_fignums() == [], "the explorer opened pyplot figures"
    assert all(w.value[:8] == b"\x89PNG\r\n\x1a\n" for w in (e.w_input, e.w_recon, e.w_locs, e.w_sprites))


# ---------------------------------------------------------------- what a person sees
def test_the_selected_object_is_highlighted_on_the_reconstruction(ex):
    S = ex.model.cfg.sprite_size
    for i in (0, 1):
        ex.w_obj.value = i
        mask = _orange(ex.w_recon.value)
        ys, xs = np.nonzero(mask)
        assert len(ys) > 50, "no highlight box"
        # the box is centred on the object's location (image 64 px drawn on ~300 px: ~4.7 px/pixel)
        r, c = ex.state.locations[i].tolist()
        h, w = mask.shape
        assert abs(ys.mean() / h - (r + 0.5) / 64) < 0.2 and abs(xs.mean() / w - (c + 0.5) / 64) < 0.2, (i, S)
    assert [label for label, _ in ex.w_obj.options] == [f"object {k}" for k in range(ex.state.n)]
    assert "object 1" in ex.w_status.value
    assert Image.open(io.BytesIO(ex.w_recon.value)).size[0] >= 300, "pictures should be large"


def test_moving_an_object_and_back_restores_the_picture(ex):
    ex.w_obj.value = 0
    before = ex.w_recon.value
    c = int(ex.state.locations[0, 1])
    ex.w_col.value = (c + 20) % 64
    assert ex.w_recon.value != before
    ex.w_col.value = c
    assert ex.w_recon.value == before


def test_delete_and_add(ex):
    n = ex.state.n
    ex.w_obj.value = n - 1
    ex.w_del.click()
    assert ex.state.n == n - 1 and ex.w_n.value == n - 1 and ex.selected == n - 2
    ex.w_add.click()
    assert ex.state.n == n and ex.selected == n - 1, "the new object is selected"
    for _ in range(n):
        ex.w_del.click()
    assert ex.state.n == 0 and ex.selected is None and ex.w_del.disabled and ex.w_row.disabled
    assert "no objects" in ex.w_status.value and "lavae-error" not in ex.w_status.value


def test_prior_sample_is_never_empty_and_refreshes_the_sliders(model, images):
    """Even a p(n) that nearly always says n = 0 gives a scene with objects, and the controls show it."""
    e = Explorer(model, images)
    e.w_col.value = 0
    logits = model.prior_n_logits.data.clone()
    try:
        model.prior_n_logits.data[:] = torch.tensor([8.0] + [0.0] * 10)
        for _ in range(10):
            e.w_prior.click()
            assert e.state.image is None and e.state.n >= 1 and e.message == ""
            assert e.w_n.value == e.state.n and len(e.w_obj.options) == e.state.n and e.w_obj.value == 0
            assert [e.w_row.value, e.w_col.value] == e.state.locations[0].tolist()
            assert e.w_val.value == pytest.approx(round_to_step(float(e.state.z[0, e.dim])))
            assert _orange(e.w_recon.value).sum() > 50 and "prior sample" in e.w_status.value
    finally:
        model.prior_n_logits.data[:] = logits


# ---------------------------------------------------------------- the static twin
def test_the_static_twin_edits_a_copy(ex, tmp_path):
    key = ex.state.key()
    twin = ex.state.copy()
    twin.swap(0, 1)
    twin.move(0, 10, 10)
    twin.add()
    assert ex.state.key() == key, "editing the copy changed the live scene"
    fig = before_after_figure(ex.state, twin, "swap, move, add")
    titles = [ax.get_title() for ax in fig.axes]
    assert f"reconstruction (n={ex.state.n})" in titles and f"reconstruction (n={twin.n})" in titles
    assert [ax.get_ylabel() for ax in fig.axes if ax.get_ylabel()] == ["before", "after"]
    assert fig.get_suptitle() == "edit: swap, move, add"
    whole = ex.figure("now")
    assert whole.axes[1].get_title().startswith("reconstruction") and ex.state.key() == key
    assert scene_figure(twin).axes[1].get_title() == f"reconstruction (n={twin.n})"

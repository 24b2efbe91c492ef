"""Latent explorer: edit the objects LAVAE inferred and watch the reconstruction (ipywidgets).

``SceneState`` holds one scene's latents (locations, appearance latents; present objects only) and
the edits of the paper's disentanglement experiments (Figures 3, 6-8, 11): move an object, change
one appearance dimension, swap two objects, delete one, add one from the prior, change n.
``Explorer`` puts labelled widgets on top of it. :func:`scene_figure` draws a scene as one static
figure and :func:`before_after_figure` an edit as a before/after pair (papermill keeps no widget
state, so the notebook saves these).

Robustness rules of the live view (issue 10):
* one redraw at a time: widget events may arrive on several kernel threads; edits are applied under
  a lock and a redraw requested while another one runs is coalesced into that one's next pass;
* no value echo: the explorer writes a widget only when the scene moved away from what the widget
  shows, values are rounded to the slider's step, and a change that leaves the scene (and the
  selection) the same is ignored;
* pictures are PNG bytes of ``matplotlib.figure.Figure`` objects in ``ipywidgets.Image`` widgets:
  no pyplot and no shared output area, so nothing can land in JupyterLab's log console;
* a bad input, from code or from a widget, is a one-line error (shown under the controls in the
  live view).
"""
from __future__ import annotations

import html
import io
import math
import threading

import numpy as np
import torch

VALUE_STEP = 0.1    # step of the appearance "value" slider
VALUE_LIMIT = 3.0   # the slider spans [-VALUE_LIMIT, VALUE_LIMIT]
HIGHLIGHT = "#ff7f0e"
NO_PARTNER = -1     # the "swap with" list's "(choose)" entry (a Dropdown shows no label for None)
OTHER = "#4fc3f7"


def round_to_step(value: float, step: float = VALUE_STEP) -> float:
    """``value`` rounded to a multiple of ``step`` (what a slider with that step can show)."""
    return round(round(float(value) / step) * step, 10)


def _integer(value, what: str) -> int:
    """``value`` as an int, or a one-line TypeError naming ``what``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        if isinstance(value, torch.Tensor) and value.numel() == 1 and not value.is_floating_point():
            return int(value)
        raise TypeError(f"{what} must be an integer, got {value!r}")
    return int(value)


class SceneState:
    """Latents of one scene, editable: ``locations`` (n, 2) long (row, col), ``z`` (n, L) float."""

    def __init__(self, model, image=None, generator: torch.Generator | None = None):
        self.model = model
        self.gen = generator or torch.Generator().manual_seed(0)
        self.image = None
        if image is not None:
            self.load_image(image)
        else:
            self.load_prior()

    @property
    def device(self):
        return next(self.model.parameters()).device

    @property
    def cfg(self):
        return self.model.cfg

    def load_image(self, image) -> None:
        """Infer the latents of an image (C, H, W) with values in [0, 1] (uint8 {0, 1} or float)."""
        cfg = self.cfg
        want = (cfg.channels, cfg.image_size, cfg.image_size)
        x = np.asarray(image.detach().cpu() if isinstance(image, torch.Tensor) else image)
        if x.dtype == object or not (np.issubdtype(x.dtype, np.number) or x.dtype == bool):
            raise TypeError(f"image must be an array of numbers, got {x.dtype}")
        if x.shape != want:
            raise ValueError(f"image must have shape {want} for this model, got {tuple(x.shape)}")
        x = x.astype(np.float32)
        if not np.isfinite(x).all() or x.min() < 0 or x.max() > 1:
            raise ValueError("image values must lie in [0, 1]")
        x = torch.from_numpy(x)[None].to(self.device)
        with torch.no_grad():
            inf = self.model.infer(x)
        n = int(inf.n[0])
        self.image = x[0].cpu()
        self.locations = inf.locations[0, :n].cpu().clone()
        self.z = inf.z_app[0, :n].cpu().clone()

    def load_prior(self) -> None:
        """A scene drawn from the model's prior given at least one object: n ~ p(n | n >= 1) (the
        learned p(n) without n = 0, renormalised), locations and appearances from their priors."""
        probs = self.model.log_prior_n().detach().exp().cpu().clone()
        probs[0] = 0.0
        if not float(probs.sum()) > 0:
            raise ValueError("the model's p(n) puts all its mass on n = 0: nothing to sample")
        _, lat = self.model.sample_prior(1, p_n=probs, generator=self.gen)
        n = int(lat["n"][0])
        self.image = None
        self.locations = lat["locations"][0, :n].cpu().clone()
        self.z = lat["z_app"][0, :n].cpu().clone()

    def copy(self) -> "SceneState":
        """An independent copy (same model; latents, input image and random generator copied)."""
        new = SceneState.__new__(SceneState)
        new.model = self.model
        new.gen = torch.Generator().manual_seed(0)
        new.gen.set_state(self.gen.get_state())
        new.image = None if self.image is None else self.image.clone()
        new.locations, new.z = self.locations.clone(), self.z.clone()
        return new

    def key(self) -> tuple:
        """A hashable summary of the latents: equal keys render the same picture."""
        return tuple(self.locations.flatten().tolist()), self.z.numpy().tobytes()

    @property
    def n(self) -> int:
        return len(self.z)

    def _check(self, i, what: str = "object") -> int:
        if i is None:
            raise ValueError(f"choose the {what} first")
        i = _integer(i, what)
        if not 0 <= i < self.n:
            raise IndexError(f"{what} {i} does not exist: the scene has {self.n} objects"
                             + (f" (0..{self.n - 1})" if self.n else ""))
        return i

    def move(self, i: int, row: int, col: int) -> None:
        """Put object i at pixel (row, col)."""
        i = self._check(i)
        row, col = _integer(row, "row"), _integer(col, "col")
        size = self.cfg.image_size
        if not (0 <= row < size and 0 <= col < size):
            raise ValueError(f"location ({row}, {col}) is off the {size}x{size} canvas (0..{size - 1})")
        self.locations[i] = torch.tensor([row, col])

    def set_dim(self, i: int, dim: int, value: float) -> None:
        """Set dimension ``dim`` of object i's appearance latent to ``value``."""
        i = self._check(i)
        dim = _integer(dim, "dim")
        L = self.cfg.latent_dim
        if not 0 <= dim < L:
            raise IndexError(f"dim {dim} does not exist: the appearance latent has {L} dimensions (0..{L - 1})")
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise TypeError(f"value must be a number, got {value!r}")
        if not math.isfinite(value):
            raise ValueError(f"value must be finite, got {value}")
        self.z[i, dim] = float(value)

    def swap(self, i: int, j: int) -> None:
        """Exchange the appearance of objects i and j (= exchange their locations)."""
        i = self._check(i)
        j = self._check(j, "object to swap with")
        if i == j:
            raise ValueError(f"cannot swap object {i} with itself: choose another object")
        self.z[[i, j]] = self.z[[j, i]]

    def delete(self, i: int) -> None:
        i = self._check(i)
        keep = [k for k in range(self.n) if k != i]
        self.locations, self.z = self.locations[keep], self.z[keep]

    def add(self) -> None:
        """Add an object from the prior: z_app ~ N(0, I), location uniform over free pixels."""
        cfg = self.cfg
        if self.n >= cfg.max_objects:
            raise ValueError(f"the scene is full: the model allows at most M = {cfg.max_objects} objects")
        size = cfg.image_size
        taken = {tuple(x) for x in self.locations.tolist()}
        while True:
            loc = torch.randint(size, (2,), generator=self.gen)
            if tuple(loc.tolist()) not in taken:
                break
        z = torch.randn(1, cfg.latent_dim, generator=self.gen)
        self.locations = torch.cat([self.locations, loc[None]])
        self.z = torch.cat([self.z, z])

    def set_n(self, n: int) -> None:
        """Keep the first n objects, or add objects from the prior until there are n."""
        n = _integer(n, "n")
        if not 0 <= n <= self.cfg.max_objects:
            raise ValueError(f"n must be in 0..{self.cfg.max_objects}, got {n}")
        while self.n < n:
            self.add()
        self.locations, self.z = self.locations[:n], self.z[:n]

    @torch.no_grad()
    def decode(self):
        """(Bernoulli means (C, H, W), sprites (n, C, S, S)) of the current latents."""
        L = self.cfg.latent_dim
        locs = self.locations.reshape(1, self.n, 2).to(self.device)
        z = self.z.reshape(1, self.n, L).to(self.device)
        img, sprites = self.model.decode(locs, z, torch.ones(1, self.n, dtype=torch.bool, device=self.device))
        return img[0].cpu(), sprites[0].cpu()


# ------------------------------------------------------------------------------------- drawing
def _figure(width_in: float, height_in: float, dpi: int = 100):
    """A matplotlib Figure made with the object API (no pyplot, no global state, thread-safe)."""
    from matplotlib.figure import Figure
    return Figure(figsize=(width_in, height_in), dpi=dpi)


def png_bytes(fig) -> bytes:
    """The PNG of a Figure (rendered by Agg)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=fig.dpi)
    return buf.getvalue()


def _mark_objects(ax, locations, selected, sprite_size: int) -> None:
    """Box every object (``selected`` thick, in orange) and write its number beside it."""
    from matplotlib.patches import Rectangle
    half = sprite_size / 2
    for k, (r, c) in enumerate(np.asarray(locations).reshape(-1, 2).tolist()):
        sel = k == selected
        ax.add_patch(Rectangle((c - half, r - half), sprite_size, sprite_size, fill=False,
                               edgecolor=HIGHLIGHT if sel else OTHER, lw=2.5 if sel else 0.8,
                               ls="-" if sel else ":"))
        ax.text(c - half + 0.5, r - half - 0.5, str(k), color=HIGHLIGHT if sel else OTHER, fontsize=9,
                fontweight="bold" if sel else "normal", va="bottom", ha="left")


def draw_input(ax, state: SceneState) -> None:
    """The input image, or a note that the scene is a prior sample."""
    from .viz import show_image
    if state.image is not None:
        show_image(ax, state.image, "input", fontsize=10)
    else:
        ax.set_xticks([])
        ax.set_yticks([])
        ax.text(0.5, 0.5, "prior sample\n(no input image)", ha="center", va="center", fontsize=10,
                transform=ax.transAxes)


def draw_reconstruction(ax, state: SceneState, image, selected: int | None = None, mark: bool = True) -> None:
    """The decoded scene; with ``mark`` every object boxed and numbered, ``selected`` in orange."""
    from .viz import show_image
    show_image(ax, image, f"reconstruction (n={state.n})", fontsize=10)
    if mark:
        _mark_objects(ax, state.locations, selected, state.cfg.sprite_size)


def draw_locations(ax, state: SceneState, selected: int | None = None, mark: bool = True) -> None:
    """The locations as white dots (Figures 1 and 5), boxed and numbered with ``mark``."""
    from .viz import location_canvas, show_image
    show_image(ax, location_canvas(state.locations, state.cfg.image_size), "locations", fontsize=10)
    if mark:
        _mark_objects(ax, state.locations, selected, state.cfg.sprite_size)


def draw_sprites(axes, state: SceneState, sprites, selected: int | None = None) -> None:
    """Object j's sprite on ``axes[j]`` ("no objects" when n = 0); ``selected`` framed in orange."""
    from .viz import show_image
    for j, ax in enumerate(axes):
        if j >= state.n:
            ax.axis("off")
            continue
        show_image(ax, sprites[j], f"object {j}", fontsize=9)
        if j == selected:
            ax.set_title(f"object {j}", fontsize=9, color=HIGHLIGHT, fontweight="bold")
            for spine in ax.spines.values():
                spine.set_edgecolor(HIGHLIGHT)
                spine.set_linewidth(3)
    if state.n == 0 and len(axes):
        axes[0].text(0, 0.5, "no objects", fontsize=10, va="center", transform=axes[0].transAxes)


def draw_scene(axes, state: SceneState, selected: int | None = None, mark: bool = True) -> None:
    """Input, reconstruction and locations on ``axes[0:3]``, the sprites on ``axes[3:]``."""
    image, sprites = state.decode()
    draw_input(axes[0], state)
    draw_reconstruction(axes[1], state, image, selected, mark)
    draw_locations(axes[2], state, selected, mark)
    draw_sprites(axes[3:], state, sprites, selected)


def scene_figure(state: SceneState, selected: int | None = None, title: str | None = None):
    """One scene as a static Figure: input, reconstruction and locations above, sprites below."""
    cols = max(state.n, 3, 1)
    fig = _figure(max(7.5, 1.3 * cols), 2.6 + 1.5)
    grid = fig.add_gridspec(2, 3 * cols, height_ratios=[2.6, 1.3])
    top = [fig.add_subplot(grid[0, 3 * cols * k // 3: 3 * cols * (k + 1) // 3]) for k in range(3)]
    bottom = [fig.add_subplot(grid[1, 3 * j: 3 * (j + 1)]) for j in range(cols)]
    draw_scene(top + bottom, state, selected)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout(pad=0.3)
    return fig


def before_after_figure(before: SceneState, after: SceneState, what: str = "edited"):
    """An edit as a pair of rows, "before" and "after": input, reconstruction, locations, sprites;
    ``what`` (the edit) is the figure's title."""
    cols = 3 + max(before.n, after.n, 1)
    fig = _figure(1.45 * cols, 3.9)
    axes = fig.subplots(2, cols)
    for row, (state, label) in enumerate(((before, "before"), (after, "after"))):
        draw_scene(axes[row], state, mark=False)
        axes[row, 0].axis("on")
        axes[row, 0].set_xticks([])
        axes[row, 0].set_yticks([])
        axes[row, 0].set_ylabel(label, fontsize=11, fontweight="bold")
    fig.suptitle(f"edit: {what}", fontsize=11)
    fig.tight_layout(pad=0.3)
    return fig


# ------------------------------------------------------------------------------------- widgets
class Explorer:
    """ipywidgets front end of :class:`SceneState`: ``display(Explorer(model, images).widget)``.

    ``images``: (N, C, H, W) test images; ``index``: the one shown first. The live scene is
    ``self.state``; ``self.selected`` is the object the controls act on."""

    def __init__(self, model, images, index: int = 0):
        import ipywidgets as W
        if images is None or not hasattr(images, "__len__") or len(images) == 0:
            raise ValueError("images is empty: pass at least one (C, H, W) image")
        index = _integer(index, "index")
        if not 0 <= index < len(images):
            raise IndexError(f"image {index} does not exist: there are {len(images)} images (0..{len(images) - 1})")
        self.model, self.images = model, images
        self.state = SceneState(model, images[index])
        self.selected: int | None = 0 if self.state.n else None
        self.dim = 0
        self.message = ""
        self._lock = threading.RLock()
        self._writer = None           # thread id while the explorer writes its own widgets
        self._dirty = self._drawing = False
        self._new_scene = False       # a new scene forgets the "swap with" choice
        self._shown = None            # (scene key, selected) of the pictures on screen
        self.redraws = 0              # number of pictures rendered (for tests and curiosity)
        self._panels = {}             # panel name -> (what it shows, PNG); used by the drawing thread only

        cfg = model.cfg
        size, L = cfg.image_size, cfg.latent_dim
        style = {"description_width": "110px"}
        wide = W.Layout(width="420px")
        self.w_help = W.HTML(
            "<b>Latent explorer.</b> Choose an <i>object</i> (its box is orange), then move it with the "
            "<i>y</i>/<i>x</i> sliders, change one dimension of its appearance latent with <i>value</i>, "
            "swap its appearance with another object, delete it, or add a new object from the prior. "
            "Sliders also move with the arrow keys (PageUp/PageDown: 5 steps) once clicked.")
        self.w_index = W.IntSlider(value=index, min=0, max=len(images) - 1, description="test image",
                                   style=style, layout=wide, continuous_update=False)
        self.w_prior = W.Button(description="prior sample", tooltip="a new scene from the model's prior",
                                icon="random")
        self.w_n = W.IntSlider(min=0, max=cfg.max_objects, description="objects (n)", style=style,
                               continuous_update=False)
        self.w_obj = W.Dropdown(description="object", style=style)
        self.w_row = W.IntSlider(min=0, max=size - 1, description="y (row)", style=style, layout=wide)
        self.w_col = W.IntSlider(min=0, max=size - 1, description="x (column)", style=style, layout=wide)
        self.w_dim = W.Dropdown(options=[(f"z[{d}]", d) for d in range(L)], value=0,
                                description="appearance dim", style=style)
        self.w_val = W.FloatSlider(min=-VALUE_LIMIT, max=VALUE_LIMIT, step=VALUE_STEP, readout_format=".1f",
                                   description="value", style=style, layout=wide)
        self.w_other = W.Dropdown(description="swap with", style=style)
        self.w_swap = W.Button(description="swap", tooltip="exchange the appearance of the two objects",
                               icon="exchange")
        self.w_del = W.Button(description="delete", tooltip="remove the selected object", icon="trash")
        self.w_add = W.Button(description="add", tooltip="add an object drawn from the prior", icon="plus")
        self.w_status = W.HTML()
        pic = W.Layout(width="340px", height="340px")
        self.w_input = W.Image(format="png", layout=pic)
        self.w_recon = W.Image(format="png", layout=pic)
        self.w_locs = W.Image(format="png", layout=pic)
        self.w_sprites = W.Image(format="png", layout=W.Layout(width="1020px"))
        for w, name in ((self.w_input, "input"), (self.w_recon, "reconstruction"),
                        (self.w_locs, "locations"), (self.w_sprites, "sprites")):
            w.add_class(f"lavae-{name}")
        self.widget = W.VBox([
            self.w_help,
            W.HBox([self.w_index, self.w_prior, self.w_n]),
            W.HBox([self.w_obj, self.w_row, self.w_col]),
            W.HBox([self.w_dim, self.w_val]),
            W.HBox([self.w_other, self.w_swap, self.w_del, self.w_add]),
            self.w_status,
            W.HBox([self.w_input, self.w_recon, self.w_locs]),
            self.w_sprites])
        self.widget.add_class("lavae-explorer")

        self.w_index.observe(self._handler(self._load_image), "value")
        self.w_prior.on_click(self._handler(self._load_prior))
        self.w_n.observe(self._handler(lambda: self._set_n(self.w_n.value)), "value")
        self.w_obj.observe(self._handler(lambda: self._select(self.w_obj.value)), "value")
        self.w_dim.observe(self._handler(lambda: setattr(self, "dim", self.w_dim.value)), "value")
        for w in (self.w_row, self.w_col):
            w.observe(self._handler(lambda: self.state.move(self.selected, self.w_row.value, self.w_col.value)),
                      "value")
        self.w_val.observe(self._handler(self._set_value), "value")
        self.w_other.observe(self._handler(lambda: None), "value")
        self.w_swap.on_click(self._handler(lambda: self.state.swap(self.selected, self.partner)))
        self.w_del.on_click(self._handler(self._delete))
        self.w_add.on_click(self._handler(self._add))
        self._redraw()

    # ------------------------------------------------------------------ user actions
    def _load_image(self) -> None:
        self.state.load_image(self.images[self.w_index.value])
        self.selected = 0 if self.state.n else None
        self._new_scene = True

    def _load_prior(self) -> None:
        self.state.load_prior()
        self.selected = 0 if self.state.n else None
        self._new_scene = True

    def _set_n(self, n) -> None:
        self.state.set_n(n)
        if self.state.n == 0:
            self.selected = None
        elif self.selected is None or self.selected >= self.state.n:
            self.selected = self.state.n - 1

    def _select(self, i) -> None:
        self.selected = None if i is None else self.state._check(i)

    def _set_value(self) -> None:
        """The value slider: rounded to its step; ignored while it equals the latent's rounded value
        (the slider cannot show more digits, so that change is no edit)."""
        new = round_to_step(self.w_val.value)
        i = self.state._check(self.selected)
        if new != round_to_step(float(self.state.z[i, self.dim])):
            self.state.set_dim(i, self.dim, new)

    def _delete(self) -> None:
        i = self.state._check(self.selected)
        self.state.delete(i)
        self.selected = min(i, self.state.n - 1) if self.state.n else None

    def _add(self) -> None:
        self.state.add()
        self.selected = self.state.n - 1

    @property
    def partner(self) -> int | None:
        """The object chosen under "swap with", or None."""
        v = self.w_other.value
        return None if v is None or v == NO_PARTNER else v

    # ------------------------------------------------------------------ event plumbing
    def _view_key(self) -> tuple:
        return self.state.key(), self.selected, self.dim, self.w_other.value

    def _handler(self, action):
        """Wrap a user action for ``observe``/``on_click``: ignore the explorer's own widget writes,
        apply the action under the lock, show a bad input as a one-line message, redraw only when
        the scene or the selection changed."""
        def handle(_=None):
            if self._writer == threading.get_ident():
                return
            with self._lock:
                before = self._view_key()
                try:
                    action()
                except Exception as e:  # noqa: BLE001 - every error becomes the status line, none the log
                    self.message = f"{type(e).__name__}: {e}".splitlines()[0]
                    self._write_widgets()
                    return
                self.message = ""
                if self._view_key() == before:
                    self._write_widgets()   # e.g. restore a slider the scene did not follow
                    return
            self._redraw()
        return handle

    def _set(self, widget, **values) -> None:
        """Write widget traits that differ from what they show (no message when equal: no echo)."""
        for name, value in values.items():
            if getattr(widget, name) != value:
                setattr(widget, name, value)

    def _write_widgets(self) -> None:
        """Make every control show the scene (call with the lock held)."""
        st, i = self.state, self.selected
        self._writer = threading.get_ident()
        try:
            objs = [(f"object {k}", k) for k in range(st.n)]
            if list(self.w_obj.options) != objs:
                self.w_obj.options = objs
            self._set(self.w_obj, value=i)
            others = [("(choose)", NO_PARTNER)] + [(f"object {k}", k) for k in range(st.n) if k != i]
            partner = self.partner if self.partner in [v for _, v in others] and not self._new_scene else None
            self._new_scene = False
            if list(self.w_other.options) != others:
                self.w_other.options = others
            self._set(self.w_other, value=NO_PARTNER if partner is None else partner)
            none = i is None
            for w in (self.w_obj, self.w_row, self.w_col, self.w_dim, self.w_val, self.w_other, self.w_del):
                self._set(w, disabled=none)
            self._set(self.w_swap, disabled=none or partner is None)
            self._set(self.w_add, disabled=st.n >= st.cfg.max_objects)
            self._set(self.w_n, value=st.n)
            self._set(self.w_dim, value=self.dim)
            if not none:
                r, c = st.locations[i].tolist()
                self._set(self.w_row, value=r)
                self._set(self.w_col, value=c)
                v = round_to_step(float(st.z[i, self.dim]))
                if round_to_step(self.w_val.value) != max(-VALUE_LIMIT, min(VALUE_LIMIT, v)):
                    self.w_val.value = v
            self._set(self.w_status, value=self._status_html())
        finally:
            self._writer = None

    def _status_html(self) -> str:
        st, i = self.state, self.selected
        if self.message:
            return f'<span class="lavae-error" style="color:#c62828"><b>{html.escape(self.message)}</b></span>'
        busy = ' <i class="lavae-busy">(drawing...)</i>' if self._drawing else ""
        source = "prior sample" if st.image is None else f"test image {self.w_index.value}"
        if st.n == 0:
            what = ("the model found no objects here" if st.image is not None else "no objects") + \
                   ": press <i>add</i> or draw a <i>prior sample</i>"
        else:
            r, c = st.locations[i].tolist()
            what = (f"selected: <b style='color:{HIGHLIGHT}'>object {i}</b> at y={r}, x={c}; "
                    f"z[{self.dim}] = {float(st.z[i, self.dim]):.3f}")
        return f'<span class="lavae-status">{source}, <b>n = {st.n}</b>; {what}{busy}</span>'

    def _redraw(self) -> None:
        """Bring controls and pictures up to date. One redraw at a time: a request that arrives
        while another thread draws only marks the view dirty, and that thread draws again."""
        with self._lock:
            self._dirty = True
            if self._drawing:
                return
            self._drawing = True
        try:
            while True:
                with self._lock:
                    self._dirty = False
                    self._write_widgets()
                    want = (self.state.key(), self.selected, self.state.image is None)
                    scene, selected = (self.state.copy(), self.selected) if want != self._shown else (None, None)
                if scene is not None:
                    pictures = self._render(scene, selected)
                with self._lock:
                    if scene is not None:
                        for w, png in zip((self.w_input, self.w_recon, self.w_locs, self.w_sprites), pictures):
                            self._set(w, value=png)
                        self._shown = want
                        self.redraws += 1
                    if not self._dirty:
                        self._drawing = False
                        self._set(self.w_status, value=self._status_html())  # drawing done
                        return
        except Exception as e:  # noqa: BLE001 - shown, never sent to the log console
            with self._lock:
                self._drawing = False
                self.message = f"drawing failed: {type(e).__name__}: {e}".splitlines()[0]
                self._set(self.w_status, value=self._status_html())

    def _render(self, st: SceneState, selected) -> tuple[bytes, bytes, bytes, bytes]:
        """PNGs of input, reconstruction, locations (340 px squares) and the sprite strip. A panel
        whose inputs did not change is not drawn again (moving an object leaves input and sprites)."""
        locs, z = tuple(st.locations.flatten().tolist()), st.z.numpy().tobytes()
        keys = {"input": None if st.image is None else st.image.numpy().tobytes(),
                "recon": (locs, z, selected), "locs": (locs, selected), "sprites": (z, selected)}
        decoded = []

        def decode():
            if not decoded:
                decoded.extend(st.decode())
            return decoded

        def square(draw):
            fig = _figure(3.4, 3.4)
            draw(fig.add_axes([0.02, 0.02, 0.96, 0.9]))
            return png_bytes(fig)

        def strip():
            M = st.cfg.max_objects
            fig = _figure(10.2, 1.35)
            draw_sprites([fig.add_axes([j / M + 0.005, 0.02, 1 / M - 0.01, 0.78]) for j in range(M)],
                         st, decode()[1], selected)
            return png_bytes(fig)

        makers = {"input": lambda: square(lambda ax: draw_input(ax, st)),
                  "recon": lambda: square(lambda ax: draw_reconstruction(ax, st, decode()[0], selected)),
                  "locs": lambda: square(lambda ax: draw_locations(ax, st, selected)),
                  "sprites": strip}
        pics = []
        for name, key in keys.items():
            cached = self._panels.get(name)
            if cached is None or cached[0] != key:
                self._panels[name] = cached = (key, makers[name]())
            pics.append(cached[1])
        return tuple(pics)

    def figure(self, title: str | None = None):
        """Static twin of the live view: the current scene as one Figure (nothing is edited)."""
        with self._lock:
            scene, selected = self.state.copy(), self.selected
        return scene_figure(scene, selected, title)


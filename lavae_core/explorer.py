"""Latent explorer: edit the objects LAVAE inferred and watch the reconstruction (ipywidgets).

``SceneState`` holds one scene's latents (locations, appearance latents, which slots are present)
and the edits of the paper's disentanglement experiments (Figures 3, 6-8, 11): move an object,
change one appearance dimension, swap two objects, delete one, add one from the prior, change n.
``Explorer`` puts widgets on top of it; ``Explorer.figure()`` is the static twin of the live view
(papermill keeps no widget state).
"""
from __future__ import annotations

import numpy as np
import torch


class SceneState:
    """Latents of one scene, editable. Slots are kept compact: present objects first."""

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

    def load_image(self, image) -> None:
        """Infer the latents of an image (C, H, W) with values in {0, 1}."""
        x = torch.as_tensor(np.asarray(image)).float()[None].to(self.device)
        inf = self.model.infer(x)
        n = int(inf.n[0])
        self.image = x[0].cpu()
        self.locations = inf.locations[0, :n].cpu().clone()
        self.z = inf.z_app[0, :n].cpu().clone()

    def load_prior(self) -> None:
        """A scene drawn from the model's prior (learned p(n))."""
        _, lat = self.model.sample_prior(1, generator=self.gen)
        n = int(lat["n"][0])
        self.image = None
        self.locations = lat["locations"][0, :n].cpu().clone()
        self.z = lat["z_app"][0, :n].cpu().clone()

    @property
    def n(self) -> int:
        return len(self.z)

    def _check(self, i: int) -> None:
        if not 0 <= i < self.n:
            raise IndexError(f"object {i} does not exist: the scene has {self.n} objects")

    def move(self, i: int, row: int, col: int) -> None:
        self._check(i)
        size = self.model.cfg.image_size
        if not (0 <= row < size and 0 <= col < size):
            raise ValueError(f"location ({row}, {col}) is off the {size}x{size} canvas")
        self.locations[i] = torch.tensor([row, col])

    def set_dim(self, i: int, dim: int, value: float) -> None:
        self._check(i)
        self.z[i, dim] = float(value)

    def swap(self, i: int, j: int) -> None:
        """Exchange the appearance of objects i and j (= exchange their locations)."""
        self._check(i)
        self._check(j)
        self.z[[i, j]] = self.z[[j, i]]

    def delete(self, i: int) -> None:
        self._check(i)
        keep = [k for k in range(self.n) if k != i]
        self.locations, self.z = self.locations[keep], self.z[keep]

    def add(self) -> None:
        """Add an object from the prior: z_app ~ N(0, I), location uniform over free pixels."""
        cfg = self.model.cfg
        if self.n >= cfg.max_objects:
            raise ValueError(f"the model allows at most M = {cfg.max_objects} objects")
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
        if not 0 <= n <= self.model.cfg.max_objects:
            raise ValueError(f"n must be in 0..{self.model.cfg.max_objects}")
        while self.n < n:
            self.add()
        self.locations, self.z = self.locations[:n], self.z[:n]

    @torch.no_grad()
    def decode(self):
        """(Bernoulli means (C, H, W), sprites (n, C, S, S)) of the current latents."""
        L = self.model.cfg.latent_dim
        locs = self.locations.reshape(1, self.n, 2).to(self.device)
        z = self.z.reshape(1, self.n, L).to(self.device)
        img, sprites = self.model.decode(locs, z, torch.ones(1, self.n, dtype=torch.bool, device=self.device))
        return img[0].cpu(), sprites[0].cpu()


class Explorer:
    """ipywidgets front end of :class:`SceneState`; ``display(Explorer(model, images).widget)``."""

    def __init__(self, model, images, index: int = 0):
        import ipywidgets as W
        self.model, self.images = model, images
        self.state = SceneState(model, images[index])
        size, L = model.cfg.image_size, model.cfg.latent_dim
        self.w_index = W.IntSlider(value=index, min=0, max=len(images) - 1, description="image")
        self.w_prior = W.Button(description="prior sample")
        self.w_obj = W.Dropdown(description="object")
        self.w_row = W.IntSlider(min=0, max=size - 1, description="y")
        self.w_col = W.IntSlider(min=0, max=size - 1, description="x")
        self.w_dim = W.Dropdown(options=list(range(L)), value=0, description="z dim")
        self.w_val = W.FloatSlider(min=-3, max=3, step=0.1, description="value")
        self.w_other = W.Dropdown(description="swap with")
        self.w_swap, self.w_del, self.w_add = (W.Button(description=d) for d in ("swap", "delete", "add"))
        self.w_n = W.IntSlider(min=0, max=model.cfg.max_objects, description="n")
        self.out = W.Output()
        self._busy = False
        self.w_index.observe(lambda _: self._do(lambda: self.state.load_image(self.images[self.w_index.value])), "value")
        self.w_prior.on_click(lambda _: self._do(self.state.load_prior))
        self.w_obj.observe(lambda _: self._sync_sliders(), "value")
        self.w_dim.observe(lambda _: self._sync_sliders(), "value")
        for w in (self.w_row, self.w_col):
            w.observe(lambda _: self._edit(lambda i: self.state.move(i, self.w_row.value, self.w_col.value)), "value")
        self.w_val.observe(lambda _: self._edit(lambda i: self.state.set_dim(i, self.w_dim.value, self.w_val.value)), "value")
        self.w_swap.on_click(lambda _: self._edit(lambda i: self.state.swap(i, self.w_other.value)))
        self.w_del.on_click(lambda _: self._edit(self.state.delete))
        self.w_add.on_click(lambda _: self._do(self.state.add))
        self.w_n.observe(lambda _: None if self._busy else self._do(lambda: self.state.set_n(self.w_n.value)), "value")
        self.widget = W.VBox([W.HBox([self.w_index, self.w_prior, self.w_n]),
                              W.HBox([self.w_obj, self.w_row, self.w_col]),
                              W.HBox([self.w_dim, self.w_val]),
                              W.HBox([self.w_other, self.w_swap, self.w_del, self.w_add]), self.out])
        self._refresh()

    def _do(self, action) -> None:
        if self._busy:
            return
        action()
        self._refresh()

    def _edit(self, action) -> None:
        if self._busy or self.state.n == 0 or self.w_obj.value is None:
            return
        action(self.w_obj.value)
        self._refresh()

    def _sync_sliders(self) -> None:
        i = self.w_obj.value
        if self._busy or i is None or i >= self.state.n:
            return
        self._busy = True
        self.w_row.value, self.w_col.value = self.state.locations[i].tolist()
        self.w_val.value = float(self.state.z[i, self.w_dim.value])
        self._busy = False

    def _refresh(self) -> None:
        import matplotlib.pyplot as plt
        from IPython.display import display
        self._busy = True
        opts = list(range(self.state.n))
        keep = self.w_obj.value if self.w_obj.value in opts else (opts[0] if opts else None)
        self.w_obj.options, self.w_other.options = opts, opts
        self.w_obj.value = keep
        self.w_n.value = self.state.n
        self._busy = False
        self._sync_sliders()
        with self.out:
            self.out.clear_output(wait=True)
            fig = self.figure()
            display(fig)
            plt.close(fig)

    def figure(self):
        """Static twin of the live view: input (if any), reconstruction, locations, sprites."""
        import matplotlib.pyplot as plt
        from .viz import location_canvas, show_image
        img, sprites = self.state.decode()
        n = self.state.n
        cols = 3 + max(n, 1)
        fig, axes = plt.subplots(1, cols, figsize=(1.4 * cols, 1.7))
        canvas = location_canvas(self.state.locations, self.model.cfg.image_size)
        if self.state.image is not None:
            show_image(axes[0], self.state.image, "input")
        else:
            axes[0].axis("off")
            axes[0].set_title("prior sample", fontsize=8)
        show_image(axes[1], img, f"reconstruction (n={n})")
        show_image(axes[2], canvas, "locations")
        for j in range(cols - 3):
            if j < n:
                show_image(axes[3 + j], sprites[j], f"object {j}")
            else:
                axes[3 + j].axis("off")
        fig.tight_layout(pad=0.2)
        return fig

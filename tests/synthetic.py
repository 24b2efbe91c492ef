"""Tiny synthetic scenes for model tests (no MNIST needed): 0-3 random 15x15 blobs per image."""
import numpy as np


def blob_scenes(n: int = 64, channels: int = 1, seed: int = 0, max_objects: int = 3):
    rng = np.random.default_rng(seed)
    images = np.zeros((n, channels, 64, 64), np.uint8)
    counts = rng.integers(0, max_objects + 1, n)
    for i in range(n):
        for j in range(counts[i]):
            r, c = 2 + 20 * j, int(rng.integers(0, 49))   # rows 20 apart: no overlap
            images[i, :, r:r + 15, c:c + 15] = rng.random((15, 15)) > 0.4
    return images, counts


def peaked_lavae(seed: int = 0, dataset: str = "multi-mnist-1k"):
    """A smoke-size LAVAE whose location net is replaced by a box filter of the input, so that an
    untrained model already has one h_loc peak per blob (to test the plumbing around inference).
    ``dataset="multi-dsprites"`` gives the RGB variant (3 channels, 21-px sprites)."""
    import torch
    import torch.nn.functional as F
    from lavae_core.config import make_config
    from lavae_core.lavae import LAVAE

    class BoxFilter(torch.nn.Module):
        def forward(self, x):
            return 10 * F.avg_pool2d(x.sum(1, keepdim=True), 15, 1, 7) + 1e-3 * torch.rand_like(x[:, :1])

    torch.manual_seed(seed)
    model = LAVAE(make_config("smoke", dataset))
    model.loc_net = BoxFilter()
    return model.eval()

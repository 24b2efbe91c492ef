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

"""Shared fixtures. Keep them generic; add more below."""
import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def find_mnist_dir() -> Path | None:
    """$LAVAE_MNIST_DIR, else the checkout's sibling ``../shared/data/mnist`` if it exists."""
    env = os.environ.get("LAVAE_MNIST_DIR")
    if env:
        return Path(env).expanduser().resolve()
    shared = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"
    return shared if shared.is_dir() else None


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    """Folder with the four official MNIST files; skips the test when there is none."""
    path = find_mnist_dir()
    if path is None or not path.is_dir():
        pytest.skip("MNIST files not found: set LAVAE_MNIST_DIR to a folder with the four files")
    return path

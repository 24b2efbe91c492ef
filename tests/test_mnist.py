"""MNIST loader: parsing, md5 verification, folder resolution, download and its errors."""
import shutil

import numpy as np
import pytest

from lavae_core import mnist
from lavae_core.mnist import FILES, MNISTError, load_mnist


@pytest.fixture
def mnist_copy(mnist_dir, tmp_path):
    """A private copy of the four files that a test may damage."""
    folder = tmp_path / "mnist"
    folder.mkdir()
    for name in FILES:
        shutil.copy(mnist_dir / name, folder / name)
    return folder


def test_load_train_and_test(mnist_dir):
    x, y = load_mnist("train", mnist_dir)
    assert x.shape == (60000, 28, 28) and x.dtype == np.uint8
    assert y.shape == (60000,) and y.dtype == np.int64
    assert y[:5].tolist() == [5, 0, 4, 1, 9]                # the well-known first training labels
    assert np.bincount(y).tolist()[:2] == [5923, 6742]
    assert x.max() == 255 and x.min() == 0
    xt, yt = load_mnist("test", mnist_dir)
    assert xt.shape == (10000, 28, 28) and yt[:5].tolist() == [7, 2, 1, 0, 4]


def test_returns_copies(mnist_dir):
    x, _ = load_mnist("test", mnist_dir)
    x[0] = 0
    assert load_mnist("test", mnist_dir)[0][0].any()


def test_env_var_is_used(mnist_dir, monkeypatch):
    monkeypatch.setenv("LAVAE_MNIST_DIR", str(mnist_dir))
    _, y = load_mnist("test")
    assert len(y) == 10000


def test_unknown_split(mnist_dir):
    with pytest.raises(ValueError, match="split"):
        load_mnist("valid", mnist_dir)


def test_verification_is_cached(mnist_copy, monkeypatch):
    calls = []
    real = mnist.md5sum
    monkeypatch.setattr(mnist, "md5sum", lambda p: calls.append(p) or real(p))
    load_mnist("test", mnist_copy)
    assert len(calls) == 2
    load_mnist("test", mnist_copy)
    assert len(calls) == 2                                   # not hashed again in this process


def test_truncated_file_is_refused(mnist_copy):
    path = mnist_copy / "train-images-idx3-ubyte.gz"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(MNISTError) as e:
        load_mnist("train", mnist_copy)
    msg = str(e.value)
    assert "train-images-idx3-ubyte.gz" in msg and FILES[path.name] in msg and "LAVAE_MNIST_DIR" in msg


def test_corrupt_file_is_refused_even_after_a_good_load(mnist_copy):
    load_mnist("test", mnist_copy)                          # verified and cached ...
    path = mnist_copy / "t10k-labels-idx1-ubyte.gz"
    data = bytearray(path.read_bytes())
    data[100] ^= 0xFF                                       # ... then altered (same size)
    path.write_bytes(bytes(data))
    with pytest.raises(MNISTError, match="t10k-labels-idx1-ubyte.gz.*corrupt"):
        load_mnist("test", mnist_copy)


def test_missing_file(mnist_copy):
    (mnist_copy / "t10k-images-idx3-ubyte.gz").unlink()
    with pytest.raises(MNISTError, match="t10k-images-idx3-ubyte.gz.*missing"):
        load_mnist("test", mnist_copy)


def test_missing_folder(tmp_path, monkeypatch):
    nowhere = tmp_path / "no_such_folder"
    with pytest.raises(MNISTError, match="no_such_folder"):
        load_mnist("test", nowhere)
    monkeypatch.setenv("LAVAE_MNIST_DIR", str(nowhere))
    with pytest.raises(MNISTError, match="LAVAE_MNIST_DIR"):
        load_mnist("test")


def test_download_verifies_and_renames(mnist_dir, tmp_path, monkeypatch):
    """The download path, served from a file:// mirror: the files land in data_dir()/mnist."""
    monkeypatch.delenv("LAVAE_MNIST_DIR", raising=False)
    monkeypatch.setenv("LAVAE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setattr(mnist, "MIRRORS", ("http://127.0.0.1:9/", mnist_dir.as_uri() + "/"))
    _, y = load_mnist("test", progress=False)
    assert len(y) == 10000
    got = sorted(p.name for p in (tmp_path / "data" / "mnist").iterdir())
    assert got == sorted(["t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"])  # no temp files


def test_download_failure_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.delenv("LAVAE_MNIST_DIR", raising=False)
    monkeypatch.setenv("LAVAE_DATA_DIR", str(tmp_path))
    monkeypatch.setattr(mnist, "MIRRORS", ("http://127.0.0.1:9/",))
    with pytest.raises(MNISTError, match="LAVAE_MNIST_DIR") as e:
        load_mnist("test", progress=False)
    assert "download" in str(e.value)
    assert [p.name for p in (tmp_path / "mnist").iterdir()] == []          # nothing half-written


def test_corrupt_cached_download_is_not_reused(mnist_dir, tmp_path, monkeypatch):
    monkeypatch.delenv("LAVAE_MNIST_DIR", raising=False)
    monkeypatch.setenv("LAVAE_DATA_DIR", str(tmp_path))
    (tmp_path / "mnist").mkdir()
    for name in FILES:
        shutil.copy(mnist_dir / name, tmp_path / "mnist" / name)
    (tmp_path / "mnist" / "t10k-labels-idx1-ubyte.gz").write_bytes(b"not mnist")
    with pytest.raises(MNISTError, match="Delete it"):
        load_mnist("test", progress=False)

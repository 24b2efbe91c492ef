"""The four official MNIST files: find, download, verify (md5) and parse them.

MNIST is the raw material of the multi-MNIST data sets (paper Section 3.1); ``datasets.py`` builds
the digit pools from the training split loaded here.

Where the files are looked for, in this order:

1. the ``mnist_dir`` argument of :func:`load_mnist`;
2. the environment variable ``LAVAE_MNIST_DIR``;
3. ``data_dir()/"mnist"`` (see :func:`lavae_core.data_dir`); only here are missing files downloaded
   (from the usual mirrors, to a temporary file that is verified and then renamed into place).

Every file is md5-verified before use (once per process per file version). A missing, truncated or
corrupt file raises :class:`MNISTError`, which names the file and says what to do; nothing is
silently re-used, re-downloaded or deleted.
"""
from __future__ import annotations

import gzip
import hashlib
import os
import tempfile
import urllib.error
import urllib.request
from functools import lru_cache
from pathlib import Path

import numpy as np

from . import data_dir

__all__ = ["MNISTError", "FILES", "MIRRORS", "load_mnist", "resolve_mnist_dir", "verify_file"]

#: file name -> md5 of the official gzip files.
FILES = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}
SPLITS = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", 60000),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz", 10000),
}
MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)
ENV_VAR = "LAVAE_MNIST_DIR"

_HOW_TO = (f"Set {ENV_VAR} to a folder holding the four official MNIST files "
           f"({', '.join(FILES)}), or pass mnist_dir=<folder>")


class MNISTError(RuntimeError):
    """MNIST files missing, corrupt, or impossible to download."""


def md5sum(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


_VERIFIED: dict[tuple, bool] = {}   # (resolved path, size, mtime_ns) -> verified in this process


def verify_file(path: str | Path, downloaded_here: bool = False) -> Path:
    """Check ``path`` (one of :data:`FILES`) against its official md5; raise :class:`MNISTError`.

    The result is cached per process, keyed by path, size and modification time, so a file that is
    replaced or altered is checked again.
    """
    path = Path(path)
    name = path.name
    if name not in FILES:
        raise MNISTError(f"{name!r} is not one of the MNIST files {list(FILES)}")
    if not path.is_file():
        where = ("it will be downloaded on the next call" if downloaded_here else _HOW_TO)
        raise MNISTError(f"MNIST file {name} is missing: {path} does not exist. {where}.")
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if _VERIFIED.get(key):
        return path
    actual = md5sum(path)
    expected = FILES[name]
    if actual != expected:
        fix = ("Delete it so that it is downloaded again, or " if downloaded_here else "Replace it, or ")
        raise MNISTError(
            f"MNIST file {path} is truncated or corrupt: md5 {actual} ({st.st_size} bytes), "
            f"expected {expected}. {fix}set {ENV_VAR} / pass mnist_dir= to a folder holding "
            f"verified copies of the four official files.")
    _VERIFIED[key] = True
    return path


def resolve_mnist_dir(mnist_dir: str | Path | None = None) -> tuple[Path, bool]:
    """The MNIST folder and whether it is the download cache (True) or a user folder (False)."""
    if mnist_dir is None:
        mnist_dir = os.environ.get(ENV_VAR) or None
        source = f"${ENV_VAR}"
    else:
        source = "mnist_dir"
    if mnist_dir is None:
        return data_dir() / "mnist", True
    path = Path(mnist_dir).expanduser()
    if not path.is_dir():
        raise MNISTError(f"MNIST folder {path} (from {source}) does not exist or is not a folder "
                         f"(resolved: {path.resolve()}). {_HOW_TO}; unset {ENV_VAR} to download "
                         f"into {data_dir() / 'mnist'}.")
    return path, False


def _download(name: str, folder: Path, progress: bool = True, timeout: float = 30.0) -> Path:
    """Download ``name`` from the first mirror that serves a verified copy; atomic rename."""
    from tqdm.auto import tqdm

    folder.mkdir(parents=True, exist_ok=True)
    target = folder / name
    errors = []
    for mirror in MIRRORS:
        url = mirror + name
        fd, tmp = tempfile.mkstemp(prefix=name + ".", suffix=".part", dir=folder)
        try:
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
                total = int(resp.headers.get("Content-Length") or 0) or None
                with tqdm(total=total, unit="B", unit_scale=True, desc=name, disable=not progress,
                          leave=False) as bar:
                    while block := resp.read(1 << 16):
                        out.write(block)
                        bar.update(len(block))
            actual = md5sum(Path(tmp))
            if actual != FILES[name]:
                raise MNISTError(f"md5 {actual}, expected {FILES[name]}")
            os.replace(tmp, target)
            return target
        except (OSError, urllib.error.URLError, MNISTError, ValueError) as e:
            errors.append(f"{url}: {e}")
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
    raise MNISTError(f"Could not download MNIST file {name} (no network?). Tried:\n  "
                     + "\n  ".join(errors) + f"\n{_HOW_TO}.")


def _ensure_files(folder: Path, is_cache: bool, names, progress: bool = True) -> list[Path]:
    paths = []
    for name in names:
        path = folder / name
        if is_cache and not path.exists():
            _download(name, folder, progress=progress)
        paths.append(verify_file(path, downloaded_here=is_cache))
    return paths


def _read_idx(path: Path, magic: int, ndim: int) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        raw = f.read()
    header = np.frombuffer(raw, ">u4", count=1 + ndim)
    if int(header[0]) != magic:
        raise MNISTError(f"{path}: bad idx magic number {int(header[0])}, expected {magic}")
    shape = tuple(int(d) for d in header[1:])
    data = np.frombuffer(raw, np.uint8, offset=4 * (1 + ndim))
    if data.size != int(np.prod(shape)):
        raise MNISTError(f"{path}: {data.size} bytes of data for shape {shape}")
    return data.reshape(shape)


@lru_cache(maxsize=8)
def _parsed(images_path: str, labels_path: str, key: tuple) -> tuple[np.ndarray, np.ndarray]:
    images = _read_idx(Path(images_path), 2051, 3)
    labels = _read_idx(Path(labels_path), 2049, 1).astype(np.int64)
    if len(images) != len(labels):
        raise MNISTError(f"{images_path} and {labels_path} hold {len(images)} vs {len(labels)} items")
    images.flags.writeable = False
    labels.flags.writeable = False
    return images, labels


def load_mnist(split: str = "train", mnist_dir: str | Path | None = None,
               progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """MNIST ``split`` ("train": 60k, "test": 10k) as (images uint8 (N, 28, 28), labels int64 (N,)).

    The folder is ``mnist_dir``, else ``$LAVAE_MNIST_DIR``, else ``data_dir()/"mnist"`` (where
    missing files are downloaded). Files are md5-verified; see :class:`MNISTError`. Returns fresh
    (writeable) copies; parsing is cached per process.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown MNIST split {split!r}; choose 'train' or 'test'")
    folder, is_cache = resolve_mnist_dir(mnist_dir)
    img_name, lab_name, n = SPLITS[split]
    img_path, lab_path = _ensure_files(folder, is_cache, (img_name, lab_name), progress)
    key = tuple((p.stat().st_size, p.stat().st_mtime_ns) for p in (img_path, lab_path))
    images, labels = _parsed(str(img_path.resolve()), str(lab_path.resolve()), key)
    if images.shape != (n, 28, 28):
        raise MNISTError(f"{img_path}: shape {images.shape}, expected {(n, 28, 28)}")
    return images.copy(), labels.copy()

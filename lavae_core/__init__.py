"""lavae_core: data sets, model, training and evaluation for the LAVAE paper companion.

Paper: A. Dittadi & O. Winther, "LAVAE: Disentangling Location and Appearance".
"""
import os
from pathlib import Path

__version__ = "0.1.0"

REPO_ROOT = Path(__file__).resolve().parent.parent


def smoke_default() -> bool:
    """True when notebooks and scripts should run at the seconds-long smoke scale.

    Read from the environment, like pyro's tutorials: ``CI=true`` (set by CI) or ``LAVAE_SMOKE=1``.
    """
    truthy = ("1", "true", "yes")
    return (os.environ.get("CI", "").lower() in truthy
            or os.environ.get("LAVAE_SMOKE", "").lower() in truthy)


def data_dir() -> Path:
    """Folder for cached data sets and MNIST files: ``$LAVAE_DATA_DIR`` or ``<repo>/data``.

    When the package is not inside a checkout (no pyproject.toml beside it), ``~/.cache/lavae``.
    """
    env = os.environ.get("LAVAE_DATA_DIR")
    if env:
        return Path(env).expanduser()
    if (REPO_ROOT / "pyproject.toml").exists():
        return REPO_ROOT / "data"
    return Path.home() / ".cache" / "lavae"

"""Checks of the notebooks' parameters (papermill ``-p NAME VALUE``): a bad value stops the
notebook at its first cell with a one-line ValueError naming the parameter, instead of failing
deep inside training or evaluation."""
from __future__ import annotations

from .config import DATASETS, PROFILES
from .datasets import SPLITS


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _seed(v) -> bool:
    return _is_int(v) and v >= 0


CHECKS = {
    "dataset": (lambda v: v in DATASETS, f"one of {', '.join(DATASETS)}"),
    "datasets": (lambda v: isinstance(v, (list, tuple)) and len(v) > 0 and all(d in DATASETS for d in v),
                 f"a non-empty list drawn from {', '.join(DATASETS)}"),
    "profile": (lambda v: v in PROFILES, f"one of {', '.join(PROFILES)}"),
    "seed": (_seed, "a non-negative integer"),
    "seeds": (lambda v: isinstance(v, (list, tuple)) and len(v) > 0 and all(_seed(s) for s in v),
              "a non-empty list of non-negative integers"),
    "split": (lambda v: v in SPLITS, f"one of {', '.join(SPLITS)}"),
    "n_images": (lambda v: v is None or (_is_int(v) and v > 0), "None or a positive integer"),
    "n_show": (lambda v: _is_int(v) and v > 0, "a positive integer"),
    "smoke": (lambda v: v is None or isinstance(v, bool), "True, False or None"),
    "retrain": (lambda v: isinstance(v, bool), "True or False"),
    "reevaluate": (lambda v: isinstance(v, bool), "True or False"),
}


def check_notebook_params(**params) -> None:
    """ValueError (one line) for the first parameter whose value is not allowed; unknown names too."""
    for name, value in params.items():
        if name not in CHECKS:
            raise ValueError(f"unknown notebook parameter {name!r}; known: {', '.join(sorted(CHECKS))}")
        ok, what = CHECKS[name]
        if not ok(value):
            raise ValueError(f"notebook parameter {name} = {value!r}: must be {what}")

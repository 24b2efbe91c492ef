"""The notebooks' parameters: every one is checked in the notebook's first code cell, and a bad
value is a one-line error naming it."""
import ast
import json
from pathlib import Path

import pytest

from lavae_core.params import CHECKS, check_notebook_params

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


def _cells(nb):
    cells = json.loads(nb.read_text())["cells"]
    params = next(c for c in cells if "parameters" in c.get("metadata", {}).get("tags", []))
    code = [c for c in cells if c["cell_type"] == "code" and c is not params]
    return "".join(params["source"]), "".join(code[0]["source"])


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.name)
def test_every_notebook_parameter_is_checked(nb):
    params, setup = _cells(nb)
    names = {t.id for node in ast.parse(params).body if isinstance(node, ast.Assign) for t in node.targets}
    call = next(n for n in ast.walk(ast.parse(setup))
                if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "check_notebook_params")
    assert names == {k.arg for k in call.keywords}, f"{nb.name}: parameters and checks differ"
    assert names <= set(CHECKS)


@pytest.mark.parametrize("kw,match", [
    (dict(dataset="mnist"), "notebook parameter dataset = 'mnist': must be one of multi-mnist-1k"),
    (dict(datasets="multi-mnist-1k"), "datasets = 'multi-mnist-1k': must be a non-empty list"),
    (dict(datasets=[]), "datasets = \\[\\]"),
    (dict(profile="gpu"), "profile = 'gpu': must be one of paper, cpu, smoke"),
    (dict(seed=-1), "seed = -1: must be a non-negative integer"),
    (dict(seed="0"), "seed = '0'"),
    (dict(seeds=[0, 1.5]), "seeds = \\[0, 1.5\\]"),
    (dict(split="val"), "split = 'val'"),
    (dict(n_images=0), "n_images = 0: must be None or a positive integer"),
    (dict(n_show=0), "n_show = 0"),
    (dict(smoke="yes"), "smoke = 'yes': must be True, False or None"),
    (dict(retrain=1), "retrain = 1: must be True or False"),
    (dict(reevaluate=None), "reevaluate = None"),
    (dict(colour="red"), "unknown notebook parameter 'colour'"),
])
def test_bad_parameters_are_one_line_errors(kw, match):
    with pytest.raises(ValueError, match=match) as e:
        check_notebook_params(**kw)
    assert "\n" not in str(e.value)


def test_good_parameters_pass():
    check_notebook_params(dataset="multi-dsprites", datasets=["multi-mnist-1k"], profile="cpu", seed=0,
                          seeds=[0, 4], split="test7", n_images=None, n_show=5, smoke=None, retrain=False,
                          reevaluate=True)

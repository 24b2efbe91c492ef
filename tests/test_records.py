"""Evaluation records (checkpoints/<run>/eval.json): reuse while the weights' hash and the
parameters match, part by part; the committed records agree with the code that made them."""
import json

import numpy as np
import pytest
import torch

import lavae_core.records as R
from lavae_core.checkpoint import CHECKPOINTS, load_checkpoint
from lavae_core.config import make_config
from lavae_core.evaluate import iw_bound, split_prefix
from lavae_core.counting import predict_counts
from lavae_core.train import train

BOUND = {"k": 3, "images": {"test": 6, "test7": 2}, "chunk": 2, "seed": 0}
COUNT = {"images": {"test": 8, "test7": 8}, "chunk": 4}


@pytest.fixture()
def smoke_ckpt(tmp_path):
    """A seconds-long multi-dSprites smoke LAVAE (no MNIST needed), as a shipped-style folder."""
    train(make_config("smoke", "multi-dsprites", steps=2), tmp_path / "run", progress=False)
    return tmp_path / "run" / "checkpoint.pt"


@pytest.fixture()
def calls(monkeypatch):
    """Counts how often each part is computed."""
    seen = {"bound": 0, "count": 0}
    for part in seen:
        real = getattr(R, f"{part}_part")

        def counted(*a, _real=real, _part=part, **kw):
            seen[_part] += 1
            return _real(*a, **kw)
        monkeypatch.setattr(R, f"{part}_part", counted)
    return seen


def test_a_record_is_reused_until_hash_or_parameters_change(smoke_ckpt, calls):
    first = R.ensure_record(smoke_ckpt, BOUND, COUNT, progress=False)
    assert calls == {"bound": 1, "count": 1}
    on_disk = json.loads((smoke_ckpt.parent / "eval.json").read_text())
    assert on_disk["weights_sha256"] == R.sha256_file(smoke_ckpt) == first["weights_sha256"]
    assert on_disk["bound"]["params"] == BOUND and on_disk["count"]["params"] == COUNT
    assert R.ensure_record(smoke_ckpt, BOUND, COUNT, progress=False) == first
    assert calls == {"bound": 1, "count": 1}                       # reused, nothing computed
    R.ensure_record(smoke_ckpt, {**BOUND, "k": 4}, COUNT, progress=False)
    assert calls == {"bound": 2, "count": 1}                       # the bound alone
    R.ensure_record(smoke_ckpt, {**BOUND, "k": 4}, {**COUNT, "chunk": 8}, progress=False)
    assert calls == {"bound": 2, "count": 2}                       # the count alone
    R.ensure_record(smoke_ckpt, {**BOUND, "k": 4}, {**COUNT, "chunk": 8}, reevaluate=True, progress=False)
    assert calls == {"bound": 3, "count": 3}                       # --reevaluate: everything
    ckpt = torch.load(smoke_ckpt, weights_only=True)
    ckpt["step"] += 1                                              # other bytes: another model
    torch.save(ckpt, smoke_ckpt)
    again = R.ensure_record(smoke_ckpt, {**BOUND, "k": 4}, {**COUNT, "chunk": 8}, progress=False)
    assert calls == {"bound": 4, "count": 4} and again["step"] == first["step"] + 1


def test_ensure_all_reports_reuse_and_evaluation(smoke_ckpt, calls, capsys):
    first = R.ensure_all([smoke_ckpt], BOUND, COUNT)
    out = capsys.readouterr().out
    assert "0 of 1 records up to date, reused; 1 to evaluate" in out and "run: evaluated in" in out
    assert "evaluation records: 100%" in out
    assert R.ensure_all([smoke_ckpt], BOUND, COUNT) == first
    assert "1 of 1 records up to date, reused; 0 to evaluate" in capsys.readouterr().out
    assert calls == {"bound": 1, "count": 1}


def test_a_broken_record_is_evaluated_again(smoke_ckpt, calls):
    (smoke_ckpt.parent / "eval.json").write_text("{not json")
    R.ensure_record(smoke_ckpt, BOUND, COUNT, progress=False)
    assert calls == {"bound": 1, "count": 1}
    assert json.loads((smoke_ckpt.parent / "eval.json").read_text())["bound"]["params"] == BOUND


def _committed():
    """(weights, record) of every committed record."""
    return [(p, R.read_record(p)) for p in R.shipped() if R.record_path(p).exists()]


def test_committed_records_match_their_weights():
    records = _committed()
    assert records, "no committed evaluation record"
    for path, r in records:
        assert r["weights_sha256"] == R.sha256_file(path), f"{path.parent.name}: the weights changed"
        assert r["run"] == path.parent.name and r["bound"]["params"]["k"] == 100


@pytest.mark.parametrize("model", ["lavae", "baseline"])
def test_a_committed_record_is_reproduced_by_the_code(model):
    """Recompute the first chunk of the bound (a few images, same seed) and the first chunk of the
    count (LAVAE) of one committed record: the same numbers, so records cannot drift from the code.
    The first record in shipped order is a multi-dSprites one (no MNIST files needed)."""
    found = [(p, r) for p, r in _committed() if r["model"] == model]
    if not found:
        pytest.skip(f"no committed record of a {model} checkpoint yet")
    path, r = found[0]
    net, cfg, _ = load_checkpoint(path, "cpu")
    bound = r["bound"]
    chunk = bound["params"]["chunk"]
    images = split_prefix(cfg.dataset, "test", chunk).images
    got = iw_bound(net, images, bound["params"]["k"], chunk, bound["params"]["seed"], progress=False)
    want = np.array(bound["splits"]["test"]["per_image"][:chunk])
    assert np.allclose(got["per_image"], want, atol=1e-3, rtol=1e-6), f"{path.parent.name}: bound drifted"
    if model == "lavae":
        count = r["count"]
        n = count["params"]["chunk"]
        data = split_prefix(cfg.dataset, "test", n)
        right = int((predict_counts(net, data.images) == data.counts).sum())
        assert right == count["splits"]["test"]["correct_per_chunk"][0], f"{path.parent.name}: count drifted"


def test_records_command_line_errors(capsys):
    with pytest.raises(SystemExit) as e:
        R.main(["--only", "no-such-run"])
    err = capsys.readouterr().err
    assert e.value.code == 1 and err.startswith("python -m lavae_core.records: error: no shipped weights.pt")
    with pytest.raises(SystemExit):
        R.main(["--bogus"])
    assert capsys.readouterr().err.count("\n") == 1


def test_shipped_order_is_baselines_first_then_seed_by_seed():
    names = [p.parent.name for p in R.shipped()]
    assert names and names == sorted(names, key=lambda n: (n.startswith("lavae"), int(n.rsplit("_s", 1)[1]), n))
    assert all((CHECKPOINTS / n / "weights.pt").exists() for n in names)

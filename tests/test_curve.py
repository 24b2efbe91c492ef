"""The bound against training minutes: snapshots while training, their bounds, the plot."""
import pytest
import torch

from lavae_core import curve
from lavae_core.config import make_config
from lavae_core.train import train
from lavae_core.viz import plot_bound_curve
from synthetic import blob_scenes


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A smoke LAVAE and baseline on multi-dSprites, 6 steps, a snapshot every 3."""
    root = tmp_path_factory.mktemp("curve")
    images = blob_scenes(32, channels=3)[0]
    out = []
    for model in ("lavae", "baseline"):
        cfg = make_config("smoke", "multi-dsprites", model, steps=6, snapshot_every=3)
        train(cfg, root / model, train_images=images, eval_sets={}, progress=False)
        out.append(root / model)
    return out


def test_snapshots_hold_the_weights_of_their_step(runs):
    lavae = runs[0]
    paths = curve.snapshots(lavae)
    assert [p.name for p in paths] == ["step_000003.pt", "step_000006.pt"]
    first, last = (torch.load(p, weights_only=True) for p in paths)
    assert (first["step"], last["step"]) == (3, 6) and 0 < first["wall_s"] <= last["wall_s"]
    assert "optimizer" not in last and not any(k.startswith("aux.") for k in last["model"])
    final = torch.load(lavae / "checkpoint.pt", weights_only=True)["model"]
    assert all(torch.equal(v, final[k]) for k, v in last["model"].items())
    assert not all(torch.equal(v, last["model"][k]) for k, v in first["model"].items())


def test_bounds_of_every_snapshot_and_no_recomputation(runs, tmp_path, monkeypatch):
    out = tmp_path / "curve.csv"
    rows = curve.evaluate_runs(runs, out, n_images=6, k=3, progress=False)
    assert len(rows) == 4 and {r["model"] for r in rows} == {"lavae", "baseline"}
    assert all(r["bound"] > 0 and r["stderr"] >= 0 and r["n_images"] == 6 for r in rows)
    assert all(r["bound"] <= r["neg_elbo"] + 1e-6 for r in rows)   # K samples tighten the ELBO
    monkeypatch.setattr(curve, "iw_bound", lambda *a, **k: pytest.fail("recomputed a snapshot"))
    again = curve.evaluate_runs(runs, out, n_images=6, k=3, progress=False)
    assert [(r["run"], int(r["step"])) for r in again] == [(r["run"], r["step"]) for r in rows]
    fig = plot_bound_curve(again)
    assert len(fig.axes[0].get_legend().get_texts()) == 2
    by_steps = plot_bound_curve(again, x="steps")
    xs = {float(v) for line in by_steps.axes[0].lines for v in line.get_xdata()}
    assert xs == {3.0, 6.0} and by_steps.axes[0].get_xlabel() == "training steps"
    with pytest.raises(ValueError, match="x must be 'minutes' or 'steps', got 'epochs'"):
        plot_bound_curve(again, x="epochs")


def test_a_run_without_snapshots_is_a_one_line_error(tmp_path, capsys):
    with pytest.raises(SystemExit):
        curve.main([str(tmp_path), "--out", str(tmp_path / "c.csv")])
    err = capsys.readouterr().err
    assert "holds no snapshots/step_*.pt: train it with --set snapshot_every=N" in err
    assert len(err.strip().splitlines()) == 1

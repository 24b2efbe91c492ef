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


def write_metrics(path, rows, batch_size=32):
    """A hand-made metrics.csv: (step, seconds per step since the row before or None)."""
    lines = ["step,wall_s,images_per_s,loss"]
    for step, sec in rows:
        lines.append(f"{step},0,{'' if sec is None else batch_size / sec},1.0")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_step_seconds_is_the_median_of_the_timed_rows_in_the_range(tmp_path):
    m = write_metrics(tmp_path / "metrics.csv", [(25, 9.0), (50, 2.0), (75, 2.5), (100, None),
                                                 (125, 3.0), (150, 1.0), (175, 1.2), (200, 1.1)])
    whole = curve.step_seconds(m, 32)            # the first timed row (start-up) is skipped
    assert whole["rows"] == 6 and whole["last_step"] == 200
    assert whole["s_per_step"] == pytest.approx(2.0)
    early = curve.step_seconds(m, 32, last_step=125)
    assert (early["rows"], early["s_per_step"]) == (3, pytest.approx(2.5))
    late = curve.step_seconds(m, 32, first_step=125)
    assert (late["rows"], late["s_per_step"], late["last_step"]) == (2, pytest.approx(1.2), 200)
    with pytest.raises(ValueError, match="no timed rows with 200 < step"):
        curve.step_seconds(m, 32, first_step=200)


def test_step_seconds_of_a_real_run(runs):
    s = curve.step_seconds(runs[0] / "metrics.csv", 8, skip=0)
    assert s["rows"] >= 1 and s["last_step"] == 6 and 0 < s["s_per_step"] < 60


def test_clock_minutes_adds_the_phases_up():
    phases = [(0, 2.4), (1500, 1.2)]
    assert curve.clock_minutes(0, phases) == 0
    assert curve.clock_minutes(1000, phases) == pytest.approx(1000 * 2.4 / 60)
    assert curve.clock_minutes(3000, phases) == pytest.approx((1500 * 2.4 + 1500 * 1.2) / 60)
    assert curve.clock_minutes(3000, [(1500, 1.2), (0, 2.4)]) == curve.clock_minutes(3000, phases)
    assert curve.clock_minutes(600, [(0, 0.3)]) == pytest.approx(3.0)
    rows = [{"model": "lavae", "step": "3000", "train_minutes": "99"},
            {"model": "baseline", "step": 600, "train_minutes": 1}]
    on = curve.on_clock(rows, {"lavae": phases, "baseline": [(0, 0.3)]})
    assert [r["train_minutes"] for r in on] == [90.0, 3.0] and rows[0]["train_minutes"] == "99"
    for bad in ([], [(100, 1.0)], [(0, 0.0)], [(0, 1.0), (10, -1.0)]):
        with pytest.raises(ValueError, match="phases must start at step 0 with positive seconds"):
            curve.clock_minutes(10, bad)


def test_step_cost_script_refuses_what_it_cannot_time(runs, tmp_path, capsys):
    import importlib.util
    from pathlib import Path
    path = Path(__file__).resolve().parents[1] / "scripts" / "step_cost.py"
    spec = importlib.util.spec_from_file_location("step_cost", path)
    step_cost = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(step_cost)
    out = tmp_path / "cost.json"
    cases = [([str(tmp_path)], "holds no checkpoint.pt"),
             ([str(runs[1]), "--dataset", "multi-dsprites"], "is a baseline run on multi-dsprites, not LAVAE"),
             ([str(runs[0])], "is a lavae run on multi-dsprites, not LAVAE on multi-mnist-1k")]
    for args, message in cases:
        with pytest.raises(SystemExit):
            step_cost.main(["--lavae-late", *args, "--out", str(out)])
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_on_clock_puts_csvs_of_two_models_on_one_clock(runs, tmp_path, capsys):
    import json
    both = tmp_path / "both.csv"
    curve.evaluate_runs(runs, both, n_images=6, k=3, progress=False)
    cost = tmp_path / "cost.json"
    cost.write_text(json.dumps({"phases": {"lavae": [[0, 6.0], [4, 3.0]], "baseline": [[0, 1.5]]}}))
    out = tmp_path / "clock.csv"
    curve.main(["--on-clock", str(cost), f"{both}:lavae", f"{both}:baseline", "--out", str(out), "--plot"])
    rows = curve.read_rows(out)
    got = {(r["model"], int(r["step"])): float(r["train_minutes"]) for r in rows}
    assert got == {("lavae", 3): 0.3, ("lavae", 6): 0.5, ("baseline", 3): 0.075, ("baseline", 6): 0.15}
    assert out.with_suffix(".png").exists()
    other = tmp_path / "other.csv"
    curve.evaluate_runs(runs[1:], other, n_images=5, k=3, progress=False)
    cases = [([f"{both}:lavae", str(other)], "the rows are not one bound"),
             ([f"{both}:nothing"], "has no rows of model nothing"),
             ([str(tmp_path / "absent.csv")], "no curve CSV at")]
    for sources, message in cases:
        with pytest.raises(SystemExit):
            curve.main(["--on-clock", str(cost), *sources, "--out", str(tmp_path / "x.csv")])
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1
    cost.write_text(json.dumps({"phases": {"lavae": [[0, 6.0]]}}))
    with pytest.raises(SystemExit):
        curve.main(["--on-clock", str(cost), str(both), "--out", str(tmp_path / "x.csv")])
    assert "has no step cost of ['baseline']" in capsys.readouterr().err

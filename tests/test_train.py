"""Training: schedules, smoke runs that learn, exact resume, checkpoints, errors."""
import csv
import importlib
import math
import warnings

import pytest
import torch

from lavae_core.checkpoint import CheckpointError, build_model, load_checkpoint, ship_run, ship_weights
from lavae_core.config import CPU_CHANGES, CPU_DATASET_CHANGES, DATASETS, cpu_changes, make_config
from lavae_core.train import NonFiniteLossError, main, schedules, train
from synthetic import blob_scenes

train_module = importlib.import_module("lavae_core.train")


@pytest.fixture(scope="module")
def scenes():
    return blob_scenes(64)


def test_schedules_follow_appendix_b():
    cfg = make_config("paper")
    s0, s_end = schedules(cfg, 0), schedules(cfg, 10**6)
    assert s0["tau"] == pytest.approx(0.5) and s_end["tau"] == pytest.approx(0.02)
    assert s0["lr_loc"] == pytest.approx(1e-4) and s_end["lr_loc"] == pytest.approx(1e-6)
    assert schedules(cfg, 29_999)["aux_weight"] == 1.0 and schedules(cfg, 29_999)["p_force_one"] == 1.0
    mid = schedules(cfg, 45_000)
    assert mid["aux_weight"] == pytest.approx(0.5) and mid["p_force_one"] == pytest.approx(0.55)
    assert s_end["aux_weight"] == 0.0 and s_end["p_force_one"] == pytest.approx(0.1)
    assert schedules(cfg, 50_000)["beta"] == pytest.approx(0.5)
    assert make_config("paper", "multi-dsprites").lr_loc == 5e-4


def test_aux_floor_keeps_the_pull_on_h_loc_after_the_warm_up(tmp_path):
    """``aux_floor`` (not in the paper): the auxiliary weight stops at the floor instead of 0, the
    warm-up itself unchanged; training then still computes the squared pull (metrics.csv). The
    floor keeps the warm-up's loss on, so it pairs with the relaxed gradient (the cpu profile's
    score-after-warmup on multi-MNIST refuses it, test below)."""
    cfg = make_config("cpu", aux_floor=0.05, loc_estimator="gumbel")
    assert schedules(cfg, 0)["aux_weight"] == 1.0
    assert schedules(cfg, cfg.warmup_steps + cfg.warmup_anneal_steps // 2)["aux_weight"] == pytest.approx(0.5)
    assert schedules(cfg, 10**6)["aux_weight"] == 0.05 and schedules(make_config("cpu"), 10**6)["aux_weight"] == 0.0
    with pytest.raises(ValueError, match="aux_floor must be a probability"):
        make_config("cpu", aux_floor=1.5)
    run = tmp_path / "floor"
    train(make_config("smoke", aux_floor=0.25, steps=8), run, progress=False)   # warm-up over by step 4
    rows = list(csv.DictReader(open(run / "metrics.csv")))
    late = [r for r in rows if int(r["step"]) > 4]
    assert late and all(float(r["aux_weight"]) == 0.25 and float(r["aux_sq"]) > 0 for r in late)


def test_profiles_and_errors():
    for ds in DATASETS:   # a general change holds wherever the data set has none of its own
        cfg, own = make_config("cpu", ds), CPU_DATASET_CHANGES.get(ds, {})
        assert all(getattr(cfg, k) == v for k, (v, _) in CPU_CHANGES.items() if k not in own)
    for ds in ("multi-mnist-1k", "multi-mnist-10k"):   # both multi-MNIST sets: longer, with the hinge
        for model in ("lavae", "baseline"):            # and window 19 (LAVAE reads the last two)
            long = make_config("cpu", ds, model)
            assert long.steps == 11_000 > CPU_CHANGES["steps"][0] and long.loc_bg_hinge == 1.0
            assert long.count_window == 19 > make_config("paper", ds).count_window
    for model in ("lavae", "baseline"):   # multi-dSprites: longer too, with the hinge, its own window
        long = make_config("cpu", "multi-dsprites", model)
        assert long.steps == 9_000 > CPU_CHANGES["steps"][0] and long.loc_bg_hinge == 1.0
        assert long.count_window == 9 < make_config("paper", "multi-dsprites").count_window
    # the whole-optimiser reset at 3,000 steps: multi-dSprites' cpu recipe only, never the paper's
    assert make_config("cpu", "multi-dsprites").opt_reset_step == 3000
    assert all(make_config(prof, ds).opt_reset_step == 0 for prof in ("cpu", "paper") for ds in DATASETS
               if (prof, ds) != ("cpu", "multi-dsprites"))
    assert make_config("paper").loc_bg_hinge == 0.0 and make_config("paper").steps > 9_000
    for ds in DATASETS:   # a per-data-set change wins over the general one, on its data set only
        cfg = make_config("cpu", ds)
        assert all(getattr(cfg, k) == v for k, (v, _) in cpu_changes(ds).items())
    assert make_config("cpu", "multi-dsprites").loc_sharpen == 0.0
    assert make_config("cpu", "multi-dsprites").count_threshold == 2.5
    assert make_config("cpu", "multi-mnist-1k").count_threshold == CPU_CHANGES["count_threshold"][0] == 1.0
    assert make_config("cpu", "multi-mnist-10k").loc_sharpen == CPU_CHANGES["loc_sharpen"][0] > 0
    assert make_config("cpu", "multi-dsprites", loc_sharpen=2.0).loc_sharpen == 2.0   # overrides win
    with pytest.raises(ValueError, match="unknown data set 'multi-mnist'; choose one of"):
        cpu_changes("multi-mnist")
    assert make_config("paper", "multi-dsprites").sprite_size == 21
    with pytest.raises(ValueError, match="unknown profile 'gpu'"):
        make_config("gpu")
    with pytest.raises(ValueError, match="unknown data set"):
        make_config("cpu", "mnist")


@pytest.mark.parametrize("model", ["lavae", "baseline"])
def test_smoke_training_lowers_the_loss(tmp_path, scenes, model):
    # LAVAE stays in its warm-up (auxiliary loss on, n forced to 1); the baseline at beta = 1
    own = dict(warmup_steps=40, tau_steps=40, lr_loc_decay_steps=40) if model == "lavae" else dict(beta_anneal_steps=0)
    cfg = make_config("smoke", model=model, steps=40, log_every=10, eval_every=40, **own)
    train(cfg, tmp_path, train_images=scenes[0], eval_sets={"count_acc": scenes} if model == "lavae" else None,
          progress=False)
    rows = list(csv.DictReader((tmp_path / "metrics.csv").open()))
    assert [int(r["step"]) for r in rows] == [10, 20, 30, 40]
    assert float(rows[-1]["loss"]) < 0.8 * float(rows[0]["loss"])
    if model == "lavae":
        assert 0.0 <= float(rows[-1]["count_acc"]) <= 1.0


@pytest.mark.parametrize("static", [False, True])
def test_resume_gives_identical_next_steps(tmp_path, scenes, static):
    cfg = make_config("smoke", steps=6, ckpt_every=3, static_slots=static)
    kw = dict(train_images=scenes[0], eval_sets={"count_acc": scenes}, progress=False)
    train(cfg, tmp_path / "straight", **kw)
    # a run stopped at step 3 (as if killed after its checkpoint), then resumed to step 6
    train(make_config("smoke", steps=3, ckpt_every=3, static_slots=static), tmp_path / "resumed", **kw)
    train(cfg, tmp_path / "resumed", **kw)
    a = torch.load(tmp_path / "straight" / "checkpoint.pt", weights_only=True)
    b = torch.load(tmp_path / "resumed" / "checkpoint.pt", weights_only=True)
    assert a["step"] == b["step"] == 6
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    rows = list(csv.DictReader((tmp_path / "resumed" / "metrics.csv").open()))
    assert [int(r["step"]) for r in rows] == [2, 3, 4, 6]


def test_checkpoint_round_trip(tmp_path, scenes):
    cfg = make_config("smoke", steps=2)
    train(cfg, tmp_path, train_images=scenes[0], eval_sets={}, progress=False)
    ckpt = torch.load(tmp_path / "checkpoint.pt", weights_only=True)  # plain types + tensors only
    assert ckpt["config"]["profile"] == "smoke" and ckpt["step"] == 2
    model, cfg2, _ = load_checkpoint(tmp_path)
    assert cfg2 == cfg and not model.training
    shipped = ship_weights(tmp_path / "checkpoint.pt", tmp_path / "weights.pt")
    small, _, sc = load_checkpoint(shipped)
    assert "optimizer" not in sc
    x = torch.as_tensor(scenes[0][:4]).float()
    assert torch.equal(small.infer(x).recon, model.infer(x).recon)
    shipped_dir = ship_run(tmp_path, tmp_path / "shipped")
    assert {p.name for p in shipped_dir.iterdir()} == {"weights.pt", "metrics.csv"}
    assert (shipped_dir / "weights.pt").stat().st_size < (tmp_path / "checkpoint.pt").stat().st_size


def test_resume_with_another_config_is_refused(tmp_path, scenes):
    train(make_config("smoke", steps=2), tmp_path, train_images=scenes[0], eval_sets={}, progress=False)
    with pytest.raises(CheckpointError, match="different config"):
        train(make_config("smoke", steps=4, lr=0.1), tmp_path, train_images=scenes[0], eval_sets={},
              progress=False)


def test_a_baseline_resumes_across_a_change_to_lavae_only_fields(tmp_path, scenes):
    """A field only LAVAE reads (here the warm-up target) cannot change what a baseline learns, so
    its run continues; a field it reads (lr) still stops it."""
    kw = dict(train_images=scenes[0], eval_sets={}, progress=False)
    train(make_config("smoke", model="baseline", steps=2), tmp_path, **kw)
    with pytest.warns(UserWarning, match="the baseline does not read aux_target_scale"):
        changed = make_config("smoke", model="baseline", steps=4, aux_target_scale=1.0)
    row = train(changed, tmp_path, **kw)
    assert row["step"] == 4
    with pytest.raises(CheckpointError, match="different config"):
        train(make_config("smoke", model="baseline", steps=6, lr=0.1), tmp_path, **kw)


def test_non_finite_loss_stops_and_keeps_checkpoint(tmp_path, scenes, monkeypatch):
    cfg = make_config("smoke", steps=2)
    train(cfg, tmp_path, train_images=scenes[0], eval_sets={}, progress=False)
    before = (tmp_path / "checkpoint.pt").read_bytes()
    from lavae_core.lavae import LAVAE
    real = LAVAE.loss_terms

    def nan_loss(self, *a, **k):
        out = real(self, *a, **k)
        out["loss"] = out["loss"] * float("nan")
        return out
    monkeypatch.setattr(LAVAE, "loss_terms", nan_loss)
    with pytest.raises(NonFiniteLossError, match="non-finite loss at step 2"):
        train(make_config("smoke", steps=4), tmp_path, train_images=scenes[0], eval_sets={},
              progress=False)
    assert (tmp_path / "checkpoint.pt").read_bytes() == before


def test_missing_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint at"):
        load_checkpoint(tmp_path / "nope.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="could not read"):
        load_checkpoint(tmp_path / "junk.pt")


def test_command_line_rejects_bad_input(capsys):
    with pytest.raises(SystemExit):
        main(["--profile", "gpu"])
    with pytest.raises(SystemExit):
        main(["--set", "not_a_field=3"])
    assert "unknown config field" in capsys.readouterr().err


def test_readme_lists_every_cpu_change():
    from pathlib import Path
    from lavae_core.config import cpu_changes_markdown
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    for line in cpu_changes_markdown().splitlines()[2:]:
        assert line in readme, f"README's cpu table is stale: {line}"


def test_train_seeds_script_rejects_bad_input():
    import subprocess
    from lavae_core import REPO_ROOT
    for args, msg in (([], "give at least one seed"), (["two"], "seed must be an integer"),
                      (["--bogus", "1"], "unknown option --bogus"), (["1", "--profile"], "--profile needs a value"),
                      (["--jobs", "0", "1"], "--jobs must be a positive integer")):
        r = subprocess.run(["bash", "scripts/train_seeds.sh", *args], cwd=REPO_ROOT,
                           capture_output=True, text=True)
        assert r.returncode == 2 and msg in r.stderr, (args, r.stderr)


def test_trained_on_reads_the_hardware_from_command_txt(tmp_path):
    from lavae_core.checkpoint import trained_on
    assert trained_on(tmp_path) == ""
    (tmp_path / "command.txt").write_text(
        "python -m lavae_core.train --seed 3\n# on NVIDIA H200 (CUDA), torch 2.11.0, from step 0\n"
        "python -m lavae_core.train --seed 3\n# on Intel Xeon, 2 threads (CPU), torch 2.13.0, from step 250\n")
    assert trained_on(tmp_path) == "NVIDIA H200 (CUDA), torch 2.11.0; Intel Xeon, 2 threads (CPU), torch 2.13.0"


def test_init_from_a_snapshot_starts_at_its_step_and_weights_with_a_new_recipe(tmp_path, scenes):
    """--init-from: a new run folder starts from a snapshot's weights and step, with a fresh
    optimiser and its own recipe (here the background hinge on), and trains on from there."""
    kw = dict(train_images=scenes[0], eval_sets={}, progress=False)
    train(make_config("smoke", steps=4, snapshot_every=4), tmp_path / "long", **kw)
    snap = tmp_path / "long" / "snapshots" / "step_000004.pt"
    new_cfg = make_config("smoke", steps=4, loc_bg_hinge=1.0)
    row = train(new_cfg, tmp_path / "branch", init_from=snap, command="x", **kw)   # 0 steps to go
    assert row == {} and (tmp_path / "branch" / "checkpoint.pt").exists() is False
    train(make_config("smoke", steps=5, loc_bg_hinge=1.0), tmp_path / "branch", init_from=snap,
          command="x", **kw)
    after = torch.load(tmp_path / "branch" / "checkpoint.pt", weights_only=True)
    start = torch.load(snap, weights_only=True)["model"]
    assert after["step"] == 5 and after["config"]["loc_bg_hinge"] == 1.0
    steps = {int(st["step"]) for st in after["optimizer"]["state"].values()}
    assert steps == {1}                                          # one step of a fresh optimiser
    moved = [k for k in start if start[k].is_floating_point() and not torch.equal(start[k], after["model"][k])]
    assert moved and all(torch.allclose(start[k], after["model"][k], atol=0.05) for k in moved
                         if "running" not in k)                 # one small step from the snapshot
    assert "fresh optimiser" in (tmp_path / "branch" / "command.txt").read_text()


def test_init_from_refuses_what_it_cannot_continue(tmp_path, scenes):
    kw = dict(train_images=scenes[0], eval_sets={}, progress=False)
    train(make_config("smoke", steps=4, snapshot_every=2), tmp_path / "long", **kw)
    snaps = tmp_path / "long" / "snapshots"
    with pytest.raises(CheckpointError, match="holds no auxiliary VAE, which the warm-up trains until step 4"):
        train(make_config("smoke", steps=6), tmp_path / "a", init_from=snaps / "step_000002.pt", **kw)
    with pytest.raises(CheckpointError, match="holds a dataset 'multi-mnist-1k', not 'multi-dsprites'"):
        train(make_config("smoke", "multi-dsprites", steps=6), tmp_path / "b",
              init_from=snaps / "step_000004.pt", **kw)
    with pytest.raises(CheckpointError, match="does not match this config's architecture"):
        train(make_config("smoke", steps=6, latent_dim=5), tmp_path / "c", init_from=snaps / "step_000004.pt", **kw)
    with pytest.raises(CheckpointError, match="could not read --init-from"):
        train(make_config("smoke", steps=6), tmp_path / "d", init_from=tmp_path / "none.pt", **kw)


def test_warmup_end_resets_the_location_optimizer_and_it_keeps_learning(tmp_path, scenes):
    """reset_loc_opt: the location net's Adamax state is dropped when the warm-up anneal ends
    (step 4 here), so its next updates are not scaled down by the warm-up's huge gradients."""
    kw = dict(train_images=scenes[0], eval_sets={"count_acc": scenes}, progress=False)
    cfg = dict(warmup_steps=2, warmup_anneal_steps=2, reset_loc_opt=True, lr_loc=1e-3,
               lr_loc_decay=1.0, ckpt_every=4, force_n1_end=1.0)  # n >= 1: h_loc gets a gradient
    train(make_config("smoke", steps=4, **cfg), tmp_path, **kw)
    before = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    train(make_config("smoke", steps=8, **cfg), tmp_path, **kw)
    after = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    loc_keys = [k for k in after["model"] if k.startswith("loc_net.") and k.endswith("weight")]
    moved = [float((after["model"][k] - before["model"][k]).abs().max()) for k in loc_keys]
    assert min(moved) > 0, "a location-net weight did not move after the warm-up"
    groups = after["optimizer"]["param_groups"]
    steps = {int(after["optimizer"]["state"][i]["step"]) for i in groups[0]["params"]}
    rest = {int(after["optimizer"]["state"][i]["step"]) for i in groups[1]["params"]
            if i in after["optimizer"]["state"]}
    # location state restarted at step 4; the rest kept counting (the auxiliary VAE stops at 4)
    assert steps == {4} and max(rest) == 8


def test_opt_reset_step_drops_the_whole_optimizer_state_once(tmp_path, scenes):
    """opt_reset_step: both groups' Adamax state restarts at that step (every state's step counter
    counts from it), and a run resumed at that very step ends where an uninterrupted one does."""
    kw = dict(train_images=scenes[0], eval_sets={}, progress=False)
    cfg = dict(warmup_steps=1, warmup_anneal_steps=1, opt_reset_step=4, force_n1_end=1.0, ckpt_every=4)
    train(make_config("smoke", steps=8, **cfg), tmp_path / "straight", **kw)
    train(make_config("smoke", steps=4, **cfg), tmp_path / "resumed", **kw)
    train(make_config("smoke", steps=8, **cfg), tmp_path / "resumed", **kw)
    train(make_config("smoke", steps=8, **{**cfg, "opt_reset_step": 0}), tmp_path / "none", **kw)
    ck = {k: torch.load(tmp_path / k / "checkpoint.pt", weights_only=True) for k in ("straight", "resumed", "none")}
    counts = {k: {int(v["step"]) for v in c["optimizer"]["state"].values()} for k, c in ck.items()}
    assert counts["straight"] == {4} and counts["resumed"] == {4} and max(counts["none"]) == 8
    groups = ck["straight"]["optimizer"]["param_groups"]
    assert all(i in ck["straight"]["optimizer"]["state"] for g in groups for i in g["params"][:1])
    assert all(torch.equal(ck["straight"]["model"][k], ck["resumed"]["model"][k]) for k in ck["straight"]["model"])
    assert any(not torch.equal(ck["straight"]["model"][k], ck["none"]["model"][k]) for k in ck["none"]["model"])


@pytest.mark.parametrize("field, value, message", [
    ("kl_anneal_steps", -1, "kl_anneal_steps must be an integer >= 0"),
    ("opt_reset_step", -1, "opt_reset_step must be an integer >= 0"),
    ("opt_reset_step", 3000.0, "opt_reset_step must be an integer"),
    ("reset_loc_opt", "yes", "reset_loc_opt must be True or False"),
    ("straight_through", 1, "straight_through must be True or False"),
    ("app_free_bits", -0.5, "app_free_bits must be a number >= 0"),
    ("loc_sharpen", -1.0, "loc_sharpen must be a number >= 0"),
    ("sprite_centre", -0.1, "sprite_centre must be a number >= 0"),
    ("loc_bg_hinge", -1.0, "loc_bg_hinge must be a number >= 0"),
    ("sprite_centre", "4", "sprite_centre must be a finite number"),
    ("loc_sharpen_forced", "false", "loc_sharpen_forced must be True or False"),
    ("app_free_bits", "1", "app_free_bits must be a finite number"),
    ("loc_sharpen_window", 4, "loc_sharpen_window must be 0 .* or odd"),
    ("loc_sharpen_window", -3, "loc_sharpen_window must be 0 .* or odd"),
    ("loc_sharpen_window", 5.0, "loc_sharpen_window must be an integer"),
    ("loc_estimator", "reinforce", "loc_estimator must be one of gumbel, score, score-after-warmup, got 'reinforce'"),
    ("loc_estimator", None, "loc_estimator must be a string"),
])
def test_new_recipe_options_reject_bad_values(field, value, message):
    with pytest.raises(ValueError, match=message):
        make_config("cpu", **{field: value})


@pytest.mark.parametrize("estimator", ["score", "score-after-warmup"])
def test_score_estimator_excludes_straight_through(estimator):
    with pytest.raises(ValueError, match=f"straight_through and loc_estimator = '{estimator}' exclude each other"):
        make_config("cpu", loc_estimator=estimator, straight_through=True)


def test_score_after_warmup_needs_the_warmup_to_end():
    with pytest.raises(ValueError, match="'score-after-warmup' needs aux_floor = 0"):
        make_config("cpu", loc_estimator="score-after-warmup", aux_floor=0.1)


def test_compiled_step_equals_the_eager_step_and_does_not_recompile(tmp_path, scenes, monkeypatch):
    """Issue 9: the compiled static-slot training step computes what the eager static step does
    (same weights and seed, float64: the same logged terms to 1e-4 relative, gradients to 1e-3
    of each tensor's largest entry: rounding of decomposed ops),
    in both phases, with two graphs in all (warm-up and after) that do not recompile as tau and
    P(n = 1) anneal; train() runs it and a run may resume with other execution switches.
    torch.compile's "aot_eager" backend (tracing and the autograd graph, no code generation:
    seconds on a CPU) stands in for inductor, whose result scripts/benchmark.py checks on a GPU.
    (The eager static step equals the eager dynamic one: tests/test_lavae.py.)"""
    import copy
    import torch._dynamo
    import lavae_core.train as tr
    from lavae_core.checkpoint import build_model
    from lavae_core.train import make_train_step
    monkeypatch.setattr(tr, "COMPILE_BACKEND", "aot_eager")
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    cfg = make_config("smoke", static_slots=True, count_threshold=2.0, count_window=9)
    torch.manual_seed(0)
    # float64: at the sharp temperatures after the warm-up the Gumbel-softmax amplifies float32
    # rounding (which differs with the thread count) to ~1e-3 of a gradient
    ref = build_model(cfg).double().train()
    models = {"eager": ref, "compiled": copy.deepcopy(ref)}
    steps = {}
    for name, m in models.items():
        c = cfg if name == "eager" else make_config("smoke", static_slots=True, compile="default",
                                                    count_threshold=2.0, count_window=9)
        steps[name] = make_train_step(m, torch.optim.Adamax(m.parameters(), lr=1e-3), c, torch.device("cpu"))
    x = torch.as_tensor(scenes[0][:8]).double()
    for i, s in enumerate([schedules(cfg, 0), schedules(cfg, 4), schedules(cfg, 1), schedules(cfg, 5)]):
        # same weights before each step (in place: the compiled graph's guards still hold), so
        # that rounding differences of earlier steps do not grow through the sharp Gumbel-softmax
        models["compiled"].load_state_dict(models["eager"].state_dict())
        before = {n: p.detach().clone() for n, p in models["eager"].named_parameters()}
        out = {}
        for name in models:
            torch.manual_seed(10 + i)
            out[name] = steps[name](x, s)
        assert torch.allclose(out["eager"], out["compiled"], rtol=1e-4), (i, out)
        pairs = [(n, a, b) for (n, a), b in zip(models["eager"].named_parameters(),
                                                models["compiled"].parameters())]
        top = max(float(a.grad.abs().max()) for _, a, _ in pairs if a.grad is not None)
        for n, a, b in pairs:
            assert not torch.equal(a, before[n]) or a.grad is None or not a.grad.any(), (i, n)
            if a.grad is not None:   # float32 rounding, relative to the tensor's largest entry
                err = float((a.grad - b.grad).abs().max())
                assert err <= 1e-3 * max(float(a.grad.abs().max()), 1e-3 * top), (i, n, err)
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == 2
    assert not torch._dynamo.utils.counters["graph_break"]
    # the training loop with the compiled step; then resumed with the eager step
    kw = dict(train_images=scenes[0], eval_sets={}, progress=False)
    train(make_config("smoke", steps=5, static_slots=True, compile="default"), tmp_path, **kw)
    row = train(make_config("smoke", steps=6, static_slots=False), tmp_path, **kw)
    assert row["step"] == 6 and math.isfinite(row["loss"])


def test_gpu_lease_script_rejects_bad_input():
    import subprocess
    from lavae_core import REPO_ROOT
    for args, msg in ((["--bogus"], "unknown option --bogus"), (["--runs"], "--runs needs a value")):
        r = subprocess.run(["bash", "scripts/gpu_lease.sh", *args], cwd=REPO_ROOT,
                           capture_output=True, text=True)
        assert r.returncode == 2 and msg in r.stderr, (args, r.stderr)


def test_gpu_curve_script_rejects_bad_input(tmp_path):
    import subprocess
    from lavae_core import REPO_ROOT
    for args, code, msg in ((["--bogus", "1"], 2, "unknown option --bogus"),
                            (["--minutes"], 2, "--minutes needs a value"),
                            (["--keep-state", "yes"], 2, "--keep-state must be 0 or 1, got yes"),
                            (["--unpack", str(tmp_path)], 1, f"no curve.tgz in {tmp_path}"),
                            (["--runs", "lavae:multi-dsprites"], 2, "is not model:dataset:seed"),
                            (["--runs", "vae:multi-dsprites:0"], 2, "model must be lavae or baseline"),
                            (["--runs", "lavae:multi-dsprites:0:loc_block"], 2,
                             "overrides must be KEY=VALUE,KEY=VALUE"),
                            (["--runs", "lavae:multi-dsprites:0:loc_block=15 lavae:multi-dsprites:1 "
                                        "lavae:multi-dsprites:0:loc_block=15"], 2, "is given twice")):
        r = subprocess.run(["bash", "scripts/gpu_curve.sh", *args], cwd=REPO_ROOT,
                           capture_output=True, text=True)
        assert r.returncode == code and msg in r.stderr, (args, r.stderr)


@pytest.mark.parametrize("model", ["lavae", "baseline"])
def test_bf16_runs_the_nets_in_bfloat16_while_training_only(scenes, model):
    """``bf16`` (an execution switch, also on the CPU): in evaluation it changes nothing; in
    training the nets run under bf16 autocast, so the loss moves by bf16 rounding only (within 5 %,
    not bit-equal) and every gradient stays finite float32."""
    torch.manual_seed(0)
    plain = build_model(make_config("smoke", model=model))
    half = build_model(make_config("smoke", model=model, bf16=True))
    half.load_state_dict(plain.state_dict())
    x = torch.as_tensor(scenes[0][:8]).float()

    def terms(m, seed):
        torch.manual_seed(seed)
        return m.loss_terms(x, 0.5, 1.0, 1.0) if model == "lavae" else m.loss_terms(x, 1.0)

    with torch.no_grad():   # evaluation first: a training pass moves the batch norms' statistics
        assert torch.equal(terms(plain.eval(), 2)["elbo"], terms(half.eval(), 2)["elbo"])
    losses = []
    for m in (plain.train(), half.train()):
        t = terms(m, 1)
        t["loss"].mean().backward()
        assert t["elbo"].dtype == torch.float32
        grads = [p.grad for p in m.parameters() if p.grad is not None]
        assert grads and all(g.dtype == torch.float32 and torch.isfinite(g).all() for g in grads)
        losses.append(float(t["loss"].detach().mean()))
    assert losses[0] != losses[1] and abs(losses[0] - losses[1]) <= 0.05 * abs(losses[0])


@pytest.mark.parametrize("native", [False, True])
def test_bf16_on_a_cpu_without_native_bf16_warns(monkeypatch, native):
    """Emulated bf16 (no AMX / AVX512-BF16) measured 10x slower than float32: the step says so."""
    monkeypatch.setattr(train_module, "cpu_has_native_bf16", lambda: native)
    for bf16 in (False, True):
        cfg = make_config("smoke", bf16=bf16)
        model = build_model(cfg)
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            train_module.make_train_step(model, torch.optim.Adamax(model.parameters()), cfg, torch.device("cpu"))
        slow = [w for w in seen if "without native bf16" in str(w.message)]
        assert len(slow) == (1 if bf16 and not native else 0)

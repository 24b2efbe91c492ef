"""Table 1 from evaluation records: means over seeds, the paper beside ours, earlier recipes kept
apart and explained."""
import copy

import pytest

from lavae_core.config import make_config
from lavae_core.table1 import (PAPER_TABLE1, count_curves, per_seed_markdown, recipe_diff, rows_of,
                               table1_markdown)


def _record(model="lavae", seed=0, bound=150.0, acc=0.9, **config):
    cfg = make_config("cpu", "multi-dsprites", model, seed=seed, **config).to_dict()
    ev = {"wall_s": 10.0, "hardware": "cpu", "commit": "abc", "date": "today"}
    rec = {"run": f"{model}_s{seed}", "weights_sha256": "0" * 64, "model": model, "dataset": "multi-dsprites",
           "profile": "cpu", "seed": seed, "step": cfg["steps"], "train_wall_s": 1200.0,
           "trained_on": "Intel Xeon, 2 threads (CPU)", "config": cfg,
           "bound": {"params": {"k": 100, "images": {"test": 500, "test7": 200}, "chunk": 10, "seed": 0},
                     "splits": {"test": {"bound": bound, "n_images": 500}, "test7": {"bound": 4 * bound, "n_images": 200}},
                     "evaluated": ev},
           "count": None}
    if model == "lavae":
        rec["count"] = {"params": {}, "evaluated": ev, "splits": {
            "test": {"accuracy": acc, "n_images": 10000, "per_count": {"0": [1.0, 10], "1": [acc, 10]}},
            "test7": {"accuracy": acc / 2, "n_images": 10000, "per_count": {"7": [acc / 2, 10]}},
            "test0-10": {"accuracy": acc, "n_images": 1000, "per_count": {"0": [1.0, 5], "7": [0.25, 5]}}}}
    return rec


def test_table1_markdown_states_spread_seeds_and_missing_runs():
    base = {"dataset": "multi-dsprites", "profile": "cpu", "recipe": "current", "recipe_diff": {},
            "floor": 30.0, "bound_test7": 400.0, "steps": [3000], "train_minutes": [20.0, 21.0],
            "hardware": ["cpu"], "k": 100, "n_count": 10000, "n_bound_test": 500, "n_bound_test7": 200,
            "seeds": [0, 1]}
    rows = [dict(base, model="lavae", bound=150.0, bound_std=2.5, acc_test=0.9, acc_test_std=0.02,
                 acc_test7=0.5, acc_test7_std=None, paper=PAPER_TABLE1["multi-dsprites"]["lavae"]),
            dict(base, model="baseline", bound=90.0, bound_std=None, paper=PAPER_TABLE1["multi-dsprites"]["baseline"])]
    md = table1_markdown(rows, ["lavae_multi-dsprites_cpu_s2"], ["lavae_multi-dsprites_cpu_s3"])
    lavae_line, base_line = [line for line in md.splitlines() if line.startswith("| multi-dsprites")]
    assert "| cpu | 150.0 ± 2.5 | 43.9 ± 1.0 |" in lavae_line and "| 90.0 | 45.8 ± 0.7 |" in base_line
    assert "| 90.00% ± 2.00 | 50.00% |" in lavae_line and "| — | — |" in base_line
    assert "| 0, 1 | 3000 | 20.0, 21.0 |" in lavae_line
    assert "count accuracy over 10000 images per split" in md
    assert ("No shipped checkpoint (not trained with this profile, or not shipped): "
            "lavae_multi-dsprites_cpu_s2.") in md
    assert md.endswith("No up-to-date evaluation record yet: lavae_multi-dsprites_cpu_s3.")


def test_rows_average_over_seeds():
    rows = rows_of([_record(seed=0, bound=100.0, acc=0.9), _record(seed=1, bound=110.0, acc=0.8),
                    _record("baseline", seed=0, bound=80.0)], {"multi-dsprites": 20.0})
    lavae, base = rows
    assert lavae["seeds"] == [0, 1] and lavae["bound"] == pytest.approx(105.0)
    assert lavae["bound_std"] == pytest.approx(7.0711, abs=1e-3) and lavae["acc_test"] == pytest.approx(0.85)
    assert lavae["bound_test7"] == pytest.approx(420.0) and lavae["floor"] == 20.0
    assert base["model"] == "baseline" and base["bound_std"] is None and "acc_test" not in base


def test_a_checkpoint_of_an_earlier_recipe_gets_its_own_marked_row():
    old = _record(seed=1, bound=200.0)
    old["config"]["warmup_steps"] = 123          # trained before the profile changed
    del old["config"]["channels_last"]           # a field added since: counts at its default
    assert recipe_diff(_record()) == {}
    assert recipe_diff(old) == {"warmup_steps": (123, make_config("cpu", "multi-dsprites").warmup_steps)}
    rows = rows_of([_record(seed=0), old], {})
    assert [(r["recipe"], r["seeds"]) for r in rows] == [("current", [0]), ("earlier", [1])]
    md = table1_markdown(rows)
    line = next(x for x in md.splitlines() if "200.0" in x)
    assert "| cpu, earlier †1 |" in line
    assert "†1 Trained with an earlier `cpu` recipe: warmup_steps = 123 (today: " in md
    gpu = _record(seed=3)
    gpu["config"].update(tf32=False, bf16=True)  # execution switches: how it ran, not what it learnt
    assert recipe_diff(gpu) == {}
    gone = _record(seed=2)
    gone["config"]["old_option"] = True          # a field Config no longer has
    assert recipe_diff(gone) == {"old_option": (True, "no such field")}
    assert "| earlier | 1 |" in per_seed_markdown(rows)


def test_per_seed_markdown_lists_every_run_with_its_hardware():
    rows = rows_of([_record(seed=0, acc=0.918), _record("baseline", seed=3)], {})
    lines = per_seed_markdown(rows).splitlines()
    assert len(lines) == 2 + 2
    assert lines[2] == ("| multi-dsprites | lavae | current | 0 | 9000 | Intel Xeon | 20.0 | 150.0 | 600.0 | "
                        "91.80% | 45.90% |")
    assert lines[3].endswith("| — | — |")


def test_count_curves_collect_each_seed_per_true_count():
    recs = [_record(seed=0), copy.deepcopy(_record(seed=1)), _record("baseline")]
    assert count_curves(recs) == {"multi-dsprites": {0: [1.0, 1.0], 7: [0.25, 0.25]}}
    assert count_curves(recs, "test7") == {"multi-dsprites": {7: [0.45, 0.45]}}


def test_table1_in_smoke_mode_evaluates_fresh_models(tmp_path):
    from lavae_core.table1 import table1
    res = table1(["multi-dsprites"], "cpu", [0], smoke=True, progress=False)
    assert [r["model"] for r in res["rows"]] == ["lavae", "baseline"]
    assert all(r["recipe"] == "current" and r["bound"] > 0 for r in res["rows"])
    assert "| multi-dsprites | lavae | smoke |" in res["markdown"]


@pytest.mark.parametrize("kw,match", [
    (dict(datasets="multi-dsprites"), "datasets = 'multi-dsprites': must be a non-empty list"),
    (dict(datasets=["mnist"]), "datasets"),
    (dict(profile="gpu"), "profile = 'gpu'"),
    (dict(seeds=[-1]), "seeds = \\[-1\\]"),
])
def test_bad_table1_requests_are_one_line_errors(kw, match):
    from lavae_core.table1 import table1
    args = dict(datasets=["multi-dsprites"], profile="cpu", seeds=[0], **{})
    args.update(kw)
    with pytest.raises(ValueError, match=match) as e:
        table1(**args, smoke=True, progress=False)
    assert "\n" not in str(e.value)


def test_a_baseline_is_not_marked_earlier_for_lavae_only_changes():
    """Changing a LAVAE-only field of the cpu profile (here the warm-up) leaves baseline records
    current; changing a baseline field does not."""
    from lavae_core.config import make_config
    from lavae_core.table1 import recipe_diff
    cfg = make_config("cpu", "multi-mnist-1k", "baseline", seed=0).to_dict()
    rec = {"model": "baseline", "dataset": "multi-mnist-1k", "profile": "cpu", "seed": 0,
           "config": dict(cfg, warmup_steps=123, aux_target_scale=99.0)}
    assert recipe_diff(rec) == {}
    rec["config"]["vae_width"] = cfg["vae_width"] + 1
    assert set(recipe_diff(rec)) == {"vae_width"}
    lavae = dict(rec, model="lavae", config=dict(make_config("cpu", "multi-mnist-1k", "lavae").to_dict(),
                                                  warmup_steps=123))
    assert set(recipe_diff(lavae)) == {"warmup_steps"}


def test_run_is_current_reads_a_run_folders_config(tmp_path):
    import json
    from lavae_core.config import make_config
    from lavae_core.table1 import run_is_current
    cfg = make_config("cpu", "multi-mnist-1k", "lavae", seed=1).to_dict()
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    assert run_is_current(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps(dict(cfg, warmup_steps=200)))
    assert not run_is_current(tmp_path)


def test_paper_runs_show_each_gpu_run_as_it_stands(tmp_path):
    """gpu_runs/<run>/eval.json -> one line per paper-profile run: its step of the 200k, whether its
    state is kept, its bound and counts beside the paper's; finished runs say so."""
    import json
    from lavae_core.table1 import paper_runs, paper_runs_markdown
    assert paper_runs(tmp_path) == [] and paper_runs_markdown([]) == ""
    for name, model, step, state in (("a", "baseline", 47300, "checkpoint.pt"), ("b", "lavae", 7401, None),
                                     ("c", "lavae", 200000, "finished")):
        rec = _record(model, bound=80.0 if model == "baseline" else 400.0)
        rec.update(step=step, profile="paper", trained_on="NVIDIA H100 80GB HBM3 (CUDA), torch 2.11")
        rec["config"]["steps"] = 200000
        (tmp_path / name).mkdir()
        (tmp_path / name / "eval.json").write_text(json.dumps(rec))
        if state:
            (tmp_path / name / state).write_text("")
    rows = paper_runs(tmp_path)
    assert [(r["model"], r["step"]) for r in rows] == [("lavae", 7401), ("lavae", 200000), ("baseline", 47300)]
    md = paper_runs_markdown(rows)
    assert "| lavae | step 7,401 of 200,000 (state not kept) | 400.0 | 43.9 ± 1.0 |" in md
    assert "| lavae | finished | 400.0 |" in md
    assert "| baseline | step 47,300 of 200,000 | 80.0 | 45.8 ± 0.7 | 320.0 | — | — |" in md
    assert "NVIDIA H100 80GB HBM3 (CUDA) |" in md

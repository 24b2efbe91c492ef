"""Paired comparison of two evaluation records: the per-image difference of their bounds."""
import copy
import json

import numpy as np
import pytest

from lavae_core.compare import load_record, main, paired_difference


def record(per_image, dataset="multi-mnist-1k", k=100, seed=0):
    per_image = [float(v) for v in per_image]
    split = {"bound": float(np.mean(per_image)), "per_image": per_image}
    return {"dataset": dataset, "bound": {"params": {"k": k, "seed": seed, "chunk": 10},
                                          "splits": {"test": split}}}


def test_paired_difference_cancels_the_images_spread():
    rng = np.random.default_rng(0)
    a = 90 + 30 * rng.standard_normal(400)            # images differ by ~30 nats
    b = a - 2 + 0.5 * rng.standard_normal(400)        # B is 2 nats better on every image, +- 0.5
    r = paired_difference(record(a), record(b))["test"]
    assert r["n"] == 400
    assert abs(r["diff"] + 2) < 0.15                  # 0.5 / sqrt(400) = 0.025 standard error
    assert 0.01 < r["stderr"] < 0.05                  # far below the unpaired 30 * sqrt(2 / 400) = 2.1
    assert r["b_lower"] > 0.99
    swapped = paired_difference(record(b), record(a))["test"]
    assert swapped["diff"] == pytest.approx(-r["diff"]) and swapped["b_lower"] < 0.01


def test_only_the_images_both_records_hold_are_paired():
    r = paired_difference(record([1, 2, 3, 4, 100]), record([2, 3, 4, 5]))["test"]
    assert r["n"] == 4 and r["diff"] == pytest.approx(1.0) and r["stderr"] == pytest.approx(0.0)


@pytest.mark.parametrize("change,match", [({"k": 10}, "differ in the bound's k"),
                                          ({"seed": 1}, "differ in the bound's seed"),
                                          ({"dataset": "multi-dsprites"}, "different data sets")])
def test_records_whose_samples_do_not_pair_up_are_refused(change, match):
    with pytest.raises(ValueError, match=match):
        paired_difference(record([1, 2, 3]), record([1, 2, 3], **change))


def test_a_folder_with_eval_json_and_the_cli_table(tmp_path, capsys):
    a, b = record([10, 20, 30]), record([9, 19, 31])
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "eval.json").write_text(json.dumps(a))
    (tmp_path / "b.json").write_text(json.dumps(b))
    assert load_record(tmp_path / "run") == a
    main([str(tmp_path / "run"), str(tmp_path / "b.json")])
    out = capsys.readouterr().out
    assert "| test | 3 | 20.0 | 19.7 | -0.33 ± 0.67 | 67 % |" in out
    main([str(tmp_path / "run"), str(tmp_path / "b.json"), "--json"])
    assert json.loads(capsys.readouterr().out)["test"]["n"] == 3


def test_a_file_without_a_bound_part_is_refused(tmp_path):
    bad = copy.deepcopy(record([1, 2]))
    del bad["bound"]
    (tmp_path / "x.json").write_text(json.dumps(bad))
    with pytest.raises(ValueError, match="holds no bound part"):
        load_record(tmp_path / "x.json")

"""Evaluation: the importance-sampled bound and count accuracy."""
import numpy as np
import pytest
import torch

from lavae_core.baseline import ConvVAE
from lavae_core.config import make_config
from lavae_core.evaluate import count_accuracy, iw_bound
from synthetic import blob_scenes, peaked_lavae


def _models():
    lavae = peaked_lavae()  # one location peak per blob, so that images have objects to explain
    return {"lavae": lavae, "baseline": ConvVAE.baseline(make_config("smoke")).eval()}


@pytest.mark.parametrize("name", ["lavae", "baseline"])
def test_k1_bound_matches_elbo_and_k100_is_tighter(name):
    model = _models()[name]
    images = blob_scenes(6, seed=3)[0]
    k100 = iw_bound(model, images, k=100, progress=False)
    # mean log weight over 100 samples = a 100-sample estimate of the ELBO; the K=1 bound averaged
    # over many independent draws estimates the same number
    k1 = iw_bound(model, np.repeat(images, 200, axis=0), k=1, progress=False)["bound"]
    assert abs(k1 - k100["neg_elbo"]) < 0.02 * abs(k100["neg_elbo"])
    assert k100["bound"] <= k100["neg_elbo"] + 1e-6          # log-mean-exp >= mean, image by image
    assert (k100["per_image"] <= k100["neg_elbo"] * 10).all() and np.isfinite(k100["per_image"]).all()


def test_lavae_k1_bound_matches_the_training_elbo():
    """The training loss (relaxed locations at a tiny temperature, analytic appearance KL) and the
    mean log importance weight (hard locations, sampled appearance) estimate the same ELBO."""
    model = _models()["lavae"]
    x = torch.as_tensor(blob_scenes(6, seed=3)[0]).float()
    torch.manual_seed(0)
    with torch.no_grad():
        train = model.loss_terms(x.repeat(400, 1, 1, 1), tau=1e-4)["loss"].view(400, 6)
        lw = -model.log_weights(x, 400).t()
    se = (train.var(0) / 400 + lw.var(0) / 400).sqrt()
    assert ((train.mean(0) - lw.mean(0)).abs() < 4 * se + 1e-3).all()


def test_count_accuracy_counts_right_and_wrong():
    model = _models()["lavae"]
    images, counts = blob_scenes(32, seed=1)
    pred = count_accuracy(model, images, counts)
    assert 0.0 <= pred["accuracy"] <= 1.0 and pred["n_images"] == 32
    assert sum(v[1] for v in pred["per_count"].values()) == 32
    # against its own predictions the accuracy is exactly 1, against shifted counts exactly 0
    from lavae_core.evaluate import predict_counts
    own = predict_counts(model, images)
    assert count_accuracy(model, images, own)["accuracy"] == 1.0
    assert count_accuracy(model, images, own + 1)["accuracy"] == 0.0
    with pytest.raises(ValueError, match="counts"):
        count_accuracy(model, images, counts[:3])


def test_bound_rejects_k0():
    with pytest.raises(ValueError, match="k must be"):
        iw_bound(_models()["baseline"], blob_scenes(2)[0], k=0)


def test_table1_markdown_states_spread_seeds_and_missing_runs():
    from lavae_core.evaluate import PAPER_TABLE1, table1_markdown
    base = {"dataset": "multi-dsprites", "floor": 30.0, "bound_test7": 400.0, "steps": [3000],
            "train_minutes": [20.0, 21.0], "hardware": ["cpu"], "k": 100, "n_images": 1000,
            "n_bound_test": 500, "n_bound_test7": 200, "seeds": [0, 1]}
    rows = [dict(base, model="lavae", bound=150.0, bound_std=2.5, acc_test=0.9, acc_test_std=0.02,
                 acc_test7=0.5, acc_test7_std=None, paper=PAPER_TABLE1["multi-dsprites"]["lavae"]),
            dict(base, model="baseline", bound=90.0, bound_std=None, paper=PAPER_TABLE1["multi-dsprites"]["baseline"])]
    md = table1_markdown(rows, ["no trained model lavae_multi-dsprites_cpu_s2"])
    lavae_line, base_line = [line for line in md.splitlines() if line.startswith("| multi-dsprites")]
    assert "| 150.0 ± 2.5 | 43.9 ± 1.0 |" in lavae_line and "| 90.0 | 45.8 ± 0.7 |" in base_line
    assert "| 90.0% ± 2.0 | 50.0% |" in lavae_line and "| — | — |" in base_line
    assert "| 2 | 3000 | 20.0, 21.0 |" in lavae_line
    assert md.endswith("Not trained yet: no trained model lavae_multi-dsprites_cpu_s2.")


def test_table1_cache_reuses_results_until_the_checkpoint_changes(tmp_path):
    from lavae_core.evaluate import _cached
    ckpt = tmp_path / "lavae_x_cpu_s0" / "weights.pt"
    ckpt.parent.mkdir()
    ckpt.write_bytes(b"weights v1")
    calls = []

    def compute():
        calls.append(1)
        return {"bound": 100.0 + len(calls), "seed": 0}

    params = {"n_images": 10, "k": 100, "n_bound": None, "seed": 0}
    first = _cached(ckpt, params, compute, tmp_path / "cache")
    assert _cached(ckpt, params, compute, tmp_path / "cache") == first and len(calls) == 1
    assert _cached(ckpt, {**params, "k": 10}, compute, tmp_path / "cache")["bound"] == 102.0
    ckpt.write_bytes(b"weights v2 (retrained)")
    assert _cached(ckpt, params, compute, tmp_path / "cache")["bound"] == 103.0
    assert _cached(ckpt, params, compute, None)["bound"] == 104.0   # no cache: always computed
    assert len(list((tmp_path / "cache").glob("lavae_x_cpu_s0-*.json"))) == 3


def test_per_seed_markdown_lists_every_run_with_its_hardware():
    from lavae_core.evaluate import per_seed_markdown
    run = {"step": 3000, "train_wall_s": 120.0, "bound_test": 150.04, "bound_test7": 900.0}
    rows = [{"dataset": "multi-mnist-1k", "model": "lavae", "per_seed": [
                dict(run, seed=0, hardware="Intel Xeon, 2 threads (CPU), torch 2.13.0", acc_test=0.918, acc_test7=0.5),
                dict(run, seed=3, hardware="NVIDIA H200 (CUDA), torch 2.11.0", acc_test=0.9, acc_test7=0.25)]},
            {"dataset": "multi-mnist-1k", "model": "baseline", "per_seed": [dict(run, seed=0, hardware="x")]}]
    lines = per_seed_markdown(rows).splitlines()
    assert len(lines) == 2 + 3
    assert lines[2] == "| multi-mnist-1k | lavae | 0 | 3000 | Intel Xeon | 2.0 | 150.0 | 900.0 | 91.8% | 50.0% |"
    assert "| 3 | 3000 | NVIDIA H200 (CUDA) |" in lines[3]
    assert lines[4].endswith("| — | — |")

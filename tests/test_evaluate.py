"""Evaluation: the importance-sampled bound and count accuracy."""
import numpy as np
import pytest
import torch

from lavae_core.baseline import ConvVAE
from lavae_core.config import make_config
from lavae_core.evaluate import count_accuracy, iw_bound
from lavae_core.lavae import LAVAE
from synthetic import blob_scenes


def _models():
    torch.manual_seed(0)
    lavae = LAVAE(make_config("smoke"))
    # give the untrained location net some peaks so that images have objects to explain
    with torch.no_grad():
        lavae.loc_net[-1].bias.fill_(3.0)
    return {"lavae": lavae.eval(), "baseline": ConvVAE.baseline(make_config("smoke")).eval()}


@pytest.mark.parametrize("name", ["lavae", "baseline"])
def test_k1_bound_matches_elbo_and_k100_is_tighter(name):
    model = _models()[name]
    images = blob_scenes(6, seed=3)[0]
    k100 = iw_bound(model, images, k=100, progress=False)
    # mean log weight over 100 samples = a 100-sample estimate of the ELBO; the K=1 bound averaged
    # over many independent draws estimates the same number
    k1 = [iw_bound(model, images, k=1, seed=s, progress=False)["bound"] for s in range(200)]
    assert abs(np.mean(k1) - k100["neg_elbo"]) < 0.02 * abs(k100["neg_elbo"])
    assert k100["bound"] <= k100["neg_elbo"] + 1e-6          # log-mean-exp >= mean, image by image
    assert (k100["per_image"] <= k100["neg_elbo"] * 10).all() and np.isfinite(k100["per_image"]).all()


def test_lavae_k1_bound_matches_the_training_elbo():
    model = _models()["lavae"]
    x = torch.as_tensor(blob_scenes(6, seed=3)[0]).float()
    torch.manual_seed(0)
    with torch.no_grad():
        train_elbo = torch.stack([model.loss_terms(x, tau=1e-4)["loss"] for _ in range(300)]).mean()
        lw = model.log_weights(x, 300)
    assert float(-lw.mean()) == pytest.approx(float(train_elbo), rel=0.01)


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

"""Config validation: make_config refuses what cannot train, with one line naming the field."""
import warnings

import pytest

from lavae_core.config import DATASETS, PROFILES, make_config


def test_every_profile_data_set_and_model_is_valid():
    for profile in PROFILES:
        for dataset in DATASETS:
            for model in ("lavae", "baseline"):
                make_config(profile, dataset, model)


@pytest.mark.parametrize("overrides,match", [
    (dict(lr="abc"), "config field lr must be a finite number, got 'abc'"),
    (dict(lr=float("nan")), "config field lr must be a finite number"),
    (dict(lr=0.0), "config field lr must be a number > 0"),
    (dict(batch_size=0), "config field batch_size must be a positive integer, got 0"),
    (dict(batch_size=32.5), "config field batch_size must be an integer, got 32.5"),
    (dict(batch_size=True), "config field batch_size must be an integer"),
    (dict(steps=-5), "config field steps must be an integer >= 0, got -5"),
    (dict(seed=-1), "config field seed must be an integer >= 0"),
    (dict(n_train=0), "config field n_train must be None \\(all\\) or a positive integer"),
    (dict(force_n1_start=1.5), "config field force_n1_start must be a probability in \\[0, 1\\]"),
    (dict(channels_last="yes"), "config field channels_last must be True or False"),
    pytest.param(dict(vae_latents=100), "vae_latents must be a multiple of 64",
                 marks=pytest.mark.filterwarnings("ignore:the lavae does not read")),
    (dict(count_window=4), "count_window must be odd"),
    (dict(loc_padding="reflect"), "config field loc_padding must be one of zeros, replicate, got 'reflect'"),
    (dict(count_threshold=-1.0), "count_threshold must be a number >= 0"),
    (dict(aux_sq_weight=-0.5), "aux_sq_weight must be a number >= 0"),
    (dict(tau_end="0.02"), "config field tau_end must be a finite number, got .0.02."),
    (dict(batch_sise=8), "unknown config field 'batch_sise' \\(did you mean 'batch_size'\\?\\)"),
    (dict(zzz=1), "unknown config field 'zzz'$"),
])
def test_bad_values_are_one_line_errors(overrides, match):
    with pytest.raises(ValueError, match=match) as e:
        make_config("cpu", "multi-mnist-1k", **overrides)
    assert "\n" not in str(e.value)


def test_zero_steps_warns_but_is_allowed():
    with pytest.warns(UserWarning, match="steps = 0"):
        assert make_config("smoke", steps=0).steps == 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        make_config("smoke", steps=1)


def test_an_override_the_model_does_not_read_warns_but_is_allowed():
    # gpu_lease.sh passes one --set to both models: a LAVAE field on the baseline (and the
    # baseline's own on LAVAE) must not stop the run, but the user is told it changes nothing.
    with pytest.warns(UserWarning, match="the baseline does not read loc_block, tau_end .a field of LAVAE only."):
        cfg = make_config("cpu", "multi-mnist-1k", "baseline", loc_block=9, tau_end=0.1, lr=2e-4)
    assert cfg.lr == 2e-4
    with pytest.warns(UserWarning, match="the lavae does not read vae_width .a field of the baseline only."):
        make_config("cpu", "multi-mnist-1k", "lavae", vae_width=8)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # shared fields, bookkeeping and speed switches: silent
        make_config("cpu", "multi-mnist-1k", "baseline", seed=3, lr=2e-4, eval_every=10, bf16=True)
        make_config("cpu", "multi-mnist-1k", "lavae", seed=3, loc_block=9, snapshot_every=5)

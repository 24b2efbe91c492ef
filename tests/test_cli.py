"""Every command line ends a bad input with one line, ``<prog>: error: ...``, and a non-zero exit
status: no traceback, no silent success."""
import importlib.util
from pathlib import Path

import pytest

from lavae_core import compare, datasets, evaluate, records, table1, train

ROOT = Path(__file__).resolve().parents[1]


def _script_module(name: str):
    """scripts/<name>.py as a module."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _script(name: str):
    """main() of scripts/<name>.py."""
    return _script_module(name).main


CASES = [
    (train.main, ["--set", "lr=abc"], "config field lr must be a finite number, got 'abc'"),
    (train.main, ["--steps", "-5"], "argument --steps: '-5' is not an integer >= 0"),
    (train.main, ["--set", "batch_size=0"], "config field batch_size must be a positive integer, got 0"),
    (train.main, ["--set", "not_a_field=3"], "unknown config field 'not_a_field'"),
    (train.main, ["--set", "lr"], "--set expects KEY=VALUE"),
    (train.main, ["--set", "aux_floor=2"], "config field aux_floor must be a probability in [0, 1], got 2"),
    (train.main, ["--profile", "gpu"], "argument --profile: invalid choice: 'gpu'"),
    (train.main, ["--max-minutes", "0"], "'0' is not a positive number"),
    (evaluate.main, ["/no/such/checkpoint.pt"], "no checkpoint at /no/such/checkpoint.pt"),
    (evaluate.main, ["x.pt", "--k", "0"], "argument --k: '0' is not a positive integer"),
    (evaluate.main, ["x.pt", "--count-images", "-3"], "'-3' is not a positive integer"),
    (datasets.main, [], "give --name NAME [NAME ...] or --all"),
    (datasets.main, ["--name", "multi-mnist-1k", "--n-images", "0"], "'0' is not a positive integer"),
    (datasets.main, ["--name", "multi-mnist-1k", "--seed", "x"], "'x' is not an integer >= 0"),
    (datasets.main, ["--name", "multi-mnist-1k", "--split", "test", "--n-images", "5", "--mnist-dir",
                     "/no/such/folder"], "MNIST folder /no/such/folder"),
    (records.main, ["--only", "no-such-run"], "no shipped weights.pt"),
    (compare.main, ["/no/such/eval.json", "x.json"], "no evaluation record at /no/such/eval.json"),
    (compare.main, [str(ROOT / "checkpoints/lavae_multi-mnist-1k_cpu_s0"),
                    str(ROOT / "checkpoints/lavae_multi-dsprites_cpu_s0")], "the records are on different data sets"),
    (table1.main, ["--seeds", "-1"], "'-1' is not an integer >= 0"),
    (table1.main, ["--datasets", "mnist"], "invalid choice: 'mnist'"),
    ("benchmark", ["--steps", "0"], "'0' is not a positive integer"),
    ("benchmark", ["--steps-only", "eager", "--trace", "-1"], "'-1' is not an integer >= 0"),
    ("inference_figure", ["/no/such.pt", "out.png"], "no checkpoint at /no/such.pt"),
    ("location_gradient", ["/no/such.pt"], "no checkpoint at /no/such.pt"),
    ("freeze_locations", ["/no/such.pt", "out"], "could not read /no/such.pt"),
    ("freeze_locations", [str(ROOT / "checkpoints/lavae_multi-mnist-1k_cpu_s0/weights.pt"), "out"],
     "is not a LAVAE run's checkpoint.pt with its optimizer state"),
    ("location_gradient", ["x.pt", "--draws", "0"], "'0' is not a positive integer"),
    ("appearance_probe", ["--init", "/no/such.pt", "--out", "x.csv"], "no checkpoint at /no/such.pt"),
    ("appearance_probe", ["--init", str(ROOT / "checkpoints/baseline_multi-mnist-1k_cpu_s0/weights.pt"),
                          "--out", "x.csv"], "is a baseline, not a LAVAE"),
    ("count_threshold", ["/no/such.pt"], "no checkpoint at /no/such.pt"),
    ("maxima_gradient", ["/no/such.pt"], "no checkpoint at /no/such.pt"),
    ("maxima_gradient", ["x.pt", "--tau", "0"], "'0' is not a positive number"),
    ("where_maxima", ["/no/such.pt"], "no checkpoint at /no/such.pt"),
    ("where_maxima", ["x.pt", "--border", "0"], "'0' is not a positive integer"),
    ("count_threshold", ["x.pt", "--gammas", "-1"], "'-1' is not a positive number"),
    ("missed_objects", ["/no/such.pt"], "no checkpoint at /no/such.pt"),
    ("missed_objects", ["x.pt", "--images", "0"], "'0' is not a positive integer"),
    ("missed_objects", [str(ROOT / "checkpoints/baseline_multi-mnist-1k_cpu_s0/weights.pt")],
     "is a baseline, not a LAVAE"),
    ("count_threshold", ["x.pt", "--windows", "0"], "'0' is not a positive integer"),
    ("count_threshold", ["x.pt", "--windows", "9", "10"], "--windows must be odd"),
    ("inference_figure", ["x.pt", "out.png", "--images", "0"], "'0' is not a positive integer"),
    ("inference_figure", [str(ROOT / "checkpoints/baseline_multi-mnist-1k_cpu_s0/weights.pt"), "out.png"],
     "is a baseline, not a LAVAE"),
]


@pytest.mark.parametrize("main,argv,match", CASES, ids=[" ".join(c[1]) or "(none)" for c in CASES])
def test_bad_input_is_a_one_line_error(main, argv, match, capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("LAVAE_DATA_DIR", str(tmp_path))
    main = _script(main) if isinstance(main, str) else main
    with pytest.raises(SystemExit) as e:
        main(argv)
    err = capsys.readouterr().err
    assert e.value.code not in (0, None)
    assert match in err, err
    assert len(err.strip().splitlines()) == 1 and ": error: " in err


def test_a_bad_checkpoint_file_is_one_line(tmp_path, capsys):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(SystemExit) as e:
        evaluate.main([str(junk)])
    assert e.value.code == 1 and capsys.readouterr().err == (
        f"python -m lavae_core.evaluate: error: could not read checkpoint {junk} (UnpicklingError): "
        "is it a .pt file written by lavae_core?\n")


def test_zero_steps_trains_nothing_and_says_so(tmp_path, capsys):
    train.main(["--profile", "smoke", "--dataset", "multi-dsprites", "--steps", "0", "--run-dir",
                str(tmp_path / "run"), "--no-progress"])
    err = capsys.readouterr().err
    assert "python -m lavae_core.train: warning: config steps = 0: training will not take a single step" in err
    assert not (tmp_path / "run" / "checkpoint.pt").exists()
    with pytest.raises(SystemExit):
        train.main(["--profile", "smoke", "--dataset", "multi-dsprites", "--steps", "0", "--run-dir",
                    str(tmp_path / "run"), "--no-progress", "--ship"])
    assert "nothing to ship" in capsys.readouterr().err


def test_help_still_works(capsys):
    with pytest.raises(SystemExit) as e:
        train.main(["--help"])
    assert e.value.code == 0 and "override any config field" in capsys.readouterr().out


def test_freeze_locations_moves_everything_but_the_location_net(tmp_path):
    import torch

    from lavae_core.config import make_config
    train.train(make_config("smoke", "multi-dsprites", steps=4), tmp_path / "run", progress=False)
    before = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    _script("freeze_locations")([str(tmp_path / "run" / "checkpoint.pt"), str(tmp_path / "frozen"), "--steps", "3",
                                  "--k", "2"])
    after = torch.load(tmp_path / "frozen" / "checkpoint.pt", weights_only=True)
    assert after["step"] == 7 and after["wall_s"] > before["wall_s"]
    loc = [k for k in before["model"] if k.startswith("loc_net.") and "running" not in k
           and before["model"][k].is_floating_point()]   # weights; batch norm statistics still follow the data
    rest = [k for k in before["model"] if k.startswith(("app_net.", "sprite.")) and "running" not in k
            and before["model"][k].is_floating_point()]
    assert loc and all(torch.equal(before["model"][k], after["model"][k]) for k in loc)
    assert any(not torch.equal(before["model"][k], after["model"][k]) for k in rest)


def test_maxima_gradient_reads_every_counted_maximum(tmp_path):
    import numpy as np
    import torch

    from lavae_core.checkpoint import load_lavae
    from lavae_core.config import make_config
    from lavae_core.datasets import as_float, generate
    train.train(make_config("smoke", "multi-dsprites", steps=2), tmp_path / "run", progress=False)
    model = load_lavae(tmp_path / "run" / "checkpoint.pt", "cpu")[0].train()
    data = generate("multi-dsprites", 8, n_objects=(0, 3), seed=5, progress=False)
    x = as_float(data.images)
    torch.manual_seed(0)
    rows = _script_module("maxima_gradient").maxima_gradients(
        model, x, data.positions, near=64)
    with torch.no_grad():
        n, _ = model.count(model.infer_loc(x))   # train-mode batch norm, the same batch: the same maxima
    assert len(rows) == int(n.sum()) > 0
    assert all(np.isfinite(g) and g >= 0 for *_, g, _ in rows)
    # with a 64-px radius every maximum of an image with objects is real, every one of an empty image spurious
    assert all(real == (data.counts[i] > 0) for i, *_, real in rows)
    assert model._h_loc.__func__ is type(model)._h_loc   # the hook is gone


def test_where_maxima_sorts_every_extra_maximum(tmp_path, capsys):
    """On a barely trained model the table adds up: every image is counted right, too high or too
    low, and the over-counts made of border maxima alone are among the over-counts."""
    import re

    import torch

    from lavae_core.checkpoint import load_lavae
    from lavae_core.config import make_config
    from lavae_core.datasets import load
    train.train(make_config("smoke", "multi-dsprites", steps=2), tmp_path / "run", progress=False)
    _script("where_maxima")([str(tmp_path / "run" / "checkpoint.pt"), "--images", "8", "--splits", "test",
                             "--near", "64"])
    row = capsys.readouterr().out.strip().splitlines()[-1]
    images, acc, over, under, border, other, border_only = map(float, re.findall(r"[\d.]+", row.split("| test |")[1]))
    assert images == 8 and border_only <= over and over + under <= 8
    assert round(acc / 100 * 8) + over + under == 8
    # with a 64-px radius every maximum of an image with objects is an object's
    model = load_lavae(tmp_path / "run" / "checkpoint.pt", "cpu")[0].eval()
    data = load("multi-dsprites", "test", progress=False)
    with torch.no_grad():
        n, _ = model.count(model.infer_loc(torch.as_tensor(data.images[:8]).float()))
    empty = data.counts[:8] == 0
    assert border + other == int(n.numpy()[empty].sum())

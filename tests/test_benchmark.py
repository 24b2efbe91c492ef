"""scripts/benchmark.py's step profile (--trace): what a GPU lease reads to see where a training
step spends its time."""
import importlib.util
from pathlib import Path

import torch

from lavae_core.config import make_config
from lavae_core.train import make_optimizer, make_train_step, schedules
from lavae_core.checkpoint import build_model

ROOT = Path(__file__).resolve().parents[1]


def _benchmark():
    spec = importlib.util.spec_from_file_location("benchmark", ROOT / "scripts" / "benchmark.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_trace_counts_the_operators_of_a_step_and_ranks_them():
    bench = _benchmark()
    cfg = make_config("smoke", static_slots=True)
    torch.manual_seed(0)
    model = build_model(cfg).train()
    step = make_train_step(model, make_optimizer(model, cfg), cfg, torch.device("cpu"))
    x = (torch.rand(2, cfg.batch_size, 1, 64, 64) < 0.1).float()
    step(x[0], schedules(cfg, 0))   # the first step also creates Adamax's state: not a step's work
    one = bench.trace_steps(step, list(x), schedules(cfg, 0), torch.device("cpu"), 1)
    two = bench.trace_steps(step, list(x), schedules(cfg, 0), torch.device("cpu"), 2)
    # a LAVAE step is thousands of small operators; the count is per step, whatever n
    assert one["per_step"] > 1000 and abs(two["per_step"] / one["per_step"] - 1) < 0.05
    shares = [r["share"] for r in two["top"]]
    assert shares == sorted(shares, reverse=True) and 0 < sum(shares) <= 1.0001
    assert any("convolution" in r["name"] for r in two["top"][:5])   # the res-nets' convolutions cost most

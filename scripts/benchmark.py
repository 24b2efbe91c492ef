"""Throughput and memory benchmark (issue: LAVAE and its baseline, trained and evaluated).

Prints, for a profile and data set: training throughput (images/s) of LAVAE (in warm-up, with the
auxiliary VAE, and after it) and of the baseline, evaluation throughput of the K = 100 importance-
sampled bound, and peak memory; on the CPU and, when one is present, on a GPU. Writes a JSON file.

    python scripts/benchmark.py --profile cpu --dataset multi-mnist-1k --out results/benchmark_cpu.json
"""
from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from lavae_core.cli import Parser, fail, positive_int  # noqa: E402
from lavae_core.checkpoint import CheckpointError, build_model, hardware, pick_device, run_name  # noqa: E402
from lavae_core.config import DATASETS, PROFILES, make_config  # noqa: E402
from lavae_core.datasets import load_split  # noqa: E402
from lavae_core.evaluate import iw_bound  # noqa: E402
from lavae_core.mnist import MNISTError  # noqa: E402
from lavae_core.train import get_model  # noqa: E402


def peak_mb(dev: torch.device) -> float:
    if dev.type == "cuda":
        return torch.cuda.max_memory_allocated(dev) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kB


def sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def train_throughput(cfg, images, dev, steps: int, phase: str) -> float:
    torch.manual_seed(0)
    model = build_model(cfg).to(dev).train()
    opt = torch.optim.Adamax(model.parameters(), lr=1e-4)
    x_all = torch.as_tensor(images).float()
    times = []
    for i in range(steps + 2):  # two warm-up iterations are not timed
        x = x_all[torch.randint(len(x_all), (cfg.batch_size,))].to(dev)
        sync(dev)
        t0 = time.perf_counter()
        if cfg.model == "baseline":
            loss = model.loss_terms(x, 1.0)["loss"].mean()
        elif phase == "warm-up":
            loss = model.loss_terms(x, 0.5, 1.0, 1.0)["loss"].mean()
        else:
            loss = model.loss_terms(x, 0.1, 0.1, 0.0)["loss"].mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sync(dev)
        if i >= 2:
            times.append(time.perf_counter() - t0)
    times.sort()
    return cfg.batch_size / times[len(times) // 2]


def main(argv=None):
    prog = "python scripts/benchmark.py"
    p = Parser(prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--profile", default="cpu", choices=PROFILES)
    p.add_argument("--dataset", default="multi-mnist-1k", choices=DATASETS)
    p.add_argument("--device")
    p.add_argument("--steps", type=positive_int, default=20, help="timed training steps per model")
    p.add_argument("--bound-images", type=positive_int, default=50)
    p.add_argument("--out")
    a = p.parse_args(argv)
    try:
        dev = pick_device(a.device)
        cfg = make_config(a.profile, a.dataset)
        data = load_split(cfg, "test", 1000)
    except (ValueError, MNISTError) as e:
        fail(prog, e)
    res = {"hardware": hardware(dev), "profile": a.profile, "dataset": a.dataset,
           "batch_size": cfg.batch_size, "timed_steps": a.steps}
    res["lavae_warmup_images_per_s"] = train_throughput(cfg, data.images, dev, a.steps, "warm-up")
    res["lavae_images_per_s"] = train_throughput(cfg, data.images, dev, a.steps, "after warm-up")
    bcfg = make_config(a.profile, a.dataset, "baseline")
    res["baseline_images_per_s"] = train_throughput(bcfg, data.images, dev, a.steps, "")
    for name, c in (("lavae", cfg), ("baseline", bcfg)):
        # the bound's cost depends on how many objects LAVAE infers: use the shipped model if any
        try:
            model = get_model(a.dataset, name, a.profile, 0, device=str(dev))[0]
            res[f"{name}_bound_model"] = f"checkpoints/{run_name(name, a.dataset, a.profile, 0)}"
        except CheckpointError:
            torch.manual_seed(0)
            model = build_model(c).to(dev).eval()
            res[f"{name}_bound_model"] = "untrained (no shipped checkpoint)"
        r = iw_bound(model, data.images[:a.bound_images], k=100, progress=False)
        res[f"{name}_bound_k100_images_per_s"] = r["n_images"] / r["wall_s"]
    res["peak_memory_mb"] = peak_mb(dev)
    for k, v in res.items():
        print(f"{k:32s} {v:.1f}" if isinstance(v, float) else f"{k:32s} {v}")
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()

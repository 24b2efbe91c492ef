"""Throughput and memory benchmark (issue: LAVAE and its baseline, trained and evaluated).

Prints, for a profile and data set: training throughput (images/s) of LAVAE (in warm-up, with the
auxiliary VAE, and after it) and of the baseline, evaluation throughput of the K = 100 importance-
sampled bound, and peak memory; on the CPU and, when one is present, on a GPU. Writes a JSON file.

    python scripts/benchmark.py --profile cpu --dataset multi-mnist-1k --out results/benchmark_cpu.json

With ``--steps-only VARIANT ...`` it measures only the training step (issue 9), the way
lavae_core.train runs it (lavae_core.train.make_train_step: forward, backward, Adamax), for each
named execution variant side by side in one process on one device: every variant is warmed up
(compiled) first, then timed in interleaved rounds, so that a busy machine slows all of them alike.
It writes images/s (median over rounds), the ratio to the first variant (the eager step), the
mean inferred count n_hat (it sets the eager step's slot count), and an estimate of the step's
floating-point work and of the fraction of a given peak it reaches:

    python scripts/benchmark.py --profile cpu --threads 1 --steps-only eager static \
        --out results/benchmark_cpu_fast.json
    python scripts/benchmark.py --profile paper --steps-only eager static static+bf16 \
        static+bf16+compile static+bf16+reduce-overhead --peak-tflops 989 --out ...

A variant is ``eager`` or ``+``-joined switches: ``static`` (static_slots), ``bf16``, ``compile``
(torch.compile, default mode), ``reduce-overhead`` (torch.compile with CUDA graphs),
``max-autotune``, ``cl`` / ``nocl`` (channels_last on / off).
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
from lavae_core.cli import Parser, fail, non_negative_int, positive_int  # noqa: E402
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


def variant_config(cfg, variant: str):
    """The config of an execution variant (see the module docstring)."""
    import dataclasses
    kw = {"static_slots": False, "compile": None, "bf16": False}
    if variant != "eager":
        for part in variant.split("+"):
            if part == "static":
                kw["static_slots"] = True
            elif part == "bf16":
                kw["bf16"] = True
            elif part == "compile":
                kw["compile"] = "default"
            elif part in ("reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"):
                kw["compile"] = part
            elif part in ("cl", "nocl"):
                kw["channels_last"] = part == "cl"
            else:
                raise SystemExit(f"unknown variant part {part!r} in {variant!r}")
        if kw["compile"]:
            kw["static_slots"] = True
    return dataclasses.replace(cfg, **kw)


def step_flops(cfg, dev, phase_s) -> float:
    """Floating-point operations of one training step (forward + backward), counted by
    torch.utils.flop_counter on the static step (every slot, so an upper bound of the useful work
    of the eager one); multiply-add = 2 FLOPs; convolutions, matmuls, FFTs not counted."""
    from torch.utils.flop_counter import FlopCounterMode
    from lavae_core.train import make_train_step
    c = variant_config(cfg, "static")
    torch.manual_seed(0)
    model = build_model(c).to(dev).train()
    opt = torch.optim.Adamax(model.parameters(), lr=1e-4)
    step = make_train_step(model, opt, c, dev)
    x = (torch.rand(c.batch_size, c.channels, c.image_size, c.image_size, device=dev) < 0.1).float()
    with FlopCounterMode(display=False) as fc:
        step(x, phase_s)
    return float(fc.get_total_flops())


def trace_steps(step, batches, s, dev, n: int) -> dict:
    """Where one variant's step spends its time: torch.profiler over ``n`` steps (after the timed
    rounds). On a GPU the device kernels, ranked by their own device time, and how many kernels a
    step launches (a step made of thousands of small kernels is bound by their count, not by its
    arithmetic); on the CPU the aten operators by their own CPU time."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile
    cuda = dev.type == "cuda"
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    sync(dev)
    with profile(activities=acts) as prof:
        for i in range(n):
            step(batches[i % len(batches)], s)
        sync(dev)
    events = prof.key_averages()
    if cuda:
        rows = [e for e in events if e.device_type == DeviceType.CUDA]
        t = lambda e: e.self_device_time_total  # noqa: E731
    else:
        rows = [e for e in events if e.key.startswith("aten::")]
        t = lambda e: e.self_cpu_time_total  # noqa: E731
    total = sum(t(e) for e in rows) or 1.0
    top = sorted(rows, key=t, reverse=True)[:25]
    return {"steps": n, "what": "CUDA kernels" if cuda else "aten operators (nested ones included)",
            "per_step": round(sum(e.count for e in rows) / n, 1),
            "time_ms_per_step": round(total / 1e3 / n, 3),
            "top": [{"name": e.key[:120], "calls_per_step": round(e.count / n, 1),
                     "ms_per_step": round(t(e) / 1e3 / n, 4), "share": round(t(e) / total, 4)}
                    for e in top]}


def compare_steps(a, dev) -> dict:
    """Eager and fast training steps side by side (issue 9); see the module docstring."""
    from lavae_core.checkpoint import load_checkpoint
    from lavae_core.train import make_train_step, schedules
    base = make_config(a.profile, a.dataset, a.model)
    phases = {"warm-up": schedules(base, 0),                       # aux VAE on, n forced to 1
              "after-warm-up": schedules(base, base.warmup_steps + base.warmup_anneal_steps)}
    data = load_split(base, "test", 2000).images
    x_all = torch.as_tensor(data).to(dev)
    shipped = None
    if a.model == "lavae":
        try:   # a trained model infers realistic counts (the eager step's slot count follows them)
            shipped = load_checkpoint(f"checkpoints/{run_name('lavae', a.dataset, a.profile, 0)}/weights.pt")[0].state_dict()
        except CheckpointError:
            shipped = None
    res = {"hardware": hardware(dev), "threads": torch.get_num_threads(), "profile": a.profile,
           "dataset": a.dataset, "model": a.model, "batch_size": base.batch_size,
           "weights": "shipped checkpoint (trained)" if shipped is not None else "untrained (seed 0)",
           "steps_per_round": a.steps, "rounds": a.rounds, "warmup_steps": a.warmup, "phases": {}}
    for phase, s in phases.items():
        if (a.model == "baseline" and phase == "warm-up") or phase not in a.phases:
            continue
        runs = {}
        for v in a.steps_only:
            cfg = variant_config(base, v)
            torch.manual_seed(0)
            model = build_model(cfg).to(dev).train()
            if shipped is not None:
                model.load_state_dict(shipped)
            opt = torch.optim.Adamax(model.parameters(), lr=1e-4)
            runs[v] = {"cfg": cfg, "model": model, "step": make_train_step(model, opt, cfg, dev),
                       "times": [], "n_hat": []}
        gen = torch.Generator().manual_seed(0)
        batches = [x_all[torch.randint(len(x_all), (base.batch_size,), generator=gen).to(dev)].float()
                   for _ in range(8)]
        t_compile = {}
        for v, r in runs.items():   # warm-up: compilation, autotuning, allocator
            sync(dev)
            t0 = time.perf_counter()
            for i in range(a.warmup):
                if i == 0:   # same weights, batch and noise: the first loss must agree
                    torch.manual_seed(1234)
                    r["first_loss"] = float(r["step"](batches[0], s)[0])
                else:
                    r["step"](batches[i % 8], s)
            sync(dev)
            t_compile[v] = time.perf_counter() - t0
        for _ in range(a.rounds):
            for v, r in runs.items():
                sync(dev)
                t0 = time.perf_counter()
                for i in range(a.steps):
                    r["step"](batches[i % 8], s)
                sync(dev)
                r["times"].append((time.perf_counter() - t0) / a.steps)
        traces = {v: trace_steps(r["step"], batches, s, dev, a.trace) for v, r in runs.items()} if a.trace else {}
        out = {}
        for v, r in runs.items():
            if a.model == "lavae":
                with torch.no_grad():
                    r["model"].eval()
                    out_n = [float(r["model"].count(r["model"].infer_maps(b)[1])[0].float().mean())
                             for b in batches[:2]]
                    r["model"].train()
            t = sorted(r["times"])[len(r["times"]) // 2]
            out[v] = {"images_per_s": round(base.batch_size / t, 1), "step_ms": round(1e3 * t, 3),
                      "step_ms_all_rounds": [round(1e3 * x, 3) for x in r["times"]],
                      "warmup_s": round(t_compile[v], 2), "first_loss": r.get("first_loss")}
            if a.model == "lavae":
                out[v]["mean_n_hat"] = round(sum(out_n) / len(out_n), 3)
            if v in traces:
                out[v]["trace"] = traces[v]
        first = a.steps_only[0]
        ref_loss = out[first]["first_loss"]
        for v in out:
            out[v]["speed-up_vs_" + first] = round(out[v]["images_per_s"] / out[first]["images_per_s"], 3)
            # a variant whose first loss (same weights, batch, noise) is off computes another function
            dev_rel = abs(out[v]["first_loss"] / ref_loss - 1) if ref_loss else float("inf")
            out[v]["first_loss_rel_diff"] = dev_rel
            out[v]["agrees_with_" + first] = bool(dev_rel < a.loss_rtol)
        try:
            flops = step_flops(base, dev, s)
        except Exception as e:  # noqa: BLE001 - a count is a bonus, never a failure
            flops, out["flop_count_error"] = None, repr(e)
        if flops:
            out["step_gflop"] = round(flops / 1e9, 2)
            if a.peak_tflops:
                out["peak_tflops"] = a.peak_tflops
                for v in a.steps_only:
                    achieved = flops / (out[v]["step_ms"] / 1e3) / 1e12
                    out[v]["achieved_tflops"] = round(achieved, 3)
                    out[v]["fraction_of_peak"] = round(achieved / a.peak_tflops, 5)
        res["phases"][phase] = out
        del runs
    return res


def main(argv=None):
    prog = "python scripts/benchmark.py"
    p = Parser(prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--profile", default="cpu", choices=PROFILES)
    p.add_argument("--dataset", default="multi-mnist-1k", choices=DATASETS)
    p.add_argument("--device")
    p.add_argument("--steps", type=positive_int, default=20, help="timed training steps per model")
    p.add_argument("--bound-images", type=positive_int, default=50)
    p.add_argument("--out")
    p.add_argument("--steps-only", nargs="+", metavar="VARIANT",
                   help="only compare these training-step variants (the first is the reference)")
    p.add_argument("--model", default="lavae", choices=("lavae", "baseline"), help="with --steps-only")
    p.add_argument("--rounds", type=int, default=5, help="with --steps-only: interleaved rounds")
    p.add_argument("--warmup", type=int, default=3, help="with --steps-only: untimed steps per variant")
    p.add_argument("--threads", type=int, help="torch.set_num_threads (CPU)")
    p.add_argument("--phases", nargs="+", default=["warm-up", "after-warm-up"],
                   choices=["warm-up", "after-warm-up"], help="with --steps-only")
    p.add_argument("--loss-rtol", type=float, default=0.02, help="with --steps-only: a variant "
                   "agrees with the first when their first losses differ by less than this")
    p.add_argument("--trace", type=non_negative_int, default=0, metavar="N",
                   help="with --steps-only: also profile N steps of each variant (torch.profiler): "
                   "kernels (operators on the CPU) per step and the 25 costliest")
    p.add_argument("--peak-tflops", type=float, help="with --steps-only: the device's peak, for the "
                   "fraction of it reached")
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    try:
        dev = pick_device(a.device)
    except ValueError as e:
        fail(prog, e)
    torch.set_flush_denormal(True)   # as lavae_core.train does
    if a.steps_only:
        try:
            res = compare_steps(a, dev)
        except MNISTError as e:
            fail(prog, e)
        for phase, out in res["phases"].items():
            for v, r in out.items():
                if isinstance(r, dict):
                    print(f"{phase:14s} {v:40s} {r['images_per_s']:10.1f} img/s  {r['step_ms']:9.2f} ms/step  "
                          f"x{r['speed-up_vs_' + a.steps_only[0]]:.2f}  n_hat {r.get('mean_n_hat', '-')}  "
                          f"peak {r.get('fraction_of_peak', '-')}  warm-up {r['warmup_s']} s  "
                          f"agrees {r['agrees_with_' + a.steps_only[0]]}")
                    if "trace" in r:
                        tr = r["trace"]
                        print(f"{'':14s}   {tr['per_step']} {tr['what']} per step, {tr['time_ms_per_step']} ms; "
                              "costliest: " + "; ".join(f"{x['name'][:48]} {x['share']:.0%} ({x['calls_per_step']}/step)"
                                                        for x in tr["top"][:4]))
        if a.out:
            Path(a.out).parent.mkdir(parents=True, exist_ok=True)
            Path(a.out).write_text(json.dumps(res, indent=1))
        return
    try:
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

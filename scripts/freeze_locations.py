"""Continue a LAVAE run with its location net frozen (issue 11): does the decoder sharpen once the
locations it is trained at stop moving?

Loads a run's full checkpoint (weights, Adamax state, schedules at its step), sets the location
net's learning rate to 0 (its batch-norm statistics still follow the data) and trains on for ``--steps`` steps with the run's own recipe otherwise
(the step of lavae_core.train, fresh batches from ``--seed``). Writes ``OUT/checkpoint.pt`` (same
format; its ``step`` counts the extra steps, its ``wall_s`` adds their training time) and prints
the K-sample bound on the first 200 test images, the diagnostics and the recon by location source
(lavae_core.diagnostics) before and after.

    python scripts/freeze_locations.py runs/exp11/lrloc1e3/checkpoint.pt runs/exp11/frozen --steps 500
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from lavae_core.checkpoint import CheckpointError, build_model, save_checkpoint  # noqa: E402
from lavae_core.cli import Parser, fail, positive_int  # noqa: E402
from lavae_core.config import Config  # noqa: E402
from lavae_core.datasets import as_float, load_split  # noqa: E402
from lavae_core.diagnostics import diagnose, recon_by_location_source  # noqa: E402
from lavae_core.evaluate import iw_bound  # noqa: E402
from lavae_core.train import make_optimizer, make_train_step, schedules  # noqa: E402


def report(model, data, label: str, k: int) -> None:
    d = diagnose(model, data)
    b = iw_bound(model, data.images, k, progress=False)
    print(f"{label}: K = {k} bound {b['bound']:.1f} +- {b['stderr']:.1f} (-ELBO {b['neg_elbo']:.1f}) on "
          f"{b['n_images']} test images; " + "  ".join(f"{k_} {v:.3f}" for k_, v in d.items()), flush=True)
    for name, (recon, iou) in recon_by_location_source(model, data).items():
        print(f"  recon with {name}: {recon:.1f} nats, ink IoU {iou:.3f}", flush=True)


def main(argv=None) -> None:
    prog = "python scripts/freeze_locations.py"
    p = Parser(prog=prog, description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint", help="a run's checkpoint.pt (with its optimizer state)")
    p.add_argument("out", help="folder for the continued checkpoint.pt")
    p.add_argument("--steps", type=positive_int, default=500)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--k", type=positive_int, default=100, help="importance samples of the bound")
    a = p.parse_args(argv)
    try:
        ckpt = torch.load(a.checkpoint, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError) as e:
        fail(prog, f"could not read {a.checkpoint}: {e}")
    if "optimizer" not in ckpt or ckpt.get("config", {}).get("model") != "lavae":
        fail(prog, CheckpointError(f"{a.checkpoint} is not a LAVAE run's checkpoint.pt with its "
                                   "optimizer state (shipped weights.pt files have none)"))
    cfg = Config.from_dict(ckpt["config"])
    torch.manual_seed(a.seed)
    model = build_model(cfg)
    model.load_state_dict(ckpt["model"])
    opt = make_optimizer(model, cfg)
    opt.load_state_dict(ckpt["optimizer"])
    dev = torch.device("cpu")
    step_fn = make_train_step(model, opt, cfg, dev)
    images = torch.as_tensor(load_split(cfg, "train", cfg.n_train, progress=False).images)
    data = load_split(cfg, "test", 200, progress=False)
    report(model, data, f"step {ckpt['step']}", a.k)
    gen = torch.Generator().manual_seed(a.seed)
    model.train()
    step, t0 = int(ckpt["step"]), time.perf_counter()
    for _ in tqdm(range(a.steps), desc="frozen locations"):
        s = schedules(cfg, step)
        opt.param_groups[0]["lr"], opt.param_groups[1]["lr"] = 0.0, s["lr"]
        idx = torch.randint(len(images), (cfg.batch_size,), generator=gen)
        step_fn(as_float(images[idx], dev), s)
        step += 1
    wall = time.perf_counter() - t0
    report(model, data, f"step {step} (the last {a.steps} with the location net frozen, {wall / 60:.1f} min)", a.k)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    save_checkpoint(out / "checkpoint.pt", {**ckpt, "model": model.state_dict(), "optimizer": opt.state_dict(),
                                            "step": step, "wall_s": float(ckpt["wall_s"]) + wall,
                                            "rng": {"torch": torch.get_rng_state(), "data": gen.get_state()}})


if __name__ == "__main__":
    main()

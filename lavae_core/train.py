"""Training loop and command line (Appendix B, "We optimized the model ...", "Training warm-up").

Recipe: Adamax, two parameter groups (the location inference net at lr_loc, decayed exponentially by
``lr_loc_decay`` over ``lr_loc_decay_steps``; the rest at lr); Gumbel-softmax temperature annealed
exponentially from tau_start to tau_end over tau_steps; a warm-up of ``warmup_steps`` with the
auxiliary VAE loss at full weight and n forced to 1 (with probability ``force_n1_start``, 1 in the
paper), then ``warmup_anneal_steps`` over which the auxiliary weight falls linearly to 0 and
P(force n = 1) to ``force_n1_end``. With ``reset_loc_opt`` (cpu profile, not in the paper) the
location net's Adamax state is dropped once, when that anneal ends: the warm-up loss's large
gradients otherwise dominate Adamax's max-gradient memory long after (see config.CPU_CHANGES).
With ``opt_reset_step`` > 0 (not in the paper) the whole Adamax state, both groups, is dropped
once, before that step's update: as if the run went on from that step with a fresh optimiser
(what ``--init-from`` does), in one run; the cpu profile sets 3000 on multi-dSprites.
The baseline's beta rises linearly from 0 to 1 over ``beta_anneal_steps``; LAVAE's kl_app and kl_loc
weight ("kl_weight") over ``kl_anneal_steps`` (0 in the paper profile: none).

At every evaluation metrics.csv also gets the location and appearance diagnostics of
:mod:`lavae_core.diagnostics` (LAVAE, on 200 held-out 0-3-object images).

A run folder holds checkpoint.pt (atomic, exact resume), metrics.csv, config.json and command.txt;
with ``snapshot_every`` also snapshots/step_NNNNNN.pt (weights only, as shipped): the input of
:mod:`lavae_core.curve` (the bound against training minutes).
"""
from __future__ import annotations

import csv
import json
import shlex
import sys
import time
import warnings
from pathlib import Path

import torch
from tqdm.auto import tqdm

from .checkpoint import (CheckpointError, build_model, find_checkpoint, hardware, load_checkpoint,
                         load_weights, pick_device, read_checkpoint, save_checkpoint, ship_run, ship_weights)
from .cli import Parser, fail, non_negative_int, one_line_warnings, parse_value, positive_number
from .config import BOOKKEEPING, DATASETS, PROFILES, SPEED_FIELDS, Config, make_config, recipe_fields
from .counting import count_accuracy
from .datasets import as_float, load_split
from .diagnostics import COLUMNS as DIAG_COLUMNS
from .diagnostics import diagnose
from .mnist import MNISTError

COLUMNS = ["step", "wall_s", "images_per_s", "loss", "elbo", "recon", "kl_app", "kl_loc", "kl_n",
           "kl", "aux_vae", "aux_sq", "tau", "lr_loc", "lr", "aux_weight", "p_force_one", "beta", "kl_weight",
           "count_acc", "count_acc7", *DIAG_COLUMNS]


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; the run stopped and kept its last good checkpoint."""


def schedules(cfg: Config, step: int) -> dict[str, float]:
    """Every annealed quantity of Appendix B at a given step (``aux_floor``, not in the paper,
    keeps the auxiliary weight from falling below it)."""
    frac = lambda n: min(step / n, 1.0) if n > 0 else 1.0  # noqa: E731
    if step < cfg.warmup_steps:
        anneal = 0.0
    elif cfg.warmup_anneal_steps > 0:
        anneal = min((step - cfg.warmup_steps) / cfg.warmup_anneal_steps, 1.0)
    else:
        anneal = 1.0
    return {
        "tau": cfg.tau_start * (cfg.tau_end / cfg.tau_start) ** frac(cfg.tau_steps),
        "lr_loc": cfg.lr_loc * cfg.lr_loc_decay ** (-frac(cfg.lr_loc_decay_steps)),
        "lr": cfg.lr,
        "aux_weight": max(1.0 - anneal, cfg.aux_floor),
        "p_force_one": cfg.force_n1_start + (cfg.force_n1_end - cfg.force_n1_start) * anneal,
        "beta": frac(cfg.beta_anneal_steps),
        "kl_weight": frac(cfg.kl_anneal_steps),
    }


# Execution switches (config.SPEED_FIELDS, issue 9): a run may resume with other values (bit-exact
# resume then holds only for the same values); everything else in the config must match the
# checkpoint's.
COMPILE_BACKEND = "inductor"   # torch.compile's backend; the tests use "aot_eager" (no code generation)


def stat_keys(model_kind: str, aux: bool) -> list[str]:
    """The per-image terms averaged into metrics.csv, in the order of the step's stats vector."""
    if model_kind == "lavae":
        return ["loss", "elbo", "recon", "kl_app", "kl_loc", "kl_n"] + (["aux_vae", "aux_sq"] if aux else [])
    return ["loss", "recon", "kl", "elbo"]


def cpu_has_native_bf16() -> bool:
    """Whether oneDNN runs bf16 natively on this CPU (AVX512-BF16 or AMX), as autocast's CPU path
    needs to be faster than float32. A torch build without the query is taken to have it (no
    warning)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return True


def make_train_step(model, opt, cfg: Config, dev: torch.device):
    """One optimisation step, ``step(x, s) -> stats`` with ``s`` the schedules of that step and
    ``stats`` a device vector of the batch means named by :func:`stat_keys` (the loss first).

    Nothing in it reads a value back to the host, except what the eager LAVAE step needs (its
    slot count; see :meth:`LAVAE.loss_terms`). With ``cfg.static_slots`` (None: on CUDA) the
    step has fixed shapes; with ``cfg.compile`` the loss and its backward are compiled by
    torch.compile in that mode (annealed scalars are passed as 0-dim tensors, so they do not
    recompile; the warm-up and the rest of the run are two graphs). With ``cfg.tf32`` CUDA matmuls
    and convolutions may use TF32; ``cfg.bf16`` is read by the models.
    """
    lavae = cfg.model == "lavae"
    static = (cfg.static_slots if cfg.static_slots is not None else dev.type == "cuda") if lavae else True
    if cfg.bf16 and dev.type == "cpu" and not cpu_has_native_bf16():
        warnings.warn("bf16=True on a CPU without native bf16 (no AMX/AVX512-BF16): bf16 is emulated "
                      "there, measured 10x slower than float32 on the 2-core AMD EPYC "
                      "(results/benchmark_cpu_bf16_lavae_epyc.json); set bf16=false", stacklevel=2)
    if dev.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = bool(cfg.tf32)
        torch.backends.cudnn.allow_tf32 = bool(cfg.tf32)

    def loss_and_stats(x, a, b, c, d, aux: bool):
        if lavae:
            terms = model.loss_terms(x, a, b, c, kl_weight=d, static=static, aux=aux)
        else:
            terms = model.loss_terms(x, a)
        loss = terms["loss"].mean()
        stats = torch.stack([terms[k].detach().float().mean() for k in stat_keys(cfg.model, aux)])
        return loss, stats

    fn = loss_and_stats
    if cfg.compile:
        if not static:
            raise ValueError("compile needs static_slots (the eager step's shapes change every step)")
        import torch._inductor.config as inductor_config
        # the step's random numbers come from PyTorch's own generators, as in the eager step (so
        # a seed gives the same run compiled or not, and compiled steps can be checked against it)
        inductor_config.fallback_random = True
        # each new model (a run, a benchmark variant) is one more entry for dynamo's cache of the
        # same function: allow many, instead of the silent fall-back to eager after 8
        torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 64)
        mode = None if cfg.compile == "default" or COMPILE_BACKEND != "inductor" else cfg.compile
        fn = torch.compile(loss_and_stats, mode=mode, dynamic=False, backend=COMPILE_BACKEND)

    def scalar(v: float):
        # compiled: a 0-dim device tensor (a fill kernel, no copy or sync); eager: the float
        return torch.full((), float(v), device=dev) if cfg.compile else v

    def step(x: torch.Tensor, s: dict) -> torch.Tensor:
        if cfg.compile == "reduce-overhead":
            torch.compiler.cudagraph_mark_step_begin()
        aux = lavae and s["aux_weight"] > 0
        if lavae:
            loss, stats = fn(x, scalar(s["tau"]), scalar(s["p_force_one"]), scalar(s["aux_weight"]),
                             scalar(s["kl_weight"]), aux)
        else:
            loss, stats = fn(x, scalar(s["beta"]), None, None, None, False)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return stats.clone() if cfg.compile == "reduce-overhead" else stats

    return step


def _init_weights(model, cfg: Config, path) -> tuple[int, float]:
    """Load ``path``'s weights (a snapshot or shipped weights) into ``model``; -> its (step, wall_s).
    One-line errors for another model, data set or architecture."""
    src = read_checkpoint(path, "--init-from")
    old = Config.from_dict(src["config"])
    for k in ("model", "dataset"):
        if getattr(old, k) != getattr(cfg, k):
            raise CheckpointError(f"--init-from {path} holds a {k} {getattr(old, k)!r}, not {getattr(cfg, k)!r}")
    step = int(src["step"])
    if src.get("aux_dropped") and cfg.model == "lavae" and step < cfg.warmup_steps + cfg.warmup_anneal_steps:
        raise CheckpointError(f"--init-from {path} holds no auxiliary VAE, which the warm-up trains until "
                              f"step {cfg.warmup_steps + cfg.warmup_anneal_steps} (it is at step {step})")
    load_weights(model, src, f"--init-from {path} does not match this config's architecture")
    return step, float(src.get("wall_s", 0.0))


def make_optimizer(model, cfg: Config) -> torch.optim.Optimizer:
    """Adamax (App. B); for LAVAE two groups: 0 the location net at ``lr_loc``, 1 the rest at ``lr``."""
    if cfg.model != "lavae":
        return torch.optim.Adamax(model.parameters(), lr=cfg.lr)
    groups = model.param_groups()
    return torch.optim.Adamax([{"params": groups["loc"], "lr": cfg.lr_loc},
                               {"params": groups["rest"], "lr": cfg.lr}])


def _open_csv(path: Path, step: int):
    """metrics.csv, truncated to rows at or before ``step`` (so a resumed run continues it)."""
    rows = []
    if path.exists() and step > 0:
        with path.open() as f:
            rows = [r for r in csv.DictReader(f) if int(r["step"]) <= step]
    f = path.open("w", newline="")
    w = csv.DictWriter(f, COLUMNS)
    w.writeheader()
    w.writerows(rows)
    f.flush()
    return f, w


def train(cfg: Config, run_dir: str | Path, device: str | None = None, resume: bool = True,
          progress: bool = True, max_minutes: float | None = None, train_images=None,
          eval_sets: dict | None = None, command: str | None = None, diag_data=None,
          init_from: str | Path | None = None) -> dict:
    """Train ``cfg.model`` on ``cfg.dataset``; returns the last metrics row.

    ``train_images`` (uint8 (N, C, 64, 64)) and ``eval_sets`` ({"count_acc": (images, counts),
    "count_acc7": ...}) default to the data set's splits, and ``diag_data`` (a MultiObjectData with
    ground truth, for the diagnostics) to the first 200 images of the 0-3-object test split. With ``resume`` an existing checkpoint in
    ``run_dir`` is continued exactly (same batches, same noise). ``max_minutes`` stops early (with a
    checkpoint) once that much wall time has been spent in this call. ``init_from`` (a snapshot or
    shipped weights; used only when ``run_dir`` holds no checkpoint to resume) starts from its
    weights and step with a fresh optimiser state and ``cfg``'s recipe, which may differ from the
    snapshot's: to try a change from a point of a long run (snapshots hold no optimiser state).
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    dev = pick_device(device)
    # Gumbel-softmax samples at low temperature are full of denormal floats, which are ~2x slower
    # on CPUs; flushing them to zero changes no result that matters.
    torch.set_flush_denormal(True)
    ckpt_path = run_dir / "checkpoint.pt"

    torch.manual_seed(cfg.seed)  # the initial weights depend on the seed alone
    model = build_model(cfg).to(dev)
    opt = make_optimizer(model, cfg)
    data_gen = torch.Generator().manual_seed(cfg.seed)
    step, wall, origin = 0, 0.0, ""
    if resume and ckpt_path.exists():
        ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        old = Config.from_dict(ckpt["config"])
        # what the model learns must match (fields it does not read may have changed since)
        keep = set(recipe_fields(cfg.model)) - {"steps", *BOOKKEEPING, *SPEED_FIELDS}
        same = {k: v for k, v in old.to_dict().items() if k in keep}
        new = {k: v for k, v in cfg.to_dict().items() if k in same}
        if same != new:
            diff = {k: (same[k], new[k]) for k in same if same[k] != new[k]}
            raise CheckpointError(f"{ckpt_path} was trained with a different config {diff}; use "
                                  "another run folder or --no-resume")
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        torch.set_rng_state(ckpt["rng"]["torch"])
        data_gen.set_state(ckpt["rng"]["data"])
        if dev.type == "cuda" and "cuda" in ckpt["rng"]:
            torch.cuda.set_rng_state(ckpt["rng"]["cuda"], dev)
        step, wall = int(ckpt["step"]), float(ckpt["wall_s"])
    elif init_from is not None:
        step, wall = _init_weights(model, cfg, init_from)
        origin = f" (weights of {init_from}, fresh optimiser)"
    (run_dir / "config.json").write_text(json.dumps(cfg.to_dict(), indent=1))
    if command:
        with (run_dir / "command.txt").open("a") as f:
            f.write(f"{command}\n# on {hardware(dev)}, from step {step}{origin}\n")

    if train_images is None:
        train_images = load_split(cfg, "train", cfg.n_train, progress).images
    if cfg.n_train:
        train_images = train_images[:cfg.n_train]
    train_images = torch.as_tensor(train_images)
    if dev.type == "cuda":   # 190k images are 0.8 GB (x3 for multi-dSprites): keep them on the GPU
        train_images = train_images.to(dev)
    if eval_sets is None and cfg.model == "lavae":
        eval_sets = {}
        for col, split in (("count_acc", "test"), ("count_acc7", "test7")):
            d = load_split(cfg, split, cfg.eval_images, progress)
            eval_sets[col] = (d.images, d.counts)
            if split == "test" and diag_data is None:
                diag_data = d.subset(slice(0, 200))

    def checkpoint():
        rng = {"torch": torch.get_rng_state(), "data": data_gen.get_state()}
        if dev.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(dev)
        save_checkpoint(ckpt_path, {"config": cfg.to_dict(), "model": model.state_dict(),
                                    "optimizer": opt.state_dict(), "step": step, "wall_s": wall,
                                    "rng": rng, "hardware": hardware(dev),
                                    "versions": {"torch": str(torch.__version__)}})

    csv_file, writer = _open_csv(run_dir / "metrics.csv", step)
    train_step = make_train_step(model, opt, cfg, dev)
    # Logged means are summed on the device, one vector per set of terms (the warm-up has two
    # more), and read at log time; so is the finiteness of the loss: first_bad holds the first
    # step whose loss was not finite (-1: none). It is checked before every log row and every
    # checkpoint, so a checkpoint never holds weights updated by a non-finite loss.
    sums: dict[tuple, list] = {}
    first_bad = torch.full((), -1, dtype=torch.long, device=dev)
    n_in_window, t_window, t_mark = 0, 0.0, time.perf_counter()
    t_call = time.perf_counter()
    row: dict = {}
    model.train()
    bar = tqdm(total=cfg.steps, initial=step, desc=f"{cfg.model} {cfg.dataset}", disable=not progress)

    def check_finite(upto: int) -> None:
        bad = int(first_bad)   # the host reads the device here, once per log row or checkpoint
        if bad >= 0:
            means = {k_: round(float(t_[i]) / c_, 4) for keys, (t_, c_) in sums.items()
                     for i, k_ in enumerate(keys)}
            raise NonFiniteLossError(
                f"non-finite loss at step {bad} (means over the steps logged since: {means}); "
                f"stopped before step {upto} was saved. The last good checkpoint is "
                f"{ckpt_path if ckpt_path.exists() else 'none'}; try a lower learning rate "
                "(--set lr=...) and resume from it.")

    try:
        while step < cfg.steps:
            s = schedules(cfg, step)
            if cfg.model == "lavae":
                opt.param_groups[0]["lr"], opt.param_groups[1]["lr"] = s["lr_loc"], s["lr"]
                if cfg.reset_loc_opt and step == cfg.warmup_steps + cfg.warmup_anneal_steps:
                    for p_ in opt.param_groups[0]["params"]:
                        opt.state.pop(p_, None)   # Adamax re-initialises it on this step
                if cfg.opt_reset_step and step == cfg.opt_reset_step:
                    opt.state.clear()   # both groups; Adamax re-initialises them on this step
            idx = torch.randint(len(train_images), (cfg.batch_size,), generator=data_gen)
            x = as_float(train_images[idx.to(train_images.device, non_blocking=True)], dev)
            stats = train_step(x, s)
            keys = tuple(stat_keys(cfg.model, cfg.model == "lavae" and s["aux_weight"] > 0))
            acc = sums.get(keys)
            sums[keys] = [stats.clone(), 1] if acc is None else [acc[0].add_(stats), acc[1] + 1]
            first_bad = torch.where((first_bad < 0) & ~torch.isfinite(stats[0]), step, first_bad)
            step += 1
            n_in_window += 1
            timed_out = max_minutes is not None and time.perf_counter() - t_call > 60 * max_minutes
            do_eval = bool(eval_sets) and (step % cfg.eval_every == 0 or step == cfg.steps or timed_out)
            do_snapshot = cfg.snapshot_every > 0 and step % cfg.snapshot_every == 0
            do_ckpt = step % cfg.ckpt_every == 0 or step == cfg.steps or timed_out or do_snapshot
            if step % cfg.log_every == 0 or do_eval or step == cfg.steps or do_ckpt:
                check_finite(step)   # waits for the device: the time below counts all its work
                now = time.perf_counter()
                wall += now - t_mark
                t_window += now - t_mark
            if step % cfg.log_every == 0 or do_eval or step == cfg.steps:
                means: dict[str, float] = {}
                for keys_, (t_, c_) in sums.items():
                    vals = (t_ / c_).tolist()
                    means.update({k_: round(v_, 4) for k_, v_ in zip(keys_, vals)})
                row = {"step": step, "wall_s": round(wall, 2),
                       "images_per_s": round(n_in_window * cfg.batch_size / max(t_window, 1e-9), 1),
                       **means, **{k_: round(v, 6) for k_, v in s.items()}}
                if do_eval:
                    for col, (ims, cnts) in eval_sets.items():
                        row[col] = round(count_accuracy(model, ims, cnts)["accuracy"], 4)
                    if diag_data is not None:
                        row.update({k_: round(v, 4) for k_, v in diagnose(model, diag_data).items()})
                    model.train()
                writer.writerow({c: row.get(c, "") for c in COLUMNS})
                csv_file.flush()
                bar.set_postfix({k_: row[k_] for k_ in ("loss", "count_acc", "count_acc7") if k_ in row})
                sums, n_in_window, t_window = {}, 0, 0.0
            bar.update(1)
            if do_ckpt:
                checkpoint()
            if do_snapshot:
                ship_weights(ckpt_path, run_dir / "snapshots" / f"step_{step:06d}.pt")
            if step % cfg.log_every == 0 or do_eval or step == cfg.steps or do_ckpt:
                t_mark = time.perf_counter()   # evaluation and checkpoints are not training time
            if timed_out:
                break
    finally:
        bar.close()
        csv_file.close()
    return row


def get_model(dataset: str = "multi-mnist-1k", model: str = "lavae", profile: str = "cpu",
              seed: int = 0, smoke: bool = False, device: str | None = None):
    """The model the notebooks use -> (model, config, checkpoint dict).

    ``smoke``: trains a seconds-long smoke model into a temporary folder (for CI). Otherwise loads
    the shipped weights ``checkpoints/<run_name>/weights.pt`` (or the run folder runs/<run_name>)."""
    if smoke:
        return load_checkpoint(smoke_checkpoint(dataset, model, seed, device), device)
    return load_checkpoint(find_checkpoint(dataset, model, profile, seed), device)


def smoke_checkpoint(dataset: str, model: str, seed: int = 0, device: str | None = None) -> Path:
    """Train a seconds-long smoke model in a new temporary folder; its checkpoint's path."""
    import tempfile
    folder = Path(tempfile.mkdtemp(prefix="lavae_smoke_"))
    train(make_config("smoke", dataset, model, seed=seed), folder, device=device, progress=False)
    return folder / "checkpoint.pt"


def main(argv: list[str] | None = None) -> None:
    prog = "python -m lavae_core.train"
    p = Parser(prog=prog, description="Train LAVAE or the baseline beta-VAE on a data set.")
    p.add_argument("--dataset", default="multi-mnist-1k", choices=DATASETS)
    p.add_argument("--profile", default="cpu", choices=PROFILES)
    p.add_argument("--model", default="lavae", choices=("lavae", "baseline"))
    p.add_argument("--run-dir", help="default: runs/<model>_<dataset>_<profile>_s<seed>")
    p.add_argument("--seed", type=non_negative_int, default=0)
    p.add_argument("--steps", type=non_negative_int, help="override the profile's number of steps")
    p.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: CUDA when available)")
    p.add_argument("--max-minutes", type=positive_number, help="stop (with a checkpoint) after this long")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                   help="override any config field, e.g. --set batch_size=16 lr=5e-4")
    p.add_argument("--no-resume", action="store_true", help="start over even if a checkpoint exists")
    p.add_argument("--init-from", metavar="SNAPSHOT",
                   help="start from these weights and their step (a snapshot or shipped .pt) with a fresh "
                        "optimiser and this command's recipe; ignored when the run folder can be resumed")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--ship", action="store_true",
                   help="afterwards copy weights, metrics.csv and command.txt to checkpoints/<run>/")
    a = p.parse_args(argv)
    overrides = {}
    for kv in a.set:
        if "=" not in kv:
            p.error(f"--set expects KEY=VALUE, got {kv!r}")
        k, v = kv.split("=", 1)
        overrides[k] = parse_value(v)
    if a.steps is not None:
        overrides["steps"] = a.steps
    try:
        with one_line_warnings(prog):
            cfg = make_config(a.profile, a.dataset, a.model, seed=a.seed, **overrides)
        run_dir = Path(a.run_dir or f"runs/{a.model}_{a.dataset}_{a.profile}_s{a.seed}")
        if a.no_resume and (run_dir / "checkpoint.pt").exists():
            (run_dir / "checkpoint.pt").unlink()
        command = "python -m lavae_core.train " + " ".join(shlex.quote(x) for x in (argv or sys.argv[1:]))
        row = train(cfg, run_dir, a.device, resume=not a.no_resume, progress=not a.no_progress,
                    max_minutes=a.max_minutes, command=command, init_from=a.init_from)
    except (ValueError, CheckpointError, MNISTError, NonFiniteLossError) as e:
        fail(prog, e)
    if a.ship:
        if not (run_dir / "checkpoint.pt").exists():
            fail(prog, f"nothing to ship: {run_dir} holds no checkpoint (steps = 0?)")
        print(f"shipped to {ship_run(run_dir)}")
    print(json.dumps({"run_dir": str(run_dir), **row}))


if __name__ == "__main__":
    main()

"""Checkpoints: one dict of plain types and state_dicts, readable with
``torch.load(path, weights_only=True)``, written atomically (temporary file + rename).

Keys: config (plain dict), model (state_dict), optimizer (state_dict, absent in shipped weights),
step, wall_s (training seconds so far), rng (torch generator states, for an exact resume),
hardware, versions.
"""
from __future__ import annotations

import os
import platform
from pathlib import Path

import torch

from .config import Config


class CheckpointError(RuntimeError):
    """A checkpoint is missing, unreadable or does not match the request."""


def pick_device(device: str | None = None) -> torch.device:
    """The given device, else ``$LAVAE_DEVICE``, else CUDA when available, else the CPU."""
    name = device or os.environ.get("LAVAE_DEVICE") or ("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} asked for, but CUDA is not available here")
    return torch.device(name)


def hardware(device: torch.device | str = "cpu") -> str:
    """A one-line description of where a number was measured."""
    device = torch.device(device)
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (CUDA), torch {torch.__version__}"
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {torch.get_num_threads()} threads (CPU), torch {torch.__version__}"


def build_model(cfg: Config) -> torch.nn.Module:
    """The model a config describes: LAVAE or the baseline ConvVAE."""
    from .baseline import ConvVAE
    from .lavae import LAVAE
    model = LAVAE(cfg) if cfg.model == "lavae" else ConvVAE.baseline(cfg)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


def save_checkpoint(path: str | os.PathLike, state: dict) -> Path:
    """Write ``state`` atomically: a kill mid-write leaves the previous checkpoint intact."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)
    return path


def load_checkpoint(path: str | os.PathLike, device: str | torch.device | None = None):
    """Load a checkpoint (or shipped weights) -> (model in eval mode, Config, checkpoint dict)."""
    path = Path(path)
    if path.is_dir():
        path = path / "checkpoint.pt"
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}: train one first (python -m lavae_core.train"
                              " --help) or pass the path of a .pt file")
    ckpt = read_checkpoint(path)
    cfg = Config.from_dict(ckpt["config"])
    model = build_model(cfg)
    load_weights(model, ckpt, f"{path} does not match its config")
    model.to(pick_device(device if device is not None else None)).eval()
    return model, cfg, ckpt


def read_checkpoint(path, what: str = "checkpoint") -> dict:
    """The dict of a checkpoint or weights file (``what`` names it in the one-line CheckpointError
    for an unreadable file or one without 'config'/'model')."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - re-raised with the path
        raise CheckpointError(f"could not read {what} {path} ({type(e).__name__}): is it a .pt file "
                              "written by lavae_core?") from e
    if not isinstance(ckpt, dict) or "config" not in ckpt or "model" not in ckpt:
        raise CheckpointError(f"{path} is not a lavae_core checkpoint (no 'config'/'model' keys)")
    return ckpt


def load_weights(model: torch.nn.Module, ckpt: dict, mismatch: str) -> None:
    """``ckpt``'s weights into ``model`` (its auxiliary VAE may be missing where shipped weights
    dropped it); a missing, unexpected or differently shaped tensor is a CheckpointError
    "<mismatch>: <what differs>"."""
    try:
        missing, unexpected = model.load_state_dict(ckpt["model"], strict=False)
    except RuntimeError as e:   # a shape differs
        raise CheckpointError(f"{mismatch}: {str(e).splitlines()[1].strip()}") from e
    missing = [k for k in missing if not (ckpt.get("aux_dropped") and k.startswith("aux."))]
    if missing or unexpected:
        raise CheckpointError(f"{mismatch}: missing {missing[:5]}, unexpected {unexpected[:5]}")


def load_lavae(path: str | os.PathLike, device: str | torch.device | None = None):
    """:func:`load_checkpoint` for tools that need a LAVAE: CheckpointError if ``path`` holds a
    baseline."""
    model, cfg, ckpt = load_checkpoint(path, device)
    if cfg.model != "lavae":
        raise CheckpointError(f"{path} is a {cfg.model}, not a LAVAE")
    return model, cfg, ckpt


def lavae_for_command(prog: str, path, device=None):
    """:func:`load_lavae` for a command line ``prog``: a missing or unreadable file, or a
    baseline, ends it with one line (``<prog>: error: ...``)."""
    from .cli import fail
    try:
        return load_lavae(path, device)
    except CheckpointError as e:
        fail(prog, e)


def ship_weights(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """Copy a training checkpoint without optimizer and RNG state (the small file we ship)."""
    ckpt = torch.load(Path(src), map_location="cpu", weights_only=True)
    keep = {k: v for k, v in ckpt.items() if k not in ("optimizer", "rng")}
    model = keep["model"]
    if keep["config"].get("model") == "lavae":  # the warm-up VAE is not part of the trained model
        keep["model"] = {k: v for k, v in model.items() if not k.startswith("aux.")}
        keep["aux_dropped"] = True
    return save_checkpoint(dst, keep)


CHECKPOINTS = Path(__file__).resolve().parent.parent / "checkpoints"


def run_name(model: str, dataset: str, profile: str, seed: int) -> str:
    """Name of a run folder and of its shipped weights: ``<model>_<dataset>_<profile>_s<seed>``."""
    return f"{model}_{dataset}_{profile}_s{seed}"


def find_checkpoint(dataset: str, model: str, profile: str, seed: int) -> Path:
    """The file :func:`lavae_core.train.get_model` loads: shipped
    ``checkpoints/<run_name>/weights.pt``, else the
    run folder's ``runs/<run_name>/checkpoint.pt``; CheckpointError (with the command) if neither."""
    name = run_name(model, dataset, profile, seed)
    for path in (CHECKPOINTS / name / "weights.pt", CHECKPOINTS.parent / "runs" / name / "checkpoint.pt"):
        if path.exists():
            return path
    raise CheckpointError(f"no trained model {name}: looked for checkpoints/{name}/weights.pt and runs/{name}/."
                          f" Train it with: python -m lavae_core.train --model {model} --dataset "
                          f"{dataset} --profile {profile} --seed {seed}")


def trained_on(run_dir: str | os.PathLike) -> str:
    """The hardware a run was trained on, as its command.txt records it ("# on <hardware>, from
    step N"; several lines when it was resumed elsewhere), or "" when it records none."""
    path = Path(run_dir) / "command.txt"
    lines = path.read_text().splitlines() if path.exists() else []
    return "; ".join(line[len("# on "):].rsplit(", from step", 1)[0] for line in lines
                     if line.startswith("# on "))


def ship_run(run_dir: str | os.PathLike, dest: str | os.PathLike | None = None) -> Path:
    """Copy a finished run into ``checkpoints/<run name>/``: weights.pt (no optimizer state),
    metrics.csv and command.txt, small enough to commit."""
    import shutil
    run_dir = Path(run_dir)
    out = Path(dest) if dest is not None else CHECKPOINTS / run_dir.name
    out.mkdir(parents=True, exist_ok=True)
    ship_weights(run_dir / "checkpoint.pt", out / "weights.pt")
    for name in ("metrics.csv", "command.txt"):
        if (run_dir / name).exists():
            shutil.copy2(run_dir / name, out / name)
    return out

"""What a training step of LAVAE and of the baseline costs on one clock (issues 8 and 11).

LAVAE's and the baseline's bound-against-steps curves were trained apart (other days, other
machines, runs resumed beside other work), so their own ``wall_s`` are no common clock. This script
times the real training command (``python -m lavae_core.train``) of both models **side by side, one
thread each**, so that a busy machine slows both alike, in two rounds of ``--minutes`` each:

1. LAVAE from step 0 (its warm-up: the auxiliary VAE trained beside it) and the baseline from step 0;
2. LAVAE resumed from a copy of a run past its warm-up (``--lavae-late RUN_DIR``: the steps after
   it, which for the ``score-after-warmup`` recipe use the score-function gradient) and the baseline
   resumed from round 1.

Seconds per step come from each run's metrics.csv (:func:`lavae_core.curve.step_seconds`, median,
evaluations excluded). It writes a JSON file with the hardware, the commit and, per model, the
phases ``[(from_step, s_per_step)]`` that :func:`lavae_core.curve.clock_minutes` turns into minutes:

    python scripts/step_cost.py --lavae-late runs/long/s0 --minutes 4 \
        --out results/curves/step_cost_multi-mnist-1k.json
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from lavae_core.checkpoint import hardware  # noqa: E402
from lavae_core.cli import Parser, fail, non_negative_int, positive_number  # noqa: E402
from lavae_core.config import DATASETS  # noqa: E402
from lavae_core.curve import step_seconds  # noqa: E402
from lavae_core.evaluate import git_commit  # noqa: E402


def side_by_side(commands: list[list[str]], minutes: float, log_dir: Path) -> None:
    """Run the training commands at once, one thread each, each stopped after ``minutes``."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    procs = []
    for i, cmd in enumerate(commands):
        log = open(log_dir / f"cmd{i}_{int(time.time())}.log", "w")
        procs.append((subprocess.Popen([sys.executable, "-m", "lavae_core.train", *cmd,
                                        "--max-minutes", str(minutes), "--no-progress"],
                                       cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT), log))
    for proc, log in procs:
        rc = proc.wait()
        log.close()
        if rc:
            last = (Path(log.name).read_text().strip().splitlines() or ["(no output)"])[-1]
            raise RuntimeError(f"training exited with {rc}: {last}")


def main(argv=None) -> None:
    prog = "python scripts/step_cost.py"
    p = Parser(prog=prog, description="Seconds per training step of LAVAE (warm-up, after it) and "
                                      "of the baseline, timed side by side, one thread each.")
    p.add_argument("--dataset", default="multi-mnist-1k", choices=DATASETS)
    p.add_argument("--seed", type=non_negative_int, default=0)
    p.add_argument("--lavae-late", required=True, help="a LAVAE run folder past its warm-up (copied)")
    p.add_argument("--minutes", type=positive_number, default=4.0, help="per round (two rounds)")
    p.add_argument("--out", required=True, help="JSON file to write")
    a = p.parse_args(argv)
    late = Path(a.lavae_late)
    if not (late / "checkpoint.pt").exists():
        fail(prog, f"{late} holds no checkpoint.pt (a LAVAE run folder past its warm-up is needed)")
    cfg = json.loads((late / "config.json").read_text())
    if cfg.get("model") != "lavae" or cfg.get("dataset") != a.dataset:
        fail(prog, f"{late} is a {cfg.get('model')} run on {cfg.get('dataset')}, not LAVAE on {a.dataset}")
    warm_end = int(cfg["warmup_steps"]) + int(cfg["warmup_anneal_steps"])
    start_late = int(torch.load(late / "checkpoint.pt", map_location="cpu", weights_only=True)["step"])
    if start_late < warm_end:
        fail(prog, f"{late} is at step {start_late}, inside its warm-up (ends at {warm_end})")
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        shutil.copytree(late, tmp / "late", ignore=shutil.ignore_patterns("snapshots"))
        big = ["--steps", "1000000", "--set", "snapshot_every=0", "log_every=5", "eval_every=1000000",
               "ckpt_every=1000000"]
        base = ["--dataset", a.dataset, "--profile", "cpu", "--seed", str(a.seed)]
        lavae0 = [*base, "--run-dir", str(tmp / "early"), *big]
        baseline = [*base, "--model", "baseline", "--run-dir", str(tmp / "baseline"), *big]
        lavae1 = [*base[:-1], str(cfg["seed"]), "--run-dir", str(tmp / "late"), *big]
        try:
            side_by_side([lavae0, baseline], a.minutes, tmp)
            b0 = step_seconds(tmp / "baseline" / "metrics.csv", cfg["batch_size"])
            side_by_side([lavae1, baseline], a.minutes, tmp)
        except RuntimeError as e:
            fail(prog, e)
        early = step_seconds(tmp / "early" / "metrics.csv", cfg["batch_size"], last_step=warm_end)
        after = step_seconds(tmp / "late" / "metrics.csv", cfg["batch_size"], first_step=start_late)
        b1 = step_seconds(tmp / "baseline" / "metrics.csv", cfg["batch_size"], first_step=b0["last_step"])
    out = {
        "what": "seconds per training step, LAVAE and baseline side by side, one thread each",
        "hardware": hardware("cpu").replace(f"{torch.get_num_threads()} threads", "1 thread per run"),
        "commit": git_commit(), "started": started, "dataset": a.dataset, "seed": a.seed,
        "minutes_per_round": a.minutes, "lavae_late_from": str(late), "lavae_late_step": start_late,
        "lavae_late_seed": cfg["seed"],
        "warm_up_end": warm_end,
        "rounds": {"1": {"lavae_warm_up": early, "baseline": b0},
                   "2": {"lavae_after_warm_up": after, "baseline": b1}},
        "phases": {"lavae": [[0, early["s_per_step"]], [warm_end, after["s_per_step"]]],
                   "baseline": [[0, round((b0["s_per_step"] + b1["s_per_step"]) / 2, 4)]]},
    }
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(out["phases"]))


if __name__ == "__main__":
    main()

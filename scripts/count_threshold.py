"""How count accuracy depends on f_count's threshold (issue 8): for each LAVAE checkpoint, the count
accuracy with the threshold at each of ``--gammas`` (units of gamma; the paper's is 4, the config's
``count_threshold`` is what the model trained with) on held-out images of its data set, and in
brackets the share of images counted too high (the rest of the errors are counted too low). With
``--windows`` one row per local-maximum window of f_count (odd, in px; default the config's
``count_window``, what the model trained with).

The held-out images are fresh draws of the training distribution (0-3 objects, seed 100) and of the
7-object set (seed 101), not the test splits of Table 1, so that a threshold chosen here is not
chosen on the test set. Only the location net runs (seconds per thousand images).

    python scripts/count_threshold.py checkpoints/lavae_multi-dsprites_cpu_s0/weights.pt --images 1000
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from lavae_core.checkpoint import lavae_for_command  # noqa: E402
from lavae_core.cli import Parser, fail, positive_int, positive_number  # noqa: E402
from lavae_core.counting import accuracy_of, counts_at, held_out  # noqa: E402


def main(argv=None) -> None:
    prog = "python scripts/count_threshold.py"
    p = Parser(prog=prog, description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoints", nargs="+")
    p.add_argument("--images", type=positive_int, default=1000, help="held-out images per set")
    p.add_argument("--gammas", type=positive_number, nargs="+", default=[1, 1.5, 2, 2.5, 3, 3.5, 4],
                   help="thresholds in units of gamma")
    p.add_argument("--windows", type=positive_int, nargs="+", default=None,
                   help="f_count's local-maximum windows, odd px (default: the checkpoint's count_window)")
    a = p.parse_args(argv)
    if a.windows and any(w % 2 == 0 for w in a.windows):
        fail(prog, f"--windows must be odd (a window centred on a pixel), got {a.windows}")
    print("| checkpoint | trained with | held-out set | window | " + " | ".join(f"{g:g} gamma" for g in a.gammas) + " |")
    print("|---|---|---|---|" + "---|" * len(a.gammas))
    for path in a.checkpoints:
        model, cfg, _ = lavae_for_command(prog, path)
        for name, data in held_out(cfg.dataset, a.images).items():
            windows = a.windows or [cfg.count_window]
            for w, counts in zip(windows, counts_at(model, data.images, a.gammas, windows)):
                cells = [f"{100 * accuracy_of(c, data.counts)['accuracy']:.1f} % "
                         f"({100 * (c > data.counts).mean():.1f} over)" for c in counts]
                trained = f"{cfg.count_threshold:g} gamma, window {cfg.count_window}"
                print(f"| {path} | {trained} | {name} ({a.images}) | {w} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()

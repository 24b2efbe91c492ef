"""Fig. 1-style inference figure (input, reconstruction, locations, sprites) of any LAVAE checkpoint,
on the first ``--images`` test images of its data set: to compare a run with the shipped model.

    python scripts/inference_figure.py checkpoints/lavae_multi-mnist-1k_cpu_s0/weights.pt out.png
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from lavae_core import viz  # noqa: E402
from lavae_core.checkpoint import lavae_for_command  # noqa: E402
from lavae_core.cli import Parser, positive_int  # noqa: E402
from lavae_core.datasets import as_float, load  # noqa: E402


def main(argv=None) -> None:
    prog = "python scripts/inference_figure.py"
    p = Parser(prog=prog, description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint")
    p.add_argument("out", help="the PNG to write")
    p.add_argument("--images", type=positive_int, default=8)
    p.add_argument("--dpi", type=positive_int, default=70)
    a = p.parse_args(argv)
    model, cfg, _ = lavae_for_command(prog, a.checkpoint)
    images = load(cfg.dataset, "test", progress=False).images[:a.images]
    viz.plot_inference(model, as_float(images)).savefig(a.out, dpi=a.dpi)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()

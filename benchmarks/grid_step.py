"""Seconds per training step of the grid family's model (:func:`hyperproj.inr.fit_grid`) on a
full-size Kodak image, at full resolution (finest level held at zero, as the codec trains by
default) and in the half-resolution phase, plus the MLP layout side by side (pixels first, the
old layout, against channels first, the one the model uses).

Run it twice with different ``PYTHONPATH`` checkouts to compare versions; the layout ratio is
taken side by side in one run::

    python benchmarks/grid_step.py --image kodim01 --steps 20 --repeat 3 --threads 1
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from _paths import HINT, kodak_dir
from PIL import Image

from hyperproj.inr import ImageSignal, LatentGrid, fit_grid


def _pixels_first(layers, x):
    for i, layer in enumerate(layers):
        x = F.linear(x, layer.weight, layer.bias)
        if i < len(layers) - 1:
            x = F.relu(x)
    return x


def _channels_first(layers, x):
    for i, layer in enumerate(layers):
        x = torch.addmm(layer.bias[:, None], layer.weight, x)
        if i < len(layers) - 1:
            x = torch.relu_(x)
    return x


def _layout_ms(net: LatentGrid, n: int, repeat: int) -> tuple[float, float]:
    levels = net.config["levels"]
    xp = torch.randn(n, levels, requires_grad=True)
    xc = xp.detach().T.contiguous().requires_grad_()
    out = []
    for fn, x in ((_pixels_first, xp), (_channels_first, xc)):
        fn(net.synthesis, x).sum().backward()  # warm
        t = time.perf_counter()
        for _ in range(repeat):
            fn(net.synthesis, x).sum().backward()
        out.append(1e3 * (time.perf_counter() - t) / repeat)
    return out[0], out[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--image", default="kodim01", help="Kodak image name (from ../shared/data/kodak or --data)")
    ap.add_argument("--data", default=None, help="folder with the Kodak PNGs")
    ap.add_argument("--steps", type=int, default=20, help="training steps per timing")
    ap.add_argument("--repeat", type=int, default=3, help="timings per phase (the median is printed)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    path = Path(args.data) if args.data else kodak_dir()
    path = path / f"{args.image}.png"
    if not path.is_file():
        sys.exit(f"grid_step: no image {path} ({HINT})")
    img = torch.tensor(np.asarray(Image.open(path).convert("RGB")) / 255.0, dtype=torch.float32)
    sig = ImageSignal(img)
    h, w, _ = img.shape
    rows = {}
    for phase, coarse in (("full resolution", 0.0), ("half resolution", 1.0)):
        times = []
        for r in range(args.repeat):
            torch.manual_seed(r)
            net = LatentGrid(h, w, levels=7, hidden=(16, 16), arm_hidden=12)
            fit_grid(net, sig, steps=2, coarse_share=coarse, freeze_finest=True)  # warm
            t = time.perf_counter()
            fit_grid(net, sig, steps=args.steps, coarse_share=coarse, freeze_finest=True)
            times.append((time.perf_counter() - t) / args.steps)
        rows[phase] = sorted(times)[len(times) // 2]
    net = LatentGrid(h, w, levels=7, hidden=(16, 16), arm_hidden=12)
    pf, cf = _layout_ms(net, h * w, args.repeat)
    print(f"# {args.image} {h}x{w}, LatentGrid levels 7, synthesis 16-16, ARM 12; {args.threads} thread(s)")
    for phase, s in rows.items():
        print(f"{phase:16s} {1e3 * s:8.1f} ms/step (median of {args.repeat} x {args.steps} steps)")
    print(f"synthesis fwd+bwd at full resolution: pixels first {pf:.1f} ms, channels first {cf:.1f} ms, "
          f"ratio {pf / cf:.2f}x")


if __name__ == "__main__":
    main()

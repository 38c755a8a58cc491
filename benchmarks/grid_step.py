"""Seconds per training step of the grid family's model (:func:`hyperproj.inr.fit_grid`) on a
full-size Kodak image, at full resolution (finest level held at zero, as the codec trains by
default) and in the half-resolution phase, plus the MLP layout side by side (pixels first, the
old layout, against channels first, the one the model uses) and the ×2 upsampling side by side
(the depthwise convolutions it used until 2026-12-07 against the banded GEMMs it uses now).

Run it twice with different ``PYTHONPATH`` checkouts to compare versions; the layout ratio is
taken side by side in one run, and so is the heap policy of :mod:`hyperproj._heap` with
``--heap`` (glibc's own policy against freed memory kept for reuse)::

    python benchmarks/grid_step.py --image kodim01 --steps 20 --repeat 3 --threads 1
    python benchmarks/grid_step.py --heap --steps 10 --repeat 4 --threads 1

Only the first ``system`` run of ``--heap`` sees glibc's pristine state; later ones follow a
retained block and start from the thresholds it restores (mmap 32 MiB, trim 64 MiB). To compare
pristine processes, run twice with ``HYPERPROJ_HEAP=system`` and without. The warm-up and the
timed call share one retained block, as the steps of one long run do (leaving a block returns
the kept memory, and the next call's first step faults it in again).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from _paths import HINT, kodak_dir
from PIL import Image

from hyperproj._heap import retained_heap
from hyperproj.inr import ImageSignal, LatentGrid, fit_grid
from hyperproj.inr import _grid_int as gi
from hyperproj.inr.latent_grid import up2


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


def _up2_conv(x: torch.Tensor) -> torch.Tensor:
    """The ×2 filter as depthwise convolutions: the model's implementation until 2026-12-07."""
    c, h, w = x.shape
    k = torch.tensor([gi.UP_EVEN, gi.UP_ODD], dtype=x.dtype) / 128.0
    xp = x[None].index_select(3, torch.arange(-2, w + 2).clamp(0, w - 1))
    y = F.conv2d(xp, k.view(2, 1, 1, 5).repeat(c, 1, 1, 1), groups=c)
    y = y.view(c, 2, h, w).permute(0, 2, 3, 1).reshape(c, h, 2 * w)
    yp = y[None].index_select(2, torch.arange(-2, h + 2).clamp(0, h - 1))
    z = F.conv2d(yp, k.view(2, 1, 5, 1).repeat(c, 1, 1, 1), groups=c)
    return z.view(c, 2, h, 2 * w).permute(0, 2, 1, 3).reshape(c, 2 * h, 2 * w)


def _up2_ms(shape: tuple[int, int, int], repeat: int) -> tuple[float, float]:
    """Forward + backward of the ×2 filter, convolutions against the model's banded GEMMs,
    interleaved; the median of ``repeat`` rounds of 5 calls each."""
    x = torch.randn(*shape, requires_grad=True)
    times: dict[str, list[float]] = {"conv": [], "gemm": []}
    for _ in range(repeat):
        for name, fn in (("conv", _up2_conv), ("gemm", up2)):
            fn(x).sum().backward()  # warm
            t = time.perf_counter()
            for _ in range(5):
                y = fn(x)
                y.backward(torch.ones_like(y))
            times[name].append(1e3 * (time.perf_counter() - t) / 5)
    conv, gemm = (sorted(v)[len(v) // 2] for v in times.values())
    return conv, gemm


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
    ap.add_argument("--heap", action="store_true",
                    help="time fit_grid with glibc's own heap policy (HYPERPROJ_HEAP=system) and with the "
                         "retained heap side by side, alternating, and print the ratio")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    path = Path(args.data) if args.data else kodak_dir()
    path = path / f"{args.image}.png"
    if not path.is_file():
        sys.exit(f"grid_step: no image {path} ({HINT})")
    img = torch.tensor(np.asarray(Image.open(path).convert("RGB")) / 255.0, dtype=torch.float32)
    sig = ImageSignal(img)
    h, w, _ = img.shape
    policies = ("system", "retain") if args.heap else (os.environ.get("HYPERPROJ_HEAP", "retain"),)
    rows = {}
    for phase, coarse in (("full resolution", 0.0), ("half resolution", 1.0)):
        times: dict[str, list[float]] = {p: [] for p in policies}
        for r in range(args.repeat):
            for policy in policies if r % 2 == 0 else policies[::-1]:  # alternate which goes first
                os.environ["HYPERPROJ_HEAP"] = policy
                torch.manual_seed(r)
                net = LatentGrid(h, w, levels=7, hidden=(16, 16), arm_hidden=12)
                with retained_heap():  # held across both calls: the steady state of a long run
                    fit_grid(net, sig, steps=2, coarse_share=coarse, freeze_finest=True)  # warm
                    t = time.perf_counter()
                    fit_grid(net, sig, steps=args.steps, coarse_share=coarse, freeze_finest=True)
                    times[policy].append((time.perf_counter() - t) / args.steps)
        rows[phase] = {p: sorted(v)[len(v) // 2] for p, v in times.items()}
    net = LatentGrid(h, w, levels=7, hidden=(16, 16), arm_hidden=12)
    pf, cf = _layout_ms(net, h * w, args.repeat)
    print(f"# {args.image} {h}x{w}, LatentGrid levels 7, synthesis 16-16, ARM 12; {args.threads} thread(s)")
    for phase, by in rows.items():
        cells = ", ".join(f"heap {p}: {1e3 * s:6.1f}" for p, s in by.items())
        ratio = f"  ratio system/retain {by['system'] / by['retain']:.2f}x" if args.heap else ""
        print(f"{phase:16s} {cells} ms/step (median of {args.repeat} x {args.steps} steps){ratio}")
    print(f"synthesis fwd+bwd at full resolution: pixels first {pf:.1f} ms, channels first {cf:.1f} ms, "
          f"ratio {pf / cf:.2f}x")
    shape = (net.config["levels"] - 1, *net.sizes[1])  # levels 1.. at half resolution → full
    with retained_heap():  # as inside fit_grid
        conv, gemm = _up2_ms(shape, args.repeat)
    print(f"x2 upsampling fwd+bwd of {shape}: depthwise convolutions {conv:.1f} ms, banded GEMMs {gemm:.1f} ms, "
          f"ratio {conv / gemm:.2f}x")


if __name__ == "__main__":
    main()

"""The grid family's over-budget fallback on one trained model: the shrink towards the ARM's
predictions it uses now against the two it used before, at budgets under the trained model's file.

Trains a grid model on one image as ``compress`` does (same sizes, λ, bit target, clock or
``--steps``), then for each ``--over`` share codes the file to fit ``(1 - over)`` of its size three
ways: with :meth:`Grid.coarser <hyperproj.codec.families.grid.Grid.coarser>` (every latent moved by
``s`` towards the location the integer ARM predicts for it, in decoding order, the smallest ``s``
that fits), with the shrink towards zero used before commit 7701483 (``sign(y)·floor(max(|y| − s + ½, 0))``,
the first ``s`` of the same ladder that fits) and with the dead zone used before that (latents
under a threshold ``t`` set to zero, ``t`` by bisection on real encodes); the two old searches are
reproduced here for the comparison, the library no longer uses them. Prints bytes and the decoded
file's PSNR for each.

Usage::

    python benchmarks/grid_fallback.py --image kodim17 --budget 120 --threads 1
    python benchmarks/grid_fallback.py --image kodim04 --over 0.01 0.05 0.2
    python benchmarks/grid_fallback.py --image kodim23 --steps 600 --over 0.01 0.03 0.1 0.2

``--data`` defaults to ``../shared/data/kodak`` beside the checkout (see ``benchmarks/_paths.py``).
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import numpy as np
import torch
from _paths import HINT, kodak_dir

from hyperproj import codec
from hyperproj.codec.families import grid as grid_family
from hyperproj.inr import ImageSignal


def dead_zone_search(net, q: tuple[int, int], budget: int) -> tuple[float, bytes] | None:
    """The old fallback: the threshold ``t`` (latents under it in magnitude become 0) found by
    bisection on real encodes, which assumes the file shrinks as ``t`` grows.

    Examples:
        >>> from hyperproj.inr import LatentGrid
        >>> dead_zone_search(LatentGrid(4, 4, levels=2, hidden=(4,)), (8, 8), 10) is None
        True
    """
    ys = [y.detach().numpy().astype(np.float64) for y in net.latents]

    def latents(t: float) -> list[np.ndarray]:
        return [np.where(np.abs(y) >= t, np.round(y), 0).astype(np.int64) for y in ys]

    top = max(float(np.abs(y).max()) for y in ys) + 1.0
    data = grid_family.encode_grid(net, *q, latents=latents(top))
    if len(data) > budget:
        return None
    lo, hi, best = 0.5, top, (top, data)
    if top > 2.0:
        data = grid_family.encode_grid(net, *q, latents=latents(2.0))
        if len(data) <= budget:
            hi, best = 2.0, (2.0, data)
        else:
            lo = 2.0
    for _ in range(7):
        mid = 0.5 * (lo + hi)
        data = grid_family.encode_grid(net, *q, latents=latents(mid))
        if len(data) <= budget:
            hi, best = mid, (mid, data)
        else:
            lo = mid
    return best


def zero_shrink_search(net, q: tuple[int, int], budget: int) -> tuple[float, bytes] | None:
    """The fallback before commit 7701483: every latent moved towards zero by ``s``, the first ``s`` of
    the ladder whose file fits (then all latents zero).

    Examples:
        >>> from hyperproj.inr import LatentGrid
        >>> zero_shrink_search(LatentGrid(4, 4, levels=2, hidden=(4,)), (8, 8), 10) is None
        True
    """
    ys = [y.detach().numpy().astype(np.float64) for y in net.latents]
    top = max(float(np.abs(y).max()) for y in ys) + 1.0
    for s in (*[v for v in grid_family.LATENT_SHRINKS if v < top], top):
        data = grid_family.encode_grid(net, *q, latents=grid_family.shrink_latents(ys, s))
        if len(data) <= budget:
            return s, data
    return None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=None, help="folder of Kodak PNGs")
    p.add_argument("--image", default="kodim17", help="image name in --data (default kodim17)")
    p.add_argument("--bpp", type=float, default=0.3, help="target bits per pixel (default 0.3)")
    p.add_argument("--budget", type=float, default=120.0, help="seconds of training (default 120)")
    p.add_argument("--steps", type=int, default=None, help="train this many steps instead of --budget seconds")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--over", type=float, nargs="+", default=[0.01, 0.03, 0.1],
                   help="how far over budget the file is, as shares of it (default 0.01 0.03 0.1)")
    a = p.parse_args(argv)
    if a.bpp <= 0 or a.budget <= 0 or a.threads < 1 or not all(0 < o < 1 for o in a.over):
        sys.exit("grid_fallback: --bpp and --budget must be > 0, --threads >= 1, --over in (0, 1)")
    path = (a.data or kodak_dir()) / f"{a.image}.png"
    if not path.is_file():
        sys.exit(f"grid_fallback: no {path} ({HINT})")
    torch.set_num_threads(a.threads)
    sig = ImageSignal.from_file(path)
    job = codec.job.Job.create(sig, bpp=a.bpp, time_budget=None if a.steps else a.budget, steps=a.steps, progress=False)
    coder = grid_family.Grid(job)
    net = coder.build()
    coder.train(net)
    full = coder.encode(net)
    q = coder._choose_steps(net)
    print(f"{a.image}: trained {job.training.steps} steps, file {len(full)} bytes as rounded, "
          f"{sig.evaluate(codec.decompress(full))['psnr']:.2f} dB")
    for over in a.over:
        budget = int((1 - over) * len(full))
        old = dead_zone_search(net, q, budget)
        zero = zero_shrink_search(net, q, budget)
        other = grid_family.Grid(job)
        other.q = q  # the same network steps as the old searches'
        new = other.coarser(copy.deepcopy(net), budget)

        def show(name: str, found: tuple[float, bytes] | None) -> str:
            return "-" if found is None else (
                f"{name}={found[0]:.3g} {len(found[1])} B {sig.evaluate(codec.decompress(found[1]))['psnr']:.2f} dB")

        print(f"  {over:.0%} over (budget {budget} B): dead zone {show('t', old)} | towards zero {show('s', zero)}"
              f" | towards the predictions (now) {show('s', None if new is None else (other.latent_shrink, new))}",
              flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

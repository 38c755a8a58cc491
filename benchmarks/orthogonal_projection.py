"""The orthogonal projection against fastfood in the codec, and their step cost, side by side.

For each image and rate, ``compress(image, bpp, steps=N, projection=kind)`` for every kind in
``--kinds`` (every other setting the default), in one run: PSNR of the decoded file, its rate, the
latent's share of the projected weights (``projection="auto"`` picks orthogonal from
``ORTHOGONAL_MIN_SHARE`` up) and the difference to the first kind. With ``--budget S`` each encode
gets ``S`` seconds instead of a step count (then the steps each kind made are printed too).

Then the projection's own cost: forward + backward of ``B z`` for a SIREN 10 × 48's weights at
100 / 50 / 10 % latent, the kinds interleaved, median of ``--rounds`` rounds, ratio to fastfood.

Images: scikit-image photos by name (centre crop, ``--size`` px) or Kodak images by name
(``kodimNN``, full size, from ``--data``; skipped with a message where absent).

Usage::

    python benchmarks/orthogonal_projection.py                       # demo image + 3 photos, ~40 min
    python benchmarks/orthogonal_projection.py --images astronaut --rates 1,2 --steps 300
    python benchmarks/orthogonal_projection.py --images kodim23 --rates 0.3 --budget 120
    python benchmarks/orthogonal_projection.py --timing-only
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings
from pathlib import Path

import torch
from _paths import HINT, kodak_dir

import hyperproj
from hyperproj import codec
from hyperproj.inr import Siren
from hyperproj.inr.signals import ImageSignal
from hyperproj.optim import find_hypermodel


def load(name: str, size: int, data: Path) -> ImageSignal | None:
    if name.startswith("kodim"):
        path = data / f"{name}.png"
        if not path.exists():
            print(f"  {name}: {path} not found, skipped ({HINT})")
            return None
        return ImageSignal.from_file(path)
    import skimage.data

    sig = ImageSignal.from_array(getattr(skimage.data, name)())
    h, w, _ = sig.shape
    return sig.center_crop(min(h, w)).resize(size)


def encode(sig: ImageSignal, bpp: float, kind: str, steps: int | None, budget: float | None) -> dict:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        res = codec.compress(sig, bpp=bpp, steps=steps, time_budget=budget, progress=False, projection=kind,
                             family="doh")
    hyper = find_hypermodel(res.model)
    r = res.report
    return {"psnr": r["psnr"], "bpp": r["bpp"], "steps": r.get("steps"), "share": hyper.latent_dim / hyper.num_projected}


def timing(kinds: list[str], rounds: int) -> None:
    net = Siren(2, 48, 8, 3)
    P = hyperproj.reparametrize(net, 1, seed=0).num_projected
    print(f"\n## projection forward + backward, SIREN 10 x 48 ({P} weights), median of {rounds} interleaved rounds")
    print("| latent | " + " | ".join(f"{k} ms" for k in kinds) + " | " + " | ".join(f"{k} / {kinds[0]}" for k in kinds[1:]) + " |")
    print("|---|" + "---:|" * (2 * len(kinds) - 1))
    for frac in (1.0, 0.5, 0.1):
        projs = {k: hyperproj.reparametrize(net, max(1, int(frac * P)), seed=0, projection=k).projection for k in kinds}
        zs = {k: torch.randn(p.latent_dim, requires_grad=True) for k, p in projs.items()}
        times: dict[str, list[float]] = {k: [] for k in kinds}
        for _ in range(rounds):
            for k in kinds:
                t = time.perf_counter()
                for _ in range(10):
                    projs[k](zs[k]).sum().backward()
                times[k].append((time.perf_counter() - t) / 10)
        med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
        print(f"| {frac:.0%} | " + " | ".join(f"{med[k]:.2f}" for k in kinds) + " | "
              + " | ".join(f"{med[k] / med[kinds[0]]:.2f}x" for k in kinds[1:]) + " |", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", default="astronaut,coffee,chelsea,rocket",
                    help="comma list: scikit-image names and/or kodimNN (default astronaut,coffee,chelsea,rocket)")
    ap.add_argument("--rates", default="0.5,1,2", help="comma list of bpp (default 0.5,1,2)")
    ap.add_argument("--kinds", default="fastfood,orthogonal", help="projection kinds, the first is the reference")
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--steps", type=int, default=None, help="training steps per encode (default 1500)")
    mode.add_argument("--budget", type=float, default=None, help="seconds per encode instead of steps")
    ap.add_argument("--size", type=int, default=256, help="crop side of scikit-image photos (default 256)")
    ap.add_argument("--data", type=Path, default=kodak_dir(), help=f"Kodak folder (default {kodak_dir()})")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    ap.add_argument("--rounds", type=int, default=15, help="timing rounds (default 15)")
    ap.add_argument("--timing-only", action="store_true", help="only the projection timing")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    kinds = [k.strip() for k in a.kinds.split(",") if k.strip()]
    steps = None if a.budget is not None else (a.steps or 1500)
    how = f"{a.budget:g} s per encode" if a.budget is not None else f"{steps} steps per encode"
    print(f"# orthogonal vs fastfood in the codec: {how}, {a.threads} thread(s), hyperproj {hyperproj.__version__}")
    if not a.timing_only:
        cols = " | ".join(f"{k} bpp / dB" + (" / steps" if a.budget is not None else "") for k in kinds)
        print("| image | target bpp | n / P | " + cols + " | " + " | ".join(f"{k} − {kinds[0]}" for k in kinds[1:]) + " |")
        print("|---|---:|---:|" + "---:|" * (2 * len(kinds) - 1))
        diffs: list[float] = []
        for name in [s.strip() for s in a.images.split(",") if s.strip()]:
            sig = load(name, a.size, a.data)
            if sig is None:
                continue
            for bpp in [float(r) for r in a.rates.split(",")]:
                rows = {k: encode(sig, bpp, k, steps, a.budget) for k in kinds}
                ref = rows[kinds[0]]["psnr"]
                cells = " | ".join(f"{r['bpp']:.3f} / {r['psnr']:.2f}" + (f" / {r['steps']}" if a.budget is not None else "")
                                   for r in rows.values())
                d = [rows[k]["psnr"] - ref for k in kinds[1:]]
                diffs += d[:1]
                print(f"| {name} | {bpp:g} | {rows[kinds[0]]['share']:.2f} | {cells} | "
                      + " | ".join(f"{x:+.2f}" for x in d) + " |", flush=True)
        if diffs:
            print(f"\nmean {kinds[1] if len(kinds) > 1 else ''} − {kinds[0]}: {statistics.mean(diffs):+.2f} dB over {len(diffs)} encodes")
    timing(kinds, a.rounds)


if __name__ == "__main__":
    main()

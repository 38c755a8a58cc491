"""Fit a natural image with SIREN and INCODE, each wrapped by hyperproj in two lines.

    python examples/fit_image.py --quick            # < 30 s: 64x64 crop, few steps
    python examples/fit_image.py --steps 2000 --size 256 --latent 0.6 --out out/

Uses scikit-image's bundled photos (no download); ``--image PATH`` fits your own file.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import skimage.data
import torch

import hyperproj
from hyperproj.inr import ImageSignal, Incode, Siren, fit


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--image", default="astronaut", help="skimage.data name (astronaut, camera, coffee, chelsea) or a file path")
    ap.add_argument("--size", type=int, default=128, help="longer side after resizing")
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--width", type=int, default=40)
    ap.add_argument("--layers", type=int, default=9, help="hidden layers")
    ap.add_argument("--latent", type=float, default=1.0, help="latent size as a fraction of the projected weights")
    ap.add_argument("--lr", type=float, default=None, help="learning rate (default: fit's, tied to the width and depth)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None, help="folder for the reconstructions")
    ap.add_argument("--quick", action="store_true", help="tiny run (< 30 s)")
    args = ap.parse_args()
    if args.quick:
        args.size, args.steps, args.width, args.layers = 40, 40, 32, 3

    if Path(args.image).is_file():
        signal = ImageSignal.from_file(args.image, mode="RGB")
    else:
        signal = ImageSignal.from_array(getattr(skimage.data, args.image)())
    signal = signal.resize(args.size)
    print(f"image {args.image}: {signal.shape}")

    torch.manual_seed(args.seed)
    base = Siren(2, args.width, args.layers, signal.shape[2])
    n_weights = sum(p.numel() for n, p in base.named_parameters() if n.endswith("weight"))
    latent = max(1, int(args.latent * n_weights))

    results = {}
    # --- SIREN, two lines ---
    siren = hyperproj.reparametrize(Siren(2, args.width, args.layers, signal.shape[2]), latent_dim=latent, seed=args.seed)
    results["siren"] = (siren, fit(siren, signal, steps=args.steps, lr=args.lr, progress=not args.quick))
    # --- INCODE, two lines (only the composer is projected; fit hands the image to the harmonizer) ---
    incode = hyperproj.reparametrize(Incode(2, args.width, args.layers, signal.shape[2], harmonizer_resolution=32 if args.quick else 128), latent_dim=latent, seed=args.seed)
    results["incode"] = (incode, fit(incode, signal, steps=args.steps, lr=args.lr, progress=not args.quick))

    for name, (model, hist) in results.items():
        m = signal.evaluate(model)
        print(f"{name:7s} latent {latent} / {n_weights} weights: PSNR {m['psnr']:.2f} dB, SSIM {m['ssim']:.3f} "
              f"(best at step {hist.best[0]}, {hist.seconds[-1]:.1f} s)")
        if args.out is not None:
            args.out.mkdir(parents=True, exist_ok=True)
            signal.to_image(signal.render(model)).save(args.out / f"{name}.png")
    if args.out is not None:
        signal.to_image(signal.values).save(args.out / "original.png")
        print(f"wrote {args.out}/")


if __name__ == "__main__":
    t = time.perf_counter()
    main()
    print(f"done in {time.perf_counter() - t:.1f} s")

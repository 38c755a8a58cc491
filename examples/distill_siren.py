"""Distill a trained SIREN into D'OH latents of 25/50/75/100 % of its weights (the D'OH paper's
Fig. 9 experiment, small): PSNR right after the least-squares projection and after fine-tuning.

    python examples/distill_siren.py --quick          # 64x64 crop, ~1 minute on 2 CPU cores
    python examples/distill_siren.py --size 512 --steps 2000 --finetune 1000

The full-size version with both weightings and the speed/memory table is
``benchmarks/distill.py``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import skimage.data
import torch

import hyperproj
from hyperproj.inr import ImageSignal, Siren, fit


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--steps", type=int, default=1000, help="pretraining steps")
    ap.add_argument("--finetune", type=int, default=500, help="fine-tuning steps per latent size")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", type=Path, default=None, help="folder for the fine-tuned renders")
    args = ap.parse_args()
    if args.quick:
        args.size, args.steps, args.finetune = 64, 200, 100

    signal = ImageSignal.from_array(skimage.data.astronaut()).resize(args.size).center_crop(args.size)
    torch.manual_seed(0)
    siren = Siren(2, 32, 3, 3)                      # the paper's Fig. 9 network: 3 hidden layers of 32
    fit(siren, signal, args.steps, progress=False)
    base = signal.evaluate(siren)["psnr"]
    weights = sum(p.numel() for p in siren.parameters() if p.dim() >= 2)
    print(f"pretrained SIREN 3x32 ({weights} weights), {args.size}x{args.size}: {base:.2f} dB")
    print(f"{'latent':>7} {'n':>6} {'projected dB':>13} {'fine-tuned dB':>14}")
    for frac in (0.25, 0.5, 0.75, 1.0):
        n = round(frac * weights)
        hyper = hyperproj.distill(siren, latent_dim=n, seed=0, signal=signal, steps=args.finetune)
        rep = hyper.distill_report
        print(f"{frac:7.0%} {n:6d} {rep.metrics_projected['psnr']:13.2f} {rep.metrics_finetuned['psnr']:14.2f}")
        if args.out is not None:
            args.out.mkdir(parents=True, exist_ok=True)
            signal.to_image(signal.render(hyper)).save(args.out / f"distilled_{int(frac * 100)}.png")


if __name__ == "__main__":
    main()

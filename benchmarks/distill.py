"""distill benchmarks: the D'OH paper's Fig. 9 experiment, and solve speed / memory.

Part 1 (quality, the paper's Fig. 9): a SIREN with 3 hidden layers of width 32 is trained on a
real image (a centre crop of a Kodak image, or scikit-image's astronaut when --data is absent),
then distilled into latents of 25 / 50 / 75 / 100 % of its weight count: PSNR right after the
projection and after fine-tuning, next to the pretrained SIREN, for both weightings.

Part 2 (speed and memory): distilling the 9-hidden-layer width-40 SIREN (``Siren(2, 40, 8, 3)``:
nine width-40 sine layers, 13,000 projected weights, the issue's and ``projection_speed.py``'s
"SIREN 9x40") at n = 30 / 60 / 100 % of its weights, each case in a fresh subprocess so that its peak
resident memory is its own; solve seconds and whole-call seconds (the call includes generating B).

    python benchmarks/distill.py [--data DIR] [--quick] [--part 1|2|both]

``--data`` defaults to ``../shared/data/kodak`` beside the checkout (``benchmarks/_paths.py``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch
from _paths import HINT, kodak_dir

import hyperproj
from hyperproj.inr import ImageSignal, Siren, fit


def _image(data: str | None, size: int) -> tuple[ImageSignal, str]:
    if data and Path(data).is_dir():
        files = sorted(Path(data).glob("*.png"))
        if files:
            return ImageSignal.from_file(files[-1]).center_crop(size), files[-1].name
    print(f"note: no PNG images in {data} ({HINT}); using scikit-image's astronaut", file=sys.stderr)
    from skimage import data as skdata

    return ImageSignal.from_array(skdata.astronaut()).resize(size).center_crop(size), "astronaut"


def part1(args) -> None:
    size = 128 if args.quick else 512
    steps = 300 if args.quick else args.steps
    ft_steps = 150 if args.quick else args.finetune_steps
    signal, name = _image(args.data, size)
    torch.manual_seed(0)
    siren = Siren(2, 32, 3, 3)
    t0 = time.perf_counter()
    fit(siren, signal, steps, lr=args.lr, progress=False)
    base = signal.evaluate(siren)["psnr"]
    P = sum(p.numel() for n, p in siren.named_parameters() if p.dim() >= 2)
    print(f"\nPart 1 — {name} {size}x{size}, SIREN 3x32 ({P} projected weights), pretrained "
          f"{steps} steps in {time.perf_counter() - t0:.0f} s: PSNR {base:.2f} dB")
    print(f"{'latent':>8s} {'weighting':>9s} {'projected dB':>12s} {'fine-tuned dB':>13s} {'solve s':>8s}")
    for frac in (0.25, 0.5, 0.75, 1.0):
        n = int(round(frac * P))
        for weighting in ("relative", "none"):
            hyper = hyperproj.distill(
                siren, n, seed=0, weighting=weighting, signal=signal, steps=ft_steps,
            )
            rep = hyper.distill_report
            print(f"{frac:7.0%} {weighting:>9s} {rep.metrics_projected['psnr']:12.2f} "
                  f"{rep.metrics_finetuned['psnr']:13.2f} {rep.solve_seconds:8.2f}")
    print(f"(pretrained SIREN: {base:.2f} dB; fine-tuning {ft_steps} steps)")


def _one_case(frac: float, projection: str) -> dict:
    torch.manual_seed(0)
    siren = Siren(2, 40, 8, 3)  # nine width-40 sine layers, 13,000 weights
    P = sum(p.numel() for n, p in siren.named_parameters() if p.dim() >= 2)
    n = int(round(frac * P))
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    hyper = hyperproj.distill(siren, n, seed=0, projection=projection)
    total = time.perf_counter() - t0
    rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    rep = hyper.distill_report
    return {
        "n": n, "P": P, "projection": projection, "solver": rep.solver,
        "solve_s": rep.solve_seconds, "total_s": total, "peak_extra_mb": (rss1 - rss0) / 1024,
        "n2_mb": n * n * 4 / 2**20, "max_residual": max(rep.residuals.values()),
        "model_b_mb": hyper.projection.state_bytes() / 2**20,
    }


def part2(args) -> None:
    kinds = ["dense", "fastfood"] if "fastfood" in hyperproj.projection_kinds() else ["dense"]
    if not args.quick:
        kinds.append("streamed")
    fracs = (0.3,) if args.quick else (0.3, 0.6, 1.0)
    print("\nPart 2 — distilling Siren(2, 40, 8, 3) (9x40 SIREN, 13,000 projected weights), one subprocess per case")
    print(f"{'latent':>7s} {'n':>6s} {'projection':>10s} {'solver':>14s} {'solve s':>8s} "
          f"{'call s':>7s} {'peak extra MB':>13s} {'of it model B':>13s} {'n² floats MB':>12s} "
          f"{'max resid':>9s}")
    for frac in fracs:
        for kind in kinds:
            out = subprocess.run(
                [sys.executable, __file__, "--case", f"{frac},{kind}"],
                capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"},
            )
            if out.returncode != 0:
                print(f"{frac:7.0%} {kind:>10s} failed: {out.stderr.strip().splitlines()[-1:]}")
                continue
            r = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"{frac:7.0%} {r['n']:6d} {kind:>10s} {r['solver']:>14s} {r['solve_s']:8.2f} "
                  f"{r['total_s']:7.2f} {r['peak_extra_mb']:13.0f} {r['model_b_mb']:13.0f} {r['n2_mb']:12.0f} "
                  f"{r['max_residual']:9.4f}")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=kodak_dir(), help=f"folder of Kodak PNGs (default {kodak_dir()})")
    ap.add_argument("--quick", action="store_true", help="small image, few steps, 30%% only")
    ap.add_argument("--part", choices=["1", "2", "both"], default="both")
    ap.add_argument("--steps", type=int, default=2000, help="pretraining steps (full protocol)")
    ap.add_argument("--finetune-steps", type=int, default=1000)
    ap.add_argument("--lr", type=float, default=None, help="pretraining lr (default: fit's)")
    ap.add_argument("--case", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.case:
        frac, kind = args.case.split(",")
        print(json.dumps(_one_case(float(frac), kind)))
        return
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    if args.part in ("1", "both"):
        part1(args)
    if args.part in ("2", "both"):
        part2(args)


if __name__ == "__main__":
    main()

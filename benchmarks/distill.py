"""distill benchmarks: the D'OH paper's Fig. 9 experiment, a small-setting check against a plain
half-size SIREN, and solve speed / memory.

Part 1 (quality, the paper's Fig. 9 in its own setting): a 512 × 512 centre crop of kodim23, a
SIREN with 3 hidden layers of width 32 (``Siren(2, 32, 3, 3)``: 3,363 parameters, 3,232 of them
projected weights) pretrained with ``fit``'s defaults for 2,000 full-batch steps, then
``hyperproj.distill`` at 25 / 50 / 75 % of its weights with distill's defaults, fine-tuned for 100
full-batch steps (the paper's "100 epochs": one step is one pass over every pixel). PSNR right
after the projection and after fine-tuning, against the pretrained SIREN's; and a plain SIREN of
the same depth whose width gives about the 50 % D'OH model's trainable count (latent + biases),
trained from scratch with ``fit``'s defaults for the same total number of steps (2,000 + 100).

Part 2 (speed and memory): distilling the 9-hidden-layer width-40 SIREN (``Siren(2, 40, 8, 3)``:
nine width-40 sine layers, 13,000 projected weights, the issue's and ``projection_speed.py``'s
"SIREN 9x40") at n = 30 / 60 / 100 % of its weights, each case in a fresh subprocess so that its peak
resident memory is its own; solve seconds and whole-call seconds (the call includes generating B).

Part 3 (the small-setting check): part 1's comparison at 50 % on small centre crops (kodim23 at
64 and 128 px, kodim01 at 64 px) for seeds 0, 1, 2: the SIREN pretrained for 300 steps, distilled
and fine-tuned for 100, against the plain half-size SIREN trained for 400 steps; beside them the
same 50 % D'OH model trained from its own initial latent (no pretraining) for 100 and for 400 steps.
``--fraction`` changes the latent share; ``--variants`` adds distill with ``latent_scale="unit"``,
with ``"offset"``, fine-tuned with plain Adam, and with ``weighting="none"`` (one default changed
at a time) as columns.

    python benchmarks/distill.py [--data DIR] [--quick] [--part 1|2|3|all] [--threads N]
                                  [--fraction F] [--variants]

``--quick``: part 1 on a 128-px crop (300 + 100 steps), part 2 at 30 % only, part 3 on the 64-px
kodim23 crop with seed 0 only. ``--data`` defaults to ``../shared/data/kodak`` beside the
checkout (``benchmarks/_paths.py``); without the Kodak images scikit-image's astronaut is used.
Every run is full-batch and step-based, so ``--threads`` changes only the speed.
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

WIDTH, DEPTH = 32, 3  # the paper's Fig. 9 SIREN: 3 hidden layers of width 32
FRACTIONS = (0.25, 0.5, 0.75)


def _image(data: Path | None, name: str, size: int) -> tuple[ImageSignal, str]:
    path = Path(data) / name if data else None
    if path is not None and path.is_file():
        return ImageSignal.from_file(path).center_crop(size), f"{path.stem} {size}x{size} centre crop"
    print(f"note: {name} not found in {data} ({HINT}); using scikit-image's astronaut", file=sys.stderr)
    from skimage import data as skdata

    return ImageSignal.from_array(skdata.astronaut()).resize(size).center_crop(size), f"astronaut {size}x{size}"


def _count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _projected(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.dim() >= 2)


def half_width(trainable: int, depth: int = DEPTH, max_width: int = WIDTH) -> int:
    """The width of a plain ``Siren(2, w, depth, 3)`` whose parameter count is closest to ``trainable``."""
    return min(range(1, max_width + 1), key=lambda w: abs(_count(Siren(2, w, depth, 3)) - trainable))


def _psnr(signal: ImageSignal, model: torch.nn.Module) -> float:
    return signal.evaluate(model)["psnr"]


def _pretrain(signal: ImageSignal, steps: int, seed: int) -> Siren:
    torch.manual_seed(seed)
    siren = Siren(2, WIDTH, DEPTH, 3)
    fit(siren, signal, steps, progress=False, seed=seed)
    return siren


def _plain(signal: ImageSignal, width: int, steps: int, seed: int) -> float:
    torch.manual_seed(seed)
    small = Siren(2, width, DEPTH, 3)
    fit(small, signal, steps, progress=False, seed=seed)
    return _psnr(signal, small)


def _from_init(signal: ImageSignal, n: int, steps: int, seed: int) -> float:
    """The D'OH model distill builds, trained from its own initial latent (no pretraining)."""
    torch.manual_seed(seed)
    hyper = hyperproj.reparametrize(Siren(2, WIDTH, DEPTH, 3), n, seed)
    fit(hyper, signal, steps, progress=False, seed=seed)
    return _psnr(signal, hyper)


def part1(args) -> None:
    size = 128 if args.quick else 512
    steps = 300 if args.quick else args.steps
    ft_steps = args.finetune_steps
    signal, name = _image(args.data, "kodim23.png", size)
    t0 = time.perf_counter()
    siren = _pretrain(signal, steps, seed=0)
    base = _psnr(signal, siren)
    P, biases = _projected(siren), _count(siren) - _projected(siren)
    print(f"\nPart 1 — {name}, Siren(2, {WIDTH}, {DEPTH}, 3) ({_count(siren)} parameters, {P} projected "
          f"weights), pretrained {steps} steps in {time.perf_counter() - t0:.0f} s: PSNR {base:.2f} dB; "
          f"distill + {ft_steps} fine-tuning steps (full batch), defaults")
    print(f"{'latent':>7s} {'n':>5s} {'trainable':>9s} {'latent_scale':>12s} {'projected dB':>12s} "
          f"{'fine-tuned dB':>13s} {'vs pretrained':>13s} {'seconds':>8s}")
    for frac in FRACTIONS:
        n = round(frac * P)
        t0 = time.perf_counter()
        hyper = hyperproj.distill(siren, n, seed=0, signal=signal, steps=ft_steps)
        rep = hyper.distill_report
        tuned = rep.metrics_finetuned["psnr"]
        print(f"{frac:7.0%} {n:5d} {hyper.num_trainable:9d} {hyper.latent_scale:>12s} "
              f"{rep.metrics_projected['psnr']:12.2f} {tuned:13.2f} {tuned - base:+13.2f} "
              f"{time.perf_counter() - t0:8.0f}")
    width = half_width(round(0.5 * P) + biases)
    t0 = time.perf_counter()
    plain = _plain(signal, width, steps + ft_steps, seed=0)
    print(f"plain Siren(2, {width}, {DEPTH}, 3) ({_count(Siren(2, width, DEPTH, 3))} parameters, about the 50 % "
          f"model's {round(0.5 * P) + biases} trainable) trained {steps + ft_steps} steps: {plain:.2f} dB "
          f"({time.perf_counter() - t0:.0f} s)")
    print(f"(pretrained SIREN: {base:.2f} dB)")


PART3_CROPS = (("kodim23.png", 64), ("kodim23.png", 128), ("kodim01.png", 64))

#: ``--variants``: distill with one default changed, fine-tuned the same number of steps.
VARIANTS = {
    "unit": {"latent_scale": "unit"},
    "offset": {"latent_scale": "offset"},
    "adam": {"fit_options": {"optimizer": "adam"}},
    "none": {"weighting": "none"},
}


def part3(args) -> None:
    crops = PART3_CROPS[:1] if args.quick else PART3_CROPS
    seeds = (0,) if args.quick else (0, 1, 2)
    pre, ft, frac = args.small_steps, args.small_finetune_steps, args.fraction
    total = pre + ft
    variants = VARIANTS if args.variants else {}
    print(f"\nPart 3 — distill at {frac:.0%} + {ft} fine-tuning steps after {pre} pretraining steps, against "
          f"a plain SIREN of the D'OH model's trainable size trained {total} steps (fit's defaults, full batch)")
    print(f"{'crop':>27s} {'seed':>4s} {'pretrained':>10s} {'projected':>9s} {'distill+ft':>10s} "
          f"{'plain half':>10s} {'D-P':>6s} {f'init {ft}':>9s} {f'init {total}':>9s} "
          + "".join(f"{name:>8s}" for name in variants) + f" {'s':>5s}")
    diffs: list[float] = []
    per_variant: dict[str, list[float]] = {name: [] for name in variants}
    for file, size in crops:
        for seed in seeds:
            t0 = time.perf_counter()
            signal, name = _image(args.data, file, size)
            siren = _pretrain(signal, pre, seed)
            P, biases = _projected(siren), _count(siren) - _projected(siren)
            n = round(frac * P)
            fit_options = {"seed": seed}
            hyper = hyperproj.distill(siren, n, seed=seed, signal=signal, steps=ft, fit_options=fit_options)
            rep = hyper.distill_report
            tuned = rep.metrics_finetuned["psnr"]
            plain = _plain(signal, half_width(n + biases), total, seed)
            init_ft = _from_init(signal, n, ft, seed)
            init_total = _from_init(signal, n, total, seed)
            diffs.append(tuned - plain)
            extra = ""
            for vname, kw in variants.items():
                kw = dict(kw)
                opts = {**fit_options, **kw.pop("fit_options", {})}
                other = hyperproj.distill(siren, n, seed=seed, signal=signal, steps=ft, fit_options=opts, **kw)
                per_variant[vname].append(other.distill_report.metrics_finetuned["psnr"] - tuned)
                extra += f"{other.distill_report.metrics_finetuned['psnr']:8.2f}"
            print(f"{name:>27s} {seed:4d} {_psnr(signal, siren):10.2f} {rep.metrics_projected['psnr']:9.2f} "
                  f"{tuned:10.2f} {plain:10.2f} {tuned - plain:+6.2f} {init_ft:9.2f} {init_total:9.2f}"
                  f"{extra} {time.perf_counter() - t0:5.0f}")
    print(f"distill+ft ({hyper.latent_scale} latent) minus plain: min {min(diffs):+.2f}, "
          f"mean {sum(diffs) / len(diffs):+.2f}, max {max(diffs):+.2f} dB")
    for vname, d in per_variant.items():
        print(f"variant {vname} ({VARIANTS[vname]}) minus default: min {min(d):+.2f}, mean {sum(d) / len(d):+.2f}, "
              f"max {max(d):+.2f} dB")


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
    ap.add_argument("--quick", action="store_true", help="small crops, few steps, one seed, 30%% only in part 2")
    ap.add_argument("--part", choices=["1", "2", "3", "all"], default="all")
    ap.add_argument("--steps", type=int, default=2000, help="part 1: pretraining steps (full protocol)")
    ap.add_argument("--finetune-steps", type=int, default=100, help="part 1: fine-tuning steps")
    ap.add_argument("--small-steps", type=int, default=300, help="part 3: pretraining steps")
    ap.add_argument("--small-finetune-steps", type=int, default=100, help="part 3: fine-tuning steps")
    ap.add_argument("--fraction", type=float, default=0.5, help="part 3: latent size as a share of the weights")
    ap.add_argument("--variants", action="store_true",
                    help="part 3: also distill with latent_scale='unit', 'offset', Adam, weighting='none'")
    ap.add_argument("--threads", type=int, default=max(1, os.cpu_count() or 1),
                    help="torch threads for parts 1 and 3 (step-based results: only the speed changes)")
    ap.add_argument("--case", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.case:
        frac, kind = args.case.split(",")
        print(json.dumps(_one_case(float(frac), kind)))
        return
    torch.set_num_threads(max(1, args.threads))
    if args.part in ("1", "all"):
        part1(args)
    if args.part in ("3", "all"):
        part3(args)
    if args.part in ("2", "all"):
        part2(args)


if __name__ == "__main__":
    main()

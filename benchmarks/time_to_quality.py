"""Encode speed: PSNR reached within a wall-clock budget at a fixed rate, per image and route.

For each image (Kodak by default) and each route, ``hyperproj.compress`` (or the COIN baseline)
runs with ``time_budget`` seconds for *everything* (training, fine-tuning, encoding), and the
printed PSNR is the decoded file's, at the file's real bpp. Routes:

* ``offset`` — the library default: offset D'OH (``W = W0 + R z``), SIREN 9 x 40 (10 x 48 at 0.3 bpp on Kodak), minibatches of
  8,192 pixels drawn where the error is (``ErrorSampling``: soft mining), Adam lr 1e-3 with cosine
  decay over the clock, divergence roll-back, no fake-quant fine-tuning, 8-bit latent, 10-bit
  biases (sine biases wrapped to one period), rans.
* ``uniform`` — the same with uniformly drawn minibatches (the default until 2026-12-04).
* ``unit`` — the previous default: unit-scale latent (scale folded into ``B``), latent lr x 10.
* ``paper`` — the D'OH paper's parameterisation (latent U(+-1/n)) at lr 1e-6.
* ``grid`` — the latent-grid family (``family="grid"``; ``benchmarks/grid_rd.py`` is its fuller
  benchmark); ``auto`` — compress's default family choice (``family="auto"``). No ``--curve`` for
  these two (the grid family's training has no evaluation callback); ``latent`` is then the file's
  latent bytes.
* ``coin`` — :func:`hyperproj.baselines.coin`: plain SIREN (9 hidden layers, width chosen so its float16 weights fill the same
  byte budget), same recipe (fit's default lr, warm-up), minibatches and time budget; rate = parameters x 16
  bits (COIN's accounting); PSNR after rounding to float16.

With ``--curve`` the budget run also logs PSNR of the model being trained (float weights while
training, fake-quantized while fine-tuning) against wall seconds (its own evaluations included,
so the curve is pessimistic) every ``--curve-every`` steps, and the table reports the best PSNR reached
by 30 / 60 / 120 / 300 s. JPEG / WebP / JPEG2000 (Pillow) are coded at the D'OH file's actual
bpp on the same image. Writes ``time_to_quality.csv`` (with each run's training ``steps``; and
``.png`` with ``--curve``).

Usage::

    python benchmarks/time_to_quality.py --data ../shared/data/kodak --bpp 0.3 --budget 300
    python benchmarks/time_to_quality.py --images 2 --budget 60 --routes offset,unit,coin --curve
    python benchmarks/time_to_quality.py --bpp 0.3 --budget 300 --routes grid,offset
    python benchmarks/time_to_quality.py --quick      # one 256 px image, 15 s per route
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
import time
import warnings
from pathlib import Path

import torch
from _paths import HINT, kodak_dir

import hyperproj
from hyperproj.baselines import classic_at_rate, coin
from hyperproj.inr import ImageSignal

ROUTES = ("offset", "uniform", "unit", "paper", "coin", "grid", "auto")
MARKS = (30, 60, 120, 300)


def load_images(data: Path, count: int | None, size: int) -> list[tuple[str, ImageSignal]]:
    files = sorted(data.glob("*.png")) if data.is_dir() else []
    files = files[:count] if count else files
    out = [(f.stem, ImageSignal.from_file(f, mode="RGB")) for f in files]
    if not out:
        import skimage.data

        print(f"note: no PNG images in {data} ({HINT}); using scikit-image's astronaut", file=sys.stderr)
        out = [("astronaut", ImageSignal.from_array(skimage.data.astronaut()))]
    return [(n, s.resize(size) if size else s) for n, s in out]


class Curve:
    """fit callback: (wall seconds since the route started, evaluations included; PSNR) pairs."""

    def __init__(self) -> None:
        self.points: list[tuple[float, float]] = []
        self._t0 = time.perf_counter()

    def __call__(self, step, metrics, model) -> None:
        self.points.append((time.perf_counter() - self._t0, metrics["psnr"]))

    def start(self) -> None:
        self._t0 = time.perf_counter()

    def best_by(self, t: float) -> float:
        vals = [p for s, p in self.points if s <= t]
        return max(vals) if vals else math.nan


def run_doh(route: str, sig: ImageSignal, bpp: float, budget: float, curve: Curve | None, every: int):
    opts: dict = {}
    if route == "unit":
        opts = {"latent_scale": "unit", "lr": 3e-3}
    elif route == "paper":
        opts = {"latent_scale": "paper", "lr": 1e-6}
    fit_options: dict = {"sampling": "uniform"} if route == "uniform" else {}
    if curve is not None:
        curve.start()
        fit_options.update(callback=curve, eval_every=every)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        res = hyperproj.compress(sig, bpp=bpp, time_budget=budget, progress=False, fit_options=fit_options,
                                 family="doh", **opts)
    r = res.report
    return {"bpp": r["bpp"], "psnr": r["psnr"], "ssim": r["ssim"], "seconds": r["seconds"], "latent": r["latent_dim"],
            "steps": r["steps"]}


def run_family(family: str, sig: ImageSignal, bpp: float, budget: float, curve: Curve | None, every: int):
    if curve is not None:
        sys.exit(f"time_to_quality: --curve is not available for the {family!r} route")
    r = hyperproj.compress(sig, bpp=bpp, time_budget=budget, progress=False, family=family).report
    return {"bpp": r["bpp"], "psnr": r["psnr"], "ssim": r["ssim"], "seconds": r["seconds"], "family": r["family"],
            "latent": r.get("latent_dim", r.get("latent_bytes")), "steps": r["steps"]}


def run_coin(sig: ImageSignal, bpp: float, budget: float, curve: Curve | None, every: int):
    fit_options = {}
    if curve is not None:
        curve.start()
        fit_options = {"callback": curve, "eval_every": every}
    r = coin(sig, bpp, time_budget=budget, fit_options=fit_options)
    return {"bpp": r["bpp"], "psnr": r["psnr"], "ssim": r["ssim"], "seconds": r["seconds"], "latent": r["parameters"],
            "steps": r["steps"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=kodak_dir(), help=f"folder of Kodak PNGs (default {kodak_dir()})")
    ap.add_argument("--bpp", type=float, default=0.3)
    ap.add_argument("--budget", type=float, default=300.0, help="seconds per image and route, all included")
    ap.add_argument("--routes", default="offset", help=f"comma list of {ROUTES}")
    ap.add_argument("--images", type=int, default=None, help="first N images only")
    ap.add_argument("--size", type=int, default=0, help="resize the long side (0: full size)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--curve", action="store_true", help="log PSNR vs training seconds")
    ap.add_argument("--curve-every", type=int, default=500)
    ap.add_argument("--classic", default="JPEG,WEBP,JPEG2000")
    ap.add_argument("--out", type=Path, default=Path("out/time_to_quality"))
    ap.add_argument("--quick", action="store_true", help="one 256 px image, 15 s per route")
    a = ap.parse_args()
    if a.quick:
        a.images, a.size, a.budget, a.curve_every = 1, 256, 15.0, 50
    routes = [r.strip() for r in a.routes.split(",") if r.strip()]
    bad = [r for r in routes if r not in ROUTES]
    if bad:
        ap.error(f"--routes: unknown {bad}; choose from {ROUTES}")
    torch.set_num_threads(a.threads)
    a.out.mkdir(parents=True, exist_ok=True)
    images = load_images(a.data, a.images, a.size)
    classic = [c for c in a.classic.split(",") if c]
    print(f"# time to quality: {len(images)} image(s), target {a.bpp} bpp, budget {a.budget:.0f} s per "
          f"image and route (everything included), {a.threads} thread(s)")
    rows, curves = [], {}
    for name, sig in images:
        for route in routes:
            curve = Curve() if a.curve else None
            if route == "coin":
                fn = run_coin
            elif route in ("grid", "auto"):
                fn = lambda *x, r=route: run_family(r, *x)  # noqa: E731
            else:
                fn = lambda *x, r=route: run_doh(r, *x)  # noqa: E731
            res = fn(sig, a.bpp, a.budget, curve, a.curve_every)
            row = {"image": name, "route": route, **res}
            if curve is not None:
                curves[(name, route)] = curve.points
                for t in MARKS:
                    row[f"psnr@{t}s"] = curve.best_by(t) if t <= a.budget else math.nan
            rows.append(row)
            print(f"{name:10s} {route:7s} bpp {res['bpp']:.3f}  PSNR {res['psnr']:.2f} dB  "
                  f"SSIM {res['ssim']:.3f}  {res['seconds']:.0f} s  {res['steps']} steps", flush=True)
        ref = next((r for r in rows if r["image"] == name and r["route"] != "coin"), rows[-1])
        for fmt in classic:
            c = classic_at_rate(sig, fmt, ref["bpp"])
            if c is not None:
                rows.append({"image": name, "route": fmt, "bpp": c["bpp"], "psnr": c["psnr"], "ssim": c["ssim"],
                             "seconds": c["seconds"], "latent": 0})
                print(f"{name:10s} {fmt:7s} bpp {c['bpp']:.3f}  PSNR {c['psnr']:.2f} dB  SSIM {c['ssim']:.3f}",
                      flush=True)

    keys = sorted({k for r in rows for k in r})
    with open(a.out / "time_to_quality.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)
    print("\n| route | images | mean bpp | max bpp | mean PSNR (dB) | mean SSIM | mean seconds |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for route in [*routes, *classic]:
        rs = [r for r in rows if r["route"] == route]
        if rs:
            mean = lambda k, rs=rs: sum(r[k] for r in rs) / len(rs)  # noqa: E731
            print(f"| {route} | {len(rs)} | {mean('bpp'):.3f} | {max(r['bpp'] for r in rs):.3f} | "
                  f"{mean('psnr'):.2f} | {mean('ssim'):.3f} | {mean('seconds'):.0f} |")
    if a.curve:
        print("\n| route | " + " | ".join(f"best PSNR by {t} s" for t in MARKS if t <= a.budget) + " |")
        for route in routes:
            rs = [r for r in rows if r["route"] == route]
            vals = [sum(r[f"psnr@{t}s"] for r in rs) / len(rs) for t in MARKS if t <= a.budget]
            print(f"| {route} | " + " | ".join(f"{v:.2f}" for v in vals) + " |")
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt

            fig, ax = plt.subplots(figsize=(6, 4))
            for (name, route), pts in curves.items():
                if pts:
                    ax.plot([p[0] for p in pts], [p[1] for p in pts], label=f"{name} {route}")
            ax.set_xlabel("wall seconds (evaluations included)")
            ax.set_ylabel("PSNR while training (dB)")
            ax.legend(fontsize=7)
            fig.tight_layout()
            fig.savefig(a.out / "time_to_quality.png", dpi=120)
        except ImportError:
            print("note: matplotlib not installed; no plot", file=sys.stderr)
    print(f"\nwrote {a.out / 'time_to_quality.csv'}")


if __name__ == "__main__":
    main()

"""Rate sweep: D'OH (``hyperproj.compress``) against a COIN-style SIREN trained the same way, JPEG,
WebP and JPEG2000, at every rate from 0.1 to 2 bpp on full-size Kodak images.

For every image and rate, side by side in one run:

* D'OH: ``compress(image, bpp=r, steps=N)`` (``--steps``) or ``time_budget=S`` (``--budget``), every
  other setting the default. Rate = the ``.hpz`` file, header included.
* COIN: :func:`hyperproj.baselines.coin` with the same steps or the same seconds: the widest
  9-hidden-layer SIREN whose float16 weights fit the rate, fit's recipe, the codec's minibatches.
* JPEG, WebP, JPEG2000 (Pillow; JPEG2000 with the irreversible 9/7 wavelet) at the largest setting
  whose file is not above D'OH's file.

Checks printed at the end (the robustness issue's targets): every file at or under its target;
PSNR never falls by more than 0.2 dB from one rate to the next; D'OH at or above COIN's published
Kodak curve (interpolated in log-rate between its points, ``../shared/reference/kodak_anchors.json``;
rates outside its range are not compared) and above the COIN-style SIREN of this run.
Writes ``rate_sweep.csv`` and ``rate_sweep.png`` (PSNR against bpp per image, with the published
curves) under ``--out``.

Usage::

    python benchmarks/rate_sweep.py --steps 2000                 # 4 Kodak images, 6 rates, fixed steps
    python benchmarks/rate_sweep.py --budget 300                 # the same with 300 s per encode
    python benchmarks/rate_sweep.py --demo --steps 1500          # the demo image (astronaut, 256 px)
    python benchmarks/rate_sweep.py --demo --steps 1500 --routes auto   # compress's default family choice
    python benchmarks/rate_sweep.py --quick                      # one 128 px crop, 3 rates, 150 steps
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
import time
import warnings
from pathlib import Path

import torch
from _paths import HINT, anchors_path, kodak_dir

import hyperproj
from hyperproj.baselines import classic_at_rate, coin
from hyperproj.inr import ImageSignal

DEFAULT_IMAGES = "kodim01,kodim05,kodim13,kodim23"
DEFAULT_RATES = "0.1,0.2,0.3,0.5,1.0,2.0"
MAX_DROP_DB = 0.2


def load(a) -> list[tuple[str, ImageSignal]]:
    import skimage.data

    if a.demo or a.quick:
        sig = ImageSignal.from_array(skimage.data.astronaut())
        return [("astronaut", sig.resize(128 if a.quick else 256))]
    files = sorted(a.data.glob("*.png")) if a.data.is_dir() else []
    wanted = [n.strip() for n in a.images.split(",") if n.strip()]
    files = [f for f in files if f.stem in wanted]
    if not files:
        print(f"note: none of {wanted} in {a.data} ({HINT}); using scikit-image's astronaut at 512 px",
              file=sys.stderr)
        return [("astronaut", ImageSignal.from_array(skimage.data.astronaut()))]
    return [(f.stem, ImageSignal.from_file(f).resize(a.size) if a.size else ImageSignal.from_file(f)) for f in files]


def published_coin() -> tuple[list[float], list[float]] | None:
    path = anchors_path()
    if not path.is_file():
        return None
    coin_pts = json.loads(path.read_text())["COIN"]
    return coin_pts["bpp"], coin_pts["psnr"]


def interpolate_log(xs: list[float], ys: list[float], x: float) -> float:
    """Piecewise-linear in log(bpp); nan outside the published range."""
    if not xs or x < xs[0] or x > xs[-1]:
        return math.nan
    for (x0, y0), (x1, y1) in zip(zip(xs, ys), zip(xs[1:], ys[1:])):
        if x0 <= x <= x1:
            t = (math.log(x) - math.log(x0)) / (math.log(x1) - math.log(x0))
            return y0 + t * (y1 - y0)
    return ys[-1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=kodak_dir(), help=f"folder of Kodak PNGs (default {kodak_dir()})")
    ap.add_argument("--images", default=DEFAULT_IMAGES, help=f"comma list of image names (default {DEFAULT_IMAGES})")
    ap.add_argument("--rates", default=DEFAULT_RATES, help=f"comma list of bpp (default {DEFAULT_RATES})")
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--steps", type=int, default=None, help="fixed training steps per encode (default 2000)")
    mode.add_argument("--budget", type=float, default=None, help="seconds per encode, everything included")
    ap.add_argument("--routes", default="doh,coin",
                    help="comma list of doh, auto (compress's default family choice), coin (default doh,coin); "
                         "the first of doh/auto is the one checked")
    ap.add_argument("--classic", default="JPEG,WEBP,JPEG2000", help="Pillow codecs at D'OH's rates ('' for none)")
    ap.add_argument("--size", type=int, default=0, help="resize the longer side first (0: full size)")
    ap.add_argument("--demo", action="store_true", help="the demo's image (astronaut, 256 px) instead of Kodak")
    ap.add_argument("--quick", action="store_true", help="astronaut at 128 px, rates 1/2/4, 150 steps")
    ap.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    ap.add_argument("--out", type=Path, default=Path("out/rate_sweep"), help="output folder")
    a = ap.parse_args()
    if a.quick:
        a.rates, a.steps = "1,2,4", a.steps or 150
    if a.steps is None and a.budget is None:
        a.steps = 2000
    torch.set_num_threads(a.threads)
    a.out.mkdir(parents=True, exist_ok=True)
    rates = [float(r) for r in a.rates.split(",") if r.strip()]
    routes = [r.strip() for r in a.routes.split(",") if r.strip()]
    if not routes or set(routes) - {"doh", "auto", "coin"}:
        sys.exit(f"rate_sweep: --routes takes doh, auto and coin, got {a.routes!r}")
    main = next((r for r in routes if r != "coin"), "doh")  # the route the checks and the classic codecs follow
    classic = [c for c in a.classic.split(",") if c]
    images = load(a)
    how = f"{a.steps} steps" if a.steps is not None else f"{a.budget:g} s"
    print(f"# rate sweep: {len(images)} image(s), rates {rates} bpp, {how} per encode, routes {routes}, "
          f"{a.threads} thread(s), hyperproj {hyperproj.__version__}", flush=True)
    rows = []
    for name, sig in images:
        for bpp in rates:
            for route in routes:
                tic = time.perf_counter()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", UserWarning)
                    if route in ("doh", "auto"):
                        res = hyperproj.compress(sig, bpp=bpp, steps=a.steps, time_budget=a.budget, progress=False,
                                                 family=route)
                        r = res.report
                        out = {"bpp": r["bpp"], "psnr": r["psnr"], "ssim": r["ssim"], "steps": r["steps"],
                               "family": r["family"]}
                        if r["family"] == "doh":
                            out.update(latent=r["latent_dim"], width=res.model.base.config.get("hidden_features"),
                                       latent_scale=res.model.latent_scale, recoveries=len(r["recoveries"]))
                        else:
                            out.update(width=None, latent_shrink=r.get("latent_shrink"))
                    else:
                        c = coin(sig, bpp, steps=a.steps, time_budget=a.budget)
                        out = {k: c[k] for k in ("bpp", "psnr", "ssim", "steps", "width")}
                out["seconds"] = time.perf_counter() - tic
                rows.append({"image": name, "target": bpp, "route": route, **out})
                print(f"{name:10s} {bpp:5.2f} {route:5s} {out.get('family', ''):4s} bpp {out['bpp']:.3f} PSNR {out['psnr']:6.2f} "
                      f"SSIM {out['ssim']:.3f} width {out['width']} steps {out['steps']} {out['seconds']:.0f} s",
                      flush=True)
            ref = next((r for r in rows if r["image"] == name and r["target"] == bpp and r["route"] == main), None)
            for fmt in classic:
                c = classic_at_rate(sig, fmt, ref["bpp"] if ref else bpp)
                if c is not None:
                    rows.append({"image": name, "target": bpp, "route": fmt, "bpp": c["bpp"], "psnr": c["psnr"],
                                 "ssim": c["ssim"], "seconds": c["seconds"]})

    keys = list(dict.fromkeys(k for r in rows for k in r))
    with open(a.out / "rate_sweep.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)

    pub = None if (a.demo or a.quick) else published_coin()  # the published curve is a Kodak mean
    print(f"\n| image | target bpp | {'D' + chr(39) + 'OH' if main == 'doh' else 'default family'} bpp / PSNR | "
          f"COIN (this run) bpp / PSNR | COIN published | "
          f"{' | '.join(classic)} |")
    print("|---|---:|---:|---:|---:|" + "---:|" * len(classic))
    failures = []
    for name, _ in images:
        prev = None
        for bpp in rates:
            got = {r["route"]: r for r in rows if r["image"] == name and r["target"] == bpp}
            d, c = got.get(main), got.get("coin")
            published = interpolate_log(*pub, d["bpp"]) if (pub and d) else math.nan
            cells = [f"{d['bpp']:.3f} / {d['psnr']:.2f}" if d else "–",
                     f"{c['bpp']:.3f} / {c['psnr']:.2f}" if c else "–",
                     "–" if math.isnan(published) else f"{published:.2f}"]
            cells += [f"{got[f]['bpp']:.3f} / {got[f]['psnr']:.2f}" if f in got else "–" for f in classic]
            print(f"| {name} | {bpp:g} | " + " | ".join(cells) + " |")
            if d:
                if d["bpp"] > bpp:
                    failures.append(f"{name} @ {bpp:g}: file {d['bpp']:.4f} bpp over its target")
                if prev is not None and d["psnr"] < prev[1] - MAX_DROP_DB:
                    failures.append(f"{name}: {prev[1]:.2f} dB at {prev[0]:g} bpp, then {d['psnr']:.2f} at {bpp:g}")
                if not math.isnan(published) and d["psnr"] < published:
                    failures.append(f"{name} @ {bpp:g}: {d['psnr']:.2f} dB below COIN's published {published:.2f}")
                if c and d["psnr"] <= c["psnr"]:
                    failures.append(f"{name} @ {bpp:g}: {d['psnr']:.2f} dB not above this run's COIN {c['psnr']:.2f}")
                prev = (bpp, d["psnr"])
    print("\nchecks: " + ("all passed" if not failures else f"{len(failures)} failed"))
    for f in failures:
        print(f"  - {f}")

    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("note: matplotlib not installed; no plot", file=sys.stderr)
    else:
        fig, axes = plt.subplots(1, len(images), figsize=(4.2 * len(images), 3.6), squeeze=False)
        styles = {"auto": ("D-", "hyperproj, default family (auto)"), "doh": ("o-", "D'OH (hyperproj)"), "coin": ("x-", "COIN-style SIREN, same recipe"),
                  "JPEG": ("s--", "JPEG"), "WEBP": ("^--", "WebP"), "JPEG2000": ("v--", "JPEG2000")}
        for ax, (name, _) in zip(axes[0], images):
            for route, (style, label) in styles.items():
                pts = sorted((r["bpp"], r["psnr"]) for r in rows if r["image"] == name and r["route"] == route)
                if pts:
                    ax.plot(*zip(*pts), style, label=label, ms=4)
            if pub:
                ax.plot(*pub, ":", color="gray", label="COIN published (Kodak mean)")
            ax.set_xscale("log")
            ax.set_xlabel("bits per pixel")
            ax.set_ylabel("PSNR (dB)")
            ax.set_title(f"{name}, {how}")
            ax.grid(alpha=0.3)
        axes[0][0].legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(a.out / "rate_sweep.png", dpi=120)
        plt.close(fig)
    print(f"wrote {a.out / 'rate_sweep.csv'}")


if __name__ == "__main__":
    main()

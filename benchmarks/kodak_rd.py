"""Kodak rate-distortion: D'OH (hyperproj) vs plain SIREN (COIN) vs JPEG / WebP / JPEG2000.

Side by side on the same images in one run:

* D'OH: SIREN 9 hidden layers × width 40 (14.6k weights), latent at 30/60/100 %
  of the weights, 8-bit latent, biases at the codec default, no QAT (the codec default), rans coding. Rate =
  the ``.hpz`` file size (header included).
* Beyond the paper, in the same run: (a) QAT fine-tuning (steps/5), (b) a wider target (9 × 56) at the 30 % latent
  size, (c) the same files coded with bzip2 instead of rans (size from ``codec.info``).
* COIN: plain SIREN at 16-bit (float16 weights; rate = parameters × 16 bits, COIN's accounting),
  architectures 5×20, 5×30, 10×28, 10×40 (layers × width).
* JPEG, WebP, JPEG2000 through Pillow, at the largest quality whose file is not above each D'OH
  rate (matched rates).

Prints a table (mean over images), writes ``kodak_rd.csv`` and ``kodak_rd.png`` (with the
published curves from ``../shared/reference/kodak_anchors.json`` beside the checkout when running
full-size images). ``--data`` defaults to ``../shared/data/kodak`` beside the checkout
(``HYPERPROJ_SHARED`` / ``HYPERPROJ_KODAK`` override it; see ``benchmarks/_paths.py``).

Usage::

    python benchmarks/kodak_rd.py --quick                       # 1 image at 96 px, ~minutes on CPU
    python benchmarks/kodak_rd.py --data DIR --size 0 --steps 20000   # full protocol (GPU)
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from _paths import HINT, anchors_path, kodak_dir

import hyperproj
from hyperproj import codec
from hyperproj.baselines import classic_at_rate
from hyperproj.inr import ImageSignal, Siren, fit

try:  # the fastfood projection, when present, keeps big latents cheap
    import hyperproj._fastfood  # noqa: F401

    HAVE_FASTFOOD = True
except ImportError:  # pragma: no cover
    HAVE_FASTFOOD = False

ANCHORS = anchors_path()
COIN_ARCHS = [(5, 20), (5, 30), (10, 28), (10, 40)]


def load_images(data: Path, names: list[str] | None, count: int | None, size: int) -> list[tuple[str, ImageSignal]]:
    files = sorted(data.glob("*.png")) if data.is_dir() else []
    if names:
        files = [f for f in files if f.stem in names or f.name in names]
    if count:
        files = files[:count]
    out = []
    for f in files:
        sig = ImageSignal.from_file(f, mode="RGB")
        if size:
            sig = sig.resize(size)
        out.append((f.stem, sig))
    if not out:
        import skimage.data

        print(f"note: no Kodak images in {data} ({HINT}); using skimage astronaut instead", file=sys.stderr)
        sig = ImageSignal.from_array(skimage.data.astronaut())
        out.append(("astronaut", sig.resize(size) if size else sig))
    return out


def doh_net(width: int = 40) -> Siren:
    return Siren(2, width, 9, 3)  # no Fourier features: measured 15.9 vs 27.5 dB (docs/concepts.md)


def run_doh(name, sig, n, steps, qat_steps, width=40, label="D'OH 9x40"):
    projection = "fastfood" if (HAVE_FASTFOOD and n > 3000) else "auto"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = codec.compress(sig, model=doh_net(width), latent_dim=n, max_bytes=10**9, steps=steps,
                             qat_steps=qat_steps, projection=projection, progress=False)
    rep = codec.info(res.data)
    bz = rep["bytes"] - rep["latent_bytes"] - rep["param_bytes"] + sum(rep["bzip2_bytes"].values())
    row = dict(image=name, method=label, config=f"n={n} ({projection})", bpp=8 * len(res.data) / sig.num_pixels,
               bytes=len(res.data), psnr=res.report["psnr"], ssim=res.report["ssim"], seconds=res.report["seconds"],
               bzip2_bpp=8 * bz / sig.num_pixels, header_bytes=rep["header_bytes"],
               latent_bytes=rep["latent_bytes"], bias_bytes=rep["param_bytes"])
    return row


def run_coin(name, sig, layers, width, steps):
    torch.manual_seed(0)
    net = Siren(2, width, layers - 1, 3)
    t = time.perf_counter()
    fit(net, sig, steps, lr=2e-4, progress=False, scheduler="cosine")
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(p.half().float())
    secs = time.perf_counter() - t
    m = sig.evaluate(net)
    params = sum(p.numel() for p in net.parameters())
    return dict(image=name, method="COIN SIREN fp16", config=f"{layers}x{width}", bpp=16 * params / sig.num_pixels,
                bytes=2 * params, psnr=m["psnr"], ssim=m["ssim"], seconds=secs)


def run_classic(name, sig, fmt, target_bpp):
    row = classic_at_rate(sig, fmt, target_bpp)
    return None if row is None else dict(image=name, **row)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=kodak_dir(), help=f"folder of Kodak PNGs (default {kodak_dir()})")
    ap.add_argument("--images", nargs="*", default=None, help="image names (e.g. kodim01)")
    ap.add_argument("--count", type=int, default=None, help="use the first COUNT images")
    ap.add_argument("--size", type=int, default=256, help="resize the longer side (0 = full size, the paper's)")
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--qat-steps", type=int, default=None)
    ap.add_argument("--fractions", type=float, nargs="*", default=[0.3, 0.6, 1.0])
    ap.add_argument("--out", type=Path, default=Path("bench-out"))
    ap.add_argument("--quick", action="store_true", help="1 image at 96 px, 150 steps, 2 COIN archs")
    a = ap.parse_args(argv)
    coin = COIN_ARCHS
    if a.quick:
        a.size, a.steps, a.count = 96, 150, a.count or 1
        coin = [(5, 20), (10, 28)]
    qat = 0 if a.qat_steps is None else a.qat_steps  # compress's default: no QAT (docs/codec.md)
    a.out.mkdir(parents=True, exist_ok=True)
    images = load_images(a.data, a.images, a.count, a.size)
    P = sum(p.numel() for p in doh_net().parameters() if p.dim() >= 2)
    rows = []
    t_all = time.perf_counter()
    for name, sig in images:
        print(f"{name}: {sig.shape[0]}x{sig.shape[1]}", flush=True)
        doh_rows = []
        for frac in a.fractions:
            n = max(1, round(frac * P))
            doh_rows.append(run_doh(name, sig, n, a.steps, qat))
            rows.append(doh_rows[-1])
            r = doh_rows[-1]
            rows.append(dict(image=name, method="D'OH 9x40 bzip2", config=r["config"], bpp=r["bzip2_bpp"],
                             bytes=round(r["bzip2_bpp"] * sig.num_pixels / 8), psnr=r["psnr"], ssim=r["ssim"],
                             seconds=r["seconds"]))
        n_mid = round(a.fractions[len(a.fractions) // 2] * P)
        rows.append(run_doh(name, sig, n_mid, a.steps, a.steps // 5, label="D'OH 9x40 + QAT"))
        rows.append(run_doh(name, sig, round(a.fractions[0] * P), a.steps, qat, width=56, label="D'OH 9x56 (wider)"))
        for layers, width in coin:
            rows.append(run_coin(name, sig, layers, width, a.steps))
        for fmt in ("JPEG", "WEBP", "JPEG2000"):
            for r in doh_rows:
                c = run_classic(name, sig, fmt, r["bpp"])
                if c:
                    rows.append(c)
        print(f"  done in {time.perf_counter() - t_all:.0f} s", flush=True)
    keys = ["image", "method", "config", "bpp", "bytes", "psnr", "ssim", "seconds"]
    with open(a.out / "kodak_rd.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=keys, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    # mean over images per (method, config); classic codecs grouped by matched D'OH rate order
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in rows:
        key = (r["method"], r["config"] if r["method"] not in ("JPEG", "WEBP", "JPEG2000") else f"~{r['bpp']:.2f}")
        groups.setdefault(key, []).append(r)
    proto = "full protocol" if a.size == 0 else f"reduced protocol: longer side {a.size} px"
    print(f"\nKodak RD ({len(images)} image(s), {proto}, {a.steps} steps, QAT {qat} steps)")
    print(f"{'method':22s} {'config':22s} {'bpp':>7s} {'PSNR':>7s} {'SSIM':>7s} {'enc s':>7s}")
    for (m, c), rs in groups.items():
        mean = lambda k, rs=rs: sum(r[k] for r in rs) / len(rs)  # noqa: E731
        print(f"{m:22s} {c:22s} {mean('bpp'):7.3f} {mean('psnr'):7.2f} {mean('ssim'):7.4f} {mean('seconds'):7.1f}")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("(matplotlib not installed: no plot)")
        return 0
    fig, ax = plt.subplots(figsize=(7, 4.5))
    by_method: dict[str, list] = {}
    for (m, _), rs in groups.items():
        by_method.setdefault(m, []).append((np.mean([r["bpp"] for r in rs]), np.mean([r["psnr"] for r in rs])))
    for m, pts in by_method.items():
        pts.sort()
        ax.plot(*zip(*pts), "o-", label=f"{m} (this run)")
    if a.size == 0 and ANCHORS.is_file():
        anchors = json.loads(ANCHORS.read_text())
        for k, v in anchors.items():
            if isinstance(v, dict) and "bpp" in v:
                ax.plot(v["bpp"], v["psnr"], "--", alpha=0.5, label=f"{k} (published)")
        ax.set_xlim(0, 1.5)
    elif a.size == 0:
        print(f"note: no published curves at {ANCHORS} (set HYPERPROJ_SHARED); plotting this run only",
              file=sys.stderr)
    ax.set_xlabel("bits per pixel (file size)")
    ax.set_ylabel("PSNR (dB)")
    ax.set_title(f"Kodak, {len(images)} image(s), {proto}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(a.out / "kodak_rd.png", dpi=120)
    print(f"wrote {a.out}/kodak_rd.csv and kodak_rd.png ({time.perf_counter() - t_all:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

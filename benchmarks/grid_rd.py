"""Kodak at one rate: the latent-grid family (``family="grid"``) vs JPEG / WebP / JPEG2000.

For each image: ``hyperproj.compress(image, bpp=BPP, family="grid", time_budget=BUDGET)`` with
``--threads`` torch threads; the rate is the real ``.hpz`` file (header included) and the PSNR
that of the decoded file (the integer decoder's pixels). Then JPEG, WebP and JPEG2000 (9/7
wavelet, ``irreversible=True``) through Pillow at the largest setting whose file is not above
that file's real rate. Rows are appended to ``--out`` (JSON lines) as they finish, so an
interrupted run keeps what it measured; the table at the end is the mean over images.

Usage::

    python benchmarks/grid_rd.py --images 2 --budget 60 --threads 1            # a quick look
    python benchmarks/grid_rd.py --bpp 0.3 --budget 300 --threads 2            # issue 26's protocol
    python benchmarks/grid_rd.py --images kodim23 kodim05 --budget 300

``--data`` defaults to ``../shared/data/kodak`` beside the checkout (see ``benchmarks/_paths.py``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from _paths import HINT, kodak_dir

from hyperproj import codec
from hyperproj.baselines import classic_at_rate
from hyperproj.inr import ImageSignal


def _images(data: Path, images: list[str]) -> list[Path]:
    files = sorted(data.glob("*.png")) if data.is_dir() else []
    if not files:
        sys.exit(f"grid_rd: no PNG images in {data} ({HINT})")
    if len(images) == 1 and images[0].isdigit():
        return files[: int(images[0])]
    if images:
        chosen = [f for f in files if f.stem in images or f.name in images]
        missing = set(images) - {f.stem for f in chosen} - {f.name for f in chosen}
        if missing:
            sys.exit(f"grid_rd: --images not found in {data}: {sorted(missing)}")
        return chosen
    return files


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=None, help="folder of Kodak PNGs")
    p.add_argument("--images", nargs="*", default=[], help="names (kodim23 ...) or one count (first N); default all")
    p.add_argument("--bpp", type=float, default=0.3, help="target bits per pixel (default 0.3)")
    p.add_argument("--budget", type=float, default=300.0, help="seconds per image for compress (default 300)")
    p.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    p.add_argument("--out", type=Path, default=Path("grid_rd.jsonl"), help="JSON lines output (appended)")
    p.add_argument("--save", type=Path, default=None, help="folder to keep the .hpz files in")
    a = p.parse_args(argv)
    if a.bpp <= 0 or a.budget <= 0 or a.threads < 1:
        sys.exit("grid_rd: --bpp and --budget must be > 0 and --threads >= 1")
    torch.set_num_threads(a.threads)
    rows = []
    for path in _images(a.data or kodak_dir(), a.images):
        sig = ImageSignal.from_file(path)
        t = time.perf_counter()
        res = codec.compress(sig, bpp=a.bpp, family="grid", time_budget=a.budget, progress=False)
        r = res.report
        row = {"image": path.stem, "threads": a.threads, "budget_s": a.budget, "target_bpp": a.bpp,
               "grid_bpp": r["bpp"], "grid_psnr": r["psnr"], "grid_ssim": r["ssim"], "grid_bytes": r["file_bytes"],
               "latent_bytes": r["latent_bytes"], "network_bytes": r["network_bytes"],
               "header_bytes": r["header_bytes"], "steps": r["steps"], "seconds": time.perf_counter() - t}
        if a.save:
            a.save.mkdir(parents=True, exist_ok=True)
            res.save(a.save / f"{path.stem}.hpz")
        for fmt in ("JPEG", "WEBP", "JPEG2000"):
            base = classic_at_rate(sig, fmt, r["bpp"])
            row[f"{fmt.lower()}_bpp"] = None if base is None else base["bpp"]
            row[f"{fmt.lower()}_psnr"] = None if base is None else base["psnr"]
        rows.append(row)
        with a.out.open("a") as f:
            f.write(json.dumps(row) + "\n")
        print(f"{row['image']}: grid {row['grid_bpp']:.4f} bpp {row['grid_psnr']:.2f} dB ({row['steps']} steps) | "
              + " | ".join(f"{k} {row[k + '_psnr']:.2f}" if row[k + "_psnr"] is not None else f"{k} -"
                           for k in ("jpeg", "webp", "jpeg2000")), flush=True)
    if rows:
        def mean(key):
            vals = [r[key] for r in rows if r[key] is not None]
            return sum(vals) / len(vals) if vals else float("nan")

        print(f"\nmean over {len(rows)} images ({a.threads} threads, {a.budget:g} s each, target {a.bpp} bpp):")
        print(f"  grid      {mean('grid_bpp'):.4f} bpp  {mean('grid_psnr'):.2f} dB  (max bpp {max(r['grid_bpp'] for r in rows):.4f})")
        for k in ("jpeg", "webp", "jpeg2000"):
            print(f"  {k:9s} {mean(k + '_bpp'):.4f} bpp  {mean(k + '_psnr'):.2f} dB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

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
    python benchmarks/grid_rd.py --images kodim23 --budget 60 --threads 1 --sweep 0.1 0.2 0.3 0.5 0.8

With ``--sweep`` (a list of target rates) each image is coded at every rate instead, and the rows
hold its rate–distortion curve and the Bjøntegaard deltas (:func:`bd_rows`: BD-rate, the mean rate
change at equal PSNR, negative = the grid family needs fewer bits; BD-PSNR) against WebP and
JPEG2000 (9/7), whose curves are coded at the sweep's rates. It needs the ``bjontegaard`` package
(``pip install hyperproj[bench]``).

``--data`` defaults to ``../shared/data/kodak`` beside the checkout (see ``benchmarks/_paths.py``).
"""

from __future__ import annotations

import argparse
import json
import math
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


def bd_rows(grid: list[tuple[float, float]], anchors: dict[str, list[tuple[float, float]]],
            method: str = "akima") -> dict[str, float | None]:
    """Bjøntegaard deltas of the ``grid`` curve ``[(bpp, psnr), ...]`` against each anchor curve:
    ``{NAME_bd_rate: %, NAME_bd_psnr: dB}`` (``None`` where a curve has under 2 points, the curves
    do not overlap in PSNR (BD-rate) or rate (BD-PSNR), or the ``bjontegaard`` package refuses them;
    it warns when they overlap by less than 75 %).

    Examples:
        >>> r = bd_rows([(0.1, 25.0), (0.2, 28.0), (0.4, 31.0), (0.8, 34.0)],
        ...             {"webp": [(0.12, 25.0), (0.24, 28.0), (0.48, 31.0), (0.96, 34.0)]})
        >>> round(r["webp_bd_rate"], 1)
        -16.7
    """
    try:
        import bjontegaard as bd
    except ImportError:
        sys.exit("grid_rd: --sweep needs the bjontegaard package (pip install hyperproj[bench])")
    out: dict[str, float | None] = {}
    test = sorted(grid)
    for name, curve in anchors.items():
        ref = sorted(curve)
        out[f"{name}_bd_rate"] = out[f"{name}_bd_psnr"] = None
        if len(ref) < 2 or len(test) < 2:
            continue
        args = ([r for r, _ in ref], [d for _, d in ref], [r for r, _ in test], [d for _, d in test])
        try:
            for key, fn in (("bd_rate", bd.bd_rate), ("bd_psnr", bd.bd_psnr)):
                v = float(fn(*args, method=method, require_matching_points=False))
                out[f"{name}_{key}"] = v if math.isfinite(v) else None  # NaN: the curves do not overlap
        except (ValueError, ZeroDivisionError) as err:
            print(f"grid_rd: no BD numbers against {name}: {err}", file=sys.stderr)
    return out


def _sweep(sig: ImageSignal, name: str, rates: list[float], a: argparse.Namespace) -> dict:
    """One image's rate sweep: the grid family at every rate, WebP and JPEG2000 at the same
    targets, and the Bjøntegaard deltas."""
    grid = []
    for bpp in rates:
        r = codec.compress(sig, bpp=bpp, family="grid", time_budget=a.budget, progress=False).report
        grid.append((r["bpp"], r["psnr"]))
        print(f"{name} @ {bpp}: grid {r['bpp']:.4f} bpp {r['psnr']:.2f} dB ({r['steps']} steps)", flush=True)
    anchors = {}
    for fmt in ("WEBP", "JPEG2000"):
        points = [classic_at_rate(sig, fmt, bpp) for bpp in rates]
        anchors[fmt.lower()] = [(p["bpp"], p["psnr"]) for p in points if p is not None]
    return {"image": name, "threads": a.threads, "budget_s": a.budget, "sweep": rates, "grid": grid,
            **{f"{k}_curve": v for k, v in anchors.items()}, **bd_rows(grid, anchors)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=None, help="folder of Kodak PNGs")
    p.add_argument("--images", nargs="*", default=[], help="names (kodim23 ...) or one count (first N); default all")
    p.add_argument("--bpp", type=float, default=0.3, help="target bits per pixel (default 0.3)")
    p.add_argument("--budget", type=float, default=300.0, help="seconds per image for compress (default 300)")
    p.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    p.add_argument("--out", type=Path, default=Path("grid_rd.jsonl"), help="JSON lines output (appended)")
    p.add_argument("--save", type=Path, default=None, help="folder to keep the .hpz files in")
    p.add_argument("--sweep", type=float, nargs="+", default=None,
                   help="target rates of an RD sweep (e.g. 0.1 0.2 0.3 0.5 0.8): BD-rate vs WebP and JPEG2000")
    a = p.parse_args(argv)
    if a.bpp <= 0 or a.budget <= 0 or a.threads < 1:
        sys.exit("grid_rd: --bpp and --budget must be > 0 and --threads >= 1")
    if a.sweep is not None and (len(a.sweep) < 2 or min(a.sweep) <= 0):
        sys.exit(f"grid_rd: --sweep needs at least 2 rates > 0, got {a.sweep}")
    torch.set_num_threads(a.threads)
    rows = []
    for path in _images(a.data or kodak_dir(), a.images):
        sig = ImageSignal.from_file(path)
        if a.sweep is not None:
            row = _sweep(sig, path.stem, sorted(a.sweep), a)
            with a.out.open("a") as f:
                f.write(json.dumps(row) + "\n")
            print(f"{path.stem}: BD-rate vs WebP {_pct(row['webp_bd_rate'])}, vs JPEG2000 {_pct(row['jpeg2000_bd_rate'])}; "
                  f"BD-PSNR vs WebP {_db(row['webp_bd_psnr'])}, vs JPEG2000 {_db(row['jpeg2000_bd_psnr'])}", flush=True)
            continue
        t = time.perf_counter()
        res = codec.compress(sig, bpp=a.bpp, family="grid", time_budget=a.budget, progress=False)
        r = res.report
        row = {"image": path.stem, "threads": a.threads, "budget_s": a.budget, "target_bpp": a.bpp,
               "grid_bpp": r["bpp"], "grid_psnr": r["psnr"], "grid_ssim": r["ssim"], "grid_bytes": r["file_bytes"],
               "latent_bytes": r["latent_bytes"], "network_bytes": r["network_bytes"],
               "header_bytes": r["header_bytes"], "steps": r["steps"], "seconds": time.perf_counter() - t,
               "attempts": len(r["attempts"]), "latent_shrink": r.get("latent_shrink"), "final_lam": r.get("lam")}
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


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v:+.1f} %"


def _db(v: float | None) -> str:
    return "-" if v is None else f"{v:+.2f} dB"


if __name__ == "__main__":
    raise SystemExit(main())

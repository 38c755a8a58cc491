"""Occupancy rate-distortion on a real watertight mesh: D'OH vs plain SIREN at matched kB.

D'OH: SIREN 9 hidden layers × width 40 with 6 Fourier-feature frequencies, latent at 30/60/100 % of
the weights, 8-bit latent, ``.hpz`` file size (header included). Plain SIREN: 8-bit per-tensor
quantized weights (rate = parameters × 8 bits + 8 bytes of range per tensor), width chosen so its
size matches each D'OH file. Metric: IoU on a dense ``--grid``³ grid (default 128).

The mesh: ``--mesh PATH`` or the first of bunny00 / armadillo / elephant found by
``hyperproj.inr.find_mesh`` (``bash scripts/fetch_test_data.sh`` unpacks them into
``.data/meshes/data/meshes/``).

Usage::

    python benchmarks/occupancy_rd.py --quick        # 64³ grid, 20k points, 150 steps
    python benchmarks/occupancy_rd.py --grid 128 --steps 2000
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
import warnings
from pathlib import Path

import torch

from hyperproj import codec
from hyperproj.inr import OccupancySignal, Siren, fit
from hyperproj.quant import dequantize, quantize

try:
    import hyperproj._fastfood  # noqa: F401

    HAVE_FASTFOOD = True
except ImportError:  # pragma: no cover
    HAVE_FASTFOOD = False

CANDIDATES = ["bunny00", "armadillo", "elephant", "ChineseDragon-10kv"]


def find(mesh: str | None) -> Path:
    if mesh:
        return Path(mesh)
    from hyperproj.inr import find_mesh

    for name in CANDIDATES:
        p = find_mesh(name)
        if p is not None:
            return Path(p)
    local = Path(".data/meshes/data/meshes")
    for name in CANDIDATES:
        if (local / f"{name}.off").is_file():
            return local / f"{name}.off"
    raise SystemExit("no mesh found: run `bash scripts/fetch_test_data.sh` or pass --mesh PATH")


def doh_net(width=40):
    return Siren(3, width, 9, 1, fourier_features=6)


def plain_bytes(net) -> int:
    return sum(p.numel() + 8 for p in net.parameters())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mesh", default=None)
    ap.add_argument("--grid", type=int, default=128, help="IoU grid resolution (default 128)")
    ap.add_argument("--points", type=int, default=100_000)
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--fractions", type=float, nargs="*", default=[0.3, 0.6, 1.0])
    ap.add_argument("--out", type=Path, default=Path("bench-out"))
    ap.add_argument("--quick", action="store_true", help="64³ grid, 20k points, 150 steps")
    a = ap.parse_args(argv)
    if a.quick:
        a.grid, a.points, a.steps = 64, 20_000, 150
    a.out.mkdir(parents=True, exist_ok=True)
    path = find(a.mesh)
    t0 = time.perf_counter()
    sig = OccupancySignal.from_mesh(path, num_points=a.points, grid_resolution=a.grid)
    sig.grid_occupancy()
    print(f"{path.name}: {a.points} points, grid {a.grid}^3 (labels {time.perf_counter() - t0:.0f} s)", flush=True)
    P = sum(p.numel() for p in doh_net().parameters() if p.dim() >= 2)
    rows = []
    for frac in a.fractions:
        n = max(1, round(frac * P))
        proj = "fastfood" if (HAVE_FASTFOOD and n > 3000) else "auto"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = codec.compress(sig, model=doh_net(), latent_dim=n, max_bytes=10**9, steps=a.steps,
                                 projection=proj, progress=False)
        rows.append(dict(method="D'OH 9x40 8-bit", config=f"n={n} ({proj})", kB=len(res.data) / 1000,
                         iou=res.report["iou"], seconds=res.report["seconds"]))
        print(f"  D'OH n={n}: {len(res.data)} B, IoU {res.report['iou']:.4f}", flush=True)
        # plain SIREN of (about) the same size
        target = len(res.data)
        width = max(w for w in range(4, 200) if plain_bytes(Siren(3, w, 9, 1, fourier_features=6)) <= target)
        torch.manual_seed(0)
        net = Siren(3, width, 9, 1, fourier_features=6)
        t = time.perf_counter()
        fit(net, sig, a.steps, lr=1e-4 * 2, progress=False, scheduler="cosine")
        with torch.no_grad():
            for p in net.parameters():
                q, r = quantize(p, 8)
                p.copy_(dequantize(q, r).view_as(p))
        m = sig.evaluate(net)
        rows.append(dict(method="SIREN 9xW 8-bit", config=f"W={width}", kB=plain_bytes(net) / 1000,
                         iou=m["iou"], seconds=time.perf_counter() - t))
        print(f"  plain W={width}: {plain_bytes(net)} B, IoU {m['iou']:.4f}", flush=True)
    with open(a.out / "occupancy_rd.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    print(f"\nOccupancy RD: {path.name}, grid {a.grid}^3, {a.points} points, {a.steps} steps")
    print(f"{'method':18s} {'config':20s} {'kB':>7s} {'IoU':>7s} {'sec':>6s}")
    for r in rows:
        print(f"{r['method']:18s} {r['config']:20s} {r['kB']:7.2f} {r['iou']:7.4f} {r['seconds']:6.1f}")
    print(f"wrote {a.out}/occupancy_rd.csv ({time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

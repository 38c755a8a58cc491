"""Fit the occupancy of a real mesh (CGAL's bunny) with a SIREN and write the marching-cubes mesh.

    python examples/fit_occupancy.py --quick                  # < 30 s
    python examples/fit_occupancy.py --mesh armadillo --steps 500 --grid 128 --out bunny.ply

Meshes come from Debian's libcgal-demo (see hyperproj.inr.data); ``--mesh PATH`` takes any .off.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

import hyperproj
from hyperproj.inr import OccupancySignal, Siren, find_mesh, fit


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mesh", default="bunny00", help="CGAL mesh name or a mesh file")
    ap.add_argument("--points", type=int, default=100_000)
    ap.add_argument("--grid", type=int, default=128, help="IoU / marching-cubes grid resolution")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--layers", type=int, default=3)
    ap.add_argument("--latent", type=float, default=1.0, help="latent size as a fraction of the weights (0 = plain SIREN)")
    ap.add_argument("--lr", type=float, default=None, help="learning rate (default: fit's, tied to the width and depth)")
    ap.add_argument("--out", type=Path, default=Path("occupancy.ply"))
    ap.add_argument("--quick", action="store_true", help="tiny run (< 30 s)")
    args = ap.parse_args()
    if args.quick:
        args.points, args.grid, args.steps, args.width = 10_000, 32, 60, 32

    path = Path(args.mesh) if Path(args.mesh).is_file() else find_mesh(args.mesh)
    if path is None:
        raise SystemExit(f"mesh {args.mesh!r} not found; see `python -m hyperproj.inr.data` to install CGAL's meshes")
    signal = OccupancySignal.from_mesh(path, num_points=args.points, grid_resolution=args.grid, seed=0)
    print(f"{path.name}: {signal.num_samples} points, {float(signal.values.mean()):.1%} inside")

    torch.manual_seed(0)
    model = Siren(3, args.width, args.layers, 1, first_omega=15.0)
    if args.latent > 0:
        n = sum(p.numel() for name, p in model.named_parameters() if name.endswith("weight"))
        model = hyperproj.reparametrize(model, latent_dim=max(1, int(args.latent * n)), seed=0)
    hist = fit(model, signal, steps=args.steps, lr=args.lr, progress=not args.quick, eval_every=max(1, args.steps // 5))
    print(f"IoU on {args.grid}^3: {hist.best[1]:.3f} (step {hist.best[0]})")
    verts, faces = signal.to_mesh(model, args.out)
    print(f"wrote {args.out}: {len(verts)} vertices, {len(faces)} faces")


if __name__ == "__main__":
    t = time.perf_counter()
    main()
    print(f"done in {time.perf_counter() - t:.1f} s")

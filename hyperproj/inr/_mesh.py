"""Triangle-mesh helpers for occupancy signals: reading, inside/outside, writing. numpy only.

The inside test casts a ray along +z from every query point and counts the triangles it crosses
(odd = inside), which is exact for a closed (watertight) mesh. Triangles are binned by their xy
bounding boxes, so each point only meets the few triangles above its cell: vectorised, O(points ×
triangles per cell). Rays are nudged by a fixed tiny xy offset so grids aligned with mesh vertices
never hit an edge exactly.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .._errors import HyperprojError

_NUDGE = np.array([1.2345e-7, 2.7183e-7])


def load_mesh(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """(vertices (V, 3) float64, faces (F, 3) int64) from ``.off`` (built in) or any format trimesh reads.

    Polygons with more than three corners are fan-triangulated.
    """
    path = Path(path)
    if not path.is_file():
        raise HyperprojError(f"hyperproj.inr: mesh file not found: {path}")
    if path.suffix.lower() == ".off":
        return _load_off(path)
    try:
        import trimesh
    except ImportError:
        raise HyperprojError(
            f"hyperproj.inr: reading {path.suffix} meshes needs trimesh (pip install trimesh); "
            ".off files are read without it"
        ) from None
    mesh = trimesh.load(path, force="mesh", process=False)
    return np.asarray(mesh.vertices, dtype=np.float64), np.asarray(mesh.faces, dtype=np.int64)


def _load_off(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with open(path) as fh:
        lines = [ln.split("#", 1)[0].split() for ln in fh]
    lines = [ln for ln in lines if ln]
    if not lines or lines[0][0] != "OFF":
        raise HyperprojError(f"hyperproj.inr: {path} is not a plain OFF file (header {lines[:1]})")
    counts = lines[0][1:] or lines[1]
    body = lines[1:] if lines[0][1:] else lines[2:]
    nv, nf = int(counts[0]), int(counts[1])
    verts = np.array([ln[:3] for ln in body[:nv]], dtype=np.float64).reshape(nv, 3)
    faces: list[list[int]] = []
    for ln in body[nv : nv + nf]:
        k = int(ln[0])
        idx = [int(t) for t in ln[1 : 1 + k]]  # anything after the k indices (colours) is ignored
        faces.extend([idx[0], idx[i], idx[i + 1]] for i in range(1, k - 1))
    return verts, np.asarray(faces, dtype=np.int64).reshape(-1, 3)


def normalize(vertices: np.ndarray, padding: float) -> np.ndarray:
    """Centre the bounding box at 0 and scale its longest side to ``2 * (1 - padding)``."""
    lo, hi = vertices.min(0), vertices.max(0)
    scale = (hi - lo).max() / 2
    if scale <= 0:
        raise HyperprojError("hyperproj.inr: mesh has zero extent")
    return (vertices - (lo + hi) / 2) * ((1.0 - padding) / scale)


def is_watertight(faces: np.ndarray) -> bool:
    """Every undirected edge is shared by exactly two faces."""
    edges = np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), axis=1)
    _, counts = np.unique(edges, axis=0, return_counts=True)
    return bool(np.all(counts == 2))


def sample_surface(vertices: np.ndarray, faces: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` points uniformly distributed over the surface area."""
    tri = vertices[faces]
    area = 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
    idx = rng.choice(len(faces), size=n, p=area / area.sum())
    u, v = rng.random(n), rng.random(n)
    flip = u + v > 1
    u[flip], v[flip] = 1 - u[flip], 1 - v[flip]
    t = tri[idx]
    return t[:, 0] + u[:, None] * (t[:, 1] - t[:, 0]) + v[:, None] * (t[:, 2] - t[:, 0])


def inside(vertices: np.ndarray, faces: np.ndarray, points: np.ndarray, chunk: int = 262_144) -> np.ndarray:
    """Boolean (N,): whether each point lies inside the closed mesh (z-ray crossing parity)."""
    tri = vertices[faces]
    a = tri[:, 0]
    e0, e1 = (tri[:, 1] - a)[:, :2], (tri[:, 2] - a)[:, :2]
    det = e0[:, 0] * e1[:, 1] - e0[:, 1] * e1[:, 0]
    keep = np.abs(det) > 1e-18  # triangles seen edge-on from z cannot be crossed by a z-ray
    a, e0, e1, det = a[keep], e0[keep], e1[keep], det[keep]
    dz0, dz1 = tri[keep, 1, 2] - a[:, 2], tri[keep, 2, 2] - a[:, 2]
    xy = tri[keep, :, :2]
    lo, hi = xy.min(1), xy.max(1)

    # Bin triangles over an xy grid of cells.
    nt = len(a)
    g = int(np.clip(np.sqrt(max(nt, 1)) / 2, 8, 512))
    origin = np.minimum(lo.min(0), points[:, :2].min(0)) - 1e-9
    extent = np.maximum(hi.max(0), points[:, :2].max(0)) + 1e-9 - origin
    cell = extent / g
    c_lo = np.clip(((lo - origin) / cell).astype(np.int64), 0, g - 1)
    c_hi = np.clip(((hi - origin) / cell).astype(np.int64), 0, g - 1)
    nx, ny = c_hi[:, 0] - c_lo[:, 0] + 1, c_hi[:, 1] - c_lo[:, 1] + 1
    counts = nx * ny
    tri_id = np.repeat(np.arange(nt), counts)
    local = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    cx = c_lo[tri_id, 0] + local % nx[tri_id]
    cy = c_lo[tri_id, 1] + local // nx[tri_id]
    cell_of_pair = cx * g + cy
    order = np.argsort(cell_of_pair, kind="stable")
    tri_sorted = tri_id[order]
    cell_start = np.searchsorted(cell_of_pair[order], np.arange(g * g + 1))

    out = np.zeros(len(points), dtype=bool)
    for s in range(0, len(points), chunk):
        p = points[s : s + chunk]
        pxy = p[:, :2] + _NUDGE
        pc = np.clip(((pxy - origin) / cell).astype(np.int64), 0, g - 1)
        pcell = pc[:, 0] * g + pc[:, 1]
        k = cell_start[pcell + 1] - cell_start[pcell]
        pt = np.repeat(np.arange(len(p)), k)
        offs = np.arange(k.sum()) - np.repeat(np.cumsum(k) - k, k)
        t = tri_sorted[np.repeat(cell_start[pcell], k) + offs]
        d = pxy[pt] - a[t, :2]
        u = (d[:, 0] * e1[t, 1] - d[:, 1] * e1[t, 0]) / det[t]
        v = (e0[t, 0] * d[:, 1] - e0[t, 1] * d[:, 0]) / det[t]
        hit = (u >= 0) & (v >= 0) & (u + v <= 1)
        z = a[t, 2] + u * dz0[t] + v * dz1[t]
        hit &= z > p[pt, 2]
        crossings = np.bincount(pt[hit], minlength=len(p))
        out[s : s + chunk] = crossings % 2 == 1
    return out


def write_mesh(path: str | os.PathLike, vertices: np.ndarray, faces: np.ndarray) -> Path:
    """Write a triangle mesh as binary little-endian ``.ply`` or as ``.obj`` (by suffix)."""
    path = Path(path)
    vertices = np.asarray(vertices, dtype="<f4")
    faces = np.asarray(faces, dtype=np.int64)
    suffix = path.suffix.lower()
    if suffix == ".ply":
        header = (
            "ply\nformat binary_little_endian 1.0\n"
            f"element vertex {len(vertices)}\nproperty float x\nproperty float y\nproperty float z\n"
            f"element face {len(faces)}\nproperty list uchar int vertex_indices\nend_header\n"
        )
        rec = np.zeros(len(faces), dtype=[("n", "u1"), ("idx", "<i4", (3,))])
        rec["n"] = 3
        rec["idx"] = faces
        with open(path, "wb") as fh:
            fh.write(header.encode("ascii"))
            fh.write(vertices.tobytes())
            fh.write(rec.tobytes())
    elif suffix == ".obj":
        with open(path, "w") as fh:
            np.savetxt(fh, vertices, fmt="v %.6f %.6f %.6f")
            np.savetxt(fh, faces + 1, fmt="f %d %d %d")
    else:
        raise HyperprojError(f"hyperproj.inr: mesh path must end in .ply or .obj, got {path.name!r}")
    return path

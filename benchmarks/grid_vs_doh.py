"""The grid family beside the SIREN/D'OH family on the same images, from saved rows: the grid's
``benchmarks/grid_rd.py --sweep ... --out ROWS.jsonl`` output and the D'OH rows of a
``benchmarks/rate_sweep.py`` log. Prints, per image, both curves and the Bjøntegaard deltas of the
grid curve against WebP, JPEG2000 (9/7; the anchor curves saved with the grid rows) and the D'OH
curve, over all points and over the points above ``--min-bpp`` (the ``bjontegaard`` package,
Akima; ``pip install hyperproj[bench]``). No encoding here: the rows are what the two benchmarks
measured. Usage::

    python benchmarks/grid_vs_doh.py --grid docs/data/grid_sweep_kodak4_120s_1thread_2026-12-07.jsonl \\
        --doh docs/data/rate_sweep_kodak4_120s_1thread.txt
"""

from __future__ import annotations

import argparse
import json
import re
import warnings
from pathlib import Path

from grid_rd import bd_rows

_DOH_ROW = re.compile(r"(kodim\d+|\S+)\s+([\d.]+) doh\s+bpp ([\d.]+) PSNR\s+([\d.]+)")


def load(grid_files: list[Path], doh_files: list[Path]) -> dict[str, dict[str, list[tuple[float, float]]]]:
    """``{image: {"grid", "webp", "jpeg2000", "doh": [(bpp, psnr), ...]}}``, points deduplicated and sorted."""
    curves: dict[str, dict[str, set]] = {}
    for f in grid_files:
        for line in f.read_text().splitlines():
            if line.strip():
                row = json.loads(line)
                c = curves.setdefault(row["image"], {k: set() for k in ("grid", "webp", "jpeg2000", "doh")})
                c["grid"] |= {tuple(p) for p in row["grid"]}
                c["webp"] |= {tuple(p) for p in row.get("webp_curve", [])}
                c["jpeg2000"] |= {tuple(p) for p in row.get("jpeg2000_curve", [])}
    for f in doh_files:
        for line in f.read_text().splitlines():
            m = _DOH_ROW.match(line)
            if m and m[1] in curves:
                curves[m[1]]["doh"].add((float(m[3]), float(m[4])))
    return {img: {k: sorted(v) for k, v in c.items()} for img, c in curves.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--grid", type=Path, nargs="+", required=True, help="grid_rd.py --out JSON-lines files")
    ap.add_argument("--doh", type=Path, nargs="+", required=True, help="rate_sweep.py logs with 'doh' rows")
    ap.add_argument("--min-bpp", type=float, default=0.15, help="the second BD range starts above this rate")
    ap.add_argument("--max-doh-bpp", type=float, default=1.5, help="D'OH points above this rate are left out")
    a = ap.parse_args()
    warnings.simplefilter("ignore")  # the package's overlap warnings: the ranges are printed instead
    for img, c in sorted(load(a.grid, a.doh).items()):
        c["doh"] = [p for p in c["doh"] if p[0] <= a.max_doh_bpp]
        print(img)
        for name in ("grid", "doh"):
            print(f"  {name:5s}", "  ".join(f"{b:.3f}/{p:.2f}" for b, p in c[name]))
        anchors = {k: c[k] for k in ("webp", "jpeg2000", "doh")}
        for label, lo in (("all points", 0.0), (f"> {a.min_bpp:g} bpp", a.min_bpp)):
            r = bd_rows([p for p in c["grid"] if p[0] > lo], {k: [p for p in v if p[0] > lo] for k, v in anchors.items()})
            cells = []
            for k in anchors:
                rate, psnr = r[f"{k}_bd_rate"], r[f"{k}_bd_psnr"]
                cells.append(f"vs {k}: BD-rate {'-' if rate is None else f'{rate:+.1f} %'}, "
                             f"BD-PSNR {'-' if psnr is None else f'{psnr:+.2f} dB'}")
            print(f"  {label:12s}", "; ".join(cells))


if __name__ == "__main__":
    main()

"""Screen minibatch sampling settings for ``compress`` under a wall-clock budget, one run each.

Each setting runs ``hyperproj.compress(image, bpp=..., time_budget=...)`` with
``fit_options={"sampling": ...}`` and prints the decoded file's PSNR, the float model's PSNR and
the file's bpp. A setting is ``uniform`` or ``U,ALPHA[,BATCH]`` (``ErrorSampling(uniform=U,
alpha=ALPHA)``, minibatch ``BATCH`` rows). The table in docs/codec.md ("Error-drawn minibatches")
comes from this script (its first rows from a prototype that also had draws ∝ √error).

Usage::

    python benchmarks/error_sampling_screen.py --images kodim23 kodim01 --budget 90 \\
        --settings uniform 0.5,0.6 0.5,0.8 0.5,0.6,4096
    python benchmarks/error_sampling_screen.py --quick   # 256 px astronaut, 1 bpp, 10 s per setting
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import torch

import hyperproj
from hyperproj.inr import ErrorSampling, ImageSignal


def parse_setting(text: str) -> dict:
    if text == "uniform":
        return {"sampling": "uniform"}
    parts = text.split(",")
    if len(parts) not in (2, 3):
        raise SystemExit(f"--settings: expected 'uniform' or U,ALPHA[,BATCH], got {text!r}")
    opts: dict = {"sampling": ErrorSampling(uniform=float(parts[0]), alpha=float(parts[1]))}
    if len(parts) == 3:
        opts["batch_size"] = int(parts[2])
    return opts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/kodak")
    ap.add_argument("--images", nargs="+", default=["kodim23", "kodim01"])
    ap.add_argument("--settings", nargs="+", default=["uniform", "0.5,0.6"])
    ap.add_argument("--bpp", type=float, default=0.3)
    ap.add_argument("--budget", type=float, default=90.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="256 px astronaut, 1 bpp, 10 s per setting")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    settings = [(s, parse_setting(s)) for s in a.settings]
    if a.quick:
        import skimage.data

        images = [("astronaut256", ImageSignal.from_array(skimage.data.astronaut()).resize(256))]
        a.budget, a.bpp = 10.0, 1.0
    else:
        images = []
        for name in a.images:
            path = a.data / f"{name}.png"
            if not path.exists():
                print(f"note: {path} not found; skipped", file=sys.stderr)
                continue
            images.append((name, ImageSignal.from_file(path, mode="RGB")))
    print(f"# compress at {a.bpp} bpp, {a.budget:.0f} s per run, {a.threads} thread(s)")
    for name, sig in images:
        for text, opts in settings:
            t = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                r = hyperproj.compress(sig, bpp=a.bpp, time_budget=a.budget, progress=False, fit_options=opts).report
            print(f"{name} {text:16s} psnr {r['psnr']:.2f} float {r['unquantized'].get('psnr', float('nan')):.2f} "
                  f"bpp {r['bpp']:.3f} {time.perf_counter() - t:.0f}s", flush=True)


if __name__ == "__main__":
    main()

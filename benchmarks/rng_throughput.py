"""Throughput of hyperproj's counter-based generator next to torch.rand / torch.randn.

Ratios are taken side by side in one run (interleaved repeats, medians), since these machines
are noisy.

    python benchmarks/rng_throughput.py [--count 10000000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from hyperproj import rng


def _time(fn, repeats):
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--count", type=int, default=10_000_000)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args(argv)
    n = args.count
    idx = torch.arange(n)
    cases = {
        "torch.rand": lambda: torch.rand(n),
        "torch.randn": lambda: torch.randn(n),
        "hyperproj uniform": lambda: rng.distribution_values(0, 1, idx, "uniform"),
        "hyperproj normal": lambda: rng.distribution_values(0, 1, idx, "normal"),
        "hyperproj rademacher": lambda: rng.distribution_values(0, 1, idx, "rademacher"),
    }
    times = {k: [] for k in cases}
    for _ in range(args.repeats):  # interleave so drift hits every case alike
        for k, fn in cases.items():
            times[k] += _time(fn, 1)
    base = statistics.median(times["torch.rand"])
    print(f"{n:,} float32 values, {torch.get_num_threads()} threads, median of {args.repeats}")
    print(f"{'generator':24s} {'M values/s':>11s} {'time vs torch.rand':>19s}")
    for k, ts in times.items():
        med = statistics.median(ts)
        print(f"{k:24s} {n / med / 1e6:11.1f} {med / base:18.2f}x")


if __name__ == "__main__":
    main()

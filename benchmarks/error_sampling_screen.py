"""Screen minibatch sampling settings for ``compress`` under a wall-clock budget, one run each.

Each setting runs ``hyperproj.compress(image, bpp=..., time_budget=...)`` with
``fit_options={"sampling": ...}`` and prints the decoded file's PSNR, the float model's PSNR and
the file's bpp. A setting is ``uniform`` or ``U,ALPHA[,BATCH[,REFRESH]]`` (``ErrorSampling(uniform=U,
alpha=ALPHA, refresh_every=REFRESH)``, minibatch ``BATCH`` rows). The table in docs/codec.md ("Error-drawn minibatches")
comes from this script (its first rows from a prototype that also had draws ∝ √error).

Usage::

    python benchmarks/error_sampling_screen.py --images kodim23 kodim01 --budget 90 \\
        --settings uniform 0.5,0.6 0.5,0.8 0.5,0.6,4096
    python benchmarks/error_sampling_screen.py --quick   # 256 px astronaut, 1 bpp, 10 s per setting
    python benchmarks/error_sampling_screen.py --cost    # the sampler's own cost per step

``--cost`` times the sampler alone (draw + update of a Kodak-sized 768 × 512 image's rows,
8,192-row batches) for ``refresh_every`` 1, 2, 4 and 8 and a uniform draw, rounds alternated,
median kept, with one offset-D'OH training step at the same batch for scale.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import torch
from _paths import HINT, kodak_dir

import hyperproj
from hyperproj.inr import ErrorSampling, ImageSignal


def parse_setting(text: str) -> dict:
    if text == "uniform":
        return {"sampling": "uniform"}
    parts = text.split(",")
    if len(parts) not in (2, 3, 4):
        raise SystemExit(f"--settings: expected 'uniform' or U,ALPHA[,BATCH[,REFRESH]], got {text!r}")
    extra = {"refresh_every": int(parts[3])} if len(parts) == 4 else {}
    opts: dict = {"sampling": ErrorSampling(uniform=float(parts[0]), alpha=float(parts[1]), **extra)}
    if len(parts) >= 3:
        opts["batch_size"] = int(parts[2])
    return opts


def sampler_cost(rows: int = 768 * 512, batch: int = 8192, rounds: int = 5, draws: int = 100) -> None:
    """Print ms per step of each sampler, rounds alternated (medians), and one training step."""
    import statistics

    from hyperproj.inr.fit import _ErrorSampler

    gen = torch.Generator().manual_seed(0)
    losses = torch.rand(draws, batch, generator=gen)

    def error_draws(refresh: int):
        s = _ErrorSampler(ErrorSampling(refresh_every=refresh), rows, batch, gen, torch.device("cpu"))
        s.update(torch.arange(batch), losses[0])
        s.err.uniform_(0.0, 1.0, generator=gen)  # a spread of errors, as mid-training

        def run():
            for k in range(draws):
                idx, _, _ = s.draw()
                s.update(idx, losses[k])
        return run

    def uniform_draws():
        for _ in range(draws):
            torch.randint(rows, (batch,), generator=gen)

    cases = {f"error, refresh_every={r}": error_draws(r) for r in (1, 2, 4, 8)}
    cases["uniform"] = uniform_draws
    times: dict[str, list[float]] = {k: [] for k in cases}
    for _ in range(rounds):
        for name, fn in cases.items():
            t = time.perf_counter()
            fn()
            times[name].append((time.perf_counter() - t) / draws * 1e3)
    step = _training_step_ms(batch)
    print(f"# sampler cost, {rows} rows, batch {batch}, {torch.get_num_threads()} thread(s), "
          f"median of {rounds} alternated rounds x {draws} draws")
    base = statistics.median(times["error, refresh_every=1"])
    for name, ts in times.items():
        m = statistics.median(ts)
        print(f"{name:24s} {m:7.3f} ms/step  {m / base:5.2f}x of refresh_every=1  {m / step:6.1%} of a training step")
    print(f"{'training step':24s} {step:7.3f} ms/step  (offset D'OH, SIREN 10 x 48, n = 15,207, fastfood)")


def _training_step_ms(batch: int, steps: int = 40) -> float:
    """ms per step of compress's default model at 0.3 bpp on a 768 x 512 image (uniform draws)."""
    from fit_step import kodak_size_default_model  # benchmarks/ is on sys.path when run as a script

    from hyperproj.inr import fit

    sig, hyper = kodak_size_default_model()
    fit(hyper, sig, 5, batch_size=batch, progress=False, eval_every=10**9, restore_best=False)  # warm-up
    hist = fit(hyper, sig, steps, batch_size=batch, progress=False, eval_every=10**9, restore_best=False)
    return hist.seconds[-1] / steps * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=kodak_dir(), help=f"folder of Kodak PNGs (default {kodak_dir()})")
    ap.add_argument("--images", nargs="+", default=["kodim23", "kodim01"])
    ap.add_argument("--settings", nargs="+", default=["uniform", "0.5,0.6"])
    ap.add_argument("--bpp", type=float, default=0.3)
    ap.add_argument("--budget", type=float, default=90.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="256 px astronaut, 1 bpp, 10 s per setting")
    ap.add_argument("--cost", action="store_true", help="time the sampler itself and exit")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    if a.cost:
        sampler_cost()
        return
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
                print(f"note: {path} not found; skipped ({HINT})", file=sys.stderr)
                continue
            images.append((name, ImageSignal.from_file(path, mode="RGB")))
    print(f"# compress at {a.bpp} bpp, {a.budget:.0f} s per run, {a.threads} thread(s)")
    for name, sig in images:
        for text, opts in settings:
            t = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                r = hyperproj.compress(sig, bpp=a.bpp, time_budget=a.budget, progress=False, fit_options=opts,
                                       family="doh").report
            print(f"{name} {text:16s} psnr {r['psnr']:.2f} float {r['unquantized'].get('psnr', float('nan')):.2f} "
                  f"bpp {r['bpp']:.3f} {time.perf_counter() - t:.0f}s", flush=True)


if __name__ == "__main__":
    main()

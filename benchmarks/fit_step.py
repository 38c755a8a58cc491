"""Per-step overhead of ``hyperproj.fit`` and the GEMM efficiency of a SIREN training step.

Measures, on this machine:

1. the step time of ``fit`` vs a minimal hand-written Adam loop, same ``Siren(2, 40, 9, 3)`` (D'OH's
   target), same data, batch 16,384 (a 128×128 real photo, full batch) → overhead ratio
   (target ≤ 1.05×);
2. the fp32 GEMM throughput of a large matmul (the machine's practical peak), and the fraction of it
   a SIREN training step reaches at batch 16,384 and 65,536 (FLOPs counted as 3 × forward
   matmul FLOPs: forward, input-gradient and weight-gradient GEMMs; sine/elementwise work is not
   counted, so the fraction shows how far from GEMM-bound the step is);
3. the step of ``compress``'s default image model at 0.3 bpp on a 768 × 512 image (offset D'OH,
   SIREN 10 × 48, n = 15,207, fastfood, 8,192-row minibatches drawn by error) with the sine
   layers' compiled elementwise kernels on and off (``HYPERPROJ_COMPILE``), rounds alternated.

Usage: ``python benchmarks/fit_step.py [--steps 30] [--threads N] [--skip-part3]``. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import time

import skimage.data
import torch
import torch.nn.functional as F

from hyperproj.inr import ImageSignal, Siren, fit


def hand_loop(model, coords, values, steps, lr):
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    t = time.perf_counter()
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        loss = F.mse_loss(model(coords), values)
        loss.backward()
        opt.step()
    return (time.perf_counter() - t) / steps


def fit_loop(model, signal, steps, lr):
    hist = fit(model, signal, steps=steps, lr=lr, progress=False, eval_every=steps, restore_best=False)
    return hist.seconds[-1] / steps


def gemm_gflops(n=2048, repeats=10):
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    t = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * n**3 * repeats / (time.perf_counter() - t) / 1e9


def siren_flops(model, batch):
    macs = sum(m.in_features * m.out_features for m in model.modules() if isinstance(m, torch.nn.Linear))
    return 3 * 2 * macs * batch


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--repeats", type=int, default=3, help="alternating rounds; the median is kept")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--skip-part3", action="store_true", help="skip the compiled-kernel comparison")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    photo = ImageSignal.from_array(skimage.data.astronaut()).resize(128)  # 16,384 pixels
    assert photo.num_pixels == 16_384
    torch.manual_seed(0)
    init = Siren(2, 40, 9, 3).state_dict()

    def fresh():
        m = Siren(2, 40, 9, 3)
        m.load_state_dict(init)
        return m

    hand_loop(fresh(), photo.coords, photo.values, 3, 1e-4)  # warm up
    hand, ours = [], []
    for _ in range(args.repeats):  # alternate to share any drift in machine load
        hand.append(hand_loop(fresh(), photo.coords, photo.values, args.steps, 1e-4))
        ours.append(fit_loop(fresh(), photo, args.steps, 1e-4))
    hand_t, fit_t = sorted(hand)[len(hand) // 2], sorted(ours)[len(ours) // 2]

    peak = max(gemm_gflops() for _ in range(3))
    rows = []
    for batch in (16_384, 65_536):
        coords = torch.rand(batch, 2) * 2 - 1
        values = torch.rand(batch, 3)
        m = fresh()
        hand_loop(m, coords, values, 2, 1e-4)
        t = hand_loop(m, coords, values, max(3, args.steps // 3), 1e-4)
        rows.append((batch, t, siren_flops(m, batch) / t / 1e9))

    print(f"threads: {torch.get_num_threads()}   model: Siren(2, 40, 9, 3), 15,003 params")
    print(f"{'':28s}{'ms/step':>10s}")
    print(f"{'hand-written Adam loop':28s}{hand_t * 1e3:10.2f}")
    print(f"{'hyperproj.fit':28s}{fit_t * 1e3:10.2f}")
    print(f"overhead ratio fit/hand: {fit_t / hand_t:.3f}  (target <= 1.05)")
    print()
    print(f"fp32 GEMM 2048x2048: {peak:.1f} GFLOP/s")
    print(f"{'batch':>8s}{'ms/step':>10s}{'GFLOP/s':>10s}{'of GEMM':>10s}")
    for batch, t, gf in rows:
        print(f"{batch:8d}{t * 1e3:10.1f}{gf:10.1f}{gf / peak:10.1%}")
    if not args.skip_part3:
        compiled_kernels(args.steps * 2, args.repeats)


def kodak_size_default_model():
    """``(signal, hyper)``: a random 768 x 512 image and ``compress``'s model for it at 0.3 bpp
    (offset D'OH, SIREN 10 x 48, n = 15,207, fastfood). Also used by error_sampling_screen.py."""
    import warnings

    import hyperproj
    from hyperproj.codec import default_model

    sig = ImageSignal(torch.rand(512, 768, 3, generator=torch.Generator().manual_seed(1)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        hyper = hyperproj.reparametrize(default_model(sig, latent_dim=15207), 15207, 0, latent_scale="offset")
    return sig, hyper


def compiled_kernels(steps: int, repeats: int) -> None:
    """Part 3: compress's default Kodak-size training step, compiled sine kernels on vs off."""
    import os
    import statistics

    sig, hyper = kodak_size_default_model()
    opts = {"batch_size": 8192, "sampling": "error", "progress": False, "eval_every": 10**9, "restore_best": False}
    t = time.perf_counter()
    fit(hyper, sig, 3, **opts)  # compiles the kernels (once per process)
    first = time.perf_counter() - t
    times: dict[str, list[float]] = {"1": [], "0": []}
    before = os.environ.get("HYPERPROJ_COMPILE")
    try:
        for _ in range(repeats):
            for mode in times:
                os.environ["HYPERPROJ_COMPILE"] = mode
                times[mode].append(fit(hyper, sig, steps, **opts).seconds[-1] / steps)
    finally:
        if before is None:
            os.environ.pop("HYPERPROJ_COMPILE", None)
        else:
            os.environ["HYPERPROJ_COMPILE"] = before
    on, off = statistics.median(times["1"]), statistics.median(times["0"])
    print()
    print("compress's default step, 768 x 512 image, batch 8,192 drawn by error "
          f"(median of {repeats} alternated rounds x {steps} steps)")
    print(f"{'compiled sine kernels':28s}{on * 1e3:10.2f} ms/step")
    print(f"{'eager (HYPERPROJ_COMPILE=0)':28s}{off * 1e3:10.2f} ms/step")
    print(f"speed-up eager/compiled: {off / on:.3f}x   (first 3 steps incl. compiling: {first:.1f} s)")


if __name__ == "__main__":
    main()

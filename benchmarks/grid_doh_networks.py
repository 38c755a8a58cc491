"""D'OH networks on vs off in the latent-grid family, at equal λ (no rate controller).

For each image crop and each λ: the same :class:`~hyperproj.inr.LatentGrid` (7 levels, synthesis
``levels → 16 → 16 → 3``, ARM ``12 → 12 → 12 → 2``, torch seed 0) trained by
:func:`~hyperproj.inr.fit_grid` with a FIXED λ (``target_bits=None``) and a fixed number of
steps, the family's recipe otherwise (lr 1e-2, latents ×10, 60 % of the steps at half resolution,
the finest level held at zero), once with direct network weights and once per ``--shares`` with
the synthesis's weight matrices projected from one latent of that share of its weights
(``net_latent_dim``), and per ``--both`` with the ARM's projected too (``net_projected="both"``,
the share of all the weights). Each model is then stored as the family stores it
(:func:`hyperproj.codec.families.grid.choose_steps`: steps, and for projected models the form,
by MSE + λ·bits) and decoded; bytes and PSNR are the real file's and the decoded pixels'.

Columns: ``form`` (the stored networks: direct, or the latent + biases), ``net B`` (network
bytes), ``total B``, ``bpp``, ``PSNR`` (dB, decoded file), ``cost`` (MSE + λ·bpp, what training
and the step choice minimise), then the changes against the direct row of the same image and λ.

Usage::

    python benchmarks/grid_doh_networks.py                       # kodim01, kodim23 crops, 2 λ
    python benchmarks/grid_doh_networks.py --size 128 --steps 300 --images kodim05
    python benchmarks/grid_doh_networks.py --codec kodim23 --codec-steps 300   # the codec A/B

``--codec IMAGE`` runs the codec instead: ``compress(image, bpp=B, family="grid", steps=N)`` at
``--codec-bpp`` rates (default 0.3 and 0.1), networks direct vs ``net_share=0.5`` (synthesis
projected), the whole image, λ under the family's rate control (so the rates differ a little).

``--data`` defaults to ``../shared/data/kodak`` beside the checkout (``benchmarks/_paths.py``);
without it, skimage's astronaut and coffee images stand in.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from _paths import kodak_dir

from hyperproj.codec import decompress
from hyperproj.codec.families.grid import choose_steps, describe_grid, encode_grid
from hyperproj.codec.format import read_container
from hyperproj.inr import ImageSignal, LatentGrid, fit_grid

HIDDEN, ARM_HIDDEN, LEVELS = (16, 16), 12, 7


def _crops(data: Path, names: list[str], size: int) -> list[tuple[str, ImageSignal]]:
    out = []
    for name in names:
        path = data / f"{name}.png"
        if path.exists():
            sig = ImageSignal.from_file(path)
        else:  # no Kodak here: skimage's photographs stand in
            import skimage.data

            name = {0: "astronaut", 1: "coffee"}[len(out) % 2]
            sig = ImageSignal.from_array(getattr(skimage.data, name)())
        h, w = sig.shape[:2]
        out.append((f"{name}[{size}]", sig.crop((h - size) // 2, (w - size) // 2, size, size)))
    return out


def run(sig: ImageSignal, lam: float, steps: int, share: float | None, parts: str = "synthesis") -> dict:
    h, w, c = sig.shape
    torch.manual_seed(0)
    probe = LatentGrid(h, w, c, levels=LEVELS, hidden=HIDDEN, arm_hidden=ARM_HIDDEN)
    weights = sum(m.weight.numel() for m in [*probe.synthesis, *(probe.arm if parts == "both" else [])])
    dim = None if share is None else max(1, round(share * weights))
    torch.manual_seed(0)
    net = LatentGrid(h, w, c, levels=LEVELS, hidden=HIDDEN, arm_hidden=ARM_HIDDEN, net_latent_dim=dim, net_seed=0,
                     net_projected=parts)
    t0 = time.perf_counter()
    fit_grid(net, sig, lam=lam, steps=steps, lr=1e-2, latent_lr_scale=10.0, coarse_share=0.6, freeze_finest=True)
    train_s = time.perf_counter() - t0
    target = np.round(sig.image.numpy() * 255.0)
    qs, qa, qz, costs = choose_steps(net, target, lam)
    data = encode_grid(net, qs, qa, qz=qz)
    info = describe_grid(*read_container(data), data)
    dec = decompress(data)
    mse = float(np.mean((dec.decoded_pixels.astype(np.float64) - target) ** 2)) / 255.0**2
    bpp = 8 * len(data) / (h * w)
    return {"net": "direct" if share is None else f"{'syn' if parts == 'synthesis' else 'both'} {round(100 * share)}% d={dim}",
            "form": info.get("network_form", "direct"), "net_bytes": info["network_bytes"], "bytes": len(data),
            "bpp": bpp, "psnr": -10 * np.log10(mse), "cost": mse + lam * bpp, "train_s": train_s, "costs": costs}


def codec_ab(path: Path, rates: list[float], steps: int) -> None:
    from hyperproj import codec

    sig = ImageSignal.from_file(path)
    print(f"# codec A/B: {path.stem} {sig.shape[1]}x{sig.shape[0]}, compress(..., family='grid', steps={steps}), "
          "torch seed 0; bytes and PSNR of the real file")
    print(f"{'bpp target':>10} {'networks':<22} {'form':<9} {'net B':>6} {'total B':>8} {'bpp':>6} {'PSNR':>6} "
          f"{'final λ':>8} {'shrink':>6} {'s':>6}")
    for bpp in rates:
        for label, kw in (("direct", {}), ("syn 50% (net_share)", {"net_share": 0.5})):
            torch.manual_seed(0)
            t0 = time.perf_counter()
            res = codec.compress(sig, bpp=bpp, family="grid", steps=steps, progress=False, **kw)
            r = res.report
            print(f"{bpp:>10} {label:<22} {r.get('network_form', 'direct'):<9} {r['network_bytes']:>6} "
                  f"{r['file_bytes']:>8} {r['bpp']:>6.3f} {r['psnr']:>6.2f} {r['lam']:>8.2e} {r['latent_shrink']:>6.2f} "
                  f"{time.perf_counter() - t0:>6.0f}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=None, help="Kodak folder (default ../shared/data/kodak)")
    ap.add_argument("--images", nargs="+", default=["kodim01", "kodim23"])
    ap.add_argument("--size", type=int, default=256, help="centre crop side in pixels")
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--lams", type=float, nargs="+", default=[2e-3, 1e-2])
    ap.add_argument("--shares", type=float, nargs="+", default=[0.5, 0.75])
    ap.add_argument("--both", type=float, nargs="*", default=[0.5],
                    help="shares at which the ARM is projected too (net_projected='both')")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--codec", default=None, help="run the codec A/B on this Kodak image instead")
    ap.add_argument("--codec-bpp", type=float, nargs="+", default=[0.3, 0.1])
    ap.add_argument("--codec-steps", type=int, default=300)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    if a.codec:
        return codec_ab((a.data if a.data is not None else kodak_dir()) / f"{a.codec}.png", a.codec_bpp, a.codec_steps)
    crops = _crops(a.data if a.data is not None else kodak_dir(), a.images, a.size)
    print(f"# {a.steps} steps, fixed λ, LatentGrid levels={LEVELS} hidden={list(HIDDEN)} arm_hidden={ARM_HIDDEN}, "
          f"torch seed 0, {a.threads} thread(s)")
    head = (f"{'image':<14} {'λ':>7} {'networks':<20} {'form':<9} {'net B':>6} {'total B':>8} {'bpp':>6} "
            f"{'PSNR':>6} {'cost':>9} | {'Δnet B':>6} {'Δtotal B':>8} {'ΔPSNR':>6} {'Δcost %':>7} {'train s':>7}")
    print(head)
    for name, sig in crops:
        for lam in a.lams:
            base = None
            for share, parts in [(None, "synthesis"), *[(v, "synthesis") for v in a.shares],
                                 *[(v, "both") for v in a.both]]:
                r = run(sig, lam, a.steps, share, parts)
                base = base or r
                print(f"{name:<14} {lam:>7.0e} {r['net']:<20} {r['form']:<9} {r['net_bytes']:>6} {r['bytes']:>8} "
                      f"{r['bpp']:>6.3f} {r['psnr']:>6.2f} {r['cost']:>9.2e} | {r['net_bytes'] - base['net_bytes']:>+6} "
                      f"{r['bytes'] - base['bytes']:>+8} {r['psnr'] - base['psnr']:>+6.2f} "
                      f"{100 * (r['cost'] / base['cost'] - 1):>+7.1f} {r['train_s']:>7.1f}", flush=True)


if __name__ == "__main__":
    main()

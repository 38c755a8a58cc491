"""Meta-learned modulations on 32×32 patches: shift (Functa) vs low-rank gating (VC-INR).

Trains, for each latent size, a shift-modulated and a low-rank-gated SIREN with the same data,
the same number of outer steps, batch and inner steps (MAML outer loop, Meta-SGD inner loop) on
patches of non-Kodak photos (scikit-image's bundled photos plus the opencv-doc / libjxl-testdata
photos that ``scripts/fetch_test_data.sh`` unpacks), then on held-out Kodak patches reports:

* ``PSNR`` — after the inner loop, unquantized latents (8-bit rounded output);
* ``coded PSNR`` / ``bpp`` — after quantizing the latents (``--qstep`` in units of each
  dimension's fitted σ) and coding all test latents in one ``.hpz`` latents file; bpp is the
  file's size in bits over the test pixels; ``1-patch bpp`` is the mean size of a file holding
  one patch's latent (the fixed header cost is then paid per patch);
* ``JPEG PSNR`` — Pillow's JPEG of the same patches (tiled into one mosaic, so the header is
  paid once as for the latents file) at the largest quality whose bpp is not above ours.

PSNR is that of the mean squared error over all test patches. Base files and latent files are
written under ``--out``; checkpoints make a re-run resume (``--fresh`` starts over).

``--doh-base F [F ...]`` also trains each model with its shared base reparametrized by D'OH
(``hyperproj.reparametrize``: every weight matrix of the base, SIREN layers and modulation
network, becomes ``B_l z`` with ``len(z)`` = F × the base's weight count), with the same data
and budget, and reports the base file's size next to the plain base's: the cost in quality of
shipping a small base.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/modulations.py --quick
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/modulations.py          # full setting
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/modulations.py --quick --dims 64 256 --doh-base 0.25 0.1
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch
from _paths import HINT, kodak_dir
from einops import rearrange

import hyperproj
from hyperproj.baselines import classic_at_rate
from hyperproj.inr import ImageSignal, grid_coords
from hyperproj.inr.metrics import psnr, quantize_8bit
from hyperproj.modulation import (
    GatedSiren,
    ShiftSiren,
    decode_latents,
    encode_latents,
    fit_entropy_model,
    fit_latents,
    kodak_photos,
    meta_train,
    modulated_of,
    patch_pool,
    render_latents,
    save_base,
    training_photos,
)

ROOT = Path(__file__).resolve().parents[1]
# the photos scripts/fetch_test_data.sh unpacks into the checkout's .data (as scripts/test.sh sets it)
if "HYPERPROJ_DATA" not in os.environ and (ROOT / ".data" / "photos").is_dir():
    os.environ["HYPERPROJ_DATA"] = str(ROOT / ".data")
DEFAULT_KODAK = kodak_dir()  # ../shared/data/kodak beside the checkout; HYPERPROJ_KODAK / HYPERPROJ_SHARED override

SETTINGS = {
    "quick": dict(steps=150, batch_size=12, inner_steps=3, first_order=True, hidden=64, layers=3, rank=8,
                  train_patches=3000, test_per_image=8, entropy_patches=512),
    "full": dict(steps=3000, batch_size=16, inner_steps=3, first_order=False, hidden=64, layers=3, rank=8,
                 train_patches=None, test_per_image=32, entropy_patches=2048),
}
HOLDOUT = ("opencv-doc__fruits", "opencv-doc__leuvenA", "libjxl-testdata__flower")


def parse() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="the < 10 minute CPU setting")
    ap.add_argument("--data", type=Path, default=DEFAULT_KODAK, help="folder with the Kodak kodim*.png test photos")
    ap.add_argument("--out", type=Path, default=ROOT / "out" / "modulations")
    ap.add_argument("--dims", type=int, nargs="+", default=[64, 128, 256, 512])
    ap.add_argument("--kinds", nargs="+", default=["shift", "gated"], choices=["shift", "gated"])
    ap.add_argument("--steps", type=int, help="outer steps (overrides the setting)")
    ap.add_argument("--batch-size", type=int)
    ap.add_argument("--inner-steps", type=int)
    ap.add_argument("--second-order", action="store_true", help="second-order MAML even in --quick")
    ap.add_argument("--lr", type=float, default=1e-4, help="outer Adam learning rate")
    ap.add_argument("--inner-lr", type=float, default=1e-2, help="initial Meta-SGD inner learning rate (before calibration)")
    ap.add_argument("--inner-lr-lr", type=float, default=1e-2, help="Adam rate of the log inner learning rates")
    ap.add_argument("--qstep", type=float, default=0.25, help="quantization step in units of each dimension's σ")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--doh-base", type=float, nargs="*", default=[], metavar="F",
                    help="also train with a D'OH-reparametrized base of F x its weight count latent values")
    ap.add_argument("--fresh", action="store_true", help="ignore existing checkpoints")
    ap.add_argument("--no-progress", action="store_true")
    return ap.parse_args()


def build(kind: str, dim: int, cfg: dict, inner_lr: float, doh: float | None, seed: int):
    """The model to meta-train; with ``doh`` its base reparametrized (latent = doh × weight count)."""
    common = dict(hidden_features=cfg["hidden"], hidden_layers=cfg["layers"], inner_lr=inner_lr)
    net = ShiftSiren(dim, **common) if kind == "shift" else GatedSiren(dim, rank=cfg["rank"], **common)
    if doh is None:
        return net
    weights = sum(p.numel() for p in net.parameters() if p.dim() >= 2)
    return hyperproj.reparametrize(net, latent_dim=max(1, round(doh * weights)), seed=seed)


def test_patches(args, cfg, photos):
    """Kodak patches (a seeded subset per image), or held-out training photos as a fallback."""
    kodak = kodak_photos(args.data)
    if kodak:
        source = f"{len(kodak)} Kodak images in {args.data}"
        per_image = [patch_pool([img], 32, count=cfg["test_per_image"], seed=args.seed + i) for i, img in enumerate(kodak.values())]
        return np.concatenate(per_image), photos, source
    held = {k: v for k, v in photos.items() if k in HOLDOUT} or dict(list(photos.items())[-2:])
    print(f"WARNING: no Kodak PNGs in {args.data} ({HINT}); testing on held-out photos {sorted(held)} instead",
          file=sys.stderr)
    train = {k: v for k, v in photos.items() if k not in held}
    per_image = [patch_pool([img], 32, count=4 * cfg["test_per_image"], seed=args.seed + i) for i, img in enumerate(held.values())]
    return np.concatenate(per_image), train, f"held-out photos {sorted(held)} (Kodak not found)"


def mosaic(patches: np.ndarray) -> np.ndarray:
    """Tile (P, 32, 32, 3) patches into one image, 16 patches per row (P must be a multiple)."""
    cols = 16 if len(patches) % 16 == 0 else 1
    return rearrange(patches, "(r c) h w ch -> (r h) (c w) ch", c=cols)


def main() -> None:
    torch.set_num_threads(1)
    args = parse()
    cfg = dict(SETTINGS["quick" if args.quick else "full"])
    for key, value in (("steps", args.steps), ("batch_size", args.batch_size), ("inner_steps", args.inner_steps)):
        if value is not None:
            cfg[key] = value
    if args.second_order:
        cfg["first_order"] = False
    if args.fresh and args.out.exists():
        shutil.rmtree(args.out)
    args.out.mkdir(parents=True, exist_ok=True)
    t_all = time.perf_counter()

    photos = training_photos(max_side=768)
    test, train_photos, source = test_patches(args, cfg, photos)
    train = patch_pool(train_photos, 32, count=cfg["train_patches"], seed=args.seed)
    coords = grid_coords((32, 32))
    train_v = torch.from_numpy(rearrange(train, "p h w c -> p (h w) c"))
    test_v = torch.from_numpy(rearrange(test, "p h w c -> p (h w) c"))
    ent_v = train_v[: cfg["entropy_patches"]]
    pixels = test_v.shape[0] * test_v.shape[1]
    print(f"train: {len(train_v)} patches from {len(train_photos)} non-Kodak photos; test: {len(test_v)} "
          f"patches from {source}")
    print(f"setting: {'quick' if args.quick else 'full'} {cfg}, lr={args.lr}, inner_lr={args.inner_lr}, "
          f"qstep={args.qstep}σ, seed={args.seed}")
    sig = ImageSignal.from_array((mosaic(test) * 255).round().astype(np.uint8))

    rows = []
    variants = [None, *args.doh_base]
    for dim, kind, doh in ((d, k, v) for d in args.dims for k in args.kinds for v in variants):
        torch.manual_seed(args.seed)
        net = build(kind, dim, cfg, args.inner_lr, doh, args.seed)
        spec = modulated_of(net)
        tag = f"{kind}_d{dim}" + ("" if doh is None else f"_doh{doh:g}")
        base_name = "plain" if doh is None else f"D'OH {doh:.0%}"
        t = time.perf_counter()
        meta_train(net, coords, train_v, steps=cfg["steps"], batch_size=cfg["batch_size"],
                   inner_steps=cfg["inner_steps"], lr=args.lr, inner_lr_lr=args.inner_lr_lr, first_order=cfg["first_order"], seed=args.seed,
                   checkpoint=args.out / f"ckpt_{tag}.pt", progress=not args.no_progress)
        train_s = time.perf_counter() - t
        lat = fit_latents(net, coords, test_v)
        start = spec.latent_init.detach().expand(len(test_v), -1)
        p_start = psnr(quantize_8bit(render_latents(net, coords, start)), test_v)
        p_raw = psnr(quantize_8bit(render_latents(net, coords, lat)), test_v)
        fit_entropy_model(net, fit_latents(net, coords, ent_v))
        base_kb = len(save_base(net, args.out / f"base_{tag}.hpz")) / 1024
        blob = encode_latents(net, lat, step=args.qstep, path=args.out / f"latents_{tag}.hpz")
        back = decode_latents(blob, net)
        p_coded = psnr(quantize_8bit(render_latents(net, coords, back)), test_v)
        bpp = 8 * len(blob) / pixels
        one = np.mean([len(encode_latents(net, lat[i : i + 1], step=args.qstep)) for i in range(len(lat))])
        jpeg = classic_at_rate(sig, "JPEG", bpp)
        rows.append(dict(dim=dim, kind=kind, base=base_name, base_kb=base_kb,
                         params=sum(p.numel() for p in net.parameters()), train_s=train_s,
                         start=p_start, psnr=p_raw, coded=p_coded, bpp=bpp, one=8 * one / 1024,
                         jpeg=None if jpeg is None else (jpeg["psnr"], jpeg["bpp"])))
        r = rows[-1]
        print(f"  d={dim:4d} {kind:5s} {base_name:9s}: PSNR {p_start:.2f} at φ0 -> {p_raw:.2f}, inner lr "
              f"{spec.inner_lr.min().item():.3g}..{spec.inner_lr.max().item():.3g}, coded {p_coded:.2f} dB at {bpp:.3f} bpp "
              f"(train {train_s:.0f} s, base file {base_kb:.1f} KB)", flush=True)

    print()
    print("| latent d | model | base | base file KB | trained values | train s | PSNR at φ0 | PSNR (dB) | coded PSNR | bpp | "
          "1-patch bpp | JPEG PSNR @ bpp |")
    print("|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        jp = "n/a (no quality fits)" if r["jpeg"] is None else f"{r['jpeg'][0]:.2f} @ {r['jpeg'][1]:.3f}"
        print(f"| {r['dim']} | {r['kind']} | {r['base']} | {r['base_kb']:.1f} | {r['params']:,} | {r['train_s']:.0f} | "
              f"{r['start']:.2f} | {r['psnr']:.2f} | {r['coded']:.2f} | {r['bpp']:.3f} | {r['one']:.3f} | {jp} |")
    print()
    for r in rows:
        if r["base"] != "plain":
            ref = next(q for q in rows if q["dim"] == r["dim"] and q["kind"] == r["kind"] and q["base"] == "plain")
            print(f"d={r['dim']} {r['kind']}: {r['base']} base {r['base_kb']:.1f} KB vs {ref['base_kb']:.1f} KB plain, "
                  f"PSNR {r['psnr'] - ref['psnr']:+.2f} dB, coded {r['coded'] - ref['coded']:+.2f} dB")
    for dim in args.dims:
        by = {r["kind"]: r for r in rows if r["dim"] == dim and r["base"] == "plain"}
        if {"shift", "gated"} <= set(by):
            diff = by["gated"]["psnr"] - by["shift"]["psnr"]
            print(f"d={dim}: gated - shift = {diff:+.2f} dB ({'gated >= shift' if diff >= 0 else 'shift > gated'})")
    print(f"total {time.perf_counter() - t_all:.0f} s")


if __name__ == "__main__":
    main()

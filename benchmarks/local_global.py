"""Local-Global INRs (Ashkenazi & Treister, NeurIPS 2024) side by side, in one run:

1. Image, equal parameter count: Local-Global SIREN vs SIREN vs SIREN-per-partition (the same
   ``LocalGlobal`` class with ``global_features=0``): PSNR, SSIM, training seconds per step.
2. D'OH per-partition latents (``groups="partition"``) at 8 bits: file rate vs PSNR; then the
   file cropped to the top-left quarter with ``hyperproj.codec.crop`` (no retraining): its size,
   and the PSNR on the kept region from the cropped file against the uncropped file.
3. Audio (a real clip from alsa-utils) with partition factor 32: LG vs SIREN at equal parameters.

Usage::

    python benchmarks/local_global.py --quick     # 128 px Kodak crop, 8x8 partitions; < 10 min on 2 CPU cores
    python benchmarks/local_global.py             # the paper's setting: 512 px, 16x16, ~200k parameters

``--data DIR`` picks the Kodak folder (default ``../shared/data/kodak`` beside the checkout, see
``benchmarks/_paths.py``; falls back to
``skimage.data.astronaut()``); ``--img-out DIR`` receives small PNGs (original, LG, cropped file).
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
from hyperproj import codec
from hyperproj.inr import AudioSignal, ImageSignal, LocalGlobal, Siren, find_audio, fit, psnr

DEFAULT_DATA = kodak_dir()

SETTINGS = {
    # size, partition factors, hidden layers, local width, global width, steps, audio samples
    "quick": dict(size=128, factors=(8, 8), layers=2, local=12, glob=40, steps=300, audio=16384, doh=(0.25, 0.5)),
    "full": dict(size=512, factors=(16, 16), layers=3, local=14, glob=84, steps=2000, audio=65536, doh=(0.1, 0.25, 0.5)),
}


def count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def load_image(data: Path, size: int) -> tuple[str, ImageSignal]:
    files = sorted(data.glob("*.png")) if data.is_dir() else []
    if files:
        sig = ImageSignal.from_file(files[0])
        h, w, _ = sig.shape
        side = min(h, w)
        sig = sig.center_crop(side).resize(size)  # a square crop, then to the working size
        return f"{files[0].name} (center {side}px crop -> {size}px)", sig
    import skimage.data

    print(f"note: no PNG images in {data} ({HINT}); using scikit-image's astronaut", file=sys.stderr)
    return f"astronaut (skimage, {size}px)", ImageSignal.from_array(skimage.data.astronaut()).resize(size)


def siren_width(target: int, in_f: int, out_f: int, layers: int) -> int:
    """SIREN width whose parameter count is closest to ``target``."""
    return min(range(4, 1024), key=lambda w: abs(count(Siren(in_f, w, layers, out_f)) - target))


def pp_width(target: int, in_f: int, out_f: int, factors, layers: int) -> int:
    return min(range(2, 128), key=lambda w: abs(count(LocalGlobal(in_f, out_f, factors, w, 0, layers)) - target))


def train(name: str, model, signal, steps: int, lr: float, **kw) -> dict:
    torch.manual_seed(0)
    hist = fit(model, signal, steps, lr=lr, progress=False, **kw)
    metrics = hist.metrics[hist.best_index]
    return {"model": name, "params": count(model), "s_per_step": hist.seconds[-1] / hist.step[-1], **metrics}


def image_comparison(sig: ImageSignal, cfg: dict, lrs: list[float]) -> tuple[list[dict], LocalGlobal]:
    """The three models at equal parameter count, each at the best of ``lrs`` (by PSNR)."""
    c = sig.shape[2]
    torch.manual_seed(0)
    target = count(LocalGlobal(2, c, cfg["factors"], cfg["local"], cfg["glob"], cfg["layers"]))
    sw = siren_width(target, 2, c, cfg["layers"])
    pw = pp_width(target, 2, c, cfg["factors"], cfg["layers"])
    makers = [
        (f"Local-Global SIREN (local {cfg['local']}, global {cfg['glob']})",
         lambda: LocalGlobal(2, c, cfg["factors"], cfg["local"], cfg["glob"], cfg["layers"])),
        (f"SIREN (width {sw})", lambda: Siren(2, sw, cfg["layers"], c)),
        (f"SIREN-per-partition (local {pw})", lambda: LocalGlobal(2, c, cfg["factors"], pw, 0, cfg["layers"])),
    ]
    rows, lg = [], None
    for i, (name, make) in enumerate(makers):
        best = None
        for rate in lrs:
            torch.manual_seed(0)
            model = make()
            r = train(name, model, sig, cfg["steps"], rate)
            r["lr"] = rate
            print(f"  {name} at lr {rate:g}: {r['psnr']:.2f} dB, {r['s_per_step']:.3f} s/step", flush=True)
            if best is None or r["psnr"] > best["psnr"]:
                best = r
                if i == 0:
                    lg = model
        rows.append(best)
    return rows, lg


def region_psnr(model, sig: ImageSignal, rows: slice, cols: slice) -> tuple[float, torch.Tensor]:
    h, w, c = sig.shape
    coords = sig.coords.view(h, w, 2)[rows, cols].reshape(-1, 2)
    with torch.no_grad():
        pred = model(coords).clamp(0, 1)
    pred = torch.round(pred * 255) / 255
    ref = sig.image[rows, cols].reshape(-1, c)
    return psnr(pred, ref), pred


def doh_rates(sig: ImageSignal, cfg: dict, lr: float, img_out: Path | None) -> tuple[list[dict], dict]:
    c = sig.shape[2]
    rows, crop_row = [], {}
    for frac in cfg["doh"]:
        torch.manual_seed(0)
        net = LocalGlobal(2, c, cfg["factors"], cfg["local"], cfg["glob"], cfg["layers"])
        weights = sum(p.numel() for n, p in net.named_parameters() if p.dim() >= 2)
        n = int(frac * weights)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            hyper = hyperproj.reparametrize(net, n, seed=0, groups="partition", latent_lr_scale=10.0)
        t0 = time.perf_counter()
        fit(hyper, sig, cfg["steps"], lr=lr, progress=False)
        train_s = time.perf_counter() - t0
        blob = codec.encode(hyper, bits=8, signal=sig)
        dec = codec.decode(blob)
        m = sig.evaluate(dec)
        g, k = hyper._groups, hyper.base.num_partitions
        rows.append({"latent": hyper.latent.numel(), "frac": frac, "split": f"{g.global_dim} + {k} x {g.partition_dim}",
                     "bytes": len(blob), "bpp": 8 * len(blob) / sig.num_pixels, "psnr": m["psnr"], "ssim": m["ssim"],
                     "train_s": train_s})
        if frac == cfg["doh"][-1]:  # crop the largest file to the top-left quarter
            h, w, _ = sig.shape
            t0 = time.perf_counter()
            small_blob = codec.crop(blob, ((-1, -1), (0, 0)))
            crop_s = time.perf_counter() - t0
            small = codec.decode(small_blob)
            hh, ww = small.hpz_signal["i"][:2]
            p_small, pred_small = region_psnr(small, sig, slice(0, hh), slice(0, ww))
            p_full, pred_full = region_psnr(dec, sig, slice(0, hh), slice(0, ww))
            crop_row = {"full_bytes": len(blob), "crop_bytes": len(small_blob), "full_psnr": m["psnr"],
                        "region": f"{hh}x{ww}", "psnr_crop_file": p_small, "psnr_full_file": p_full,
                        "identical": bool(torch.equal(pred_small, pred_full)), "crop_s": crop_s,
                        "full_partitions": k, "crop_partitions": small.base.num_partitions}
            if img_out is not None:
                codec.render(dec, path=img_out / "lg_doh_decoded.png")
                codec.render(small, path=img_out / "lg_doh_cropped.png")
    return rows, crop_row


def audio_comparison(cfg: dict, lr: float) -> tuple[str, list[dict]]:
    path = find_audio("Front_Center")
    if path is None:
        return "no audio clip found (set HYPERPROJ_DATA or install alsa-utils)", []
    full = AudioSignal.from_file(path)
    n = min(cfg["audio"], full.num_samples)
    power = full.values[:, 0].pow(2)
    start = max(range(0, full.num_samples - n + 1, 1024), key=lambda s: float(power[s : s + n].sum()))
    sig = full.crop(start, n)  # the loudest window (the clip has silence in the middle)
    lg_size = count(LocalGlobal(1, 1, (32,), 16, 32, 2))
    sw = siren_width(lg_size, 1, 1, 2)
    pw = pp_width(lg_size, 1, 1, (32,), 2)
    makers = [
        ("Local-Global SIREN (32 partitions, local 16, global 32)",
         lambda: LocalGlobal(1, 1, (32,), 16, 32, 2, first_omega=3000.0)),
        (f"SIREN (width {sw})", lambda: Siren(1, sw, 2, 1, first_omega=3000.0)),
        (f"SIREN-per-partition (local {pw})", lambda: LocalGlobal(1, 1, (32,), pw, 0, 2, first_omega=3000.0)),
    ]
    rows = []
    for name, make in makers:  # each model at its better learning rate of lr and lr / 10
        best = None
        for rate in (lr, lr / 10):
            torch.manual_seed(0)
            r = train(name, make(), sig, cfg["steps"], rate)
            r["lr"] = rate
            if best is None or r["psnr"] > best["psnr"]:
                best = r
        rows.append(best)
    return (f"{path.name}: {n} samples at {sig.sample_rate} Hz ({n / sig.sample_rate:.2f} s, the loudest window), "
            f"best of lr {lr:g} and {lr / 10:g} per model"), rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="small setting (< 10 min on 2 CPU cores)")
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder of PNGs (Kodak)")
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--lr", type=float, default=3e-3, help="Adam learning rate for every model (default 3e-3)")
    ap.add_argument("--img-out", type=Path, default=None, help="write small PNGs here")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--image-lrs", default=None,
                    help="comma-separated learning rates for the image comparison, each model at its best "
                         "(default: --lr alone)")
    ap.add_argument("--only", choices=["image", "doh", "audio"], default=None, help="run one part")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    cfg = dict(SETTINGS["quick" if a.quick else "full"])
    if a.steps:
        cfg["steps"] = a.steps
    if a.img_out is not None:
        a.img_out.mkdir(parents=True, exist_ok=True)
    t_all = time.perf_counter()
    name, sig = load_image(a.data, cfg["size"])
    lrs_note = f" (image comparison: best of lr {a.image_lrs})" if a.image_lrs else ""
    print(f"# Local-Global INRs — {'quick' if a.quick else 'full'} setting, {cfg['steps']} full-batch Adam steps "
          f"at lr {a.lr}{lrs_note}, {torch.get_num_threads()} thread(s)")
    print(f"image: {name}; partitions {cfg['factors'][0]}x{cfg['factors'][1]}, hidden layers {cfg['layers']}")
    print()
    image_lrs = [float(v) for v in a.image_lrs.split(",")] if a.image_lrs else [a.lr]
    if a.only in (None, "image"):
        rows, lg = image_comparison(sig, cfg, image_lrs)
        print(f"## Image, equal parameter count (each model at its best of lr {', '.join(f'{v:g}' for v in image_lrs)})")
        print("| model | params | lr | PSNR (dB) | SSIM | s/step |")
        print("|---|---:|---:|---:|---:|---:|")
        for r in rows:
            print(f"| {r['model']} | {r['params']:,} | {r['lr']:g} | {r['psnr']:.2f} | {r['ssim']:.4f} | "
                  f"{r['s_per_step']:.4f} |")
        if a.img_out is not None:
            sig.to_image(sig.values).save(a.img_out / "lg_original.png")
            sig.to_image(sig.render(lg)).save(a.img_out / "lg_plain.png")
        print()
    if a.only in (None, "doh"):
        doh, cr = doh_rates(sig, cfg, a.lr, a.img_out)
        print("## D'OH per-partition latents (groups=\"partition\"), 8-bit latent, 10-bit biases, rans; rate = file size")
        print("| latent (% of weights) | split: shared + partitions x each | bytes | bpp | PSNR (dB) | SSIM | train s |")
        print("|---:|---|---:|---:|---:|---:|---:|")
        for r in doh:
            print(f"| {r['latent']:,} ({100 * r['frac']:.0f}%) | {r['split']} | {r['bytes']:,} | {r['bpp']:.3f} | "
                  f"{r['psnr']:.2f} | {r['ssim']:.4f} | {r['train_s']:.1f} |")
        print()
        print("## The largest file cropped to the top-left quarter (hyperproj.codec.crop, no retraining)")
        print("| file | partitions | bytes | share of bytes | PSNR on the kept region (dB) |")
        print("|---|---:|---:|---:|---:|")
        print(f"| uncropped | {cr['full_partitions']} | {cr['full_bytes']:,} | 100% | {cr['psnr_full_file']:.2f} |")
        print(f"| cropped ({cr['region']} px) | {cr['crop_partitions']} | {cr['crop_bytes']:,} | "
              f"{100 * cr['crop_bytes'] / cr['full_bytes']:.1f}% | {cr['psnr_crop_file']:.2f} |")
        print(f"kept region bit-identical between the two files: {cr['identical']}; crop took {cr['crop_s']:.2f} s")
        print()
    if a.only in (None, "audio"):
        what, arows = audio_comparison(cfg, a.lr / 3)
        print(f"## Audio, partition factor 32, equal parameter count — {what}")
        if arows:
            print("| model | params | lr | PSNR (dB) | SNR (dB) | s/step |")
            print("|---|---:|---:|---:|---:|---:|")
            for r in arows:
                print(f"| {r['model']} | {r['params']:,} | {r['lr']:g} | {r['psnr']:.2f} | {r['snr']:.2f} | "
                      f"{r['s_per_step']:.4f} |")
        print()
    print(f"total {time.perf_counter() - t_all:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Fit a voice clip (alsa-utils' Front_Center.wav) with a SIREN and write the reconstruction.

    python examples/fit_audio.py --quick                      # < 30 s: 4,096 samples
    python examples/fit_audio.py --steps 1000 --seconds 1.0 --out voice.wav

``--wav PATH`` fits your own 16-bit PCM file.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

import hyperproj
from hyperproj.inr import AudioSignal, Siren, find_audio, fit


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--wav", default="Front_Center", help="alsa-utils clip name or a wav file")
    ap.add_argument("--seconds", type=float, default=0.5, help="length of the excerpt")
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--width", type=int, default=128)
    ap.add_argument("--layers", type=int, default=3)
    ap.add_argument("--omega", type=float, default=3000.0, help="first-layer frequency (SIREN audio)")
    ap.add_argument("--latent", type=float, default=0.0, help="latent size as a fraction of the weights (0 = plain SIREN)")
    ap.add_argument("--lr", type=float, default=None, help="learning rate (default: fit's, tied to the width and depth)")
    ap.add_argument("--batch", type=int, default=None, help="samples per step (default: all)")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--quick", action="store_true", help="tiny run (< 30 s)")
    args = ap.parse_args()

    path = Path(args.wav) if Path(args.wav).is_file() else find_audio(args.wav)
    if path is None:
        raise SystemExit(f"clip {args.wav!r} not found; see `python -m hyperproj.inr.data` to install alsa-utils' clips")
    clip = AudioSignal.from_file(path)
    length = 4096 if args.quick else min(clip.num_samples, int(args.seconds * clip.sample_rate))
    if args.quick:
        args.steps, args.width = 60, 64
    # Start at the loudest window (voice clips begin and end in silence).
    energy = clip.values.pow(2).sum(1)
    windows = energy.unfold(0, length, max(1, length // 4)).mean(1) if clip.num_samples > length else energy[:1]
    start = int(windows.argmax()) * max(1, length // 4)
    clip = clip.crop(start, length)
    print(f"{path.name}: {clip.num_samples} samples at {clip.sample_rate} Hz ({clip.duration:.2f} s)")

    torch.manual_seed(0)
    model = Siren(1, args.width, args.layers, clip.values.shape[1], first_omega=args.omega)
    if args.latent > 0:
        n = sum(p.numel() for name, p in model.named_parameters() if name.endswith("weight"))
        model = hyperproj.reparametrize(model, latent_dim=max(1, int(args.latent * n)), seed=0)
    before = clip.evaluate(model)["psnr"]
    hist = fit(model, clip, steps=args.steps, lr=args.lr, batch_size=args.batch, progress=not args.quick)
    after = clip.evaluate(model)
    print(f"PSNR {before:.1f} -> {after['psnr']:.1f} dB, SNR {after['snr']:.1f} dB (best at step {hist.best[0]})")
    if args.out is not None:
        clip.to_wav(clip.render(model), args.out)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    t = time.perf_counter()
    main()
    print(f"done in {time.perf_counter() - t:.1f} s")

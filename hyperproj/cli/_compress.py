"""``hyperproj compress``: an image into a ``.hpz`` file (:func:`hyperproj.codec.compress`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ._common import CliError, bits, check_output_folder

NAME = "compress"


def add(sub) -> None:
    c = sub.add_parser(NAME, help="compress an image into a .hpz file")
    c.add_argument("input", help="image file (PNG, JPEG, ...)")
    c.add_argument("-o", "--output", help="output .hpz (default: INPUT with suffix .hpz)")
    c.add_argument("--bpp", type=float, default=0.3, help="bits per pixel budget, header included (default 0.3)")
    c.add_argument("--bits", type=bits, default=8, help="latent bit width (default 8)")
    c.add_argument("--bias-bits", type=bits, default=None, help="bias bit width or float16 (default: library default)")
    c.add_argument("--steps", type=int, default=None, help="training steps (default 2000; with --time-budget, the clock decides)")
    c.add_argument("--qat-steps", type=int, default=None, help="quantization-aware fine-tuning steps (default 0: off)")
    c.add_argument("--lr", type=float, default=None, help="learning rate")
    c.add_argument("--time-budget", type=float, default=None, metavar="S", help="stop training after S seconds in all")
    c.add_argument("--model", default="siren", help="siren (default: D'OH's 9x40 SIREN, wider at high rates) or a JSON model spec")
    c.add_argument("--projection", default="auto", help="auto, dense, streamed, fastfood")
    c.add_argument("--seed", type=int, default=0, help="integer seed of the projection B and the initial latent (default 0)")
    c.add_argument("--resize", type=int, default=None, help="resize so the longer side has this many pixels first")
    c.add_argument("--family", default="doh",
                   help="model family (default doh: a SIREN whose weights are B z); others once registered")
    c.add_argument("--quiet", action="store_true", help="no progress bar")


def _model_from(arg: str, signal):
    from ..codec import default_model

    if arg == "siren":
        return None
    if arg.lstrip().startswith("{"):
        from ..inr.registry import build_model

        try:
            spec = json.loads(arg)
        except json.JSONDecodeError as err:
            raise CliError(f"--model: not valid JSON: {err}") from None
        return build_model(spec)
    if arg == "siren-plain":
        return default_model(signal)
    raise CliError(f"--model must be 'siren' or a JSON model spec like '{{\"name\": \"siren\", \"config\": {{...}}}}', got {arg!r}")


def run(a) -> int:
    from .. import codec
    from ..inr.signals import ImageSignal

    src = Path(a.input)
    if not src.is_file():
        raise CliError(f"no such file {str(src)!r}")
    out = Path(a.output) if a.output else src.with_suffix(".hpz")
    check_output_folder(out)  # before any work: compressing can take minutes
    try:
        signal = ImageSignal.from_file(src)
    except Exception as err:  # noqa: BLE001 - Pillow raises many types
        if err.__class__.__name__ == "HyperprojError":
            raise
        raise CliError(f"cannot read image {str(src)!r}: {err}") from None
    if a.resize:
        signal = signal.resize(a.resize)
    kwargs: dict[str, Any] = {
        "bits": a.bits, "steps": a.steps, "qat_steps": a.qat_steps, "time_budget": a.time_budget,
        "projection": a.projection, "seed": a.seed, "progress": not a.quiet, "family": a.family,
    }
    if a.bias_bits is not None:
        kwargs["bias_bits"] = a.bias_bits
    if a.lr is not None:
        kwargs["lr"] = a.lr
    res = codec.compress(signal, bpp=a.bpp, model=_model_from(a.model, signal), **kwargs)
    res.save(out)
    r = res.report
    estimate = f", estimate {r['est_bpp']:.4f}" if "est_bpp" in r else ""
    latent = f", latent {r['latent_dim']}" if "latent_dim" in r else ""
    print(f"{out}: {r['file_bytes']} bytes, {r['bpp']:.4f} bpp (target {a.bpp}{estimate}), "
          f"PSNR {r['psnr']:.2f} dB, SSIM {r['ssim']:.4f}{latent}, {r['seconds']:.1f} s")
    return 0

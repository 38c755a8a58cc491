"""``hyperproj compress``: an image into a ``.hpz`` file (:func:`hyperproj.codec.compress`), or a
collection — several inputs, folders, globs — into a folder with a manifest
(:func:`hyperproj.codec.compress_many`; under ``torchrun`` the inputs are shared out by rank)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ._common import CliError, bits, check_output_folder

NAME = "compress"


def add(sub) -> None:
    c = sub.add_parser(NAME, help="compress an image into a .hpz file, or many into a folder")
    c.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="image file (PNG, JPEG, ...); several files, folders or glob patterns compress a "
                        "collection into the folder -o (one .hpz each and manifest.jsonl)")
    c.add_argument("-o", "--output", help="output .hpz (default: INPUT with suffix .hpz); for a collection "
                                          "the output folder (required)")
    c.add_argument("--bpp", type=float, default=0.3, help="bits per pixel budget, header included (default 0.3)")
    c.add_argument("--bits", type=bits, default=8, help="latent bit width (default 8)")
    c.add_argument("--bias-bits", type=bits, default=None, help="bias bit width or float16 (default: library default)")
    c.add_argument("--steps", type=int, default=None, help="training steps (default 2000; with --time-budget, the clock decides)")
    c.add_argument("--qat-steps", type=int, default=None, help="quantization-aware fine-tuning steps (default 0: off)")
    c.add_argument("--lr", type=float, default=None, help="learning rate")
    c.add_argument("--time-budget", type=float, default=None, metavar="S", help="stop training after S seconds in all")
    c.add_argument("--model", default="siren", help="siren (default: D'OH's 9x40 SIREN, wider at high rates) or a JSON model spec")
    c.add_argument("--projection", default="auto", help="auto (default: orthogonal from a latent of 30 %% of the weights up, else dense or fastfood), "
                   "orthogonal, dense, streamed, fastfood")
    c.add_argument("--seed", type=int, default=0, help="integer seed of the projection B and the initial latent (default 0)")
    c.add_argument("--resize", type=int, default=None, help="resize so the longer side has this many pixels first")
    c.add_argument("--family", default="auto",
                   help="model family: auto (default: grid for images of 256x256 pixels or more at 0.3-2 bpp, "
                        "the family measured better there; doh otherwise, or when D'OH settings are given), "
                        "doh (a SIREN whose weights are B z), grid (latent grids + tiny networks)")
    c.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="a family option, repeatable; VALUE is read as JSON when it parses (numbers, true, "
                        "lists), else as text, e.g. --family grid --option finest=true --option coarse_share=0")
    c.add_argument("--quiet", action="store_true", help="no progress bar")
    c.add_argument("--no-resume", action="store_true",
                   help="collection: redo every input (default: skip inputs whose file is valid and was made "
                        "with the same settings)")
    c.add_argument("--batch", type=int, default=1, metavar="K",
                   help="collection: train up to K consecutive same-sized images together (fixed --steps only; "
                        "default 1: measured no faster on a CPU)")
    c.add_argument("--baselines", default="", metavar="FMTS",
                   help="collection: Pillow formats to compare at each file's rate, e.g. JPEG,WEBP")


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


def _is_collection(a) -> bool:
    import glob

    return (len(a.inputs) > 1 or Path(a.inputs[0]).is_dir() or glob.has_magic(a.inputs[0])
            or (a.output is not None and Path(a.output).is_dir()))


def _options(a) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "bits": a.bits, "steps": a.steps, "qat_steps": a.qat_steps, "time_budget": a.time_budget,
        "projection": a.projection, "seed": a.seed, "family": a.family,
    }
    if a.bias_bits is not None:
        kwargs["bias_bits"] = a.bias_bits
    if a.lr is not None:
        kwargs["lr"] = a.lr
    for item in a.option:
        key, eq, text = item.partition("=")
        key = key.strip().replace("-", "_")
        if not eq or not key.isidentifier():
            raise CliError(f"--option: expected KEY=VALUE with KEY a name, got {item!r}")
        if key in kwargs:
            raise CliError(f"--option {key}: set it with its own flag (--{key.replace('_', '-')})")
        try:
            kwargs[key] = json.loads(text)
        except json.JSONDecodeError:
            kwargs[key] = text
    return kwargs


def _run_collection(a) -> int:
    from ..codec.collection import compress_many

    if a.output is None:
        raise CliError("a collection (several inputs, a folder or a glob) needs -o OUTPUT_FOLDER")
    if a.model != "siren":
        raise CliError("--model with a JSON spec is for one input at a time; a collection uses the default model")
    baselines = tuple(f.strip().upper() for f in a.baselines.split(",") if f.strip())
    res = compress_many(a.inputs, a.output, a.bpp, resize=a.resize, resume=not a.no_resume,
                        batch=a.batch, baselines=baselines, progress=not a.quiet, **_options(a))
    from .._distributed import rank

    if rank() == 0:
        for rec in res.records:
            if rec.get("status") == "failed":
                print(f"failed: {rec['input']}: {rec.get('error')}")
        print(res.table())
        print(f"manifest: {res.manifest}")
    return min(res.failed, 100)  # the exit status says how many inputs failed


def run(a) -> int:
    from .. import codec
    from ..codec.collection import read_signal

    if _is_collection(a):
        return _run_collection(a)
    src = Path(a.inputs[0])
    if not src.is_file():
        raise CliError(f"no such file {str(src)!r}")
    out = Path(a.output) if a.output else src.with_suffix(".hpz")
    check_output_folder(out)  # before any work: compressing can take minutes
    signal = read_signal(src, a.resize, where="hyperproj compress")
    res = codec.compress(signal, bpp=a.bpp, model=_model_from(a.model, signal), progress=not a.quiet, **_options(a))
    res.save(out)
    r = res.report
    estimate = f", estimate {r['est_bpp']:.4f}" if "est_bpp" in r else ""
    latent = f", latent {r['latent_dim']}" if "latent_dim" in r else ""
    print(f"{out}: {r['file_bytes']} bytes, {r['bpp']:.4f} bpp (target {a.bpp}{estimate}), "
          f"PSNR {r['psnr']:.2f} dB, SSIM {r['ssim']:.4f}{latent}, {r['seconds']:.1f} s")
    return 0

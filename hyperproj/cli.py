"""The ``hyperproj`` command line: ``compress``, ``decompress``, ``info``, ``crop`` and ``demo``.

Errors print one line ``hyperproj: error: ...`` on stderr and exit with status 2 (no traceback).

Examples:
    >>> main(["info", "no-such-file.hpz"])
    2
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["main", "demo"]


class _CliError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, no usage dump
        raise _CliError(f"{message} (see 'hyperproj {self.prog.split()[-1]} --help')" if " " in self.prog else message)


def _bits(text: str):
    return "float16" if text == "float16" else int(text)


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="hyperproj", description="Signals as seeded random projections of one small latent (D'OH).")
    sub = p.add_subparsers(dest="command", parser_class=_Parser,
                           help="what to do; 'hyperproj COMMAND --help' lists its options")

    c = sub.add_parser("compress", help="compress an image into a .hpz file")
    c.add_argument("input", help="image file (PNG, JPEG, ...)")
    c.add_argument("-o", "--output", help="output .hpz (default: INPUT with suffix .hpz)")
    c.add_argument("--bpp", type=float, default=0.3, help="bits per pixel budget, header included (default 0.3)")
    c.add_argument("--bits", type=_bits, default=8, help="latent bit width (default 8)")
    c.add_argument("--bias-bits", type=_bits, default=None, help="bias bit width or float16 (default: library default)")
    c.add_argument("--steps", type=int, default=None, help="training steps (default 2000; with --time-budget, the clock decides)")
    c.add_argument("--qat-steps", type=int, default=None, help="quantization-aware fine-tuning steps (default 0: off)")
    c.add_argument("--lr", type=float, default=None, help="learning rate")
    c.add_argument("--time-budget", type=float, default=None, metavar="S", help="stop training after S seconds in all")
    c.add_argument("--model", default="siren", help="siren (default: D'OH's 9x40 SIREN, wider at high rates) or a JSON model spec")
    c.add_argument("--projection", default="auto", help="auto, dense, streamed, fastfood")
    c.add_argument("--seed", type=int, default=0, help="integer seed of the projection B and the initial latent (default 0)")
    c.add_argument("--resize", type=int, default=None, help="resize so the longer side has this many pixels first")
    c.add_argument("--quiet", action="store_true", help="no progress bar")

    d = sub.add_parser("decompress", help="render a .hpz file back into an image")
    d.add_argument("input", help=".hpz file to decode (a D'OH signal file or a modulation latents file)")
    d.add_argument("-o", "--output", help="output image (default: INPUT with suffix _dec.png)")
    d.add_argument("--base", help="modulation latents files only: the base-network .hpz they were coded against")
    d.add_argument("--shape", type=int, nargs="+", metavar="N",
                   help="modulation latents files only: the grid one latent renders on (default: stored in the file)")
    d.add_argument("--columns", type=int, default=None,
                   help="modulation latents files only: patches per row of the output mosaic (default: about sqrt(count))")

    i = sub.add_parser("info", help="header fields and rate breakdown of a .hpz file")
    i.add_argument("input", help=".hpz file to describe")
    i.add_argument("--json", action="store_true", help="print JSON")

    k = sub.add_parser("crop", help="crop a .hpz file of a Local-Global INR without retraining")
    k.add_argument("input", help=".hpz file of a LocalGlobal encoded with groups='partition'")
    k.add_argument("--box", nargs="+", type=float, required=True, metavar="X",
                   help="lower corner then upper corner in model coordinates: x0 y0 x1 y1 for an image "
                        "(coordinate 0 is the row axis, as in ImageSignal.coords), t0 t1 for audio")
    k.add_argument("-o", "--output", help="output .hpz (default: INPUT with suffix _crop.hpz)")

    m = sub.add_parser("demo", help="compress a bundled photo at three rates; table, images, plot")
    m.add_argument("--out", default="hyperproj-demo", help="output directory (default ./hyperproj-demo)")
    m.add_argument("--quick", action="store_true", help="small image, few steps (under a minute)")
    m.add_argument("--size", type=int, default=None, help="image side in pixels (default 256; quick: 64)")
    m.add_argument("--steps", type=int, default=None,
                   help=f"training steps per rate (default {DEMO_STEPS}; quick: {DEMO_QUICK_STEPS}): the same "
                        "numbers on an idle and a busy machine")
    m.add_argument("--budget", type=float, default=None,
                   help="seconds per rate, everything included, instead of a fixed step count (the result "
                        "then depends on the machine's speed and load)")
    m.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def _model_from(arg: str, signal):
    from .codec import default_model

    if arg == "siren":
        return None
    if arg.lstrip().startswith("{"):
        from .inr.registry import build_model

        try:
            spec = json.loads(arg)
        except json.JSONDecodeError as err:
            raise _CliError(f"--model: not valid JSON: {err}") from None
        return build_model(spec)
    if arg == "siren-plain":
        return default_model(signal)
    raise _CliError(f"--model must be 'siren' or a JSON model spec like '{{\"name\": \"siren\", \"config\": {{...}}}}', got {arg!r}")


def _check_output_folder(out: Path) -> None:
    """Refuse an output path whose folder is missing, before any work (one-line message)."""
    folder = out.parent
    if not folder.exists():
        raise _CliError(f"output folder {str(folder)!r} does not exist")
    if not folder.is_dir():
        raise _CliError(f"output folder {str(folder)!r} is not a folder")


def _cmd_compress(a) -> int:
    from . import codec
    from .inr.signals import ImageSignal

    src = Path(a.input)
    if not src.is_file():
        raise _CliError(f"no such file {str(src)!r}")
    out = Path(a.output) if a.output else src.with_suffix(".hpz")
    _check_output_folder(out)  # before any work: compressing can take minutes
    try:
        signal = ImageSignal.from_file(src)
    except Exception as err:  # noqa: BLE001 - Pillow raises many types
        if err.__class__.__name__ == "HyperprojError":
            raise
        raise _CliError(f"cannot read image {str(src)!r}: {err}") from None
    if a.resize:
        signal = signal.resize(a.resize)
    kwargs: dict[str, Any] = {
        "bits": a.bits, "steps": a.steps, "qat_steps": a.qat_steps, "time_budget": a.time_budget,
        "projection": a.projection, "seed": a.seed, "progress": not a.quiet,
    }
    if a.bias_bits is not None:
        kwargs["bias_bits"] = a.bias_bits
    if a.lr is not None:
        kwargs["lr"] = a.lr
    res = codec.compress(signal, bpp=a.bpp, model=_model_from(a.model, signal), **kwargs)
    res.save(out)
    r = res.report
    print(
        f"{out}: {r['file_bytes']} bytes, {r['bpp']:.4f} bpp (target {a.bpp}, estimate {r['est_bpp']:.4f}), "
        f"PSNR {r['psnr']:.2f} dB, SSIM {r['ssim']:.4f}, latent {r['latent_dim']}, {r['seconds']:.1f} s"
    )
    return 0


def _file_kind(path: str) -> str | None:
    """The header's ``"K"`` (None for D'OH signal files); the codec reports unreadable files."""
    from ._errors import HyperprojError
    from .codec.format import read_container

    try:
        header, _ = read_container(Path(path).read_bytes())
    except (HyperprojError, OSError):
        return None
    kind = header.get("K")
    return kind if isinstance(kind, str) else None


def _decompress_latents(a, out: Path) -> int:
    import math

    import numpy as np
    from einops import rearrange
    from PIL import Image

    from .modulation import coding

    if not a.base:
        raise _CliError(f"{a.input!r} is a modulation latents file: pass --base BASE.hpz (the base network it was coded against)")
    patches = coding.render_file(a.input, a.base, tuple(a.shape) if a.shape else None)
    n = len(patches)
    if patches.ndim != 4 or patches.shape[-1] not in (1, 3):
        raise _CliError(f"only 2-D image latents can be drawn as PNG; these render to shape {patches.shape[1:]}")
    cols = a.columns or math.ceil(math.sqrt(n))
    if cols < 1:
        raise _CliError(f"--columns must be >= 1, got {cols}")
    rows = math.ceil(n / cols)
    h, w, c = patches.shape[1:]
    cells = np.concatenate([patches, np.zeros((rows * cols - n, h, w, c), np.uint8)])  # black tail
    mosaic = rearrange(cells, "(r k) h w c -> (r h) (k w) c", k=cols)
    Image.fromarray(mosaic[..., 0] if c == 1 else mosaic).save(out)
    print(f"{out}: {n} patches of {h}x{w} in a {cols}x{rows} mosaic ({mosaic.shape[1]}x{mosaic.shape[0]})")
    return 0


def _cmd_decompress(a) -> int:
    from . import codec

    out = Path(a.output) if a.output else Path(a.input).with_name(Path(a.input).stem + "_dec.png")
    if a.output:  # the default sits beside the input, whose absence the decoder reports
        _check_output_folder(out)
    kind = _file_kind(a.input)
    if kind == "mod-latents/1":
        return _decompress_latents(a, out)
    if kind == "mod-base/1":
        raise _CliError(f"{a.input!r} is a modulation base network, not a signal: decompress a latents file with --base {a.input}")
    if a.base or a.shape or a.columns:
        raise _CliError("--base, --shape and --columns apply only to modulation latents files")
    model = codec.decompress(a.input)
    img = codec.render(model)
    if not hasattr(img, "save"):
        raise _CliError("the file holds no image")
    img.save(out)
    print(f"{out}: {img.size[0]}x{img.size[1]}")
    return 0


def _cmd_info(a) -> int:
    from . import codec

    kind = _file_kind(a.input)
    if kind is not None and kind.startswith("mod-"):
        from .modulation import coding

        if kind == "mod-latents/1":
            rep = coding.latents_file_info(a.input)
        else:
            data = Path(a.input).read_bytes()
            base = coding.load_base(data)
            rep = {"kind": base.kind, "config": base.config, "hash": coding.base_hash(data),
                   "parameters": sum(p.numel() for p in base.parameters()), "bytes": len(data)}
        rep = {"file_kind": kind, **rep}
        if a.json:
            print(json.dumps(rep, indent=1))
        else:
            for key, value in rep.items():
                print(f"{key:15s} {value}")
        return 0
    rep = codec.info(a.input)
    if a.json:
        print(json.dumps(rep, indent=1))
        return 0
    h = rep["header"]
    arch = h["architecture"]
    print(f"file            {a.input}: {rep['bytes']} bytes" + (f", {rep['bpp']:.4f} bpp" if "bpp" in rep else ""))
    print(f"architecture    {arch['name']} {json.dumps(arch['config'], separators=(',', ':'))} (non-default args)")
    print(f"signal          {h['signal']}")
    print(f"projection      {h['projection']}, seed {h['seed']}, latent {h['latent_dim']}, "
          f"latent_scale {h['latent_scale']}, distribution {h['distribution']}, generator v{h['generator_version']}")
    print(f"bits            latent {h['bits']}, biases {h['bias_bits']}, coder {h['method']}")
    print(f"fingerprint     crc32 {h['fingerprint_crc32']:#010x}")
    print("rate breakdown  part      count   bytes  bits   entropy(B)  bzip2(B)  raw(B)")
    print(f"                header        -  {rep['header_bytes']:6d}  {8 * rep['header_bytes']:6d}")
    print(f"                ranges        -  {rep['range_bytes']:6d}  {8 * rep['range_bytes']:6d}")
    for key, cnt, name in (("latent", rep["latent_count"], "latent"), ("params", rep["param_count"], "biases")):
        nbytes = rep["latent_bytes"] if key == "latent" else rep["param_bytes"]
        print(f"                {name:8s} {cnt:6d}  {nbytes:6d}  {8 * nbytes:6d}  {rep['entropy_bytes'][key]:10.1f}  "
              f"{rep['bzip2_bytes'][key]:8d}  {rep['raw_bytes'][key]:6d}")
    if rep["other_bytes"]:
        print(f"                other         -  {rep['other_bytes']:6d}")
    return 0


def _cmd_crop(a) -> int:
    from . import codec

    src = Path(a.input)
    if not src.is_file():
        raise _CliError(f"no such file {str(src)!r}")
    if len(a.box) < 2 or len(a.box) % 2:
        raise _CliError(f"--box needs the lower corner then the upper corner (an even number of values), got {len(a.box)} values")
    d = len(a.box) // 2
    out = Path(a.output) if a.output else src.with_name(src.stem + "_crop.hpz")
    _check_output_folder(out)
    data = src.read_bytes()
    cropped = codec.crop(data, (a.box[:d], a.box[d:]))
    out.write_bytes(cropped)
    rep = codec.info(cropped)
    print(f"{out}: {len(cropped)} bytes ({100 * len(cropped) / len(data):.1f}% of {len(data)}), "
          f"{rep['header']['architecture']['config'].get('partitions')} partitions kept, signal {rep['header']['signal']}")
    return 0


DEMO_STEPS = 1500  # per rate: about a minute per rate on a 2-core CPU
DEMO_QUICK_STEPS = 150


def demo(out: str | Path = "hyperproj-demo", quick: bool = False, size: int | None = None,
         steps: int | None = None, budget: float | None = None, progress: bool = True) -> list[dict[str, Any]]:
    """Compress ``skimage.data.astronaut()`` (resized) at three rates with a fixed number of
    training steps each (default 1,500: the same table on an idle and a busy machine), or within
    ``budget`` seconds each if given; print a table beside JPEG/WebP at the same rate, write the
    decoded images, ``results.csv`` and ``rd.png`` (if matplotlib is installed) into ``out``.

    Examples:
        >>> rows = demo("/tmp/hp-demo", quick=True, progress=False)  # doctest: +SKIP
    """
    import skimage.data

    from . import codec
    from .inr.signals import ImageSignal

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    size = size or (64 if quick else 256)
    if steps is None and budget is None:
        steps = DEMO_QUICK_STEPS if quick else DEMO_STEPS
    rates = (2.0, 4.0, 8.0) if quick else (0.5, 1.0, 2.0)
    signal = ImageSignal.from_array(skimage.data.astronaut()).resize(size)
    signal.to_image(signal.values).save(out / "original.png")
    rows = []
    try:
        import hyperproj._fastfood  # noqa: F401  (cheap to build: no dense B)

        projection = "fastfood"
    except ImportError:  # pragma: no cover
        projection = "auto"
    for bpp in rates:
        res = codec.compress(signal, bpp=bpp, steps=steps, time_budget=budget if steps is None else None,
                             progress=progress, projection=projection)
        path = res.save(out / f"astronaut_{bpp:g}bpp.hpz")
        codec.render(res.model, path=out / f"astronaut_{bpp:g}bpp.png")
        r = res.report
        rows.append({"target_bpp": bpp, "est_bpp": r["est_bpp"], "bpp": r["bpp"], "bytes": r["file_bytes"],
                     "latent": r["latent_dim"], "psnr": r["psnr"], "ssim": r["ssim"], "seconds": r["seconds"],
                     "file": path.name})
    from .codec.baselines import classic_at_rate

    classic = {fmt: [classic_at_rate(signal, fmt, r["bpp"]) for r in rows] for fmt in ("JPEG", "WEBP")}
    how = f"{steps} training steps per rate" if steps is not None else f"{budget:g} s per rate, everything included"
    print(f"astronaut {size}x{size}, D'OH SIREN (default_model: 9 hidden layers, width by rate), {how}, 8-bit latent")
    print(f"{'target':>7} {'est bpp':>8} {'file bpp':>9} {'bytes':>6} {'latent':>7} {'PSNR':>7} {'SSIM':>7} {'sec':>6}"
          f"   {'JPEG bpp/PSNR':>14} {'WebP bpp/PSNR':>14}")
    for i, r in enumerate(rows):
        ref = "".join(
            f"   {c['bpp']:6.3f}/{c['psnr']:6.2f}" if c else f"   {'-':>14}" for c in (classic["JPEG"][i], classic["WEBP"][i])
        )
        print(f"{r['target_bpp']:7.2f} {r['est_bpp']:8.3f} {r['bpp']:9.3f} {r['bytes']:6d} {r['latent']:7d} "
              f"{r['psnr']:7.2f} {r['ssim']:7.4f} {r['seconds']:6.1f}{ref}")
    print("(JPEG/WebP through Pillow at the largest quality whose file is not above hyperproj's file)")
    with open(out / "results.csv", "w") as fh:
        fh.write(",".join(rows[0]) + "\n")
        for r in rows:
            fh.write(",".join(str(v) for v in r.values()) + "\n")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("(matplotlib not installed: no plot)")
    else:
        fig, ax = plt.subplots(figsize=(5, 3.5))
        ax.plot([r["bpp"] for r in rows], [r["psnr"] for r in rows], "o-", label="hyperproj (D'OH, file size)")
        for fmt, pts in classic.items():
            pts = [c for c in pts if c]
            if pts:
                ax.plot([c["bpp"] for c in pts], [c["psnr"] for c in pts], "s--", label=f"{fmt} (Pillow)")
        ax.set_xlabel("bits per pixel (file)")
        ax.set_ylabel("PSNR (dB)")
        ax.set_title(f"astronaut {size}x{size}")
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / "rd.png", dpi=120)
        plt.close(fig)
    print(f"wrote {out}/")
    return rows


def _cmd_demo(a) -> int:
    demo(a.out, quick=a.quick, size=a.size, steps=a.steps, budget=a.budget, progress=not a.quiet)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``hyperproj`` console script; returns the exit status.

    Examples:
        >>> main(["decompress", "missing.hpz"])
        2
    """
    from ._errors import HyperprojError

    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        a = _parser().parse_args(argv)
        if a.command is None:
            _parser().print_help()
            return 2
        return {"compress": _cmd_compress, "decompress": _cmd_decompress, "info": _cmd_info,
                "crop": _cmd_crop, "demo": _cmd_demo}[a.command](a)
    except (HyperprojError, _CliError, OSError) as err:
        msg = str(err).replace("\n", " ")
        print(f"hyperproj: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("hyperproj: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

"""``hyperproj decompress``: a ``.hpz`` file back into an image (a signal file of any model
family, or a modulation latents file drawn against its base)."""

from __future__ import annotations

import math
from pathlib import Path

from ._common import CliError, check_output_folder, file_kind

NAME = "decompress"


def add(sub) -> None:
    d = sub.add_parser(NAME, help="render a .hpz file back into an image")
    d.add_argument("input", help=".hpz file to decode (a D'OH signal file or a modulation latents file)")
    d.add_argument("-o", "--output", help="output image (default: INPUT with suffix _dec.png)")
    d.add_argument("--base", help="modulation latents files only: the base-network .hpz they were coded against")
    d.add_argument("--shape", type=int, nargs="+", metavar="N",
                   help="modulation latents files only: the grid one latent renders on (default: stored in the file)")
    d.add_argument("--columns", type=int, default=None,
                   help="modulation latents files only: patches per row of the output mosaic (default: about sqrt(count))")


def _latents(a, out: Path) -> int:
    import numpy as np
    from einops import rearrange
    from PIL import Image

    from ..modulation import coding

    if not a.base:
        raise CliError(f"{a.input!r} is a modulation latents file: pass --base BASE.hpz (the base network it was coded against)")
    patches = coding.render_file(a.input, a.base, tuple(a.shape) if a.shape else None)
    n = len(patches)
    if patches.ndim != 4 or patches.shape[-1] not in (1, 3):
        raise CliError(f"only 2-D image latents can be drawn as PNG; these render to shape {patches.shape[1:]}")
    cols = a.columns or math.ceil(math.sqrt(n))
    if cols < 1:
        raise CliError(f"--columns must be >= 1, got {cols}")
    rows = math.ceil(n / cols)
    h, w, c = patches.shape[1:]
    cells = np.concatenate([patches, np.zeros((rows * cols - n, h, w, c), np.uint8)])  # black tail
    mosaic = rearrange(cells, "(r k) h w c -> (r h) (k w) c", k=cols)
    Image.fromarray(mosaic[..., 0] if c == 1 else mosaic).save(out)
    print(f"{out}: {n} patches of {h}x{w} in a {cols}x{rows} mosaic ({mosaic.shape[1]}x{mosaic.shape[0]})")
    return 0


def run(a) -> int:
    from .. import codec

    out = Path(a.output) if a.output else Path(a.input).with_name(Path(a.input).stem + "_dec.png")
    if a.output:  # the default sits beside the input, whose absence the decoder reports
        check_output_folder(out)
    kind = file_kind(a.input)
    if kind == "mod-latents/1":
        return _latents(a, out)
    if kind == "mod-base/1":
        raise CliError(f"{a.input!r} is a modulation base network, not a signal: decompress a latents file with --base {a.input}")
    if a.base or a.shape or a.columns:
        raise CliError("--base, --shape and --columns apply only to modulation latents files")
    model = codec.decompress(a.input)
    img = codec.render(model)
    if not hasattr(img, "save"):
        raise CliError("the file holds no image")
    img.save(out)
    print(f"{out}: {img.size[0]}x{img.size[1]}")
    return 0

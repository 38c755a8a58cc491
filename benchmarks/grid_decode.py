"""Decoding time of a grid-family file: today's decoder against the one before it (74d1a50), side
by side in one process, whole and by part.

Encodes one image with the grid family (or takes ``--file``), then decodes it ``--repeat`` times
with each decoder in turn (old, new, old, new, ...) and prints the best time of each, their ratio
and the split by part:

* **header**: container, CRC, header checks, the networks' weights;
* **ARM**: the autoregressive model, once per wavefront step;
* **tables**: the latents' cumulative-frequency tables (:func:`~hyperproj.inr._grid_int.laplace_cdf`);
* **rANS**: the rest of the latents' decoding (the sequential symbol loop, bookkeeping);
* **synthesis**: upsampling and the per-pixel MLP; **output**: the model's parameters and pixels.

The old decoder is ``tests/_grid_reference.py`` (the test suite's oracle); both must give the
same pixels (checked). The part split runs with timers around the parts (a little overhead); the
whole-decode times run without them. Both decoders run on ``--threads`` torch and BLAS threads.

Usage::

    python benchmarks/grid_decode.py                                   # kodim05, 0.3 bpp, 60 s encode
    python benchmarks/grid_decode.py --image kodim05 --bpp 0.8 --finest --coarse-share 0 --out /tmp/k05.hpz
    python benchmarks/grid_decode.py --file /tmp/k05.hpz --repeat 5

``--data`` defaults to ``../shared/data/kodak`` beside the checkout (see ``benchmarks/_paths.py``);
without the Kodak images it encodes scikit-image's astronaut (512 x 512) instead.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path


def _args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--file", type=Path, default=None, help="a grid .hpz to decode (default: encode one)")
    p.add_argument("--data", type=Path, default=None, help="folder of Kodak PNGs")
    p.add_argument("--image", default="kodim05", help="image name in --data (default kodim05)")
    p.add_argument("--bpp", type=float, default=0.3, help="target bits per pixel of the encode (default 0.3)")
    p.add_argument("--budget", type=float, default=60.0, help="seconds for the encode (default 60)")
    p.add_argument("--finest", action="store_true", help="train and store the finest level (grid option)")
    p.add_argument("--coarse-share", type=float, default=None,
                   help="share of the encode clock at half resolution (grid option; 0 fills the finest level)")
    p.add_argument("--out", type=Path, default=None, help="save the encoded file here")
    p.add_argument("--repeat", type=int, default=3, help="decodes of each decoder, best kept (default 3)")
    p.add_argument("--threads", type=int, default=1, help="torch and BLAS threads (default 1)")
    a = p.parse_args(argv)
    if a.bpp <= 0 or a.budget <= 0 or a.threads < 1 or a.repeat < 1:
        sys.exit("grid_decode: --bpp and --budget must be > 0, --threads and --repeat >= 1")
    return a


def _image(a: argparse.Namespace, kodak_dir, hint: str):
    from hyperproj.inr import ImageSignal

    path = (a.data or kodak_dir()) / f"{a.image}.png"
    if path.is_file():
        return ImageSignal.from_file(path), path.stem
    if a.data is not None:
        sys.exit(f"grid_decode: no {path} ({hint})")
    from skimage import data as skdata

    print(f"grid_decode: no {path} ({hint}); encoding scikit-image's astronaut instead")
    return ImageSignal.from_array(skdata.astronaut()), "astronaut"


class _Timer:
    """Seconds spent inside the wrapped functions, by part."""

    def __init__(self) -> None:
        self.parts: dict[str, float] = {}

    def wrap(self, name: str, fn):
        def timed(*args, **kwargs):
            t = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.parts[name] = self.parts.get(name, 0.0) + time.perf_counter() - t
        return timed


def _decode(data: bytes, old: bool, timer: _Timer | None = None):
    """Decode ``data`` with the old or the new decoder: ``(pixels, {part: seconds})``."""
    import _grid_reference as ref

    from hyperproj.codec import _arm_coding as ac
    from hyperproj.codec.families import _grid_file as gf
    from hyperproj.codec.format import read_container
    from hyperproj.inr import _grid_int as gi
    from hyperproj.inr.latent_grid import LatentGrid

    saved = (gi.laplace_cdf, gi.arm_function, ref.reference_arm_params)
    if timer is not None:  # the old decoder calls these through their modules, as the new one does
        gi.laplace_cdf = timer.wrap("tables", gi.laplace_cdf)
        ref.reference_arm_params = timer.wrap("ARM", ref.reference_arm_params)
        arm_function = gi.arm_function
        gi.arm_function = lambda *a: timer.wrap("ARM", arm_function(*a))
    try:
        t0 = time.perf_counter()
        header, sections = read_container(data)
        h = gf._parse(header, sections)
        net = LatentGrid(**h["config"])
        syn = gf._net_decode(sections["s"], gf._shapes(net.synthesis), h["qs"], h["ns"])
        arm = gf._net_decode(sections["a"], gf._shapes(net.arm), h["qa"], h["na"])
        streams = [sections.get(f"l{k}", b"") for k in range(len(net.sizes))]
        t1 = time.perf_counter()
        if old:
            lat = [ref.reference_decode_level(s, hh, ww, al, arm) for s, (hh, ww), al in zip(streams, net.sizes, h["A"])]
        else:
            lat = ac.decode_levels(streams, list(net.sizes), h["A"], arm)
        t2 = time.perf_counter()
        pixels = (ref.reference_synthesize if old else gi.synthesize)(lat, syn)
        t3 = time.perf_counter()
        net.load_integer(lat, syn, arm)
        net.set_decoded(pixels)
        t4 = time.perf_counter()
    finally:
        gi.laplace_cdf, gi.arm_function, ref.reference_arm_params = saved
    parts = {"header": t1 - t0, "latents": t2 - t1, "synthesis": t3 - t2, "output": t4 - t3, "total": t4 - t0}
    if timer is not None:
        parts.update(timer.parts)
        parts["rANS"] = parts["latents"] - parts.get("ARM", 0.0) - parts.get("tables", 0.0)
    return pixels, parts


def main(argv: list[str] | None = None) -> int:
    a = _args(argv)
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = os.environ["OPENBLAS_NUM_THREADS"] = str(a.threads)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the old decoder
    import numpy as np
    import torch
    from _paths import HINT, kodak_dir

    from hyperproj import HyperprojError, codec
    from hyperproj.codec.format import read_container

    torch.set_num_threads(a.threads)
    if a.file is not None:
        data, name = a.file.read_bytes(), a.file.name
    else:
        sig, name = _image(a, kodak_dir, HINT)
        options = {"finest": a.finest} | ({} if a.coarse_share is None else {"coarse_share": a.coarse_share})
        try:
            res = codec.compress(sig, a.bpp, family="grid", time_budget=a.budget, progress=False, **options)
        except HyperprojError as err:
            sys.exit(f"grid_decode: {err}")
        data = res.data
        print(f"encoded {name}: {res.report['bpp']:.4f} bpp, {res.report['psnr']:.2f} dB")
        if a.out is not None:
            a.out.write_bytes(data)
    header, sections = read_container(data)
    if header.get("F") != "grid":
        sys.exit(f"grid_decode: {name} is not a grid-family file")
    h, w = header["x"]["i"][:2]
    levels = [len(sections.get(f"l{k}", b"")) for k in range(header["c"][0])]
    print(f"{name}: {len(data)} B, {8 * len(data) / (h * w):.4f} bpp, {w}x{h}, latent bytes by level {levels}, "
          f"alphabets {header['A']}, {a.threads} thread(s)")
    best = {"old": float("inf"), "new": float("inf")}
    pixels = {}
    for _ in range(a.repeat):
        for which in ("old", "new"):
            pix, parts = _decode(data, which == "old")
            best[which] = min(best[which], parts["total"])
            pixels[which] = pix
    t = time.perf_counter()
    model = codec.decode(data)  # the library's own path: what decompress runs
    library = time.perf_counter() - t
    if not (np.array_equal(pixels["old"], pixels["new"]) and np.array_equal(model.decoded_pixels, pixels["new"])):
        sys.exit("grid_decode: the decoders disagree (a bug: they must be bit-exact)")
    split = {which: _decode(data, which == "old", _Timer())[1] for which in ("old", "new")}
    print(f"decode, best of {a.repeat}: old {best['old']:.3f} s, new {best['new']:.3f} s, "
          f"ratio {best['old'] / best['new']:.2f}x (codec.decode once: {library:.3f} s); pixels identical")
    print(f"{'part (timed once, with timers)':32s} {'old s':>8s} {'new s':>8s}")
    for part in ("header", "ARM", "tables", "rANS", "synthesis", "output", "total"):
        print(f"  {part:30s} {split['old'].get(part, 0.0):8.3f} {split['new'].get(part, 0.0):8.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Classic image codecs through Pillow at a matched rate, for side-by-side tables and plots.

Examples:
    >>> import skimage.data
    >>> from hyperproj.inr import ImageSignal
    >>> sig = ImageSignal.from_array(skimage.data.astronaut()).resize(64)
    >>> row = classic_at_rate(sig, "JPEG", target_bpp=2.0)
    >>> row["bpp"] <= 2.0 and row["psnr"] > 20
    True
"""

from __future__ import annotations

import io
import time
from typing import Any

import numpy as np
import torch

from ._errors import HyperprojError

__all__ = ["classic_at_rate", "CLASSIC_FORMATS"]

CLASSIC_FORMATS = ("JPEG", "WEBP", "JPEG2000")


def classic_at_rate(signal: Any, fmt: str, target_bpp: float) -> dict[str, Any] | None:
    """Encode ``signal`` (an ImageSignal) with Pillow's ``fmt`` at the largest setting whose file
    is not above ``target_bpp``; returns bpp, bytes, PSNR, SSIM, seconds (``None`` if no setting
    fits). JPEG/WebP search quality 1–100; JPEG2000 searches compression ratios near ``24/bpp``.

    Examples:
        >>> classic_at_rate(None, "GIF", 1.0)  # doctest: +IGNORE_EXCEPTION_DETAIL
        Traceback (most recent call last):
        hyperproj._errors.HyperprojError: ...
    """
    if fmt not in CLASSIC_FORMATS:
        raise HyperprojError(f"hyperproj.baselines: fmt must be one of {CLASSIC_FORMATS}, got {fmt!r}")
    from PIL import Image

    from .inr.metrics import psnr, ssim

    img = signal.to_image(signal.values)
    t = time.perf_counter()

    def encode(q):
        buf = io.BytesIO()
        if fmt == "JPEG2000":
            img.save(buf, "JPEG2000", quality_mode="rates", quality_layers=[q])
        else:
            img.save(buf, fmt, quality=q)
        return buf.getvalue()

    if fmt == "JPEG2000":  # Pillow's rates are compression ratios against 24-bit RGB
        candidates = sorted(24 / target_bpp * f for f in (1.0, 1.02, 1.05, 1.1, 1.2, 1.35, 1.5, 2.0, 3.0))
    else:
        candidates = list(range(1, 101))
    best = None
    for q in candidates:
        data = encode(q)
        bpp = 8 * len(data) / signal.num_pixels
        if bpp <= target_bpp and (best is None or bpp > best[1]):
            best = (q, bpp, data)
    if best is None:
        return None
    q, bpp, data = best
    dec = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=np.float32) / 255.0
    dec = torch.from_numpy(dec).reshape(signal.image.shape)
    return dict(method=fmt, config=f"q={q:.3g}", bpp=bpp, bytes=len(data), psnr=psnr(dec, signal.image),
                ssim=ssim(dec, signal.image), seconds=time.perf_counter() - t)
